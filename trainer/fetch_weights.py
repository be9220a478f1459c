"""ccreid-weights (python -m trainer.fetch_weights): the weights files the configured workflow needs.

  list   [--all] [--configfile F ...]           each file's state, what uses it and where to get it
  verify [--all] [--configfile F ...]           the same; exit status 1 when a file is missing or differs
  fetch  [NAME ...] [--all] [--configfile F ...] download the missing files that have a direct URL
  record [NAME ...] [--all] [--configfile F ...] record the sha256 of present files that have none yet

Run it in the workflow's directory. It reads config/config.yaml and then each --configfile over it, merged
as Snakemake merges them (checked against config/schema.yaml), and lists: the weights of the backend each
preprocessing stage uses (`stages`, and each dataset's own `datasets.<d>.stages`; --all: every configured
backend's), the ImageNet weights each configured method loads at each dataset's scale (trainer/pretrained.py,
what the training opens), and the body model and motion capture when `body:` names real files.

State: missing | present (no checksum recorded) | checksum ok | checksum differs (both sha256 named). The
expected sha256 is `backends.<stage>.<backend>.sha256` in the config, else the file's line in
data/models/checksums.txt (`<sha256>  <path>`, as sha256sum writes it: `sha256sum -c` checks it too); a
torchvision file's name carries the first digits of its own sha256, which are checked as well.

`fetch` downloads only what is missing and has a direct URL (`url`; a `source` is a place to get a file by
hand, which it prints), with pooch: into a temporary file beside the target, retried on a broken transfer,
renamed into place only once complete and matching the recorded sha256; a first download's sha256 is then
recorded. NAME is a file's path or name, a backend (`sam`, `silhouettes/sam`), a method (`cal`) or `body.model`.
"""
from __future__ import annotations

import argparse
import copy
import os
import shutil
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path

from pipeline.atomic import remove_leaked_temporaries, write_text
from pipeline.cli import reports_user_errors
from pipeline.configoverlay import apply_overlay
from pipeline.digest import file_sha256
from pipeline.errors import InputError, MissingInputError, UserError
from pipeline.progress import log_interval
from pipeline.yamlfile import load_config_file, load_yaml

from .config import load_method_config, read_method_file, run_scale
from .pretrained import pretrained_files

CONFIG = Path("config/config.yaml")
SCHEMA = Path("config/schema.yaml")
METHODS = Path("config/methods")
CHECKSUMS = Path("data/models/checksums.txt")

MISSING = "missing"
PRESENT = "present (no checksum recorded)"
FOLDER = "present (a folder: no checksum)"
OK = "checksum ok"
DIFFERS = "checksum differs"


class DownloadRefused(UserError):
    """A download that arrived but is not the file (another sha256, a web page). Not an InputError: pooch
    retries every ValueError, and fetching the same wrong file again changes nothing."""


@dataclass
class WeightsFile:
    """One file the configuration needs. sha256: the config's checksum (None: none there); sha256_prefix: the
    digits a torchvision file name carries; folder: may be a folder (mocap); used_by: each use -> where it is
    configured (datasets, config keys); names: the short names `fetch NAME` matches besides the path."""

    path: Path
    what: str
    url: str | None
    source: str
    sha256: str | None = None
    sha256_prefix: str = ""
    folder: bool = False
    used_by: dict[str, list[str]] = field(default_factory=dict)
    names: set[str] = field(default_factory=set)

    def matches(self, name: str) -> bool:
        return name in self.names or os.path.abspath(name) == os.path.abspath(self.path)


# --- the configuration --------------------------------------------------------------------------------------


def _update(base: dict, overlay: dict) -> dict:
    """Snakemake's update_config: mappings merge key by key, any other value replaces the one before."""
    for key, value in overlay.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            base[key] = _update(base[key], value)
        else:
            base[key] = copy.deepcopy(value)
    return base


