"""Size a cluster profile's per-rule resources from the benchmark files the workflow's rules write.

    python scripts/size-resources.py [--margin 1.5] [ROOT ...]      (default roots: logs results)

Every job of `train`, `evaluate` and `stage_shard` writes a Snakemake benchmark TSV (wall seconds `s`, peak
memory `max_rss` in MB). This prints, per rule (per stage for shards), the largest seen and a `set-resources`
block for profiles/<cluster>/config.yaml: runtime in minutes and mem_mb, each the largest times the margin.
Measure on the dataset you will run (or scale by its size): a shard's cost grows with images per shard.
"""
from __future__ import annotations

import argparse
import math
import re
import sys
from pathlib import Path

from pipeline.benchmark_file import read_benchmark_file
from pipeline.errors import InputError

SHARD = re.compile(r"(?P<stage>[^/]+)/(?P<backend>[^/]+)\.\d+-of-\d+\.benchmark\.tsv$")


def rule_of(path: Path) -> str | None:
    """The rule (or stage_shard:<stage>) a benchmark file belongs to, from where the rules write it."""
    if path.name in ("train.benchmark.tsv", "evaluate.benchmark.tsv"):
        return path.name.split(".")[0]
    m = SHARD.search(path.as_posix())
    return f"stage_shard:{m['stage']}" if m else None


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("roots", nargs="*", default=["logs", "results"])
    ap.add_argument("--margin", type=float, default=1.5)
    a = ap.parse_args(argv)
    if not a.margin >= 1:
        raise SystemExit(f"--margin must be at least 1, got {a.margin}")
    largest: dict[str, list[float]] = {}
    for root in a.roots:
        for path in sorted(Path(root).rglob("*.benchmark.tsv")):
            rule = rule_of(path)
            if rule is None:
                continue
            try:
                s, rss = read_benchmark_file(path)
            except InputError as err:
                raise SystemExit(str(err)) from None
            seen = largest.setdefault(rule, [0.0, 0.0, 0])
            seen[0], seen[1], seen[2] = max(seen[0], s), max(seen[1], rss), seen[2] + 1
    if not largest:
        print(f"no benchmark files under {', '.join(a.roots)}", file=sys.stderr)
        return 1
    print("# largest seen: rule  jobs  seconds  max_rss MB")
    for rule, (s, rss, n) in sorted(largest.items()):
        print(f"#   {rule:<28} {n:>4} {s:>9.0f} {rss:>9.0f}")
    print("set-resources:")
    shards = {r: v for r, v in largest.items() if r.startswith("stage_shard:")}
    for rule, (s, rss, _) in sorted(largest.items()):
        if rule.startswith("stage_shard:"):
            continue
        print(f"  {rule}:\n    runtime: {max(1, math.ceil(s * a.margin / 60))}\n"
              f"    mem_mb: {max(100, math.ceil(rss * a.margin))}")
    if shards:  # one rule serves every stage: size it for the most demanding
        s, rss = max(v[0] for v in shards.values()), max(v[1] for v in shards.values())
        print(f"  stage_shard:\n    runtime: {max(1, math.ceil(s * a.margin / 60))}\n"
              f"    mem_mb: {max(100, math.ceil(rss * a.margin))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
