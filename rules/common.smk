# Helpers shared by the rules: configuration look-ups only (no torch imports here).
import contextlib
import functools
import json
import sys
from pathlib import Path

import yaml

from pipeline.configoverlay import apply_overlay
from pipeline.configstrings import coerce_strings
from pipeline.datasets import layout_dir
from pipeline.errors import UserError
from snakemake.exceptions import WorkflowError
from snakemake.utils import validate
from pipeline.imagepack import FORMAT_VERSION as PACK_FORMAT_VERSION
from pipeline.rawtree import tree_fingerprint
from pipeline.stages.backends import STAGES, check_params, params_from_strings, shard_gpus
from pipeline.stages.store import STORE_FORMAT_VERSION
from trainer.config import load_method_config, read_method_file, run_scale
from trainer.pretrained import pretrained_files

from pipeline.yamlfile import load_config_file


def stop(message):
    """End the plan with one line, `error: <message>`. Why not an exception: Snakemake wraps one raised while it
    plans in a multi-line InputFunctionException with a traceback, and when the file the failing job would
    produce already exists it drops the exception and keeps the old file (a stage switched to a backend whose
    weights are missing planned "Nothing to be done"). SystemExit passes through both."""
    print(f"error: {message}", file=sys.stderr, flush=True)
    raise SystemExit(1)


@contextlib.contextmanager
def planning(experiment=None):
    """A user error (pipeline.errors.UserError) of the library code the plan calls stops the plan in one line,
    naming the experiment whose config it comes from."""
    try:
        yield
    except UserError as e:
        stop(f"experiments.{experiment}: {e}" if experiment else str(e))


# Snakemake keeps the last of two equal keys in a config file, so a second `overrides:` block would silently drop
# the first: read each config file again, stopping the plan at a duplicate key with its file and line.
with planning():
    for _configfile in workflow.configfiles:
        load_config_file(_configfile)


# --- named experiments (pipeline/configoverlay.py; docs/experiments.md) ----------------------------------


@functools.cache
def cfg(experiment=None):
    """The workflow config a run uses: `config`, or for a named experiment `config` with its overlay applied,
    checked against the schema as a whole (a misspelt backend param stops the plan as in config.yaml)."""
    if experiment is None:
        return config
    overlays = config.get("experiments", {})
    if experiment not in overlays:
        stop(f"experiment {experiment!r} is not configured under experiments: (configured: {sorted(overlays)})")
    try:
        merged = apply_overlay(config, overlays[experiment])
    except ValueError as e:
        stop(f"experiments.{experiment}: {e}")
    schema_file = Path(workflow.basedir) / "config/schema.yaml"
    merged = coerce_strings(merged, yaml.safe_load(schema_file.read_text()))
    try:
        validate(merged, str(schema_file))
    except WorkflowError as e:
        stop(f"experiments.{experiment}, merged into the config, does not pass config/schema.yaml: {e}")
    return merged


def run_experiment(wildcards):
    """The experiment of a run or store job: the `experiment` wildcard of a run under
    results/<dataset>/<method>/<experiment>/, or None (the default config)."""
    return wildcards.experiment if "experiment" in wildcards.keys() else None


# a store an experiment computes otherwise than the default config: data/derived/<d>/<stage>/<backend>@<name>.h5
VARIANT = "@"


def split_backend(backend):
    """(backend name, experiment or None) of a store's `backend` wildcard (`grabcut` or `grabcut@sam`)."""
    name, _, experiment = backend.partition(VARIANT)
    return name, experiment or None


def dataset_cfg(dataset, experiment=None):
    if dataset not in config["datasets"]:
        stop(f"dataset {dataset!r} is not configured under datasets: in config/config.yaml")
    return cfg(experiment)["datasets"][dataset]


def synthetic_datasets():
    return [d for d, c in config["datasets"].items() if "synthetic" in c]