def load_workflow_config(configfiles: Iterable[str | Path] = ()) -> dict:
    """config/config.yaml, then each file over it in order, checked against config/schema.yaml."""
    import jsonschema

    config: dict = {}
    for path in [CONFIG, *map(Path, configfiles)]:
        if not path.is_file():
            hint = " (run ccreid-weights in the workflow's directory)" if path == CONFIG else ""
            raise MissingInputError(f"{path}: no such config file{hint}")
        data = load_config_file(path)
        if not isinstance(data, dict):
            raise InputError(f"{path}: not a config file (expected a mapping of keys, got {type(data).__name__})")
        _update(config, data)
    schema = load_yaml(SCHEMA)
    try:
        jsonschema.validators.validator_for(schema)(schema).validate(config)
    except jsonschema.ValidationError as e:
        where = ".".join(str(p) for p in e.absolute_path) or "the top level"
        raise InputError(f"{', '.join(map(str, [CONFIG, *configfiles]))}: {where}: {e.message}") from None
    return config


def _add(found: dict[Path, WeightsFile], entry: WeightsFile, use: str, where: str, names: Iterable[str]) -> None:
    known = found.setdefault(entry.path, entry)
    if known is not entry:  # the same file for another use: keep the first description, fill what it lacks
        known.url = known.url or entry.url
        known.sha256 = known.sha256 or entry.sha256
    if where not in known.used_by.setdefault(use, []):
        known.used_by[use].append(where)
    known.names.update({entry.path.name, *names})


def _stage_backends(config: dict, every_backend: bool) -> dict[tuple[str, str], list[str]]:
    """(stage, backend) -> where the configuration selects it."""
    chosen: dict[tuple[str, str], list[str]] = {}
    for stage, spec in config.get("stages", {}).items():
        chosen.setdefault((stage, spec["backend"]), []).append("stages")
    for dataset, spec in config["datasets"].items():
        for stage, own in spec.get("stages", {}).items():
            chosen.setdefault((stage, own["backend"]), []).append(f"datasets.{dataset}.stages")
    if every_backend:
        for stage, backends in config.get("backends", {}).items():
            for backend in backends:
                chosen.setdefault((stage, backend), []).append("backends (--all)")
    return chosen


def needed_files(config: dict, every_backend: bool = False) -> list[WeightsFile]:
    """Every weights file the configured workflow loads (the module's docstring says which), once each, with
    every use of it."""
    found: dict[Path, WeightsFile] = {}
    for (stage, backend), where in _stage_backends(config, every_backend).items():
        configured = config.get("backends", {}).get(stage, {})
        if backend not in configured:
            raise InputError(f"{where[0]}: {stage} backend {backend!r} is not configured under backends.{stage} "
                             f"(configured: {', '.join(sorted(configured))})")
        spec = configured[backend]
        if "model_file" not in spec:
            continue
        url = spec.get("url")
        entry = WeightsFile(Path(spec["model_file"]), f"{stage} backend {backend}'s weights", url,
                            spec.get("source") or url or "see data/models/README.md", spec.get("sha256"))
        for w in where:
            _add(found, entry, f"{stage} backend {backend}", w, [backend, f"{stage}/{backend}"])
    body_methods = []
    for method in config["methods"]:
        method_path = METHODS / f"{method}.yaml"
        spec = read_method_file(method_path)
        if spec["body_model"]:
            body_methods.append(method)
        for dataset, d in config["datasets"].items():
            scale = run_scale(config, dataset, method)
            # a dataset at a scale the method does not define cannot train it: no run, no file
            if scale != "paper" and scale not in spec["scales"]:
                continue
            cfg = load_method_config(method_path, scale, config.get("overrides", {}).get(method, []), d["format"])
            for weights in pretrained_files(cfg):
                _add(found, WeightsFile(weights.path, weights.what, weights.url, weights.source,
                                        sha256_prefix=weights.sha256_prefix),
                     f"{method} at scale {scale}", dataset, [method])
    body = config.get("body", {})
    if body_methods and any(body.get(kind, "standin") != "standin" for kind in ("model", "mocap")):
        from .body.mocap import MOCAP_SOURCE
        from .body.model import SMPL_SOURCE

        for kind, what, source, folder in (("model", "the SMPL body model", SMPL_SOURCE, False),
                                           ("mocap", "motion capture (AMASS .npz files)", MOCAP_SOURCE, True)):
            value = body.get(kind, "standin")
            if value != "standin":
                for method in body_methods:
                    _add(found, WeightsFile(Path(value), what, None, source, folder=folder), f"body.{kind}",
                         method, [f"body.{kind}"])
    # each named experiment's runs (the workflow's experiments:), with its overlay applied to the config: the uses
    # the default config does not have already, so that an experiment changing one stage adds one line
    default = {(path, use, where) for path, e in found.items() for use, wheres in e.used_by.items()
               for where in wheres}
    for name, overlay in config.get("experiments", {}).items():
        try:
            merged = apply_overlay({k: v for k, v in config.items() if k != "experiments"}, overlay)
        except ValueError as e:
            raise InputError(f"experiments.{name}: {e}") from None
        for entry in needed_files(merged, every_backend):
            fresh = replace(entry, used_by={}, names=set())
            for use, wheres in entry.used_by.items():
                for where in wheres:
                    if (entry.path, use, where) not in default:
                        _add(found, fresh, use, f"{where} (experiment {name})", entry.names)
    return list(found.values())


