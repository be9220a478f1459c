"""Real SMPL parameters for the ASSP discriminator: AMASS/CMU-style motion-capture `.npz` files
(3DSL paper §3.2.3; read as the unofficial 3DSL dev code, jacenchen228/Change-Clothes-ReID, reads them;
docs/preprocessing.md#motion-capture), or — offline — samples from the stand-in body model's pose prior, named as such.

AMASS files hold `poses` (frames × 156, SMPL-H axis-angle: 22 body joints, then 2×15 hand joints) and
`betas` (16, one body per sequence). SMPL's 24 joints are SMPL-H's [0..22, 37] (the first joint of
each hand stands for SMPL's hand joint), and β the first 10 betas, as in the 3DSL dev code.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from pipeline.atomic import atomic_path
from pipeline.errors import InputError, MissingInputError

SMPLH_TO_SMPL = list(range(23)) + [37]
STANDIN_PRIOR_NAME = "standin_prior_mocap.npz"
MOCAP_SOURCE = "https://amass.is.tue.mpg.de (CMU, SMPL+H G npz files)"


def _sequence_files(path: Path) -> list[Path]:
    if path.is_dir():
        files = sorted(p for p in path.rglob("*.npz") if not p.name.endswith("shape.npz"))
        if not files:
            raise MissingInputError(f"{path}: no motion-capture .npz files in it (expected AMASS sequences)")
        return files
    if not path.is_file():
        raise MissingInputError(f"{path}: motion-capture SMPL parameters missing. Download AMASS sequences from "
                                f"{MOCAP_SOURCE} to that folder, or build the stand-in prior with "
                                f"`python -m trainer.body standin --out DIR`")
    return [path]


def _open_npz(f: Path):
    # numpy reports a pickle, or an .npy under an .npz name, without naming the file
    try:
        z = np.load(f)
    except ValueError as e:
        raise InputError(f"{f}: not an .npz of numeric arrays ({e})") from None
    if not isinstance(z, np.lib.npyio.NpzFile):
        raise InputError(f"{f}: holds a single array, not an AMASS-style .npz (needs 'poses' and 'betas')")
    return z


def _member(f: Path, z, key: str) -> np.ndarray:
    # object arrays are refused (they would unpickle code from the file); numpy's message names neither file nor key
    try:
        return z[key]
    except ValueError as e:
        raise InputError(f"{f}: {key!r} cannot be read ({e}); AMASS files hold plain numeric arrays") from None


def load_mocap(path: str | Path, num_betas: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """(poses N×24×3 axis-angle, betas N×num_betas), one row per frame, from a file or a folder of files."""
    poses, betas = [], []
    for f in _sequence_files(Path(path)):
        with _open_npz(f) as z:
            if "poses" not in z or "betas" not in z:
                raise InputError(f"{f}: not an AMASS-style file (needs 'poses' and 'betas'; has {', '.join(z.files)})")
            p = _member(f, z, "poses").astype(np.float32)
            if p.ndim != 2 or p.shape[1] not in (72, 156):
                raise InputError(f"{f}: poses has shape {p.shape}; expected frames×156 (SMPL-H) or frames×72 (SMPL)")
            p = p.reshape(len(p), -1, 3)
            poses.append(p[:, SMPLH_TO_SMPL] if p.shape[1] == 52 else p)
            b = np.asarray(_member(f, z, "betas"), np.float32)
            b = np.broadcast_to(b[..., :num_betas], (len(p), num_betas)) if b.ndim == 1 else b[:, :num_betas]
            betas.append(b)
    return np.concatenate(poses), np.concatenate(betas)


class MocapSampler:
    """Random batches of real (pose, β), drawn from torch's global generator: the trainer seeds it and
    checkpoints its state, so a resumed run draws what the uninterrupted one would have."""

    def __init__(self, path: str | Path, num_betas: int = 10):
        poses, betas = load_mocap(path, num_betas)
        self.poses, self.betas = torch.from_numpy(poses), torch.from_numpy(np.ascontiguousarray(betas))

    def __len__(self) -> int:
        return len(self.poses)

    def sample(self, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        idx = torch.randint(len(self.poses), (n,))
        return self.poses[idx], self.betas[idx]

    def mean_pose(self) -> torch.Tensor:
        """Per-joint mean axis-angle: the pose the regressor starts from."""
        return self.poses.mean(0)


# The stand-in prior: a standing person, arms lowered beside the body, with per-joint variation (radians).
# Axis-angle means and spreads per SMPL joint; written by hand because the stand-in has no captured motion.
_PRIOR_MEAN = {16: (0, 0, -1.2), 17: (0, 0, 1.2), 18: (0, -0.2, 0), 19: (0, 0.2, 0), 4: (0.15, 0, 0), 5: (0.15, 0, 0)}
_PRIOR_STD = {1: 0.25, 2: 0.25, 4: 0.2, 5: 0.2, 16: 0.3, 17: 0.3, 18: 0.35, 19: 0.35, 3: 0.08, 6: 0.06, 9: 0.06,
              12: 0.15, 15: 0.15, 7: 0.1, 8: 0.1, 13: 0.08, 14: 0.08, 20: 0.2, 21: 0.2}


def standin_prior(num_frames: int = 20000, seed: int = 0) -> dict:
    """Samples of the stand-in's pose and shape prior in AMASS's file layout (SMPL-H poses, 16 betas)."""
    rng = np.random.default_rng(seed)
    body = np.zeros((num_frames, 24, 3), np.float32)
    for j in range(1, 24):
        body[:, j] = np.array(_PRIOR_MEAN.get(j, (0, 0, 0))) + rng.normal(0, _PRIOR_STD.get(j, 0.03), (num_frames, 3))
    body[:, 4, 0] = np.abs(body[:, 4, 0])  # knees bend one way
    body[:, 5, 0] = np.abs(body[:, 5, 0])
    # a global orientation AMASS-like (upright, any heading); the discriminator ignores it
    body[:, 0, 1] = rng.uniform(-np.pi, np.pi, num_frames)
    poses = np.zeros((num_frames, 52, 3), np.float32)
    poses[:, :23] = body[:, :23]
    poses[:, 37] = body[:, 23]
    # betas: frames × 16, one body per frame (an AMASS file holds one body for the whole sequence)
    return {"poses": poses.reshape(num_frames, 156), "betas": rng.normal(0, 1, (num_frames, 16)).astype(np.float32),
            "gender": np.array("neutral"), "mocap_framerate": np.array(0.0),
            "note": np.array("stand-in prior samples generated by ccreid (trainer/body/mocap.py); not motion capture")}


def write_standin_prior(out: str | Path, num_frames: int = 20000, seed: int = 0) -> Path:
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    data = standin_prior(num_frames, seed)
    with atomic_path(out) as tmp, open(tmp, "wb") as fh:
        np.savez(fh, **data)
    return out
