"""YAML a user writes (method files, --set values, the workflow's config files), read safely and strictly.

PyYAML keeps the last of two equal keys in a mapping without a word, so a config file with two `overrides:`
blocks silently loses the first; here that is an error naming the key and both lines. A syntax error or a tag
that would build a Python object is one line naming the file, line and column instead of PyYAML's multi-line
message.
"""
from __future__ import annotations

import json
from pathlib import Path

import yaml

from .errors import InputError


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses a mapping holding the same key twice."""

    def construct_mapping(self, node, deep=False):
        if isinstance(node, yaml.MappingNode):
            first: dict = {}
            for key_node, _ in node.value:
                # merge keys (<<) may legitimately repeat keys they bring in; only the mapping's own keys count
                if not isinstance(key_node, yaml.ScalarNode) or key_node.tag == "tag:yaml.org,2002:merge":
                    continue
                key = self.construct_object(key_node)
                if key in first:
                    raise yaml.constructor.ConstructorError(
                        None, None, f"duplicate key {key!r} (first at line {first[key].line + 1}; YAML would keep "
                        "only the last: remove or merge one)", key_node.start_mark)
                first[key] = key_node.start_mark
        return super().construct_mapping(node, deep=deep)


def _one_line(e: yaml.YAMLError, where: str) -> InputError:
    mark = getattr(e, "problem_mark", None)
    if isinstance(e, yaml.MarkedYAMLError) and mark is not None:
        context = f" ({e.context})" if e.context else ""
        return InputError(f"{where}:{mark.line + 1}:{mark.column + 1}: {e.problem}{context}")
    return InputError(f"{where}: not valid YAML ({' '.join(str(e).split())})")


def loads_yaml(text: str | bytes, where: str) -> object:
    """`text` parsed as YAML; `where` (a file name, an option and its value) names it in errors."""
    try:
        return yaml.load(text, Loader=_StrictLoader)
    except yaml.YAMLError as e:
        raise _one_line(e, where) from None


def load_yaml(path: str | Path) -> object:
    """The YAML file `path`; a syntax error, a Python tag or a duplicate key is an InputError naming file and
    line."""
    return loads_yaml(Path(path).read_bytes(), str(path))


def _unique_pairs(where: str):
    def pairs(items: list[tuple[str, object]]) -> dict:
        out: dict = {}
        for key, value in items:
            if key in out:
                raise InputError(f"{where}: duplicate key {key!r} (JSON would keep only the last: remove or merge one)")
            out[key] = value
        return out
    return pairs


def load_config_file(path: str | Path) -> object:
    """A Snakemake config file read as Snakemake reads it (JSON first, then YAML), refusing duplicate keys."""
    data = Path(path).read_bytes()
    try:
        return json.loads(data, object_pairs_hook=_unique_pairs(str(path)))
    except (json.JSONDecodeError, UnicodeDecodeError):  # not JSON: YAML, as Snakemake tries next
        return loads_yaml(data, str(path))
