"""The body model M(β, θ, δ) of 3DSL eq. (1): SMPL (through smplx) with per-vertex displacements.

smplx loads the model file and supplies the skinning pieces (blend shapes, joint regression, the
rigid transform chain); the forward pass is assembled here because smplx has no displacement
argument, and the paper adds δ to the rest pose T(β, θ, δ) while the joints stay J(β).
"""
from __future__ import annotations

import contextlib
import io
import sys
from pathlib import Path

import numpy as np
import torch
from smplx import SMPL
from smplx.lbs import batch_rigid_transform, blend_shapes, vertices2joints
from smplx.utils import Struct
from torch import nn

from pipeline.errors import InputError, MissingInputError

from .safe_pickle import load_pickle
from .standin import FACE_LANDMARKS

# COCO-17 (AlphaPose's order, docs/preprocessing.md#coco-17) from SMPL: face landmarks are vertices, the
# rest SMPL joints.
# The hips are SMPL joints 1/2, which sit higher and closer together than COCO's annotated hips; the
# 3DSL dev code (jacenchen228/Change-Clothes-ReID, unofficial) used SPIN's extra regressor there instead,
# which is not shipped (docs/preprocessing.md#coco-from-smpl, docs/methods.md#3dsl-deviations).
COCO_FROM_SMPL_JOINT = {5: 16, 6: 17, 7: 18, 8: 19, 9: 20, 10: 21, 11: 1, 12: 2, 13: 4, 14: 5, 15: 7, 16: 8}
COCO_FROM_VERTEX = {0: FACE_LANDMARKS["nose"], 1: FACE_LANDMARKS["leye"], 2: FACE_LANDMARKS["reye"],
                    3: FACE_LANDMARKS["lear"], 4: FACE_LANDMARKS["rear"]}
COCO_FLIP = [0, 2, 1, 4, 3, 6, 5, 8, 7, 10, 9, 12, 11, 14, 13, 16, 15]
SMPL_KEYS = {"v_template": (6890, 3), "shapedirs": (6890, 3, None), "posedirs": (6890, 3, 207),
             "J_regressor": (24, 6890), "weights": (6890, 24), "kintree_table": (2, 24), "f": (13776, 3)}
SMPL_SOURCE = ("https://smpl.is.tue.mpg.de (SMPL for Python, v1.1.0: SMPL_NEUTRAL.pkl), "
               "converted with `python -m trainer.body convert-smpl`")


def check_model_file(path: str | Path) -> dict:
    """Open an SMPL-format pickle (allow-listed: it runs no code from the file) and check its keys and
    shapes; errors name the file and the problem."""
    path = Path(path)
    if not path.is_file():
        raise MissingInputError(f"{path}: body model missing. Get SMPL from {SMPL_SOURCE}, or build the stand-in "
                                f"with `python -m trainer.body standin --out {path}`")
    data = load_pickle(path)
    if not isinstance(data, dict):
        raise InputError(f"{path}: not an SMPL model file (holds a {type(data).__name__}, not a dict)")
    for key, shape in SMPL_KEYS.items():
        if key not in data:
            raise InputError(f"{path}: not an SMPL model file (no {key!r}; keys: {', '.join(sorted(data))})")
        got = tuple(np.shape(data[key]))
        if len(got) != len(shape) or any(s is not None and s != g for s, g in zip(shape, got, strict=True)):
            raise InputError(f"{path}: {key} has shape {got}, SMPL's is {shape}")
    return data


TEN_SHAPES_WARNING = "WARNING: You are using a SMPL model, with only 10 shape coefficients."


def _quiet_smpl(**kwargs) -> SMPL:
    """smplx.SMPL without the line it prints for any model file with fewer than 300 shape directions — SMPL's own
    files (10) and the stand-in alike, so on every 3DSL run. It says smplx uses at most 10 coefficients; BodyModel
    has already refused a num_betas above what smplx uses of the file, so no coefficient asked for is dropped.
    smplx prints it (no logger, no argument turns it off): stdout is caught for this call alone and anything
    else it prints is passed on."""
    caught = io.StringIO()
    with contextlib.redirect_stdout(caught):
        smpl = SMPL(**kwargs)
    rest = [line for line in caught.getvalue().splitlines(keepends=True) if line.strip() != TEN_SHAPES_WARNING]
    sys.stdout.write("".join(rest))
    return smpl


