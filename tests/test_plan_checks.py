"""What the plan makes of its configuration (issue 32): nested `--config` values, which Snakemake hands over as
strings, parsed where the schema or a backend's defaults expect numbers and booleans; `scales.<dataset>.<method>`;
train and evaluate threads from --cores. Dry runs only.

pipeline.configstrings is imported inside the tests that use it, so that each test reports its own result."""
import json

import pytest
import yaml

from .conftest import REPO
from .test_workflow import TINY_CONFIG, jobs_planned, snakemake, workflow  # noqa: F401  (workflow: the fixture)

SCHEMA = yaml.safe_load((REPO / "config/schema.yaml").read_text())


def coerce(value, schema=SCHEMA):
    from pipeline.configstrings import coerce_strings

    return coerce_strings(value, schema)


def validation_error(config):
    """The schema's first complaint about `config`, or None."""
    import jsonschema

    return next(iter(jsonschema.Draft202012Validator(SCHEMA).iter_errors(config)), None)


def error_lines(proc) -> list[str]:
    return [line for line in (proc.stdout + proc.stderr).splitlines() if line.startswith("error:")]


def shell_lines(proc, command: str) -> list[str]:
    """The printed shell commands (-p) that run `command`."""
    return [line for line in proc.stdout.splitlines() if line.startswith("Shell command:") and command in line]


def write_overlay(workflow, name: str, extra: dict) -> str:  # noqa: F811
    (workflow / name).write_text(yaml.safe_dump({**TINY_CONFIG, **extra}))
    return name


# --- pipeline.configstrings against config/schema.yaml -------------------------------------------------------


def test_parse_scalar_reads_only_the_types_asked_for():
    from pipeline.configstrings import parse_scalar

    assert parse_scalar("3", {"integer"}) == 3 and type(parse_scalar("3", {"integer"})) is int
    assert parse_scalar("-2", {"integer"}) == -2 and parse_scalar(" 7 ", {"integer"}) == 7
    assert parse_scalar("3", {"number"}) == 3.0 and type(parse_scalar("3", {"number"})) is float
    assert type(parse_scalar("3", {"integer", "number"})) is int
    assert parse_scalar("True", {"boolean"}) is True and parse_scalar("false", {"boolean"}) is False
    for text, types in [("2.5", {"integer"}), ("1", {"boolean"}), ("many", {"number"}), ("3", {"string"}),
                        ("3", set())]:
        assert parse_scalar(text, types) == text, (text, types)


def test_numbers_and_booleans_of_the_schema_are_parsed_from_strings():
    config = {
        "datasets": {"tiny": {"format": "prcc", "root": "data/raw/tiny", "scale": "tiny",
                              "synthetic": {"seed": "2", "train_ids": "8", "test_ids": "4", "val_ids": "0",
                                            "images_per_camera": "2", "erase_clothes": "true",
                                            "trait_spread": "2.5", "head_scale": "1"},
                              "shards": {"parsing": "3"}}},
        "methods": ["cal"],
        "shards": {"keypoints": "32"},  # through $ref: #/$defs/shards
        "train_processes": "2",
        "report": {"queries": "4"},
        "benchmark": {"dataset": "tiny", "methods": ["cal"], "seeds": ["1", "2"]},
        "backends": {"silhouettes": {"grabcut": {"batch_size": "4", "workers": "0", "allow_none_found": "False"}}},
    }
    original = json.loads(json.dumps(config))
    got = coerce(config)
    assert config == original  # a copy: the input is not changed
    synthetic = got["datasets"]["tiny"]["synthetic"]
    assert synthetic == {"seed": 2, "train_ids": 8, "test_ids": 4, "val_ids": 0, "images_per_camera": 2,
                         "erase_clothes": True, "trait_spread": 2.5, "head_scale": 1.0}
    assert type(synthetic["seed"]) is int and type(synthetic["head_scale"]) is float
    assert got["datasets"]["tiny"]["shards"] == {"parsing": 3} and got["shards"] == {"keypoints": 32}
    assert got["train_processes"] == 2 and got["report"] == {"queries": 4}
    assert got["benchmark"]["seeds"] == [1, 2]
    assert got["backends"]["silhouettes"]["grabcut"] == {"batch_size": 4, "workers": 0, "allow_none_found": False}
    assert validation_error(got) is None


