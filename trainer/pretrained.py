"""The pretrained backbone weights a training loads: which file, where it must be, and where it comes from.

One answer for the loaders (trainer/models/backbones.py, trainer/models/osnet.py), the workflow's plan-time
checks and `ccreid-weights` (trainer/fetch_weights.py), so that what is listed and fetched is exactly what a
training opens. Kept light: the workflow calls `pretrained_files` while it plans, so nothing here builds a
network; torchvision is imported only to look up a weights name (its URL and torch's hub directory).

`model.pretrained` is "none", a path, a torchvision weights name for a ResNet ("IMAGENET1K_V1": the file in
torch's hub cache, as torchvision would cache it) or "imagenet" for OSNet x1.0 (torchreid's cache file).
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from pipeline.errors import InputError

RESNET_DEPTHS = ("resnet18", "resnet34", "resnet50", "resnet101")
OSNET = "osnet_x1_0"
# torchreid/models/osnet.py: pretrained_urls['osnet_x1_0'] (a Google Drive file; torchreid fetches it with gdown)
OSNET_X1_0_URL = "https://drive.google.com/uc?id=1LaG1EJpHrxdAxKnSCJ_i0u-nbxSAeiFY"
OSNET_X1_0_FILE = "osnet_x1_0_imagenet.pth"  # the name init_pretrained_weights caches it under
# methods whose model section names no backbone because they have only one: DeSKPro's LMBN streams on OSNet x1.0
IMPLIED_BACKBONES = {"deskpro_teacher": OSNET, "deskpro": OSNET}
# torch.hub's HASH_REGEX: torchvision's file names carry the first hex digits of the file's sha256, and
# torchvision loads them with check_hash=True, so the name is a checksum of its own
_HASH_IN_NAME = re.compile(r"-([a-f0-9]+)\.")


@dataclass(frozen=True)
class PretrainedFile:
    """path: where the training reads it; what: what it is (as errors name it); url: a direct download, or None
    (a Google Drive page, a user's own file); source: where to get it (the URL, or a place to get it by hand);
    kind: "torchvision" (a weights name, in torch's hub cache), "torchreid" (OSNet's ImageNet file in
    torchreid's cache) or "file" (a path in model.pretrained); sha256_prefix: the digits torchvision's file
    name carries ("" when the name carries none)."""

    path: Path
    what: str
    url: str | None
    source: str
    kind: str
    sha256_prefix: str = ""


def torchreid_cache_file() -> Path:
    """Where torchreid's init_pretrained_weights caches the file: $TORCH_HOME, else $XDG_CACHE_HOME/torch, else
    ~/.cache/torch; then checkpoints/osnet_x1_0_imagenet.pth."""
    home = os.getenv("TORCH_HOME", os.path.join(os.getenv("XDG_CACHE_HOME", "~/.cache"), "torch"))
    return Path(os.path.expanduser(home)) / "checkpoints" / OSNET_X1_0_FILE


def osnet_source() -> str:
    return (f"{OSNET_X1_0_URL} (torchreid's {OSNET_X1_0_FILE}, torchreid/models/osnet.py pretrained_urls"
            f"['osnet_x1_0']; a Google Drive file: download it by hand)")


def _hash_prefix(url: str | None) -> str:
    match = _HASH_IN_NAME.search(Path(url).name) if url else None
    return match.group(1) if match else ""


def _torchvision_weights(backbone: str):
    import torchvision.models

    return torchvision.models.get_model_weights(backbone)


def _torchvision_cache() -> Path:
    import torch.hub

    return Path(torch.hub.get_dir()) / "checkpoints"


def backbone_weights(backbone: str, pretrained: str | None) -> PretrainedFile | None:
    """The file `model.pretrained` names for `backbone`, or None ("none"). Nothing is opened: the file may be
    missing (the loaders say so, naming it and `source`)."""
    if pretrained in (None, "", "none"):
        return None
    if backbone == OSNET:
        if pretrained == "imagenet":
            return PretrainedFile(torchreid_cache_file(), "OSNet x1.0 ImageNet weights", None, osnet_source(),
                                  "torchreid")
        return PretrainedFile(Path(pretrained), "OSNet x1.0 ImageNet weights", None, osnet_source(), "file")
    if backbone not in RESNET_DEPTHS:
        raise InputError(f"model.backbone {backbone!r}: no such backbone (known: {', '.join(RESNET_DEPTHS)}, {OSNET})")
    path = Path(pretrained)
    if path.suffix in (".pth", ".pt", ".tar") or path.exists():
        # a copy of torchvision's release under its own name can be fetched from torchvision's address
        url = next((w.url for w in _torchvision_weights(backbone) if Path(w.url).name == path.name), None)
        return PretrainedFile(path, f"{backbone} ImageNet weights (model.pretrained)", url,
                              url or f"torchvision's {backbone} IMAGENET1K_V1 file", "file", _hash_prefix(url))
    try:
        weights = _torchvision_weights(backbone)[pretrained]
    except KeyError:
        raise InputError(f"model.pretrained {pretrained!r}: not a torchvision weights name for {backbone}, "
                         f"nor an existing file; use e.g. IMAGENET1K_V1, a path, or none") from None
    return PretrainedFile(_torchvision_cache() / Path(weights.url).name,
                          f"torchvision's {backbone} {pretrained} weights", weights.url, weights.url, "torchvision",
                          _hash_prefix(weights.url))


def pretrained_files(cfg: dict) -> list[PretrainedFile]:
    """Every pretrained weights file a training with the merged method config `cfg` (trainer.config.
    load_method_config) loads, in the order it loads them; [] when it starts from scratch (pretrained: none).
    Every network of a method (3DSL's two trunks, DeSKPro's body and face streams) starts from the same
    `model.pretrained`, so a method needs at most one file today."""
    method = cfg.get("method", "?")
    model = cfg.get("model")
    if not isinstance(model, dict):
        raise InputError(f"method {method}: its config has no model section")
    backbone = model.get("backbone") or IMPLIED_BACKBONES.get(method)
    if backbone is None:
        raise InputError(f"method {method}: model.backbone is not set and the method implies none")
    spec = backbone_weights(backbone, model.get("pretrained", "none"))
    return [spec] if spec else []
