# ccreid: raw datasets -> lists -> images.h5 -> preprocessing stores -> train -> evaluate (README.md, docs/README.md).
from snakemake.utils import min_version, validate

min_version("9.0")


configfile: "config/config.yaml"


validate(config, "config/schema.yaml")


wildcard_constraints:
    dataset="[A-Za-z0-9_-]+",
    method="[A-Za-z0-9_-]+",
    backend="[A-Za-z0-9_-]+",


include: "rules/common.smk"
include: "rules/data.smk"
include: "rules/stages.smk"
include: "rules/train.smk"


rule all:
    default_target: True
    input:
        [f"results/{t}/metrics.json" for t in config.get("targets", [])],
