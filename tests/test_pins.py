"""One version and one set of pins: pyproject.toml is the source; the conda environment (envs/ccreid.yaml), the
packages installed without their dependencies (scripts/setup.sh, envs/ccreid.post-deploy.sh) and the packages'
__version__ agree with it."""
import re

import pipeline
import trainer

from .conftest import REPO

PIN = r"([A-Za-z0-9_.-]+)==([A-Za-z0-9_.+-]+)"
# what the workflow's own process needs, not the rules' conda environment
NOT_IN_RULE_ENV = {"snakemake", "snakemake-executor-plugin-slurm", "jsonschema"}


def pyproject_pins() -> dict[str, str]:
    text = (REPO / "pyproject.toml").read_text()
    return dict(re.findall(rf'"{PIN}"', text))


def test_the_version_is_written_once():
    version = re.search(r'^version = "([^"]+)"', (REPO / "pyproject.toml").read_text(), re.M).group(1)
    assert pipeline.__version__ == trainer.__version__ == version
    hard_coded = [p for p in ("pipeline/__init__.py", "trainer/__init__.py")
                  if re.search(r"__version__ = ['\"]", (REPO / p).read_text())]
    assert hard_coded == []


def test_the_conda_environment_pins_what_pyproject_pins():
    conda = dict(re.findall(rf"^\s+- {PIN}", (REPO / "envs/ccreid.yaml").read_text(), re.M))
    runtime = re.search(r"^dependencies = \[(.*?)^\]", (REPO / "pyproject.toml").read_text(), re.M | re.S).group(1)
    wanted = {n: v for n, v in re.findall(rf'"{PIN}"', runtime) if n not in NOT_IN_RULE_ENV}
    assert conda == wanted


def test_packages_installed_without_dependencies_are_pinned_alike_in_both_places():
    setup = set(re.findall(r"--no-deps ([^\n]+)", (REPO / "scripts/setup.sh").read_text()))
    post = set(re.findall(r"--no-deps ([^\n]+)", (REPO / "envs/ccreid.post-deploy.sh").read_text()))
    pins = lambda lines: {m for line in lines for m in re.findall(PIN, line)}  # noqa: E731
    assert pins(setup) == pins(post) and len(pins(setup)) == 3
    # none of them is also a pyproject dependency (pip would install it with its dependencies)
    assert not {name for name, _ in pins(setup)} & set(pyproject_pins())
