"""No config value runs as a shell command: every value a rule passes to a command is one quoted word (or refused by
the schema when it names something: a dataset, a backend, a protocol, a parsing label)."""
import json
import shlex

import pytest
import yaml

from .test_workflow import TINY_CONFIG, copy_workflow, snakemake

HOSTILE = "$(touch MARK)"


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    return copy_workflow(tmp_path_factory.mktemp("quoting"))


def planned_commands(work, target: str, config: dict) -> list[list[str]]:
    """The shell commands of a dry run, each split into the words a POSIX shell would give the program."""
    (work / "extra.yaml").write_text(yaml.safe_dump(config))
    proc = snakemake(work, "-n", "-p", target, "--configfile", "extra.yaml")
    assert not list(work.rglob("MARK"))
    return [shlex.split(line.removeprefix("Shell command: ")) for line in proc.stdout.splitlines()
            if line.startswith("Shell command: ")]


def command_of(commands: list[list[str]], module: str) -> list[str]:
    found = [c for c in commands if module in c]
    assert len(found) >= 1, f"no {module} command planned"
    return found[0]


def word_after(words: list[str], option: str) -> list[str]:
    return [words[i + 1] for i, w in enumerate(words) if w == option]


@pytest.mark.slow
def test_a_dataset_root_with_a_space_and_shell_characters_is_one_word(work):
    """lists and pack run on data/raw/my data $(touch MARK): both succeed and nothing runs the substitution."""
    from pipeline.synthetic import generate

    from .conftest import TINY

    root = f"data/raw/my data {HOSTILE}"
    generate(TINY, work / root, jobs=1, progress=False)
    cfg = {"datasets": {"odd": {"format": "prcc", "root": root, "scale": "tiny"}}, "methods": ["baseline"],
           "device": "cpu"}
    (work / "odd.yaml").write_text(yaml.safe_dump(cfg))
    snakemake(work, "--cores", "1", "data/derived/odd/images.h5", "--configfile", "odd.yaml")
    assert (work / "data/derived/odd/images.h5").is_file()
    protocol = json.loads((work / "data/derived/odd/lists/protocol.json").read_text())
    assert protocol["dataset"] == "odd"
    assert not list(work.rglob("MARK")), "a command substitution in the dataset root ran"


@pytest.mark.slow
def test_an_override_value_is_one_word(work):
    """A state-dict path with a quote and a substitution: the plan checks the file is there (trainer.pretrained),
    and the override reaches the trainer as one word."""
    weights = f"data/models/it's {HOSTILE}\".pth"
    (work / weights).parent.mkdir(parents=True, exist_ok=True)
    (work / weights).write_bytes(b"")
    value = f"model.pretrained={weights}"
    commands = planned_commands(work, "results/tiny/baseline/model.pt",
                                {**TINY_CONFIG, "overrides": {"baseline": [value, "epochs=1"]}})
    train = command_of(commands, "trainer.train")
    assert word_after(train, "--set") == [value, "epochs=1"]


@pytest.mark.slow
def test_backend_params_and_model_file_are_one_word_each(work):
    """A model file path with a space, a quote and a substitution; the params JSON, whatever its characters."""
    model = f"data/models/it's {HOSTILE}.pth"
    (work / model).parent.mkdir(parents=True, exist_ok=True)
    (work / model).write_bytes(b"")
    cfg = {**TINY_CONFIG, "stages": {"silhouettes": {"backend": "sam"}},
           "backends": {"silhouettes": {"sam": {"model_file": model}}}}
    commands = planned_commands(work, "data/derived/tiny/silhouettes/sam.h5", cfg)
    shard = next(c for c in commands if "--stage" in c and word_after(c, "--stage") == ["silhouettes"])
    assert word_after(shard, "--model-file") == [model]
    assert json.loads(word_after(shard, "--params")[0])["model_type"] == "vit_b"


@pytest.mark.slow
def test_cloth_scheme_labels_reach_the_shard_as_json(work):
    commands = planned_commands(work, "data/derived/tiny/cloth_masks/parsing.h5", TINY_CONFIG)
    shard = next(c for c in commands if word_after(c, "--stage") == ["cloth_masks"])
    params = json.loads(word_after(shard, "--params")[0])
    assert params["label_set"] == "keypoint-geometry" and params["cloth"] == ["torso", "legs"]


@pytest.mark.slow
def test_benchmark_arguments_are_words(work):
    cfg = {**TINY_CONFIG, "benchmark": {"dataset": "tiny", "methods": ["baseline", "cal"], "seeds": [1, 2]}}
    table = command_of(planned_commands(work, "results/benchmark/table.md", cfg), "benchmark-table")
    assert word_after(table, "--dataset") == ["tiny"] and word_after(table, "--seeds") == ["1"]
    assert table[table.index("--methods") + 1: table.index("--methods") + 3] == ["baseline", "cal"]


@pytest.mark.slow
@pytest.mark.parametrize("change, named", [
    ({"report": {"protocol": f"CC{HOSTILE}"}}, "protocol"),
    ({"cloth_schemes": {"keypoint-geometry": {"cloth": ["legs'; touch MARK; echo '"], "erase": [],
                                              "merge7": {}}}}, "cloth"),
    ({"stages": {"keypoints": {"backend": f"mediapipe{HOSTILE}"}}}, "backend"),
    ({"datasets": {f"x{HOSTILE}": {"format": "prcc", "root": "data/raw/x"}}}, "datasets"),
    ({"overrides": {f"cal{HOSTILE}": ["epochs=1"]}}, "overrides"),
    ({"benchmark": {"dataset": f"tiny{HOSTILE}", "methods": ["cal"], "seeds": [1]}}, "dataset"),
    ({"datasets": {"tiny": {**TINY_CONFIG["datasets"]["tiny"], "scale": f"tiny{HOSTILE}"}}}, "scale"),
])
def test_a_name_with_shell_characters_is_refused_by_the_schema(work, change, named):
    (work / "named.yaml").write_text(yaml.safe_dump({**TINY_CONFIG, **change}))
    proc = snakemake(work, "-n", "results/tiny/cal/metrics.json", "--configfile", "named.yaml", check=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0 and "does not match" in out and named in out, out[-2000:]
    assert not list(work.rglob("MARK"))
