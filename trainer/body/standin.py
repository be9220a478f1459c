"""A procedurally generated body model in SMPL's exact file format — a STAND-IN, never SMPL.

SMPL itself is licensed per user and cannot ship here, so tests and the offline demo use this model:
the same pickle keys, shapes and dtypes as SMPL_NEUTRAL.pkl (6890 vertices, 13776 faces, 24 joints,
10 shape directions, 207 pose directions), loadable by `smplx.SMPL`, and the five face landmarks
at SMPL's vertex ids (nose 332, eyes 6260/2800, ears 4071/583), so COCO-17 joints come out of it
exactly as they do out of SMPL.

How it is built (written here because no library generates a rigged human of a fixed topology):
- topology: the convex hull of 6890 Fibonacci points on the unit sphere is a closed genus-0 triangle
  mesh with 2·6890 − 4 = 13776 faces, SMPL's counts exactly (SMPL's surface is also closed genus 0);
- shape: five caps of the sphere (head, arms, legs) become tubes around a skeleton polyline, the rest
  an ellipsoidal torso; point density is warped toward the caps so limbs get enough vertices;
- skinning weights blend the bones along each tube and by height over the spine;
- the joint regressor averages the vertex rings (or torso slabs) around each designed joint;
- the ten shape directions are finite differences of the generator in ten body measurements
  (stature, girth, shoulder and hip width, leg and arm length, arm and leg girth, head size, belly);
- pose correctives (`posedirs`) are zero: the stand-in has none.
"""
from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import scipy.sparse
import scipy.spatial

from pipeline.atomic import atomic_path

NUM_VERTICES, NUM_FACES, NUM_JOINTS = 6890, 13776, 24
# SMPL's kinematic tree (parent of each joint; the root's parent is stored as 2**32 - 1 like SMPL's pickle)
PARENTS = np.array([-1, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 9, 9, 12, 13, 14, 16, 17, 18, 19, 20, 21])
# smplx's vertex_ids['smplh'] for the COCO face landmarks (vchoutas/smplx smplx/vertex_ids.py;
# docs/preprocessing.md#coco-from-smpl)
FACE_LANDMARKS = {"nose": 332, "reye": 6260, "leye": 2800, "rear": 4071, "lear": 583}
MEASUREMENTS = ("stature", "girth", "shoulders", "hips", "legs", "arms", "arm_girth", "leg_girth", "head", "belly")
# one shape unit (beta = 1) is about one standard deviation of the measurement across adults
MEASUREMENT_STD = np.array([0.04, 0.08, 0.05, 0.06, 0.05, 0.05, 0.10, 0.10, 0.05, 0.10])
STANDIN_NAME = "STANDIN_NEUTRAL.pkl"


def fibonacci_sphere(n: int) -> np.ndarray:
    i = np.arange(n) + 0.5
    polar = np.arccos(1 - 2 * i / n)
    azimuth = np.pi * (1 + 5**0.5) * i
    return np.stack([np.cos(azimuth) * np.sin(polar), np.cos(polar), np.sin(azimuth) * np.sin(polar)], 1)


def _unit(v) -> np.ndarray:
    v = np.asarray(v, np.float64)
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


def _rotate_towards(points: np.ndarray, centre: np.ndarray, reach: float, gamma: float) -> np.ndarray:
    """Pull points within angle `reach` of `centre` towards it (angle d -> reach·(d/reach)^gamma): a
    bijection of the sphere that raises the point density near the centre."""
    cos = np.clip(points @ centre, -1, 1)
    d = np.arccos(cos)
    inside = (d < reach) & (d > 1e-9)
    new_d = reach * (d[inside] / reach) ** gamma
    tangent = _unit(points[inside] - cos[inside, None] * centre)
    out = points.copy()
    out[inside] = np.cos(new_d)[:, None] * centre + np.sin(new_d)[:, None] * tangent
    return out


