# Named experiments (config `experiments:`, docs/experiments.md): a method trained and evaluated again under the
# config with the experiment's overlay, in results/{dataset}/{method}/{experiment}/. The rules are the train and
# evaluate rules with those paths; their input functions read the experiment's config (rules/common.smk cfg) and
# its stores: the default's where the experiment computes them alike, <backend>@<experiment>.h5 where not.


use rule train as train_experiment with:
    output:
        model="results/{dataset}/{method}/{experiment}/model.pt",
        history="results/{dataset}/{method}/{experiment}/history.jsonl",
        figures=directory("results/{dataset}/{method}/{experiment}/train_figures"),
    log:
        "logs/{dataset}/{method}/{experiment}/train.log",
    benchmark:
        "results/{dataset}/{method}/{experiment}/train.benchmark.tsv"


use rule evaluate as evaluate_experiment with:
    input:
        unpack(test_stores),
        model=rules.train_experiment.output.model,
        images=rules.pack.output[0],
        protocol=rules.lists.output.protocol,
    output:
        metrics="results/{dataset}/{method}/{experiment}/metrics.json",
        features="results/{dataset}/{method}/{experiment}/features.h5",
    log:
        "logs/{dataset}/{method}/{experiment}/evaluate.log",
    benchmark:
        "results/{dataset}/{method}/{experiment}/evaluate.benchmark.tsv"