def synthetic_args(wildcards):
    """The generator's arguments from `datasets.<dataset>.synthetic` (schema-checked numbers), as words."""
    spec = dataset_cfg(wildcards.dataset)["synthetic"]
    options = ("seed", "train_ids", "test_ids", "val_ids", "images_per_camera", "trait_spread", "head_scale")
    words = [word for key in options for word in (f"--{key.replace('_', '-')}", str(spec[key]))]
    return words + (["--erase-clothes"] if spec.get("erase_clothes") else [])


def raw_input(wildcards):
    """Input of the lists step - the generated root for synthetic data, else the layout folder."""
    cfg = dataset_cfg(wildcards.dataset)
    if "synthetic" in cfg:
        return cfg["root"]
    return str(Path(cfg["root"]) / layout_dir(cfg["format"]))


def raw_fingerprint(wildcards):
    """Names, sizes and modification times of every file in a real dataset's layout folder, hashed: as a
    params of the lists rule, a replaced, added or deleted image anywhere inside reruns lists, pack and all
    that follows (Snakemake only sees the top folder's own time). Generated data is the workflow's output."""
    cfg = dataset_cfg(wildcards.dataset)
    if "synthetic" in cfg:
        return "generated by the synthetic_dataset rule"
    return tree_fingerprint(raw_input(wildcards))


def method_file(method):
    path = Path(f"config/methods/{method}.yaml")
    if not path.is_file():
        stop(f"method {method!r}: no {path}")
    return path


def method_spec(method):
    """The method file with its `base` chain resolved (requires, body_model, files, ...)."""
    with planning():
        return read_method_file(method_file(method))


def method_files(wildcards):
    """The method file and every file it inherits from: editing baseline.yaml reruns CAL's training too."""
    return method_spec(wildcards.method)["files"]


def scale_of_run(dataset, method, experiment=None):
    """The scale `method` trains at on `dataset` (trainer.config.run_scale) under the experiment's config."""
    dataset_cfg(dataset)  # stops on an unknown dataset
    return run_scale(cfg(experiment), dataset, method)


def check_scales(c):
    """Every `scales` entry names a configured dataset and method: a misspelt one would silently not apply."""
    for dataset, methods in c.get("scales", {}).items():
        dataset_cfg(dataset)
        unknown = sorted(set(methods) - set(config.get("methods", [])))
        if unknown:
            stop(f"scales.{dataset} names {unknown}, which are not among the configured methods {config['methods']}")


def method_config(dataset, method, experiment=None):
    """The merged config a run of `method` on `dataset` trains with: the method file, the dataset format's
    dataset_defaults, the run's scale and the configured overrides (the experiment's after them)."""
    with planning(experiment):
        return load_method_config(
            method_file(method),
            scale_of_run(dataset, method, experiment),
            cfg(experiment).get("overrides", {}).get(method, []),
            dataset_cfg(dataset)["format"],
        )


def method_scale(wildcards):
    """The dataset's method scale, once the merged config is known to load: an unknown scale, a misspelt key
    or a wrongly typed value stops the plan here, before lists and pack."""
    return method_config(wildcards.dataset, wildcards.method, run_experiment(wildcards))["scale"]


def teacher_input(wildcards):
    """A method that trains from another's model (DeSKPro from deskpro_teacher): that model.pt, trained on the
    same dataset by its own train rule."""
    teacher = method_spec(wildcards.method)["teacher"]
    if not teacher:
        return {}
    if teacher not in config.get("methods", []):
        stop(f"method {wildcards.method} trains from {teacher}, which is not among the configured methods")
    # a benchmark seed's or an experiment's teacher: the teacher's run of the same seed or experiment
    return {"teacher": str(run_dir(wildcards, teacher) / "model.pt")}


def run_dir(wildcards, method=None):
    """results/<dataset>/<method>/, with the benchmark seed's or the experiment's folder under it where the run is
    one."""
    run = Path("results", wildcards.dataset, method or wildcards.method)
    if "seed" in wildcards.keys():
        return run / f"seed{wildcards.seed}"
    return run / wildcards.experiment if "experiment" in wildcards.keys() else run


