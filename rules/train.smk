# images.h5 + lists (+ the stores a method requires, + the body model) -> model.pt -> metrics.json + features.h5


rule body_standin:
    output:
        model=f"{STANDIN_DIR}/STANDIN_NEUTRAL.pkl",
        mocap=f"{STANDIN_DIR}/standin_prior_mocap.npz",
    log:
        "logs/body/standin.log",
    conda:
        "../envs/ccreid.yaml"
    params:
        out=lambda w, output: str(Path(output.model).parent),
    shell:
        "python -m trainer.body standin --out {params.out:q} > {log:q} 2>&1"


rule train:
    input:
        unpack(required_stores),
        unpack(body_inputs),
        unpack(teacher_input),
        unpack(pretrained_input),
        images=rules.pack.output[0],
        protocol=rules.lists.output.protocol,
        method_config="config/methods/{method}.yaml",
        method_bases=method_files,  # the files it inherits from: a change there reruns this training too
    output:
        model="results/{dataset}/{method}/model.pt",
        history="results/{dataset}/{method}/history.jsonl",
        # the method's own pictures of the trained model (3DSL: its reconstructions); empty for most methods
        figures=report(
            directory("results/{dataset}/{method}/train_figures"),
            patterns=["{name}.png"],
            caption="../report/train_figures.rst",
            category="{dataset}",
            subcategory="{method}",
            labels={"dataset": "{dataset}", "method": "{method}", "figure": "{name}"},
        ),
    log:
        "logs/{dataset}/{method}/train.log",
    benchmark:
        "results/{dataset}/{method}/train.benchmark.tsv"
    conda:
        "../envs/ccreid.yaml"
    threads: run_threads
    resources:
        gpu=train_gpus,
    params:
        launcher=train_launcher,
        scale=method_scale,
        overrides=method_overrides,
        device=config.get("device", "auto"),
        lists=lambda w, input: str(Path(input.protocol).parent),
        outdir=lambda w, output: str(Path(output.model).parent),
        stores=store_args,
        body=body_args,
        teacher=teacher_args,
    shell:
        "{params.launcher:q} trainer.train --method-config {input.method_config:q} --scale {params.scale:q} "
        "{params.overrides:q} --lists {params.lists:q} --images {input.images:q} {params.stores:q} {params.body:q} "
        "{params.teacher:q} --out {params.outdir:q} "
        "--device {params.device:q} --threads {threads} > {log:q} 2>&1"


rule evaluate:
    input:
        unpack(test_stores),
        model=rules.train.output.model,
        images=rules.pack.output[0],
        protocol=rules.lists.output.protocol,
    output:
        metrics="results/{dataset}/{method}/metrics.json",
        features="results/{dataset}/{method}/features.h5",
    log:
        "logs/{dataset}/{method}/evaluate.log",
    benchmark:
        "results/{dataset}/{method}/evaluate.benchmark.tsv"
    conda:
        "../envs/ccreid.yaml"
    threads: run_threads
    resources:
        gpu=run_gpus,
    params:
        device=config.get("device", "auto"),
        lists=lambda w, input: str(Path(input.protocol).parent),
        stores=test_store_args,
        experiment=lambda w: ["--experiment", w.experiment] if "experiment" in w.keys() else [],
    shell:
        "python -m trainer.evaluate --model {input.model:q} --lists {params.lists:q} --images {input.images:q} "
        "{params.stores:q} --out {output.metrics:q} --features {output.features:q} --device {params.device:q} "
        "{params.experiment:q} --threads {threads} > {log:q} 2>&1"