def test_strings_where_the_schema_takes_strings_and_untyped_backend_params_are_untouched():
    config = {
        "datasets": {"2024": {"format": "prcc", "root": "123", "scale": "7"}},
        "methods": ["cal"],
        "scales": {"2024": {"cal": "10"}},
        "overrides": {"cal": ["epochs=3"]},
        "report": {"protocol": "12"},  # [string, null]
        "benchmark": {"dataset": "007", "oracle": "1", "methods": ["cal"], "seeds": [1]},
        "targets": ["2024/cal"],
        "device": "cpu",
        # `params: {type: object}`: the schema does not type a backend's params; its defaults do (next tests)
        "backends": {"silhouettes": {"grabcut": {"params": {"iterations": "3", "seed_keypoints": "true"},
                                                 "model_file": "1", "sha256": "0" * 64}}},
    }
    assert coerce(config) == config
    assert coerce(3, {"type": "integer"}) == 3 and coerce(True, {"type": "boolean"}) is True  # typed: kept


@pytest.mark.parametrize("where, value, path", [
    (("datasets", "tiny", "synthetic", "train_ids"), "many", ["datasets", "tiny", "synthetic", "train_ids"]),
    (("datasets", "tiny", "synthetic", "seed"), "2.5", ["datasets", "tiny", "synthetic", "seed"]),
    (("datasets", "tiny", "synthetic", "erase_clothes"), "yes please", ["datasets", "tiny", "synthetic",
                                                                         "erase_clothes"]),
    (("shards", "keypoints"), "lots", ["shards", "keypoints"]),
])
def test_a_string_that_does_not_parse_stays_for_the_schema_to_refuse_naming_it(where, value, path):
    config = json.loads(json.dumps(TINY_CONFIG))
    node = config
    for key in where[:-1]:
        node = node.setdefault(key, {})
    node[where[-1]] = value
    got = coerce(config)
    assert got == config  # unchanged
    error = validation_error(got)
    assert error is not None and list(error.absolute_path) == path and repr(value) in error.message


def test_one_of_parses_a_string_only_where_no_option_takes_strings():
    defs = {"count": {"oneOf": [{"type": "integer", "minimum": 1}, {"type": "string", "pattern": "^[1-9][0-9]*$"}]},
            "flag": {"oneOf": [{"type": "integer"}, {"type": "boolean"}]}}
    schema = {"type": "object", "$defs": defs,
              "properties": {"count": {"$ref": "#/$defs/count"}, "flag": {"$ref": "#/$defs/flag"},
                             "flags": {"type": "array", "items": {"$ref": "#/$defs/flag"}}}}
    assert coerce({"count": "32"}, schema) == {"count": "32"}  # a string option takes it as it is
    assert coerce({"flag": "3", "flags": ["true", "FALSE", "4", "x"]}, schema) == {
        "flag": 3, "flags": [True, False, 4, "x"]}
    assert coerce({"flag": 5, "count": 2}, schema) == {"flag": 5, "count": 2}


# --- backend params: parsed where the backend's default is a number or a boolean ---------------------------------


def test_backend_params_parse_numbers_and_booleans_after_their_defaults():
    from pipeline.stages.backends import check_params, params_from_strings

    got = params_from_strings("silhouettes", "grabcut", {"iterations": "3", "seed_keypoints": "false",
                                                         "margin": "0.1", "min_score": "1"})
    assert got == {"iterations": 3, "seed_keypoints": False, "margin": 0.1, "min_score": 1.0}
    assert type(got["iterations"]) is int and type(got["min_score"]) is float
    assert check_params("silhouettes", "grabcut", got)["iterations"] == 3
    assert params_from_strings("silhouettes", "grabcut", {"iterations": 4}) == {"iterations": 4}
    # a string default keeps a string, whatever it looks like
    assert params_from_strings("silhouettes", "sam", {"model_type": "123", "device": "0"}) == {
        "model_type": "123", "device": "0"}