def pretrained_input(wildcards):
    """The pretrained backbone weights the training loads (trainer/pretrained.py: ImageNet ResNet, torchreid's
    OSNet), as inputs. A missing file stops the plan in one line naming it and where to get it, as missing stage
    weights do, unless the model it would train exists; a training that starts from scratch needs none."""
    with planning():
        files = pretrained_files(method_config(wildcards.dataset, wildcards.method, run_experiment(wildcards)))
    missing = [f for f in files if not f.path.is_file()]
    if missing and not (run_dir(wildcards) / "model.pt").is_file():
        f = missing[0]
        where = f"Download it (ccreid-weights fetch does) from {f.url}" if f.url else f"Get it by hand from {f.source}"
        scale = scale_of_run(wildcards.dataset, wildcards.method, run_experiment(wildcards))
        stop(
            f"{f.path}: {f.what}, which {wildcards.method} loads at scale {scale} on {wildcards.dataset}, is missing. "
            f"{where} to that path, or train from scratch: a scale without ImageNet weights "
            f"(scales: {{{wildcards.dataset}: {{{wildcards.method}: <scale>}}}}) or overrides: "
            f"{{{wildcards.method}: [model.pretrained=none]}} (README: Your dataset)."
        )
    return {"pretrained": [str(f.path) for f in files if f.path.is_file()]}


def teacher_args(wildcards, input):
    return ["--teacher", input.teacher] if method_spec(wildcards.method)["teacher"] else []


def test_stores(wildcards):
    """The stores the method's test items read (`test.stores` of its merged config), for the evaluate rule."""
    experiment = run_experiment(wildcards)
    needed = method_config(wildcards.dataset, wildcards.method, experiment).get("test", {}).get("stores", [])
    unknown = [s for s in needed if s not in dataset_stages(wildcards.dataset, experiment)]
    if unknown:
        stop(f"method {wildcards.method} reads {unknown} at test time, which config.yaml does not configure")
    return {s: store_path(wildcards.dataset, s, experiment=experiment) for s in needed}


def store_option(stages, input):
    """--store STAGE=PATH per stage: argument words, which the rules quote one by one ({params.x:q})."""
    return [word for s in stages for word in ("--store", f"{s}={input[s]}")]


def test_store_args(wildcards, input):
    return store_option(test_stores(wildcards), input)


def method_requires(method):
    return method_spec(method)["requires"]


def check_configured_methods(c, experiment=None):
    """Every configured method, at each scale it defines, with its configured overrides: a typo in a method
    file or an override stops the workflow while it is read, whatever the target."""
    for method in c.get("methods", []):
        spec = method_spec(method)
        for scale in ["paper", *spec["scales"]]:
            for dataset_format in [None, *spec["dataset_defaults"]]:
                with planning(experiment):
                    load_method_config(
                        method_file(method), scale, c.get("overrides", {}).get(method, []), dataset_format
                    )
    unknown = sorted(set(c.get("overrides", {})) - set(c.get("methods", [])))
    if unknown:
        where = f"experiments.{experiment}: " if experiment else ""
        stop(f"{where}overrides for {unknown}, which are not among the configured methods {c.get('methods')}")


# the config and every experiment's: a misspelt override or scale stops the plan whatever the target
for _experiment in [None, *config.get("experiments", {})]:
    check_configured_methods(cfg(_experiment), _experiment)
    check_scales(cfg(_experiment))


STANDIN_DIR = "data/derived/body/standin"
BODY_FILES = {
    "model": (
        "STANDIN_NEUTRAL.pkl",
        "https://smpl.is.tue.mpg.de (SMPL for Python; convert it with `python -m trainer.body convert-smpl`)",
    ),
    "mocap": ("standin_prior_mocap.npz", "https://amass.is.tue.mpg.de (CMU, SMPL+H G)"),
}