# Caps of the sphere that become limbs: centre direction, angular radius, density warp (reach, gamma)
CAPS = {
    "head": (_unit([0, 1, 0]), np.radians(26), np.radians(44), 1.8),
    "left_arm": (_unit([np.cos(np.radians(40)), np.sin(np.radians(40)), 0]), np.radians(18), np.radians(36), 2.0),
    "right_arm": (_unit([-np.cos(np.radians(40)), np.sin(np.radians(40)), 0]), np.radians(18), np.radians(36), 2.0),
    "left_leg": (_unit([np.sin(np.radians(27)), -np.cos(np.radians(27)), 0]), np.radians(20), np.radians(26), 1.6),
    "right_leg": (_unit([-np.sin(np.radians(27)), -np.cos(np.radians(27)), 0]), np.radians(20), np.radians(26), 1.6),
}
JUNCTION = 0.18  # fraction of a cap (from its rim) that blends from the torso surface into the tube


def _skeleton(m: dict) -> dict:
    """Limb polylines: (knot points, knot radii, bone joint of each segment) for measurements m (all 1 = mean)."""
    s = m["stature"]
    sw, hw, ll, al = 0.19 * m["shoulders"], 0.085 * m["hips"], m["legs"], m["arms"]
    ag, lg, hd = m["arm_girth"], m["leg_girth"], m["head"]
    limbs = {}
    for side, sign in (("left", 1.0), ("right", -1.0)):
        shoulder = np.array([sign * sw, 0.40, 0.0])
        elbow = shoulder + [sign * 0.27 * al, 0, 0]
        wrist = elbow + [sign * 0.25 * al, 0, 0]
        hand = wrist + [sign * 0.10 * al, 0, 0]
        limbs[f"{side}_arm"] = (np.stack([shoulder, elbow, wrist, hand]) * s,
                                np.array([0.052, 0.040, 0.030, 0.034]) * ag * s,
                                [16 if sign > 0 else 17, 18 if sign > 0 else 19, 20 if sign > 0 else 21])
        hip = np.array([sign * hw, -0.09, 0.0])
        knee = hip + [0, -0.42 * ll, 0.01]
        ankle = knee + [0, -0.40 * ll, -0.01]
        toe = ankle + [0, -0.05, 0.13]
        limbs[f"{side}_leg"] = (np.stack([hip, knee, ankle, toe]) * s,
                                np.array([0.080, 0.052, 0.038, 0.040]) * lg * s,
                                [1 if sign > 0 else 2, 4 if sign > 0 else 5, 7 if sign > 0 else 8])
    neck = np.array([0, 0.47, 0.0])
    head_knots = np.stack([neck, neck + [0, 0.06, 0.01], neck + [0, 0.09 * hd, 0.02], neck + [0, 0.17 * hd, 0.015]])
    limbs["head"] = (head_knots * s, np.array([0.055, 0.050, 0.085, 0.098]) * hd * s, [12, 15, 15])
    return limbs


def _torso(directions: np.ndarray, m: dict) -> np.ndarray:
    s = m["stature"]
    centre = np.array([0, 0.17, 0.0])
    axes = np.array([0.165 * m["girth"] * (0.5 + 0.5 * m["shoulders"]), 0.32, 0.105 * m["girth"]])
    p = centre + directions * axes
    # belly: push the front of the waist out (or in)
    front = np.clip(directions[:, 2], 0, None) * np.exp(-((directions[:, 1] + 0.05) / 0.35) ** 2)
    p[:, 2] += 0.04 * (m["belly"] - 1) * front * 3
    return p * s