# --- checksums ---------------------------------------------------------------------------------------------


def checksum_key(path: str | Path) -> str:
    """How checksums.txt names a file: relative to the workflow's directory when inside it (sha256sum -c there
    finds it), else absolute (torch's cache)."""
    absolute = Path(os.path.abspath(path))
    try:
        return absolute.relative_to(Path.cwd()).as_posix()
    except ValueError:
        return str(absolute)


def read_checksums(path: str | Path = CHECKSUMS) -> dict[str, str]:
    """checksums.txt as {key: sha256}; '#' lines and blank lines are comments (sha256sum skips them too)."""
    path = Path(path)
    if not path.is_file():
        return {}
    recorded: dict[str, str] = {}
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        digest, sep, name = line[:64], line[64:66], line[66:]
        if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest) or sep not in ("  ", " *") \
                or not name:
            raise InputError(f"{path}:{number}: expected '<sha256>  <path>' (as sha256sum writes it), got {line!r}")
        key = checksum_key(name)
        if recorded.get(key, digest) != digest:
            raise InputError(f"{path}:{number}: {name} is recorded twice, with {recorded[key]} and {digest}")
        recorded[key] = digest
    return recorded


def record_checksum(path: str | Path, key: str, digest: str) -> None:
    """Add or replace `key`'s line in the checksums file, keeping the other lines and comments."""
    path = Path(path)
    lines = path.read_text().splitlines() if path.is_file() else []
    kept = [ln for ln in lines if ln.lstrip().startswith("#") or not ln.strip() or checksum_key(ln[66:]) != key]
    write_text(path, "\n".join([*kept, f"{digest}  {key}"]) + "\n")


def expected_sha256(entry: WeightsFile, recorded: dict[str, str], checksums: Path) -> tuple[str | None, str]:
    """(the sha256 the file must have, where that is recorded); (None, "") when nowhere."""
    listed = recorded.get(checksum_key(entry.path))
    if entry.sha256 and listed and entry.sha256 != listed:
        raise InputError(f"{entry.path}: the config's sha256 {entry.sha256} and {checksums}'s {listed} differ; "
                         f"remove the wrong one")
    if entry.sha256:
        return entry.sha256, "the config's sha256"
    if listed:
        return listed, str(checksums)
    return None, ""


def check_digest(entry: WeightsFile, actual: str, expected: str | None, where: str) -> str | None:
    """Why `actual` is not the file's sha256 (naming both), or None when it matches what is known."""
    if expected and actual != expected:
        return f"sha256 {actual}, expected {expected} ({where})"
    if entry.sha256_prefix and not actual.startswith(entry.sha256_prefix):
        return f"sha256 {actual}, expected one beginning {entry.sha256_prefix} (torchvision's file name)"
    return None