def body_file(kind):
    """The body model or mocap path config.yaml names ('standin': the generated stand-in); a real file
    that is missing stops the plan, naming it and where to get it."""
    value = config.get("body", {}).get(kind, "standin")
    name, source = BODY_FILES[kind]
    if value == "standin":
        return f"{STANDIN_DIR}/{name}"
    if not Path(value).exists():
        stop(f"{value}: body.{kind} in config.yaml is missing. Get it from {source}, or set body.{kind}: standin")
    return value


def body_inputs(wildcards):
    if not method_spec(wildcards.method).get("body_model"):
        return {}
    return {"body_model": body_file("model"), "mocap": body_file("mocap")}


def body_args(wildcards, input):
    if not method_spec(wildcards.method).get("body_model"):
        return []
    return ["--body-model", input.body_model, "--mocap", input.mocap]


def method_overrides(wildcards):
    """The configured overrides of the method, then the run's seed when it is one of a benchmark's seeds, as
    argument words: a value is one word, whatever it holds."""
    sets = list(cfg(run_experiment(wildcards)).get("overrides", {}).get(wildcards.method, []))
    if "seed" in wildcards.keys():
        sets.append(f"seed={int(wildcards.seed)}")
    return [word for o in sets for word in ("--set", o)]


def required_stores(wildcards):
    """The stores of the configured backends for every stage the method declares it requires."""
    experiment = run_experiment(wildcards)
    needed = method_requires(wildcards.method)
    unknown = [s for s in needed if s not in dataset_stages(wildcards.dataset, experiment)]
    if unknown:
        stop(
            f"method {wildcards.method} requires stages {unknown}, which config.yaml does not configure "
            f"(neither under stages nor under datasets.{wildcards.dataset}.stages)"
        )
    return {s: store_path(wildcards.dataset, s, experiment=experiment) for s in needed}


def store_args(wildcards, input):
    return store_option(method_requires(wildcards.method), input)


# --- preprocessing stages ----------------------------------------------------------------------------

STAGE_PATTERN = "|".join(STAGES)


def configured_backend(stage, dataset, experiment=None):
    """The backend of `stage` on `dataset`, or None: the dataset's own choice (`datasets.<dataset>.stages`) or
    the top-level one (an experiment's stages have replaced the dataset's own, pipeline/configoverlay.py)."""
    own = dataset_cfg(dataset, experiment).get("stages", {}) if dataset else {}
    if stage in own:
        return own[stage]["backend"]
    return cfg(experiment).get("stages", {}).get(stage, {}).get("backend")


def stage_backend(stage, dataset=None, experiment=None):
    backend = configured_backend(stage, dataset, experiment)
    if backend is None:
        stop(f"stage {stage} has no backend: config.yaml's stages (or datasets.{dataset}.stages) names none")
    return backend


def dataset_stages(dataset, experiment=None):
    """The stages configured for `dataset`: the top-level ones and its own (`datasets.<dataset>.stages`)."""
    return [s for s in STAGES if configured_backend(s, dataset, experiment)]


def backend_cfg(stage, backend):
    """The config of a store's backend (`grabcut`, or an experiment's `grabcut@sam`: from that experiment's)."""
    name, experiment = split_backend(backend)
    spec = cfg(experiment).get("backends", {}).get(stage, {})
    if name not in spec:
        stop(
            f"backend {name!r} of stage {stage} is not configured under backends.{stage} "
            f"in config/config.yaml (configured: {', '.join(sorted(spec))})"
        )
    return spec[name]


@functools.cache
def store_identity(dataset, stage, backend, experiment=None):
    """What a store of `backend` is computed from under a config (an experiment's, or the default's): the
    backend's settings, its cloth scheme, and the stores it reads. None where that config lacks the backend or an
    input stage."""
    c = cfg(experiment)
    spec = c.get("backends", {}).get(stage, {}).get(backend)
    if spec is None:
        return None
    scheme = None
    if stage == "cloth_masks":  # the cloth scheme of the parsing backend's label set
        label_set = configured_backend("parsing", dataset, experiment)
        scheme = [label_set, c.get("cloth_schemes", {}).get(label_set)]
    inputs = []
    for s in spec.get("inputs", []):
        upstream = configured_backend(s, dataset, experiment)
        if upstream is None:
            return None
        inputs.append(store_path(dataset, s, upstream, experiment))
    return json.dumps([spec, scheme, inputs], sort_keys=True)


