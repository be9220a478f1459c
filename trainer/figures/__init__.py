"""The pictures and tables a researcher decides from, one module each, for Snakemake's report (rules/report.smk):

- `tables`: the metrics table across methods (with config hash and commit) and a dataset's summary, as HTML;
- `cmc`: CMC curves to rank 50, one panel per protocol, a curve per method;
- `ranklist`: clothes-changing queries with their top gallery matches, framed by the protocol's good/junk rules;
- `embedding`: a t-SNE map of test features, coloured by identity and marked by clothes;
- `curves`: training curves from history.jsonl (losses, accuracies, learning rates, throughput, periodic metrics).

`python -m trainer.figures <figure> ...` (`ccreid-figures`) draws each one.
"""
