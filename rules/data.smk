# Raw data -> list files + protocol.json -> images.h5 (the manifest every derived store aligns to).


rule synthetic_dataset:
    output:
        directory("data/raw/{dataset}"),
    log:
        "logs/{dataset}/synthetic.log",
    wildcard_constraints:
        dataset="|".join(synthetic_datasets()) or "^$",
    conda:
        "../envs/ccreid.yaml"
    threads: 2
    params:
        generator=synthetic_args,
    shell:
        "python -m pipeline.synthetic --out {output:q} {params.generator:q} --jobs {threads} > {log:q} 2>&1"


rule lists:
    input:
        raw=raw_input,
    output:
        protocol="data/derived/{dataset}/lists/protocol.json",
    log:
        "logs/{dataset}/lists.log",
    conda:
        "../envs/ccreid.yaml"
    params:
        fmt=lambda w: dataset_cfg(w.dataset)["format"],
        root=lambda w: dataset_cfg(w.dataset)["root"],
        outdir=lambda w, output: str(Path(output.protocol).parent),
        count_check=lambda w: ["--no-count-check"] if "synthetic" in dataset_cfg(w.dataset) else [],
        raw_tree=raw_fingerprint,  # not used by the command: a change of it reruns this rule
    shell:
        "python -m pipeline.lists --format {params.fmt:q} --root {params.root:q} --out {params.outdir:q} "
        "--name {wildcards.dataset:q} {params.count_check:q} > {log:q} 2>&1"


rule pack:
    input:
        protocol=rules.lists.output.protocol,
        raw=raw_input,
    output:
        "data/derived/{dataset}/images.h5",
    log:
        "logs/{dataset}/pack.log",
    conda:
        "../envs/ccreid.yaml"
    params:
        root=lambda w: dataset_cfg(w.dataset)["root"],
        lists=lambda w, input: str(Path(input.protocol).parent),
        format_version=PACK_FORMAT_VERSION,  # a new pack format rebuilds packs written by older code
    shell:
        "python -m pipeline.pack --lists {params.lists:q} --root {params.root:q} --out {output:q} > {log:q} 2>&1"
