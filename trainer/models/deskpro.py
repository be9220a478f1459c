"""DeSKPro's two-stream network (Wu et al., ICIP 2022, §2; KimbingNg/DeskPro model/deskpro/deskpro.py;
docs/methods.md#deskpro): a body stream — LMBN whose stem map is re-weighted by the cloth-irrelevant spatial
attention (CSA) — and a face stream — LMBN on a face crop (the student on low-resolution crops, or the teacher
on restored faces). Either stream alone, and the body stream without CSA, are the ablations of Table 3.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from pipeline.errors import InputError

from .lmbn import LMBN, SpatialAttention

STEM_CHANNELS = 384  # OSNet x1.0's conv3 width: what the stem hands the branches


class DeskproNet(nn.Module):
    """forward(x) with x a dict holding `body` and/or `face` (B×3×H×W) and, at test, `face_found` (B):
    - training: {"face": (logits, features), "body": (logits, features), "attention": B×1×h×w} for the streams
      it has (LMBN's training outputs; the attention map only with CSA);
    - eval: {"face": B×feats×7, "body": B×feats×7}, the face rows of images without a face set to zero (the
      official test step zeroes the face output of an all-zero crop).
    """

    def __init__(self, face_net: LMBN | None, body_net: LMBN | None, attention: SpatialAttention | None):
        super().__init__()
        if face_net is None and body_net is None:
            raise InputError("DeSKPro: at least one of the face and body streams is needed (ablation.face, .body)")
        if attention is not None and body_net is None:
            raise InputError("DeSKPro: the CSA module belongs to the body stream (ablation.csa needs ablation.body)")
        self.face_net, self.body_net, self.attention = face_net, body_net, attention

    def forward(self, x: dict) -> dict:
        out = {}
        if self.face_net is not None:
            out["face"] = self.face_net(x["face"])
        if self.body_net is not None:
            fmap = self.body_net.stem(x["body"])
            if self.attention is not None:
                a = self.attention(fmap)
                fmap = fmap * a  # eq. (2): the Hadamard product with the attention map
                if self.training:
                    out["attention"] = a
            out["body"] = self.body_net.branches(fmap)
        if not self.training and "face" in out:
            found = x["face_found"].to(torch.bool).view(-1, 1, 1)
            out["face"] = torch.where(found, out["face"], torch.zeros_like(out["face"]))
        return out

    @staticmethod
    def test_features(f: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The official test features from the (flip-summed) eval outputs: each of a stream's 7 parts
        L2-normalised on its own, the stream flattened, and with both streams "all" = face ⊕ body first (the
        method's result), then each stream alone. The official division has no epsilon, so a face that was not
        found (all-zero parts) gives NaN there; here its parts stay zero and its distances come from the body."""
        streams = {name: F.normalize(f[name].float(), dim=1, eps=1e-12).flatten(1)
                   for name in ("face", "body") if name in f}
        if len(streams) == 2:
            return {"all": torch.cat([streams["face"], streams["body"]], 1), "body": streams["body"],
                    "face": streams["face"]}
        return streams


def deskpro_net(num_classes: int, feats: int = 512, pretrained: str = "none", osblock_forward: str = "deskpro",
                face: bool = True, body: bool = True, csa: bool = True) -> DeskproNet:
    """A DeskproNet with fresh streams: each LMBN on OSNet x1.0 from `pretrained` ("none", "imagenet" or a
    path to torchreid's osnet_x1_0 weights)."""
    def lmbn() -> LMBN:
        return LMBN(num_classes, feats, pretrained, osblock_forward)

    return DeskproNet(lmbn() if face else None, lmbn() if body else None,
                      SpatialAttention(STEM_CHANNELS) if csa and body else None)
