# ccreid: raw datasets -> lists -> images.h5 -> preprocessing stores -> train -> evaluate (README.md, docs/README.md).
import sys
from pathlib import Path

import yaml
from snakemake.utils import min_version, validate

from pipeline.configstrings import coerce_strings, non_finite_paths

min_version("9.0")


configfile: "config/config.yaml"


# a nested --config value arrives as strings: numbers and booleans where the schema expects them
config.update(coerce_strings(config, yaml.safe_load((Path(workflow.basedir) / "config/schema.yaml").read_text())))
if non_finite_paths(config):
    sys.exit(f"error: config value(s) {', '.join(non_finite_paths(config))}: not a finite number")
validate(config, "config/schema.yaml")


report: "report/workflow.rst"


wildcard_constraints:
    dataset="[A-Za-z0-9_-]+",
    method="[A-Za-z0-9_-]+",
    backend="[A-Za-z0-9_-]+(@[A-Za-z0-9_-]+)?",  # @<experiment>: a store an experiment computes otherwise
    seed="0|[1-9][0-9]*",  # one spelling per seed: seed01 would be seed 1 trained twice
    # the configured experiments' names only ((?!): none), so results/<d>/<m>/figures/ is never taken for one
    experiment="|".join(config.get("experiments", {})) or "(?!)",


include: "rules/common.smk"
include: "rules/data.smk"
include: "rules/stages.smk"
include: "rules/train.smk"
include: "rules/report.smk"
include: "rules/benchmark.smk"
include: "rules/experiments.smk"


# the default target: every configured target's metrics, and the report's figures of them (rules/report.smk), so
# that `snakemake --report report.html` (which pictures the default target's DAG) shows them all
rule all:
    default_target: True
    input:
        [f"results/{t}/metrics.json" for t in config.get("targets", [])],
        report_inputs,
