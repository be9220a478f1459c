# Figures and tables for Snakemake's report: `snakemake --cores 2 report`, then `snakemake --report report.html`.
# Every configured target (dataset/method) gets its rank list, t-SNE and training curves; every dataset among them
# its metrics table and CMC curves across those methods, its summary and its contact sheet. Captions: report/.


rule metrics_table:
    input:
        dataset_metrics,
    output:
        report(
            "results/{dataset}/figures/metrics.html",
            caption="../report/metrics_table.rst",
            category="{dataset}",
            subcategory="methods compared",
            labels={"dataset": "{dataset}", "figure": "metrics table"},
        ),
    log:
        "logs/{dataset}/figures/metrics_table.log",
    conda:
        "../envs/ccreid.yaml"
    shell:
        "python -m trainer.figures metrics-table --out {output:q} {input:q} > {log:q} 2>&1"


rule cmc_curves:
    input:
        dataset_metrics,
    output:
        report(
            "results/{dataset}/figures/cmc.png",
            caption="../report/cmc.rst",
            category="{dataset}",
            subcategory="methods compared",
            labels={"dataset": "{dataset}", "figure": "CMC curves"},
        ),
    log:
        "logs/{dataset}/figures/cmc.log",
    conda:
        "../envs/ccreid.yaml"
    shell:
        "python -m trainer.figures cmc --out {output:q} {input:q} > {log:q} 2>&1"


rule dataset_summary:
    input:
        protocol=rules.lists.output.protocol,
        stages=lambda w: [
            store_path(w.dataset, s).removesuffix(".h5") + ".summary.json" for s in dataset_stages(w.dataset)
        ],
    output:
        report(
            "results/{dataset}/figures/summary.html",
            caption="../report/summary.rst",
            category="{dataset}",
            subcategory="dataset",
            labels={"dataset": "{dataset}", "figure": "summary"},
        ),
    log:
        "logs/{dataset}/figures/summary.log",
    conda:
        "../envs/ccreid.yaml"
    shell:
        "python -m trainer.figures summary --protocol {input.protocol:q} --out {output:q} {input.stages:q} "
        "> {log:q} 2>&1"


rule rank_list:
    input:
        features=rules.evaluate.output.features,
        images=rules.pack.output[0],
        protocol=rules.lists.output.protocol,
    output:
        report(
            "results/{dataset}/{method}/figures/ranklist.png",
            caption="../report/ranklist.rst",
            category="{dataset}",
            subcategory="{method}",
            labels={"dataset": "{dataset}", "method": "{method}", "figure": "rank list"},
        ),
    log:
        "logs/{dataset}/{method}/figures/ranklist.log",
    conda:
        "../envs/ccreid.yaml"
    params:
        lists=lambda w, input: str(Path(input.protocol).parent),
        protocol=protocol_arg,
        queries=report_option("queries"),
        top=report_option("top"),
    shell:
        "python -m trainer.figures ranklist --features {input.features:q} --images {input.images:q} "
        "--lists {params.lists:q} --out {output:q} {params.protocol:q} --queries {params.queries:q} "
        "--top {params.top:q} > {log:q} 2>&1"


rule feature_map:
    input:
        features=rules.evaluate.output.features,
        protocol=rules.lists.output.protocol,
    output:
        report(
            "results/{dataset}/{method}/figures/tsne.png",
            caption="../report/tsne.rst",
            category="{dataset}",
            subcategory="{method}",
            labels={"dataset": "{dataset}", "method": "{method}", "figure": "t-SNE of test features"},
        ),
    log:
        "logs/{dataset}/{method}/figures/tsne.log",
    conda:
        "../envs/ccreid.yaml"
    params:
        lists=lambda w, input: str(Path(input.protocol).parent),
        protocol=protocol_arg,
        max_ids=report_option("max_ids"),
    shell:
        "python -m trainer.figures embedding --features {input.features:q} --lists {params.lists:q} "
        "--out {output:q} {params.protocol:q} --max-ids {params.max_ids:q} > {log:q} 2>&1"


rule training_curves:
    input:
        history=rules.train.output.history,
    output:
        report(
            "results/{dataset}/{method}/figures/curves.png",
            caption="../report/curves.rst",
            category="{dataset}",
            subcategory="{method}",
            labels={"dataset": "{dataset}", "method": "{method}", "figure": "training curves"},
        ),
    log:
        "logs/{dataset}/{method}/figures/curves.log",
    conda:
        "../envs/ccreid.yaml"
    shell:
        "python -m trainer.figures curves --history {input.history:q} --out {output:q} "
        "--title {wildcards.dataset:q}/{wildcards.method:q} > {log:q} 2>&1"


localrules:
    report,


rule report:
    input:
        report_inputs,
