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
        spec=lambda w: dataset_cfg(w.dataset)["synthetic"],
        erase=lambda w: "--erase-clothes" if dataset_cfg(w.dataset)["synthetic"].get("erase_clothes") else "",
    shell:
        "python -m pipeline.synthetic --out {output} --seed {params.spec[seed]} "
        "--train-ids {params.spec[train_ids]} --test-ids {params.spec[test_ids]} "
        "--val-ids {params.spec[val_ids]} --images-per-camera {params.spec[images_per_camera]} "
        "--trait-spread {params.spec[trait_spread]} --head-scale {params.spec[head_scale]} "
        "{params.erase} --jobs {threads} > {log} 2>&1"


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
        count_check=lambda w: "--no-count-check" if "synthetic" in dataset_cfg(w.dataset) else "",
        raw_tree=raw_fingerprint,  # not used by the command: a change of it reruns this rule
    shell:
        "python -m pipeline.lists --format {params.fmt} --root {params.root} --out {params.outdir} "
        "--name {wildcards.dataset} {params.count_check} > {log} 2>&1"


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
        "python -m pipeline.pack --lists {params.lists} --root {params.root} --out {output} > {log} 2>&1"