def store_path(dataset, stage, backend=None, experiment=None):
    """data/derived/<dataset>/<stage>/<backend>.h5; under an experiment that computes this store otherwise than the
    default config would (other params, scheme or input stores), <backend>@<experiment>.h5, so that the default's
    and every experiment's store that compute alike are one file."""
    backend = backend or stage_backend(stage, dataset, experiment)
    if experiment and VARIANT not in backend:
        mine = store_identity(dataset, stage, backend, experiment)
        if mine is None or mine != store_identity(dataset, stage, backend):
            backend = f"{backend}{VARIANT}{experiment}"
    return f"data/derived/{dataset}/{stage}/{backend}.h5"


def backend_params(wildcards):
    """The backend's params as JSON, checked while the DAG is built (an unknown backend, a misspelt key, a
    value of the wrong type or range stops the plan, naming it)."""
    name, experiment = split_backend(wildcards.backend)
    with planning(experiment):
        params = params_from_strings(
            wildcards.stage, name, dict(backend_cfg(wildcards.stage, wildcards.backend).get("params", {}))
        )
    if wildcards.stage == "cloth_masks":
        # the cloth scheme belongs to the parsing backend's label set, so it follows that backend
        label_set = stage_backend("parsing", wildcards.dataset, experiment)
        schemes = cfg(experiment).get("cloth_schemes", {})
        if label_set not in schemes:
            stop(f"cloth_schemes has no scheme for the parsing backend {label_set!r} (config/config.yaml)")
        params.update(label_set=label_set, **schemes[label_set])
    with planning(experiment):
        check_params(wildcards.stage, name, params)
    return json.dumps(params, sort_keys=True)


def stage_gpus(wildcards):
    """1 for a shard of a learned backend that runs on a GPU (its device is not cpu), else 0: the scheduler
    (SLURM through the profile, or the local `gpu` resource) places it on a GPU or serialises it there."""
    name = split_backend(wildcards.backend)[0]
    return shard_gpus(wildcards.stage, name, json.loads(backend_params(wildcards)))


def run_gpus(wildcards):
    """Evaluation asks for a GPU unless the configured device is the CPU."""
    return 0 if config.get("device", "auto") == "cpu" else 1


def train_gpus(wildcards):
    """Training asks for one GPU per process (train_processes) unless the configured device is the CPU."""
    return run_gpus(wildcards) * config["train_processes"]


def run_threads(wildcards):
    """A training or evaluation uses every core Snakemake was given (--cores; it then runs one at a time); on a
    cluster without --cores, the profile's set-threads (profiles/slurm) decides, else 2."""
    try:
        return workflow.cores
    except WorkflowError:  # no --cores given
        return 2