@pytest.mark.parametrize("params, named", [
    ({"iterations": "three"}, ["'iterations'", "'three'", "integer"]),
    ({"iterations": "2.5"}, ["'iterations'", "'2.5'", "integer"]),
    ({"seed_keypoints": "maybe"}, ["'seed_keypoints'", "'maybe'", "true/false"]),
    ({"iteration": "3"}, ["iteration", "unknown"]),
])
def test_a_backend_param_string_that_does_not_parse_is_left_for_check_params_to_refuse(params, named):
    from pipeline.errors import InputError
    from pipeline.stages.backends import check_params, params_from_strings

    got = params_from_strings("silhouettes", "grabcut", params)
    assert got == params
    with pytest.raises(InputError) as refused:
        check_params("silhouettes", "grabcut", got)
    assert all(word in str(refused.value) for word in named), str(refused.value)


# --- dry runs -----------------------------------------------------------------------------------------------------

GRABCUT = "data/derived/tiny/silhouettes/grabcut.h5"


@pytest.mark.slow
def test_nested_config_numbers_reach_the_backend_params(workflow):  # noqa: F811
    proc = snakemake(workflow, "-n", "-p", GRABCUT, "--configfile", "tiny.yaml",
                     "--config", "backends={silhouettes: {grabcut: {params: {iterations: 3, seed_keypoints: false}}}}")
    shards = shell_lines(proc, "--backend grabcut")
    assert len(shards) == 2
    for line in shards:
        assert '"iterations": 3,' in line and '"seed_keypoints": false' in line, line


@pytest.mark.slow
def test_nested_config_numbers_reach_the_dataset_and_its_shard_counts(workflow):  # noqa: F811
    proc = snakemake(workflow, "-n", "-p", GRABCUT, "--configfile", "tiny.yaml", "--config",
                     "datasets={tiny: {synthetic: {train_ids: 8, erase_clothes: true}, shards: {silhouettes: 3}}}",
                     "shards={keypoints: 1}")
    (generate,) = shell_lines(proc, "pipeline.synthetic")
    assert "--train-ids 8 " in generate and "--erase-clothes" in generate
    assert jobs_planned(proc)["stage_shard"] == 1 + 3
    assert len(shell_lines(proc, "--num-shards 3 ")) == 3


