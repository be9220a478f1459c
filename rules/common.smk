# Helpers shared by the rules: configuration look-ups only (no torch imports here).
import json
from pathlib import Path

import yaml

from pipeline.datasets import LAYOUT_DIRS
from pipeline.stages.backends import STAGES


def dataset_cfg(dataset):
    if dataset not in config["datasets"]:
        raise ValueError(f"dataset {dataset!r} is not configured under datasets: in config/config.yaml")
    return config["datasets"][dataset]


def synthetic_datasets():
    return [d for d, c in config["datasets"].items() if "synthetic" in c]


def raw_input(wildcards):
    """Input of the lists step - the generated root for synthetic data, else the layout folder."""
    cfg = dataset_cfg(wildcards.dataset)
    if "synthetic" in cfg:
        return cfg["root"]
    return str(Path(cfg["root"]) / LAYOUT_DIRS[cfg["format"]])


def method_spec(method):
    path = Path(f"config/methods/{method}.yaml")
    if not path.is_file():
        raise ValueError(f"method {method!r}: no {path}")
    return yaml.safe_load(path.read_text())


def method_requires(method):
    return method_spec(method).get("requires", [])


STANDIN_DIR = "data/derived/body/standin"
BODY_FILES = {"model": ("STANDIN_NEUTRAL.pkl", "https://smpl.is.tue.mpg.de (SMPL for Python; convert it with "
                                               "`python -m trainer.body convert-smpl`)"),
              "mocap": ("standin_prior_mocap.npz", "https://amass.is.tue.mpg.de (CMU, SMPL+H G)")}


def body_file(kind):
    """The body model or mocap path config.yaml names ('standin': the generated stand-in); a real file
    that is missing stops the plan, naming it and where to get it."""
    value = config.get("body", {}).get(kind, "standin")
    name, source = BODY_FILES[kind]
    if value == "standin":
        return f"{STANDIN_DIR}/{name}"
    if not Path(value).exists():
        raise ValueError(f"{value}: body.{kind} in config.yaml is missing. Get it from {source}, "
                         f"or set body.{kind}: standin")
    return value


def body_inputs(wildcards):
    if not method_spec(wildcards.method).get("body_model"):
        return {}
    return {"body_model": body_file("model"), "mocap": body_file("mocap")}


def body_args(wildcards, input):
    if not method_spec(wildcards.method).get("body_model"):
        return ""
    return f"--body-model {input.body_model} --mocap {input.mocap}"


def method_overrides(wildcards):
    return " ".join(f"--set {o}" for o in config.get("overrides", {}).get(wildcards.method, []))


def required_stores(wildcards):
    """The stores of the configured backends for every stage the method declares it requires."""
    needed = method_requires(wildcards.method)
    unknown = [s for s in needed if s not in config.get("stages", {})]
    if unknown:
        raise ValueError(f"method {wildcards.method} requires stages {unknown}, which config.yaml does not configure")
    return {s: store_path(wildcards.dataset, s) for s in needed}


def store_args(wildcards, input):
    return " ".join(f"--store {s}={input[s]}" for s in method_requires(wildcards.method))


# --- preprocessing stages ----------------------------------------------------------------------------

STAGE_PATTERN = "|".join(STAGES)


def stage_backend(stage):
    return config["stages"][stage]["backend"]


def backend_cfg(stage, backend):
    spec = config.get("backends", {}).get(stage, {})
    if backend not in spec:
        raise ValueError(f"backend {backend!r} of stage {stage} is not configured under backends.{stage} "
                         f"in config/config.yaml (configured: {', '.join(sorted(spec))})")
    return spec[backend]


def store_path(dataset, stage, backend=None):
    return f"data/derived/{dataset}/{stage}/{backend or stage_backend(stage)}.h5"


def backend_params(wildcards):
    params = dict(backend_cfg(wildcards.stage, wildcards.backend).get("params", {}))
    if wildcards.stage == "cloth_masks":
        # the cloth scheme belongs to the parsing backend's label set, so it follows that backend
        label_set = stage_backend("parsing")
        schemes = config.get("cloth_schemes", {})
        if label_set not in schemes:
            raise ValueError(f"cloth_schemes has no scheme for the parsing backend {label_set!r} (config/config.yaml)")
        params.update(label_set=label_set, **schemes[label_set])
    return json.dumps(params, sort_keys=True)


def groundtruth_file(dataset):
    return str(Path(dataset_cfg(dataset)["root"]) / "groundtruth" / "groundtruth.h5")


def model_file(wildcards):
    """The file a backend loads: the synthetic ground truth, or weights that must already be there
    (checked while the DAG is built, so a missing file stops the run before any work)."""
    if wildcards.backend == "groundtruth":
        if "synthetic" not in dataset_cfg(wildcards.dataset):
            raise ValueError(f"the groundtruth backend reads the synthetic dataset's truth; {wildcards.dataset} has none")
        return groundtruth_file(wildcards.dataset)
    spec = backend_cfg(wildcards.stage, wildcards.backend)
    path = spec.get("model_file")
    if path and not Path(path).is_file():
        raise ValueError(f"{path}: weights for {wildcards.stage} backend {wildcards.backend} are missing. "
                         f"Download them from {spec.get('url', '(see README, Weights)')} to that path "
                         f"(expected sha256 {spec.get('sha256', 'not recorded')}).")
    return path or ""


def model_input(wildcards):
    # the synthetic truth lives inside the generated dataset directory: depend on that directory
    path = model_file(wildcards)
    if wildcards.backend == "groundtruth":
        return raw_input(wildcards)
    return [path] if path else []


def input_stores(wildcards):
    """Stores a backend reads, as `backends.<stage>.<backend>.inputs` lists them (GrabCut's keypoint seeds,
    the parsing-foreground silhouettes' parsing store, ...)."""
    spec = backend_cfg(wildcards.stage, wildcards.backend)
    return [store_path(wildcards.dataset, s) for s in spec.get("inputs", [])]


def stage_shards(wildcards):
    n = int(config.get("shards", {}).get(wildcards.stage, 1))
    return [f"data/derived/{wildcards.dataset}/{wildcards.stage}/{wildcards.backend}.shards/{k}-of-{n}.h5"
            for k in range(n)]
