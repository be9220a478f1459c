# The benchmark (`snakemake --cores 2 benchmark`): every method of config.benchmark.methods trained and evaluated on
# config.benchmark.dataset once per seed, the oracle (config.benchmark.oracle_method on the clothes-free twin) once per
# seed, and the table of them all. The seed is a wildcard: each (dataset, method, seed) is its own train and evaluate
# job under results/{dataset}/{method}/seed{seed}/, so seeds run in parallel, resume and rerun independently; the
# rules are the train and evaluate rules with those paths (method_overrides adds --set seed=N).


use rule train as train_seed with:
    output:
        model="results/{dataset}/{method}/seed{seed}/model.pt",
        history="results/{dataset}/{method}/seed{seed}/history.jsonl",
        figures=directory("results/{dataset}/{method}/seed{seed}/train_figures"),
    log:
        "logs/{dataset}/{method}/seed{seed}/train.log",
    benchmark:
        "results/{dataset}/{method}/seed{seed}/train.benchmark.tsv"


use rule evaluate as evaluate_seed with:
    input:
        unpack(test_stores),
        model=rules.train_seed.output.model,
        images=rules.pack.output[0],
        protocol=rules.lists.output.protocol,
    output:
        metrics="results/{dataset}/{method}/seed{seed}/metrics.json",
        features="results/{dataset}/{method}/seed{seed}/features.h5",
    log:
        "logs/{dataset}/{method}/seed{seed}/evaluate.log",
    benchmark:
        "results/{dataset}/{method}/seed{seed}/evaluate.benchmark.tsv"


rule benchmark_table:
    input:
        metrics=benchmark_metrics,
        timings=benchmark_timings,
    output:
        table="results/benchmark/table.md",
        html=report(
            "results/benchmark/table.html",
            caption="../report/benchmark.rst",
            category="benchmark",
            labels={"figure": "benchmark table"},
        ),
    log:
        "logs/benchmark/table.log",
    conda:
        "../envs/ccreid.yaml"
    params:
        spec=benchmark_table_args,
    shell:
        "python -m trainer.figures benchmark-table {params.spec:q} --out {output.table:q} --html {output.html:q} "
        "{input.metrics:q} --timings {input.timings:q} > {log:q} 2>&1"


localrules:
    benchmark,


rule benchmark:
    input:
        rules.benchmark_table.output,