def _frame(normal: np.ndarray, hint: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Orthonormal (e1, e2) with e1 × e2 = normal, e1 as close to `hint` as possible."""
    e1 = hint - (hint @ normal) * normal
    if np.linalg.norm(e1) < 1e-6:
        e1 = np.cross(normal, [0, 0, 1.0])
    e1 = _unit(e1)
    return e1, np.cross(normal, e1)


def _polyline(knots: np.ndarray, radii: np.ndarray, tau: np.ndarray):
    """Axis point, tube radius and tangent at arc-length fraction tau; the end is capped by a half sphere."""
    tip = knots[-1] + _unit(knots[-1] - knots[-2]) * radii[-1]
    pts = np.vstack([knots, tip])
    rad = np.append(radii, 0.0)
    seg = np.linalg.norm(np.diff(pts, axis=0), axis=1)
    cum = np.concatenate([[0], np.cumsum(seg)]) / seg.sum()
    k = np.clip(np.searchsorted(cum, tau, side="right") - 1, 0, len(seg) - 1)
    u = ((tau - cum[k]) / (cum[k + 1] - cum[k]))[:, None]
    axis = pts[k] + u * (pts[k + 1] - pts[k])
    r = rad[k] + u[:, 0] * (rad[k + 1] - rad[k])
    last = k == len(seg) - 1
    r[last] = radii[-1] * np.sqrt(np.clip(1 - u[last, 0] ** 2, 0, 1))  # rounded cap
    return axis, r, _unit(pts[k + 1] - pts[k]), cum[:-1]


class _Layout:
    """What stays fixed across measurements: each vertex's region, its place in the cap and its direction."""

    def __init__(self):
        dirs = fibonacci_sphere(NUM_VERTICES)
        for centre, _, reach, gamma in CAPS.values():
            dirs = _rotate_towards(dirs, centre, reach, gamma)
        self.directions = dirs
        hull = scipy.spatial.ConvexHull(dirs)
        faces = hull.simplices.astype(np.int64)
        # outward winding: the face normal must point away from the sphere's centre
        a, b, c = dirs[faces[:, 0]], dirs[faces[:, 1]], dirs[faces[:, 2]]
        flip = np.einsum("ij,ij->i", np.cross(b - a, c - a), a + b + c) < 0
        faces[flip] = faces[flip][:, [0, 2, 1]]
        self.faces = faces
        self.region = np.full(NUM_VERTICES, "torso", dtype=object)
        self.t = np.zeros(NUM_VERTICES)          # 0 at the cap's rim, 1 at its centre
        self.azimuth = np.zeros(NUM_VERTICES)
        for name, (centre, radius, _, _) in CAPS.items():
            d = np.arccos(np.clip(dirs @ centre, -1, 1))
            inside = d < radius
            self.region[inside] = name
            self.t[inside] = 1 - d[inside] / radius
            a1, a2 = _frame(centre, np.array([0, 0, 1.0]) if name != "head" else np.array([1.0, 0, 0]))
            tangent = dirs[inside] - np.outer(dirs[inside] @ centre, centre)
            self.azimuth[inside] = np.arctan2(tangent @ a2, tangent @ a1)


def _vertices(layout: _Layout, m: dict) -> tuple[np.ndarray, dict]:
    v = _torso(layout.directions, m)
    limbs = _skeleton(m)
    tube_coords = {}
    for name, (centre, radius, _, _) in CAPS.items():
        idx = np.flatnonzero(layout.region == name)
        knots, radii, _ = limbs[name]
        t, az = layout.t[idx], layout.azimuth[idx]
        a1, a2 = _frame(centre, np.array([0, 0, 1.0]) if name != "head" else np.array([1.0, 0, 0]))
        # the rim point of each vertex's azimuth, on the torso surface
        rim_dir = _unit(np.cos(radius) * centre
                        + np.sin(radius) * (np.outer(np.cos(az), a1) + np.outer(np.sin(az), a2)))
        rim = _torso(rim_dir, m)
        tau = np.clip((t - JUNCTION) / (1 - JUNCTION), 0, 1)
        axis, r, tangent, _ = _polyline(knots, radii, tau)
        ring = np.empty_like(axis)
        for i in range(len(idx)):  # a per-vertex frame: limbs bend (feet, neck), so no single frame fits
            e1, e2 = _frame(tangent[i], a1)
            ring[i] = axis[i] + r[i] * (np.cos(az[i]) * e1 + np.sin(az[i]) * e2)
        blend = np.clip(t / JUNCTION, 0, 1)
        blend = (blend * blend * (3 - 2 * blend))[:, None]  # smoothstep from the rim into the tube
        start = knots[0] + _ring_at_start(knots, radii, az, a1)  # the tube's first ring
        v[idx] = np.where(t[:, None] < JUNCTION, (1 - blend) * rim + blend * start, ring)
        tube_coords[name] = (idx, tau)
    return v, tube_coords


def _ring_at_start(knots, radii, az, a1) -> np.ndarray:
    e1, e2 = _frame(_unit(knots[1] - knots[0]), a1)
    return radii[0] * (np.outer(np.cos(az), e1) + np.outer(np.sin(az), e2))


def _hat_weights(tau: np.ndarray, knot_tau: np.ndarray, bones: list[int], width: float = 0.06) -> np.ndarray:
    """Skinning along a tube: each segment belongs to its bone; across a knot the weight ramps linearly
    over ±width (in arc fraction) from the bone before to the bone after."""
    w = np.zeros((len(tau), NUM_JOINTS))
    seg = np.clip(np.searchsorted(knot_tau, tau, side="right") - 1, 0, len(bones) - 1)
    w[np.arange(len(tau)), np.array(bones)[seg]] = 1.0
    for k in range(1, len(bones)):
        near = np.abs(tau - knot_tau[k]) < width
        after = (tau[near] - knot_tau[k] + width) / (2 * width)
        rows = np.flatnonzero(near)
        w[rows] = 0
        w[rows, bones[k - 1]] = 1 - after
        w[rows, bones[k]] += after
    return w


def _torso_weights(y: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Spine joints by height (pelvis, spine1-3), collars on the upper sides."""
    heights = np.array([-0.05, 0.10, 0.24, 0.38])
    joints = [0, 3, 6, 9]
    w = np.zeros((len(y), NUM_JOINTS))
    for k, j in enumerate(joints):
        lo = heights[k - 1] if k else -np.inf
        hi = heights[k + 1] if k + 1 < len(heights) else np.inf
        up = np.clip((y - lo) / (heights[k] - lo), 0, 1) if k else np.ones_like(y)
        down = np.clip((hi - y) / (hi - heights[k]), 0, 1) if k + 1 < len(heights) else np.ones_like(y)
        w[:, j] = np.minimum(up, down)
    collar = np.clip((y - 0.30) / 0.12, 0, 1) * np.clip((np.abs(x) - 0.05) / 0.08, 0, 1)
    for side, j in ((x > 0, 13), (x <= 0, 14)):
        w[side, j] = collar[side]
        w[side, 9] *= 1 - collar[side]
    return w / w.sum(1, keepdims=True)


def _joint_regressor(v: np.ndarray, layout: _Layout, tube_coords: dict, m: dict) -> scipy.sparse.csc_matrix:
    """Each joint = the mean of the vertex ring (tube joints) or slab (spine joints) around it."""
    limbs = _skeleton(m)
    rows = np.zeros((NUM_JOINTS, NUM_VERTICES))
    for name, (idx, tau) in tube_coords.items():
        knots, radii, bones = limbs[name]
        _, _, _, knot_tau = _polyline(knots, radii, np.zeros(1))
        for k, j in enumerate(bones):
            near = np.abs(tau - knot_tau[k]) < 0.035
            rows[j, idx[near]] = 1.0
        # the joint at the last knot (hand 22/23, foot 10/11) and the head's top knot
        end_joint = {"left_arm": 22, "right_arm": 23, "left_leg": 10, "right_leg": 11, "head": None}[name]
        if end_joint is not None:
            last = knot_tau[-1]
            rows[end_joint, idx[np.abs(tau - last) < 0.035]] = 1.0
    torso = np.flatnonzero(layout.region == "torso")
    s = m["stature"]
    for j, height in ((0, -0.02), (3, 0.10), (6, 0.24), (9, 0.36)):
        near = np.abs(v[torso, 1] - height * s) < 0.02 * s
        rows[j, torso[near]] = 1.0
    for j, sign in ((13, 1), (14, -1)):  # collars: the upper-chest slab on their side
        near = (np.abs(v[torso, 1] - 0.40 * s) < 0.03 * s) & (sign * v[torso, 0] > 0.02 * s)
        rows[j, torso[near]] = 1.0
    empty = np.flatnonzero(rows.sum(1) == 0)
    if len(empty):
        raise RuntimeError(f"stand-in joint regressor: no vertices around joints {empty.tolist()}")
    return scipy.sparse.csc_matrix(rows / rows.sum(1, keepdims=True))


def _place_landmarks(v: np.ndarray, m: dict) -> tuple[np.ndarray, np.ndarray]:
    """Reorder vertices so SMPL's landmark ids land on the stand-in's nose, eyes and ears."""
    s, hd = m["stature"], m["head"]
    head_centre = np.array([0, 0.47 + 0.13 * hd, 0.02]) * s
    targets = {"nose": [0, 0.0, 0.12], "leye": [0.035, 0.03, 0.10], "reye": [-0.035, 0.03, 0.10],
               "lear": [0.10, 0.0, 0.0], "rear": [-0.10, 0.0, 0.0]}
    order = np.arange(NUM_VERTICES)
    taken = set()
    for name, offset in targets.items():
        d = np.linalg.norm(v - (head_centre + np.array(offset) * hd * s), axis=1)
        for cand in np.argsort(d):
            if cand not in taken:
                break
        taken.add(int(cand))
        want = FACE_LANDMARKS[name]
        i, j = np.flatnonzero(order == cand)[0], want
        order[[i, j]] = order[[j, i]]
    return order, np.argsort(order)


def build_standin(measurements: dict | None = None) -> dict:
    """The stand-in's SMPL-format dict (numpy/scipy values, SMPL's keys)."""
    layout = _Layout()
    mean = {k: 1.0 for k in MEASUREMENTS}
    if measurements:
        mean.update(measurements)
    v, tubes = _vertices(layout, mean)
    weights = _torso_weights(v[:, 1] / mean["stature"], v[:, 0] / mean["stature"])
    limbs = _skeleton(mean)
    for name, (idx, tau) in tubes.items():
        knots, radii, bones = limbs[name]
        _, _, _, knot_tau = _polyline(knots, radii, np.zeros(1))
        tube_w = _hat_weights(tau, knot_tau[:len(bones)], bones)
        # the junction blends from the torso joint the limb hangs on into the limb's first bone
        anchor = {"left_arm": 13, "right_arm": 14, "left_leg": 0, "right_leg": 0, "head": 9}[name]
        a = np.clip(layout.t[idx] / (2 * JUNCTION), 0, 1)[:, None]
        anchor_w = np.zeros_like(tube_w)
        anchor_w[:, anchor] = 1
        weights[idx] = (1 - a) * anchor_w + a * tube_w
    shapedirs = np.zeros((NUM_VERTICES, 3, len(MEASUREMENTS)))
    for k, name in enumerate(MEASUREMENTS):
        bumped = dict(mean)
        bumped[name] += MEASUREMENT_STD[k]
        shapedirs[:, :, k] = _vertices(layout, bumped)[0] - v
    regressor = _joint_regressor(v, layout, tubes, mean)
    order, inverse = _place_landmarks(v, mean)
    faces = inverse[layout.faces]
    return {
        "v_template": v[order],
        "shapedirs": shapedirs[order],
        "posedirs": np.zeros((NUM_VERTICES, 3, 207)),
        "J_regressor": scipy.sparse.csc_matrix(regressor[:, order]),
        "weights": weights[order],
        "kintree_table": np.stack([np.where(PARENTS < 0, 2**32 - 1, PARENTS), np.arange(NUM_JOINTS)]).astype(np.uint32),
        "f": faces.astype(np.uint32),
        "standin": "procedural stand-in body model generated by ccreid (trainer/body/standin.py); not SMPL",
    }


def write_standin(out: str | Path) -> Path:
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(out) as tmp, open(tmp, "wb") as fh:
        pickle.dump(build_standin(), fh, protocol=4)
    return out