def file_state(entry: WeightsFile, recorded: dict[str, str], checksums: Path) -> tuple[str, str]:
    """(state, detail): MISSING, FOLDER, PRESENT, OK or DIFFERS, and what the checksum comparison found."""
    if entry.folder and entry.path.is_dir():
        return FOLDER, ""
    if not entry.path.is_file():
        return MISSING, ""
    expected, where = expected_sha256(entry, recorded, checksums)
    if not expected and not entry.sha256_prefix:
        return PRESENT, ""
    actual = file_sha256(entry.path)
    problem = check_digest(entry, actual, expected, where)
    if problem:
        return DIFFERS, problem
    return OK, f"sha256 {actual}" + (f" ({where})" if expected else f" (begins {entry.sha256_prefix}, as its name)")


# --- downloading -------------------------------------------------------------------------------------------


def _size(n: float) -> str:
    return f"{n / 1e6:.1f} MB"


class _LogLines:
    """pooch's progress-bar protocol (total, update, reset, close) as a plain line every CCREID_PROGRESS_INTERVAL
    seconds: a log has no terminal for tqdm's bar (pipeline/progress.py says why)."""

    def __init__(self, desc: str):
        self.desc, self.interval = desc, log_interval()
        self.done, self._total, self.t0 = 0, 0, time.monotonic()
        self.last = self.t0

    @property
    def total(self) -> int:
        return self._total

    @total.setter
    def total(self, value: int) -> None:  # pooch sets it as each try starts: a retry starts from 0
        self._total, self.done, self.t0 = value, 0, time.monotonic()
        self.last = self.t0

    def update(self, n: int) -> None:
        self.done += n
        now = time.monotonic()
        if now - self.last >= self.interval:
            self.last = now
            rate = self.done / max(now - self.t0, 1e-9)
            of = f"/{_size(self.total)}" if self.total else ""
            print(f"{self.desc}: {_size(self.done)}{of} ({_size(rate)}/s)", flush=True)

    def reset(self) -> None:
        self.done = 0

    def close(self) -> None:
        pass  # download() says when the file is in place


class _CheckedDownloader:
    """pooch's HTTPDownloader, plus what is decided inside pooch's temporary file, before anything reaches the
    target's name: a client error (404) is final rather than retried, and a web page or a file with another
    sha256 is refused. Keeps the sha256 of what it accepted."""

    def __init__(self, entry: WeightsFile, expected: str | None, where: str, progressbar, timeout: float):
        import pooch

        self.entry, self.expected, self.where = entry, expected, where
        self.http = pooch.HTTPDownloader(progressbar=progressbar, timeout=timeout)
        self.sha256 = ""

    def __call__(self, url: str, output_file: str, pooch, check_only: bool = False):
        import requests

        try:
            self.http(url, output_file, pooch)
        except requests.HTTPError as e:
            status = e.response.status_code if e.response is not None else 0
            # pooch retries every RequestException: a missing file will not appear in a second (408 and 429 may)
            if 400 <= status < 500 and status not in (408, 429):
                raise MissingInputError(f"{url}: {status} {e.response.reason}; nothing written to "
                                        f"{self.entry.path} (get it from {self.entry.source})") from None
            raise
        with open(output_file, "rb") as fh:
            head = fh.read(512).lstrip().lower()
        if head.startswith((b"<!doctype html", b"<html")):
            raise DownloadRefused(f"{url}: the server sent a web page, not the file (a sign-in or confirmation "
                                  f"page?); nothing written to {self.entry.path}: download it by hand")
        actual = file_sha256(output_file)
        problem = check_digest(self.entry, actual, self.expected, self.where)
        if problem:
            raise DownloadRefused(f"{url}: refused, {problem}; nothing written to {self.entry.path}")
        self.sha256 = actual