class BodyModel(nn.Module):
    """SMPL-format body model: (β, per-joint rotation matrices, δ) -> vertices, 24 joints, COCO-17 joints."""

    def __init__(self, path: str | Path, num_betas: int = 10):
        super().__init__()
        data = check_model_file(path)
        self.is_standin = "standin" in data
        available = np.shape(data["shapedirs"])[-1]
        # smplx quietly uses at most 10 coefficients of a file with fewer than SHAPE_SPACE_DIM (300) directions
        usable = min(available, 10) if available < SMPL.SHAPE_SPACE_DIM else SMPL.SHAPE_SPACE_DIM
        if num_betas > usable:
            raise InputError(f"{path}: {num_betas} shape coefficients asked for; smplx uses at most {usable} of "
                             f"this file's {available}")
        # data_struct: smplx would otherwise unpickle the file itself, unrestricted
        smpl = _quiet_smpl(model_path=str(path), data_struct=Struct(**data), num_betas=num_betas, batch_size=1)
        for name in ("v_template", "shapedirs", "posedirs", "J_regressor", "lbs_weights", "parents"):
            self.register_buffer(name, getattr(smpl, name).clone())
        self.register_buffer("faces", torch.as_tensor(smpl.faces.astype(np.int64)))
        edges = torch.cat([self.faces[:, [0, 1]], self.faces[:, [1, 2]], self.faces[:, [2, 0]]]).sort(1).values
        self.register_buffer("edges", torch.unique(edges, dim=0))  # E×2, each undirected edge once
        degree = torch.bincount(self.edges.flatten(), minlength=self.v_template.shape[0]).clamp(min=1)
        self.register_buffer("degree", degree.to(self.v_template.dtype))
        self.num_betas = num_betas
        self.coco_joint = torch.tensor([COCO_FROM_SMPL_JOINT.get(i, -1) for i in range(17)])
        self.coco_vertex = torch.tensor([COCO_FROM_VERTEX.get(i, -1) for i in range(17)])

    @property
    def num_vertices(self) -> int:
        return self.v_template.shape[0]

    def forward(self, betas: torch.Tensor, rotmats: torch.Tensor, displacement: torch.Tensor | None = None):
        """betas B×10, rotmats B×24×3×3 (joint 0 = global orientation), displacement B×V×3 or None.
        Returns (vertices B×V×3, joints B×24×3, coco B×17×3)."""
        b = betas.shape[0]
        v_shaped = self.rest_shape(betas)
        joints = vertices2joints(self.J_regressor, v_shaped)  # J(β): the skeleton ignores δ
        if displacement is not None:
            v_shaped = v_shaped + displacement
        eye = torch.eye(3, dtype=rotmats.dtype, device=rotmats.device)
        pose_feature = (rotmats[:, 1:] - eye).reshape(b, -1)
        v_posed = v_shaped + (pose_feature @ self.posedirs).view(b, -1, 3)
        posed_joints, transforms = batch_rigid_transform(rotmats, joints, self.parents)
        t = (self.lbs_weights @ transforms.view(b, -1, 16)).view(b, -1, 4, 4)
        vertices = (t[..., :3, :3] @ v_posed.unsqueeze(-1)).squeeze(-1) + t[..., :3, 3]
        coco = torch.where((self.coco_vertex >= 0).to(vertices.device)[None, :, None],
                           vertices[:, self.coco_vertex.clamp(min=0)], posed_joints[:, self.coco_joint.clamp(min=0)])
        return vertices, posed_joints, coco

    def laplacian(self, x: torch.Tensor) -> torch.Tensor:
        """Uniform mesh Laplacian of per-vertex values x (B×V×C): x_v minus the mean over v's neighbours."""
        i, j = self.edges[:, 0], self.edges[:, 1]
        neighbour_sum = torch.zeros_like(x).index_add(1, i, x[:, j]).index_add(1, j, x[:, i])
        return x - neighbour_sum / self.degree[:, None]

    def edge_lengths(self, vertices: torch.Tensor) -> torch.Tensor:
        """B×V×3 -> B×E lengths of the mesh edges."""
        return (vertices[:, self.edges[:, 0]] - vertices[:, self.edges[:, 1]]).norm(dim=-1)

    def rest_shape(self, betas: torch.Tensor) -> torch.Tensor:
        """T(β) without pose or displacement: the template the displacements are added to."""
        return self.v_template + blend_shapes(betas, self.shapedirs)

    def vertex_parts(self, num_parts: int) -> list[torch.Tensor]:
        """Vertex ids of `num_parts` horizontal bands of the template, top to bottom (MGS parts, matched
        to the image stripes of the part features)."""
        y = self.v_template[:, 1]
        edges = torch.linspace(float(y.max()) + 1e-6, float(y.min()) - 1e-6, num_parts + 1)
        return [torch.nonzero((y <= edges[i]) & (y > edges[i + 1])).flatten() for i in range(num_parts)]
