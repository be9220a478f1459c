# images.h5 -> one preprocessing store per stage and backend, computed as shards and merged.
# One pair of rules serves every stage: the stage and backend are wildcards, so a backend's parameters
# (params:), its weights and the stores it reads (input:) decide exactly what reruns.


rule stage_shard:
    input:
        images=rules.pack.output[0],
        model=model_input,
        stores=input_stores,
    output:
        temp("data/derived/{dataset}/{stage}/{backend}.shards/{shard}-of-{n}.h5"),
    log:
        "logs/{dataset}/{stage}/{backend}.{shard}-of-{n}.log",
    benchmark:
        "logs/{dataset}/{stage}/{backend}.{shard}-of-{n}.benchmark.tsv"
    wildcard_constraints:
        stage=STAGE_PATTERN,
        shard="[0-9]+",
        n="[0-9]+",
    conda:
        "../envs/ccreid.yaml"
    resources:
        gpu=stage_gpus,
    params:
        backend=lambda w: split_backend(w.backend)[0],  # grabcut of an experiment's grabcut@sam
        backend_params=backend_params,
        model_file=lambda w: ["--model-file", model_file(w)] if model_file(w) else [],
        sha256=lambda w: (
            ["--sha256", backend_cfg(w.stage, w.backend)["sha256"]]
            if backend_cfg(w.stage, w.backend).get("sha256")
            else []
        ),
        stores=lambda w, input: [word for s in input.stores for word in ("--input-store", s)],
        allow_none_found=allow_none_found,
        batch_size=batch_size,
        workers=decode_workers,
        format_version=STORE_FORMAT_VERSION,  # stores of an older format are rebuilt (their merge rule too)
    shell:
        "python -m pipeline.stages run --stage {wildcards.stage:q} --backend {params.backend:q} "
        "--images {input.images:q} --shard {wildcards.shard:q} --num-shards {wildcards.n:q} "
        "--params {params.backend_params:q} {params.model_file:q} {params.sha256:q} {params.stores:q} "
        "{params.allow_none_found:q} --batch-size {params.batch_size:q} --workers {params.workers:q} "
        "--out {output:q} > {log:q} 2>&1"


rule stage_merge:
    input:
        images=rules.pack.output[0],
        shards=stage_shards,
    output:
        store="data/derived/{dataset}/{stage}/{backend}.h5",
        summary="data/derived/{dataset}/{stage}/{backend}.summary.json",
    log:
        "logs/{dataset}/{stage}/{backend}.merge.log",
    wildcard_constraints:
        stage=STAGE_PATTERN,
    conda:
        "../envs/ccreid.yaml"
    params:
        # shards are temporary, so only the merged store shows Snakemake a store of an older format
        format_version=STORE_FORMAT_VERSION,
    shell:
        "python -m pipeline.stages merge --images {input.images:q} --out {output.store:q} "
        "--summary {output.summary:q} {input.shards:q} > {log:q} 2>&1"


rule alphapose_export:
    input:
        images=rules.pack.output[0],
        store="data/derived/{dataset}/keypoints/{backend}.h5",
    output:
        "data/derived/{dataset}/keypoints/{backend}.alphapose-results.json",
    log:
        "logs/{dataset}/keypoints/{backend}.alphapose-export.log",
    conda:
        "../envs/ccreid.yaml"
    shell:
        "python -m pipeline.stages export-alphapose --store {input.store:q} --images {input.images:q} "
        "--out {output:q} > {log:q} 2>&1"


rule contact_sheet:
    input:
        images=rules.pack.output[0],
        stores=lambda w: [store_path(w.dataset, s) for s in dataset_stages(w.dataset)],
    output:
        report(
            "data/derived/{dataset}/contact_sheet.png",
            caption="../report/contact_sheet.rst",
            category="{dataset}",
            subcategory="dataset",
            labels={"dataset": "{dataset}", "figure": "contact sheet"},
        ),
    log:
        "logs/{dataset}/contact_sheet.log",
    conda:
        "../envs/ccreid.yaml"
    shell:
        "python -m pipeline.stages contact-sheet --images {input.images:q} --out {output:q} {input.stores:q} "
        "> {log:q} 2>&1"