def _reason(e: Exception) -> str:
    import requests

    if isinstance(e, requests.exceptions.ChunkedEncodingError):
        return "the connection closed before the whole file arrived"
    if isinstance(e, requests.HTTPError) and e.response is not None:
        return f"{e.response.status_code} {e.response.reason}"
    if isinstance(e, requests.ConnectionError):
        # urllib3's reason without the connection object's repr: "Failed to resolve 'host' (...)", "... refused"
        reason = getattr(e.args[0], "reason", None) if e.args else None
        return f"cannot connect: {' '.join(str(reason or e).split('>: ', 1)[-1].split())[:200]}"
    return f"{type(e).__name__}: {' '.join(str(e).split())[:200]}"


def download(entry: WeightsFile, expected: str | None = None, where: str = "", retries: int = 2,
             progressbar=None, timeout: float = 60.0) -> str:
    """Download entry.url to entry.path and return its sha256. Through pooch: streamed into a temporary file in a
    staging folder beside the target (`.<name>.tmp-<pid>`, which the next fetch of a killed one removes),
    retried `retries` times after a broken transfer, checked, then renamed into place; on any failure nothing
    is left under the target's name. progressbar: None — tqdm's bar on a terminal, log lines otherwise."""
    import pooch
    import requests

    if not entry.url:
        raise InputError(f"{entry.path}: no direct URL to download it from; get it from {entry.source}")
    target = entry.path
    if progressbar is None:
        progressbar = True if sys.stderr.isatty() else _LogLines(f"fetching {target}")
    checked = _CheckedDownloader(entry, expected, where, progressbar, timeout)
    target.parent.mkdir(parents=True, exist_ok=True)
    remove_leaked_temporaries(target)
    staging = target.with_name(f".{target.name}.tmp-{os.getpid()}")
    try:
        fetcher = pooch.create(path=staging, base_url="", registry={target.name: None},
                               urls={target.name: entry.url}, retry_if_failed=retries)
        os.replace(fetcher.fetch(target.name, downloader=checked), target)
    except requests.RequestException as e:
        tries = f"{retries + 1} tries" if retries else "1 try"
        raise InputError(f"{entry.url}: download failed after {tries} ({_reason(e)}); nothing written to "
                         f"{target}") from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return checked.sha256


# --- the command -------------------------------------------------------------------------------------------


def _select(entries: list[WeightsFile], names: list[str]) -> list[WeightsFile]:
    if not names:
        return entries
    unknown = [n for n in names if not any(e.matches(n) for e in entries)]
    if unknown:
        known = sorted({n for e in entries for n in e.names})
        raise InputError(f"{', '.join(unknown)}: not among the weights files the configuration needs (known: "
                         f"{', '.join(known) or 'none'}); --all adds every configured backend's")
    return [e for e in entries if any(e.matches(n) for n in names)]


def _describe(entry: WeightsFile, state: str, detail: str) -> str:
    lines = [f"{state}: {entry.path}", f"    {entry.what}, used by:",
             *(f"      {use} ({', '.join(where)})" for use, where in entry.used_by.items())]
    if detail:
        lines.append(f"    {detail}")
    if state in (MISSING, DIFFERS):
        lines.append(f"    download: {entry.url}" if entry.url else f"    get it by hand: {entry.source}")
    return "\n".join(lines)


def list_files(entries: list[WeightsFile], checksums: Path) -> dict[str, int]:
    """Print each file's state; returns the count of each state."""
    recorded = read_checksums(checksums)
    counts: dict[str, int] = {}
    for entry in entries:
        state, detail = file_state(entry, recorded, checksums)
        counts[state] = counts.get(state, 0) + 1
        print(_describe(entry, state, detail), flush=True)
    missing = [e for e in entries if not e.path.exists()]
    fetchable = sum(1 for e in missing if e.url)
    summary = ", ".join(f"{n} {state}" for state, n in counts.items())
    print(f"{len(entries)} weights files: {summary or 'none needed'}"
          + (f"; {fetchable} of the missing can be fetched (ccreid-weights fetch)" if fetchable else ""), flush=True)
    return counts