@pytest.mark.slow
@pytest.mark.parametrize("setting, named", [
    ("backends={silhouettes: {grabcut: {params: {iterations: three}}}}",
     "error: silhouettes backend 'grabcut': parameter 'iterations' is 'three' (a string)"),
    ("datasets={tiny: {shards: {silhouettes: many}}}", "'many' is not of type 'integer'"),
])
def test_a_config_string_that_is_not_a_number_is_refused_naming_it(workflow, setting, named):  # noqa: F811
    proc = snakemake(workflow, "-n", GRABCUT, "--configfile", "tiny.yaml", "--config", setting, check=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0 and named in out, out[-2000:]
    assert "Traceback" not in out
    if named.startswith("error:"):  # a plan-time check: one line
        (line,) = error_lines(proc)
        assert line.startswith(named), line
    else:  # the schema's: the value and where it is
        assert "['datasets']['tiny']['shards']['silhouettes']" in out


@pytest.mark.slow
def test_scales_train_one_method_of_a_dataset_at_another_scale(workflow):  # noqa: F811
    # every method has tiny and demo scales (config/methods/*.yaml); tiny.yaml's dataset trains at tiny
    name = write_overlay(workflow, "scales.yaml", {"methods": ["baseline", "cal", "3dsl"],
                                                   "scales": {"tiny": {"3dsl": "demo"}}})
    proc = snakemake(workflow, "-n", "-p", "results/tiny/3dsl/model.pt", "results/tiny/cal/model.pt",
                     "--configfile", name)
    (threedsl,) = shell_lines(proc, "--method-config config/methods/3dsl.yaml ")
    (cal,) = shell_lines(proc, "--method-config config/methods/cal.yaml ")
    assert "--scale demo " in threedsl and "--scale tiny " in cal


@pytest.mark.slow
@pytest.mark.parametrize("scales, expected", [
    ({"tiny": {"3dsl": "demo"}}, "error: scales.tiny names ['3dsl'], which are not among the configured methods"),
    ({"tiny": {"cal": "demo", "call": "demo"}}, "error: scales.tiny names ['call']"),
    ({"tinyy": {"cal": "demo"}}, "error: dataset 'tinyy' is not configured"),
])
def test_a_scales_entry_naming_an_unknown_method_or_dataset_stops_the_plan(workflow, scales, expected):  # noqa: F811
    name = write_overlay(workflow, "bad_scales.yaml", {"scales": scales})  # methods: baseline, cal
    proc = snakemake(workflow, "-n", "results/tiny/baseline/model.pt", "--configfile", name, check=False)
    assert proc.returncode != 0
    (line,) = error_lines(proc)
    assert line.startswith(expected), line


@pytest.mark.slow
@pytest.mark.parametrize("cores", [3, 4])
def test_train_and_evaluate_threads_are_the_cores_given(workflow, cores):  # noqa: F811
    proc = snakemake(workflow, "-n", "-p", "results/tiny/cal/metrics.json", "--configfile", "tiny.yaml",
                     "--cores", str(cores))
    (train,) = shell_lines(proc, "trainer.train")
    (evaluate,) = shell_lines(proc, "trainer.evaluate")
    assert f"--threads {cores} " in train and f"--threads {cores} " in evaluate


@pytest.mark.slow
def test_without_cores_the_default_profile_gives_them_every_core(workflow):  # noqa: F811
    """profiles/default (read on its own) sets `cores: all`."""
    from snakemake.utils import available_cpu_count

    proc = snakemake(workflow, "-n", "-p", "results/tiny/cal/model.pt", "--configfile", "tiny.yaml")
    (train,) = shell_lines(proc, "trainer.train")
    assert f"--threads {available_cpu_count()} " in train


def test_a_nan_is_not_a_number_the_plan_takes():
    """NaN passes every minimum and maximum of the schema: a nan string stays a string for the schema to refuse,
    and a NaN or infinity anywhere in the config (YAML's .nan) is named by its key."""
    from pipeline.configstrings import non_finite_paths, parse_scalar

    assert parse_scalar("nan", {"number"}) == "nan" and parse_scalar("-inf", {"number"}) == "-inf"
    assert parse_scalar("1e3", {"number"}) == 1000.0
    config = {"datasets": {"t": {"synthetic": {"trait_spread": float("nan")}}}, "seeds": [1, float("inf")]}
    assert non_finite_paths(config) == ["datasets.t.synthetic.trait_spread", "seeds[1]"]
    assert non_finite_paths({"a": [1.5, {"b": 2}]}) == []


@pytest.mark.slow
def test_a_nan_in_a_config_file_stops_the_plan_naming_the_key(workflow):  # noqa: F811
    spec = {**TINY_CONFIG["datasets"]["tiny"]}
    spec["synthetic"] = {**spec["synthetic"], "trait_spread": float("nan")}
    (workflow / "nan.yaml").write_text(yaml.safe_dump({"datasets": {"tiny": spec}}))
    proc = snakemake(workflow, "-n", "--configfile", "tiny.yaml", "nan.yaml", check=False)
    assert proc.returncode == 1
    assert error_lines(proc) == ["error: config value(s) datasets.tiny.synthetic.trait_spread: not a finite number"]