def train_launcher(wildcards):
    """`python -m`, or torchrun with train_processes DDP processes on this node (trainer/distributed.py: nccl on
    GPUs, gloo on the CPU); the trainer splits --threads among them."""
    n = config["train_processes"]
    if n == 1:
        return ["python", "-m"]
    return ["python", "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(n), "-m"]


def batch_size(wildcards):
    """`backends.<stage>.<backend>.batch_size`: images per forward pass of a learned backend (GPEN batches)."""
    return backend_cfg(wildcards.stage, wildcards.backend).get("batch_size", 1)


def decode_workers(wildcards):
    """`backends.<stage>.<backend>.workers`: processes decoding images ahead of the backend (the job's threads
    count them)."""
    return backend_cfg(wildcards.stage, wildcards.backend).get("workers", 0)


def allow_none_found(wildcards):
    """`backends.<stage>.<backend>.allow_none_found: true`: a shard that finds nothing is not an error."""
    return ["--allow-none-found"] if backend_cfg(wildcards.stage, wildcards.backend).get("allow_none_found") else []


def groundtruth_file(dataset):
    return str(Path(dataset_cfg(dataset)["root"]) / "groundtruth" / "groundtruth.h5")


def model_file(wildcards):
    """The file a backend loads: the synthetic ground truth, or weights that must already be there. Missing
    weights stop the plan unless the store they would compute exists (then nothing needs them): a plan whose
    target needs a store of a backend without its weights never falls back to an older store's results."""
    if split_backend(wildcards.backend)[0] == "groundtruth":
        if "synthetic" not in dataset_cfg(wildcards.dataset):
            stop(f"the groundtruth backend reads the synthetic dataset's truth; {wildcards.dataset} has none")
        return groundtruth_file(wildcards.dataset)
    spec = backend_cfg(wildcards.stage, wildcards.backend)
    path = spec.get("model_file")
    store = store_path(wildcards.dataset, wildcards.stage, wildcards.backend)
    if path and not Path(path).is_file() and not Path(store).is_file():
        # url: a direct download; source: a page to get the file from by hand (a Google Drive link, a README)
        where = (
            f"Download them (ccreid-weights fetch does) from {spec['url']}"
            if "url" in spec
            else f"Get them by hand from {spec.get('source', 'docs/preprocessing.md#getting-the-weights')}"
        )
        stop(
            f"{path}: weights for {wildcards.stage} backend {wildcards.backend} are missing. "
            f"{where} to that path (expected sha256 {spec.get('sha256', 'not recorded')})."
        )
    return path or ""


def model_input(wildcards):
    # the synthetic truth lives inside the generated dataset directory: depend on that directory
    path = model_file(wildcards)
    if split_backend(wildcards.backend)[0] == "groundtruth":
        return raw_input(wildcards)
    return [path] if path else []


def input_stores(wildcards):
    """Stores a backend reads, as `backends.<stage>.<backend>.inputs` lists them (GrabCut's keypoint seeds,
    the parsing-foreground silhouettes' parsing store, ...)."""
    spec = backend_cfg(wildcards.stage, wildcards.backend)
    experiment = split_backend(wildcards.backend)[1]
    return [store_path(wildcards.dataset, s, experiment=experiment) for s in spec.get("inputs", [])]


def recorded_shards(store):
    """How many shards an existing store was merged from (its `num_shards`), or None: no store, or one that
    cannot be read (then the configured count plans a merge that rewrites it)."""
    import h5py  # only for stores that exist

    if not Path(store).is_file():
        return None
    try:
        with h5py.File(store, "r") as f:
            n = f.attrs.get("num_shards")
    except OSError:  # opening only: a truncated or foreign file is rebuilt
        return None
    return int(n) if n is not None else None


def stage_shards(wildcards):
    """The shard files a store is merged from: `datasets.<dataset>.shards`, else `shards`, for a new store, and the
    count an existing store was made with. The content does not depend on the split, and a changed count would
    change the merge job's inputs, so Snakemake would recompute the store and everything after it (a cluster
    profile that splits into more shards, after a local run)."""
    store = store_path(wildcards.dataset, wildcards.stage, wildcards.backend)
    configured = dataset_cfg(wildcards.dataset).get("shards", {}).get(wildcards.stage)
    n = recorded_shards(store) or int(configured or config.get("shards", {}).get(wildcards.stage, 1))
    return [
        f"data/derived/{wildcards.dataset}/{wildcards.stage}/{wildcards.backend}.shards/{k}-of-{n}.h5" for k in range(n)
    ]


# --- the report's figures (rules/report.smk) ---------------------------------------------------------


def report_targets(experiments=False):
    """(dataset, method) of every configured target `dataset/method`, checked while the plan is built; with
    `experiments`, (dataset, method, experiment or None) of the `dataset/method/experiment` targets too."""
    runs = []
    for target in config.get("targets", []):  # checked by the schema
        dataset, method, *experiment = Path(target).parts
        dataset_cfg(dataset)
        method_file(method)
        if experiment:
            cfg(experiment[0])  # stops on an unknown experiment
        if experiments:
            runs.append((dataset, method, experiment[0] if experiment else None))
        elif not experiment:
            runs.append((dataset, method))
    return runs


def dataset_metrics(wildcards):
    """Every target run's metrics.json on the dataset, the experiments' included: the metrics table and CMC
    compare them."""
    runs = [(m, e) for d, m, e in report_targets(experiments=True) if d == wildcards.dataset]
    if not runs:
        stop(f"no target of dataset {wildcards.dataset} in config.yaml targets: nothing to compare")
    return [str(Path("results", wildcards.dataset, m, e or "", "metrics.json")) for m, e in runs]


def report_option(key):
    return config["report"][key]


def protocol_arg(wildcards):
    protocol = report_option("protocol")
    return ["--protocol", protocol] if protocol else []


def report_inputs(wildcards):
    files = []
    for dataset in dict.fromkeys(d for d, *_ in report_targets(experiments=True)):
        files += [f"results/{dataset}/figures/{name}" for name in ("metrics.html", "cmc.png", "summary.html")]
        files.append(f"data/derived/{dataset}/contact_sheet.png")
    for dataset, method in report_targets():
        files += [f"results/{dataset}/{method}/figures/{n}" for n in ("ranklist.png", "tsne.png", "curves.png")]
        files.append(f"results/{dataset}/{method}/train_figures")
    return files


def benchmark_cfg():
    """config.benchmark, its datasets and methods checked while the plan is built."""
    b = config.get("benchmark")
    if not b:
        stop("no benchmark: section in the config (dataset, oracle, methods, seeds)")
    for dataset in (b["dataset"], b.get("oracle")):
        if dataset:
            dataset_cfg(dataset)
    for method in [*b["methods"], b["oracle_method"]]:
        method_file(method)
        if method not in config.get("methods", []):
            stop(f"benchmark method {method} is not among the configured methods")
    return b


def benchmark_metrics(wildcards):
    """Every metrics.json of the benchmark: each method on the dataset and the oracle on its twin, per seed."""
    b = benchmark_cfg()
    runs = [(b["dataset"], m) for m in b["methods"]]
    if b.get("oracle"):
        runs.append((b["oracle"], b["oracle_method"]))
    return [f"results/{d}/{m}/seed{s}/metrics.json" for d, m in runs for s in b["seeds"]]


def benchmark_teachers():
    """{method: teacher} for the benchmark's methods that train from another's model (DeSKPro): the table charges
    them the teacher's training of the same seed."""
    return {m: t for m in benchmark_cfg()["methods"] if (t := method_spec(m)["teacher"])}


def benchmark_timings(wildcards):
    """The train and evaluate jobs' benchmark files beside each metrics.json, and a taught method's teacher's train
    job of the same seed: what each run cost."""
    b, teachers = benchmark_cfg(), benchmark_teachers()
    files = [
        m.replace("metrics.json", f"{job}.benchmark.tsv")
        for m in benchmark_metrics(wildcards)
        for job in ("train", "evaluate")
    ]
    files += [
        f"results/{b['dataset']}/{teacher}/seed{s}/train.benchmark.tsv"
        for teacher in teachers.values()
        for s in b["seeds"]
    ]
    return files


def benchmark_table_args(wildcards):
    """The benchmark-table command's arguments, as words the rule quotes one by one."""
    b = benchmark_cfg()
    oracle = ["--oracle", b["oracle"], "--oracle-method", b["oracle_method"]] if b.get("oracle") else []
    teachers = [f"{m}={t}" for m, t in benchmark_teachers().items()]
    return [
        "--dataset",
        b["dataset"],
        *oracle,
        "--methods",
        *b["methods"],
        "--seeds",
        *map(str, b["seeds"]),
        *(["--teachers", *teachers] if teachers else []),
    ]