def fetch_files(entries: list[WeightsFile], checksums: Path, retries: int = 2, progressbar=None) -> int:
    """Download the missing files that have a direct URL; 0 when every file is then present and none differs."""
    recorded = read_checksums(checksums)
    left = 0
    for entry in entries:
        state, detail = file_state(entry, recorded, checksums)
        if state != MISSING:
            if state == DIFFERS:
                left += 1
                print(f"{entry.path}: {detail}; not replaced (delete it, then fetch again)", flush=True)
            else:
                print(f"{entry.path}: {state}", flush=True)
            continue
        if not entry.url:
            left += 1
            print(f"{entry.path}: missing, no direct download; get it by hand: {entry.source}", flush=True)
            continue
        expected, where = expected_sha256(entry, recorded, checksums)
        print(f"fetching {entry.url} -> {entry.path}", flush=True)
        digest = download(entry, expected, where, retries, progressbar)
        size = _size(entry.path.stat().st_size)
        if expected:
            print(f"{entry.path}: fetched, {size}, sha256 {digest} as recorded ({where})", flush=True)
        else:
            record_checksum(checksums, checksum_key(entry.path), digest)
            recorded[checksum_key(entry.path)] = digest
            print(f"{entry.path}: fetched, {size}, sha256 {digest} recorded in {checksums}", flush=True)
    return 1 if left else 0


def record_files(entries: list[WeightsFile], checksums: Path) -> int:
    """Record the sha256 of present files that have none recorded (those fetched by hand)."""
    recorded = read_checksums(checksums)
    differs = 0
    for entry in entries:
        state, detail = file_state(entry, recorded, checksums)
        expected, _ = expected_sha256(entry, recorded, checksums) if state != MISSING else (None, "")
        if state == DIFFERS:
            differs += 1
            print(f"{entry.path}: {detail}; not recorded", flush=True)
        elif state in (PRESENT, OK) and not expected:
            digest = file_sha256(entry.path)
            record_checksum(checksums, checksum_key(entry.path), digest)
            recorded[checksum_key(entry.path)] = digest
            print(f"{entry.path}: sha256 {digest} recorded in {checksums}", flush=True)
        else:
            print(f"{entry.path}: {state}", flush=True)
    return 1 if differs else 0


@reports_user_errors
def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="ccreid-weights", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--configfile", nargs="+", action="extend", default=[], metavar="F",
                        help="config files merged over config/config.yaml in order, as Snakemake's --configfile "
                             "(names go before it)")
    common.add_argument("--all", action="store_true", help="every configured backend's weights, not only the "
                                                           "selected backends'")
    common.add_argument("--checksums", type=Path, default=CHECKSUMS, help=f"default {CHECKSUMS}")
    sub = ap.add_subparsers(dest="command", required=True)
    sub.add_parser("list", parents=[common], help="each file's state, use and source")
    sub.add_parser("verify", parents=[common], help="list; exit 1 when a file is missing or differs")
    f = sub.add_parser("fetch", parents=[common], help="download the missing files that have a direct URL")
    f.add_argument("names", nargs="*", metavar="NAME")
    f.add_argument("--retries", type=int, default=2, help="tries after a broken transfer (default 2)")
    r = sub.add_parser("record", parents=[common], help="record the sha256 of present files that have none")
    r.add_argument("names", nargs="*", metavar="NAME")
    a = ap.parse_args(argv)
    entries = needed_files(load_workflow_config(a.configfile), a.all)
    if a.command in ("list", "verify"):
        counts = list_files(entries, a.checksums)
        return 1 if a.command == "verify" and (counts.get(MISSING) or counts.get(DIFFERS)) else 0
    if a.command == "fetch":
        if a.retries < 0:
            raise InputError(f"--retries must be 0 or more, got {a.retries}")
        return fetch_files(_select(entries, a.names), a.checksums, a.retries)
    return record_files(_select(entries, a.names), a.checksums)


if __name__ == "__main__":
    sys.exit(main())
