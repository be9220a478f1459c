"""Published split sizes (docs/datasets.md#published-counts) and the comparison the lists step warns with.

Only counts with a public source are here; values that could not be traced to an authoritative file are
marked [unverified], and a mismatch with them is reported as such rather than as an error in the user's copy.
"""
from __future__ import annotations

from .base import DatasetSplits, summarise

# format -> split -> {"ids": n, "images": n}; "source" says how sure the number is
PUBLISHED: dict[str, dict] = {
    "prcc": {"source": "author loader docstrings", "splits": {
        "train": {"ids": 150, "images": 17896}, "gallery": {"ids": 71, "images": 3384},
        "query_diff": {"ids": 71, "images": 3543}, "query_same": {"ids": 71, "images": 3873}}},
    "ltcc": {"source": "commonly reported [unverified]", "splits": {
        "train": {"ids": 77, "images": 9576}, "query": {"images": 493}, "gallery": {"images": 7050}}},
    "vcclothes": {"source": "commonly reported [unverified]", "splits": {
        "train": {"ids": 256, "images": 9449}, "query": {"images": 1020}, "gallery": {"images": 8591}}},
    "celebreid": {"source": "official README", "splits": {
        "train": {"ids": 632, "images": 20208}, "query": {"ids": 420, "images": 2972},
        "gallery": {"ids": 420, "images": 11006}}},
    "celebreid_light": {"source": "official README", "splits": {
        "train": {"ids": 490, "images": 9021}, "query": {"ids": 100, "images": 887},
        "gallery": {"ids": 100, "images": 934}}},
    "market1501": {"source": "torchreid", "splits": {
        "train": {"ids": 751, "images": 12936}, "query": {"images": 3368}, "gallery": {"images": 15913}}},
    # torchreid's 32,621 training images are list_train plus list_val (val is kept out of training)
    "msmt17": {"source": "torchreid", "splits": {
        "train+val": {"ids": 1041, "images": 32621}, "query": {"images": 11659}, "gallery": {"images": 82161}}},
    "last": {"source": "author loader docstring (the official README says 71,248 training images)", "splits": {
        "train": {"ids": 5000, "images": 70923}, "val_query": {"ids": 56, "images": 100},
        "val_gallery": {"ids": 57, "images": 20484}, "query": {"ids": 5803, "images": 10173},
        "gallery": {"ids": 5805, "images": 123041}}},
    "nkup": {"source": "official README", "splits": {
        "train": {"ids": 40, "images": 5336}, "query": {"images": 332}, "gallery": {"images": 4070}}},
    "ccvid": {"source": "CAL paper [unverified]", "splits": {
        "train": {"ids": 75, "tracklets": 948}, "query": {"tracklets": 834}, "gallery": {"tracklets": 1074}}},
}


def _found(data: DatasetSplits, split: str) -> dict[str, int] | None:
    """The summary of one split, or of several joined by '+' (counted over their union)."""
    parts = split.split("+")
    if any(p not in data.splits for p in parts):
        return None
    return summarise([s for p in parts for s in data.splits[p]])


def compare_counts(data: DatasetSplits) -> list[str]:
    """One warning per split count that differs from the published one (empty when all agree)."""
    known = PUBLISHED.get(data.format)
    if known is None:
        return []
    warnings = []
    for split, expected in known["splits"].items():
        found = _found(data, split)
        if found is None:
            warnings.append(f"{data.format}: split {split!r} missing (published: {expected})")
            continue
        for key, value in expected.items():
            if found[key] != value:
                warnings.append(f"{data.format} {split}: {found[key]} {key}, published {value} ({known['source']})")
    return warnings

PUBLISHED["msmt17v2"] = PUBLISHED["msmt17"]  # the same images, faces blurred
