"""Numbers and booleans the workflow config received as strings, turned back into what its schema expects.

Snakemake reads a nested `--config` value with YAML's BaseLoader, which keeps every scalar a string:
`--config 'backends={silhouettes: {grabcut: {params: {iterations: 3}}}}'` arrives as iterations '3', and the same
holds for a profile's `config:` entries. Where the schema (config/schema.yaml) expects an integer, a number or a
boolean and cannot take a string, such a string is parsed as one; anything that does not parse stays as it is
for the schema to refuse, naming it. A string where a string is allowed is never touched.

Written here because jsonschema validates but does not coerce, and the subset of JSON Schema config/schema.yaml
uses is small: type, properties, additionalProperties, items, $ref to #/$defs, oneOf.
"""
from __future__ import annotations

import math
import re

_INTEGER = re.compile(r"^[+-]?[0-9]+$")
_BOOLEANS = {"true": True, "false": False}


def _types(schema: dict) -> set[str]:
    kind = schema.get("type", [])
    return {kind} if isinstance(kind, str) else set(kind)


def parse_scalar(text: str, types: set[str]):
    """`text` as the first of `types` ("boolean", "integer", "number") it reads as, or unchanged."""
    low = text.strip().lower()
    if "boolean" in types and low in _BOOLEANS:
        return _BOOLEANS[low]
    if "integer" in types and _INTEGER.match(text.strip()):
        return int(text)
    if "number" in types:
        try:
            number = float(text)
        except ValueError:
            return text
        # nan passes every minimum and maximum of a schema: left a string, for the schema to refuse naming it
        return number if math.isfinite(number) else text
    return text


def non_finite_paths(value, at: str = "") -> list[str]:
    """Where `value` (a config) holds a NaN or infinite number (YAML's .nan, .inf), as dotted keys: a schema's
    minimum and maximum do not refuse NaN."""
    if isinstance(value, float) and not math.isfinite(value):
        return [at]
    if isinstance(value, dict):
        return [p for k, v in value.items() for p in non_finite_paths(v, f"{at}.{k}" if at else str(k))]
    if isinstance(value, list):
        return [p for i, v in enumerate(value) for p in non_finite_paths(v, f"{at}[{i}]")]
    return []


def coerce_strings(value, schema: dict, root: dict | None = None):
    """A copy of `value` with strings parsed where `schema` expects a number or boolean and no string."""
    root = schema if root is None else root
    while "$ref" in schema:
        schema = root["$defs"][schema["$ref"].removeprefix("#/$defs/")]
    if "oneOf" in schema:  # used here over scalars only: a string stays one if any option takes a string
        if not isinstance(value, str) or any("string" in _types(s) for s in schema["oneOf"]):
            return value
        return parse_scalar(value, set().union(*map(_types, schema["oneOf"])))
    if isinstance(value, str):
        types = _types(schema)
        return value if not types or "string" in types else parse_scalar(value, types)
    if isinstance(value, dict):
        properties = schema.get("properties", {})
        extra = schema.get("additionalProperties")
        return {k: coerce_strings(v, properties[k], root) if k in properties
                else coerce_strings(v, extra, root) if isinstance(extra, dict) else v
                for k, v in value.items()}
    if isinstance(value, list) and isinstance(schema.get("items"), dict):
        return [coerce_strings(v, schema["items"], root) for v in value]
    return value
