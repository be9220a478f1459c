"""Draw one person (identity + outfit + pose) with exact ground truth: parts, COCO-17 keypoints, face box.

Every primitive is painted into the image and the part-label map in the same call, so the truth is
exact by construction. Drawing happens at 2x and is area-downsampled, which anti-aliases the image
while the label map keeps hard edges (nearest sampling).
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from .traits import Identity, Outfit

PART_LABELS = {"background": 0, "head": 1, "hair": 2, "skin": 3, "top": 4, "bottom": 5, "shoes": 6}
COCO17 = (
    "nose", "left_eye", "right_eye", "left_ear", "right_ear", "left_shoulder", "right_shoulder",
    "left_elbow", "right_elbow", "left_wrist", "right_wrist", "left_hip", "right_hip",
    "left_knee", "right_knee", "left_ankle", "right_ankle",
)
VIEWS = ("front", "back", "left", "right")  # left/right: the direction the person faces in the image
SUPERSAMPLE = 2
_SHIFT = 4  # cv2 fixed-point bits: sub-pixel accurate outlines
_ONE = 1 << _SHIFT


@dataclass(frozen=True)
class Pose:
    view: str
    # Limb angles in the image plane, radians from straight down, positive towards image +x.
    left_upper_arm: float
    left_forearm: float
    right_upper_arm: float
    right_forearm: float
    left_thigh: float
    left_shin: float
    right_thigh: float
    right_shin: float


def sample_pose(rng: np.random.Generator) -> Pose:
    view = VIEWS[rng.choice(4, p=[0.35, 0.25, 0.2, 0.2])]
    if view in ("front", "back"):
        # person's left is image right when facing the camera
        out = 1.0 if view == "front" else -1.0
        la, ra = rng.uniform(0.05, 0.45, size=2)
        lf, rf = rng.uniform(-0.15, 0.5, size=2)
        ll, rl = rng.uniform(0.0, 0.18, size=2)
        return Pose(view, out * la, out * (la + lf), -out * ra, -out * (ra + rf),
                    out * ll, out * (ll - 0.03), -out * rl, -out * (rl - 0.03))
    facing = 1.0 if view == "right" else -1.0
    phase = rng.uniform(-1, 1)
    elbow = rng.uniform(0.0, 0.7, size=2)
    knee = rng.uniform(0.0, 0.35)
    near_arm, far_arm = 0.55 * phase, -0.55 * phase
    near_leg, far_leg = -0.38 * phase, 0.38 * phase
    # facing right shows the person's right side
    r_arm, l_arm = (near_arm, far_arm) if view == "right" else (far_arm, near_arm)
    r_leg, l_leg = (near_leg, far_leg) if view == "right" else (far_leg, near_leg)
    return Pose(
        view,
        facing * l_arm, facing * (l_arm + elbow[0]), facing * r_arm, facing * (r_arm + elbow[1]),
        facing * l_leg, facing * (l_leg - knee * (l_leg < 0)), facing * r_leg, facing * (r_leg - knee * (r_leg < 0)),
    )


@dataclass
class Rendered:
    image: np.ndarray  # H×W×3 uint8 RGB
    parts: np.ndarray  # H×W uint8, PART_LABELS
    keypoints: np.ndarray  # 17×3 float32: x, y, visibility (0 absent, 1 occluded, 2 visible)
    face_box: np.ndarray  # 4 float32 x1 y1 x2 y2, NaN when the face is not visible


def texture(kind: str, c1, c2, shape: tuple[int, int], period: float, rng: np.random.Generator) -> np.ndarray:
    h, w = shape
    yy, xx = np.mgrid[0:h, 0:w]
    off = rng.uniform(0, period, size=2)
    if kind == "hstripes":
        sel = ((yy + off[0]) // period) % 2 == 1
    elif kind == "vstripes":
        sel = ((xx + off[1]) // period) % 2 == 1
    elif kind == "checks":
        sel = (((yy + off[0]) // period + (xx + off[1]) // period) % 2) == 1
    elif kind == "dots":
        cy = (yy + off[0]) % period - period / 2
        cx = (xx + off[1]) % period - period / 2
        sel = cy**2 + cx**2 < (period * 0.28) ** 2
    else:
        sel = np.zeros((h, w), bool)
    out = np.empty((h, w, 3), np.float32)
    out[:] = np.asarray(c1, np.float32)
    out[sel] = np.asarray(c2, np.float32)
    # faint fabric grain so flat regions are not perfectly uniform
    out += rng.normal(0, 4, size=(h, w, 1)).astype(np.float32)
    return out


class _Painter:
    """Paints filled shapes into an image and a label map at once (at SUPERSAMPLE resolution)."""

    def __init__(self, background: np.ndarray):
        s = SUPERSAMPLE
        self.image = cv2.resize(background.astype(np.float32), None, fx=s, fy=s, interpolation=cv2.INTER_LINEAR)
        self.labels = np.zeros(self.image.shape[:2], np.uint8)

    def _fix(self, pt):
        return (int(round(pt[0] * SUPERSAMPLE * _ONE)), int(round(pt[1] * SUPERSAMPLE * _ONE)))

    def paint(self, label: int, fill, shapes, clip_y: tuple[float, float] | None = None):
        mask = np.zeros(self.labels.shape, np.uint8)
        for shape in shapes:
            kind = shape[0]
            if kind == "poly":
                pts = np.array([self._fix(p) for p in shape[1]], np.int32)
                cv2.fillPoly(mask, [pts], 255, cv2.LINE_8, _SHIFT)
            elif kind == "limb":
                a, b, width = shape[1], shape[2], shape[3]
                t = max(1, int(round(width * SUPERSAMPLE)))
                cv2.line(mask, self._fix(a), self._fix(b), 255, t, cv2.LINE_8, _SHIFT)
                for p in (a, b):
                    cv2.circle(mask, self._fix(p), int(round(width * SUPERSAMPLE / 2 * _ONE)), 255, -1, cv2.LINE_8,
                               _SHIFT)
            elif kind == "ellipse":
                centre, axes, angle = shape[1], shape[2], shape[3]
                ax = (int(round(axes[0] * SUPERSAMPLE * _ONE)), int(round(axes[1] * SUPERSAMPLE * _ONE)))
                cv2.ellipse(mask, self._fix(centre), ax, angle, 0, 360, 255, -1, cv2.LINE_8, _SHIFT)
        if clip_y is not None:
            lo, hi = (int(round(v * SUPERSAMPLE)) for v in clip_y)
            mask[: max(lo, 0)] = 0
            mask[max(hi, 0):] = 0
        sel = mask > 0
        self.labels[sel] = label
        if isinstance(fill, np.ndarray) and fill.ndim == 3:
            self.image[sel] = fill[sel]
        else:
            self.image[sel] = np.asarray(fill, np.float32)

    def detail(self, colour, draw):
        """Face details: drawn into the image only, they do not change part labels."""
        draw(self.image, tuple(float(c) for c in colour), self._fix)

    def finish(self) -> tuple[np.ndarray, np.ndarray]:
        s = SUPERSAMPLE
        h, w = self.labels.shape[0] // s, self.labels.shape[1] // s
        image = cv2.resize(self.image, (w, h), interpolation=cv2.INTER_AREA)
        labels = self.labels[s // 2 :: s, s // 2 :: s][:h, :w]
        return image, np.ascontiguousarray(labels)


def _along(p, angle: float, length: float):
    return (p[0] + np.sin(angle) * length, p[1] + np.cos(angle) * length)


def _lerp(a, b, t: float):
    return (a[0] + (b[0] - a[0]) * t, a[1] + (b[1] - a[1]) * t)


def render_person(
    background: np.ndarray,
    identity: Identity,
    outfit: Outfit,
    pose: Pose,
    rng: np.random.Generator,
    centre_x: float,
    top_y: float,
    body_height: float,
) -> Rendered:
    """Paint the person over `background` (H×W×3 float RGB) and return image and ground truth."""
    H, W = background.shape[:2]
    hb = body_height
    ss_shape = (H * SUPERSAMPLE, W * SUPERSAMPLE)
    period = max(3.0, 0.035 * hb) * SUPERSAMPLE
    top_tex = texture(outfit.top_texture, outfit.top_colour, outfit.top_colour2, ss_shape, period, rng)
    bottom_tex = texture(outfit.bottom_texture, outfit.bottom_colour, outfit.bottom_colour2, ss_shape, period, rng)
    skin, hair = identity.skin, identity.hair_colour
    P = _Painter(background)
    L = PART_LABELS

    view = pose.view
    side = view in ("left", "right")
    facing = 1.0 if view == "right" else -1.0
    lr = 1.0 if view == "front" else -1.0  # image-x sign of the person's left side (front/back)

    head_h = identity.head_size * hb
    head_w = head_h * identity.head_aspect * (0.92 if side else 1.0)
    head_c = (centre_x, top_y + head_h / 2)
    neck_y = top_y + head_h * 0.92
    shoulder_y = top_y + head_h + 0.045 * hb
    hip_y = top_y + hb * (1 - identity.leg_ratio)
    sw = identity.shoulder_width * hb * (0.42 if side else 1.0)
    hw = identity.hip_width * hb * (0.55 if side else 1.0)
    arm_w = 0.05 * hb * identity.girth
    leg_w = 0.068 * hb * identity.girth
    upper_arm, forearm = 0.19 * hb, 0.16 * hb
    leg_len = hb * identity.leg_ratio - 0.035 * hb
    thigh = shin = leg_len / 2

    if side:
        # far limbs sit slightly behind the body, on the side away from the viewer
        l_sh = (centre_x - 0.15 * sw * facing, shoulder_y)
        r_sh = (centre_x + 0.15 * sw * facing, shoulder_y)
        if view == "left":
            l_sh, r_sh = r_sh, l_sh
        l_hip, r_hip = (centre_x, hip_y), (centre_x, hip_y)
    else:
        l_sh = (centre_x + lr * (sw - arm_w * 0.35), shoulder_y + arm_w * 0.2)
        r_sh = (centre_x - lr * (sw - arm_w * 0.35), shoulder_y + arm_w * 0.2)
        l_hip = (centre_x + lr * hw * 0.55, hip_y)
        r_hip = (centre_x - lr * hw * 0.55, hip_y)
    l_el = _along(l_sh, pose.left_upper_arm, upper_arm)
    r_el = _along(r_sh, pose.right_upper_arm, upper_arm)
    l_wr = _along(l_el, pose.left_forearm, forearm)
    r_wr = _along(r_el, pose.right_forearm, forearm)
    l_kn = _along(l_hip, pose.left_thigh, thigh)
    r_kn = _along(r_hip, pose.right_thigh, thigh)
    l_an = _along(l_kn, pose.left_shin, shin)
    r_an = _along(r_kn, pose.right_shin, shin)

    def draw_leg(hip, knee, ankle):
        P.paint(L["skin"], skin, [("limb", hip, knee, leg_w * 0.92), ("limb", knee, ankle, leg_w * 0.85)])
        if outfit.long_legs:
            P.paint(L["bottom"], bottom_tex, [("limb", hip, knee, leg_w),
                                              ("limb", knee, _lerp(knee, ankle, 0.93), leg_w * 0.95)])
        else:
            P.paint(L["bottom"], bottom_tex, [("limb", hip, _lerp(hip, knee, 0.8), leg_w * 1.05)])
        shoe_len = 0.085 * hb
        toe = facing * shoe_len * 0.35 if side else 0.0
        P.paint(L["shoes"], outfit.shoe_colour,
                [("ellipse", (ankle[0] + toe, ankle[1] + 0.012 * hb),
                  ((shoe_len / 2) if side else leg_w * 0.62, 0.026 * hb), 0)])

    def draw_arm(shoulder, elbow, wrist):
        P.paint(L["skin"], skin, [("limb", shoulder, elbow, arm_w * 0.9), ("limb", elbow, wrist, arm_w * 0.82),
                                  ("ellipse", wrist, (arm_w * 0.55, arm_w * 0.7), 0)])
        if outfit.long_sleeves:
            sleeve = [("limb", shoulder, elbow, arm_w), ("limb", elbow, _lerp(elbow, wrist, 0.88), arm_w * 0.95)]
        else:
            sleeve = [("limb", shoulder, _lerp(shoulder, elbow, 0.55), arm_w * 1.1)]
        P.paint(L["top"], top_tex, sleeve)

    def draw_torso():
        waist = hw * 1.1 + (0 if side else leg_w * 0.2)
        P.paint(L["bottom"], bottom_tex, [("poly", [(centre_x - waist, hip_y - 0.05 * hb),
                                                    (centre_x + waist, hip_y - 0.05 * hb),
                                                    (centre_x + waist, hip_y + 0.04 * hb),
                                                    (centre_x - waist, hip_y + 0.04 * hb)])])
        P.paint(L["skin"], skin, [("limb", (centre_x, neck_y - 0.02 * hb), (centre_x, shoulder_y), head_w * 0.38)])
        collar = 0.012 * hb
        P.paint(L["top"], top_tex, [("poly", [
            (centre_x - sw, shoulder_y + collar), (centre_x - sw * 0.5, shoulder_y - collar),
            (centre_x + sw * 0.5, shoulder_y - collar), (centre_x + sw, shoulder_y + collar),
            (centre_x + waist, hip_y - 0.03 * hb), (centre_x - waist, hip_y - 0.03 * hb)])])

    hair_cap = ("ellipse", head_c, (head_w * 0.56, head_h * 0.55), 0)
    long_hair = ("poly", [(head_c[0] - head_w * 0.6, head_c[1] - head_h * 0.2),
                          (head_c[0] + head_w * 0.6, head_c[1] - head_h * 0.2),
                          (head_c[0] + head_w * 0.62, shoulder_y + 0.06 * hb),
                          (head_c[0] - head_w * 0.62, shoulder_y + 0.06 * hb)])
    if side:
        long_hair = ("poly", [(head_c[0] - facing * head_w * 0.55, head_c[1] - head_h * 0.3),
                              (head_c[0] + facing * head_w * 0.1, head_c[1] - head_h * 0.3),
                              (head_c[0] + facing * head_w * 0.0, shoulder_y + 0.07 * hb),
                              (head_c[0] - facing * head_w * 0.6, shoulder_y + 0.07 * hb)])
    bun = ("ellipse", (head_c[0] - (facing * head_w * 0.45 if side else 0), top_y + head_h * 0.02),
           (head_w * 0.24, head_h * 0.17), 0)

    def draw_head():
        style = identity.hair_style
        if style == "long" and view != "back":
            P.paint(L["hair"], hair, [long_hair])
        P.paint(L["head"], skin, [("ellipse", head_c, (head_w / 2, head_h / 2), 0)])
        if view == "back":
            if style != "bald":
                P.paint(L["hair"], hair,
                        [hair_cap] + ([long_hair] if style == "long" else []) + ([bun] if style == "bun" else []),
                        clip_y=((-1e9, head_c[1] + head_h * (0.6 if style == "long" else 0.32))
                                if style != "long" else None))
            return
        if style != "bald":
            if side:
                # hair covers the back of the head in profile
                P.paint(L["hair"], hair, [("ellipse", (head_c[0] - facing * head_w * 0.1, head_c[1] - head_h * 0.08),
                                           (head_w * 0.5, head_h * 0.48), 0)], clip_y=(-1e9, head_c[1] - head_h * 0.12))
                P.paint(L["hair"], hair, [("ellipse", (head_c[0] - facing * head_w * 0.28, head_c[1]),
                                           (head_w * 0.26, head_h * 0.4), 0)])
            else:
                P.paint(L["hair"], hair, [hair_cap], clip_y=(-1e9, head_c[1] - head_h * 0.18))
            if style == "bun":
                P.paint(L["hair"], hair, [bun])
        dark = (35, 25, 25)
        ey = head_c[1] - head_h * 0.03
        er = max(0.7, head_w * 0.065)
        mouth_y = head_c[1] + head_h * 0.27

        def face(img, colour, fx):
            if side:
                ex = head_c[0] + facing * head_w * 0.28
                cv2.circle(img, fx((ex, ey)), int(er * SUPERSAMPLE * _ONE), colour, -1, cv2.LINE_AA, _SHIFT)
                cv2.line(img, fx((head_c[0] + facing * head_w * 0.2, mouth_y)),
                         fx((head_c[0] + facing * head_w * 0.42, mouth_y)), colour, max(1, int(er)), cv2.LINE_AA,
                         _SHIFT)
            else:
                for sgn in (-1, 1):
                    ex = head_c[0] + sgn * identity.eye_spacing * head_w
                    cv2.circle(img, fx((ex, ey)), int(er * SUPERSAMPLE * _ONE), colour, -1, cv2.LINE_AA, _SHIFT)
                cv2.line(img, fx((head_c[0] - head_w * 0.14, mouth_y)), fx((head_c[0] + head_w * 0.14, mouth_y)),
                         colour, max(1, int(er)), cv2.LINE_AA, _SHIFT)

        P.detail(dark, face)
        if side:
            # nose bump in profile
            P.paint(L["head"], skin, [("poly", [(head_c[0] + facing * head_w * 0.45, head_c[1] - head_h * 0.02),
                                                 (head_c[0] + facing * head_w * 0.6, head_c[1] + head_h * 0.1),
                                                 (head_c[0] + facing * head_w * 0.45, head_c[1] + head_h * 0.14)])])

    if side:
        near_is_right = view == "right"
        far_leg, near_leg = (((l_hip, l_kn, l_an), (r_hip, r_kn, r_an)) if near_is_right
                             else ((r_hip, r_kn, r_an), (l_hip, l_kn, l_an)))
        far_arm, near_arm = (((l_sh, l_el, l_wr), (r_sh, r_el, r_wr)) if near_is_right
                             else ((r_sh, r_el, r_wr), (l_sh, l_el, l_wr)))
        draw_arm(*far_arm)
        draw_leg(*far_leg)
        draw_leg(*near_leg)
        draw_torso()
        draw_head()
        draw_arm(*near_arm)
    else:
        draw_leg(l_hip, l_kn, l_an)
        draw_leg(r_hip, r_kn, r_an)
        draw_torso()
        draw_arm(l_sh, l_el, l_wr)
        draw_arm(r_sh, r_el, r_wr)
        draw_head()

    image, parts = P.finish()

    # --- keypoints (person's left/right), visibility 2 visible, 1 occluded, 0 outside the image
    eye_y = head_c[1] - head_h * 0.03
    if side:
        eye = (head_c[0] + facing * head_w * 0.28, eye_y)
        nose = (head_c[0] + facing * head_w * 0.55, head_c[1] + head_h * 0.06)
        ear = (head_c[0] - facing * head_w * 0.05, head_c[1] + head_h * 0.02)
        near_right = view == "right"
        l_eye = r_eye = eye
        l_ear = r_ear = ear
        face_vis = {"nose": 2, "left_eye": 1 if near_right else 2, "right_eye": 2 if near_right else 1,
                    "left_ear": 1 if near_right else 2, "right_ear": 2 if near_right else 1}
    else:
        l_eye = (head_c[0] + lr * identity.eye_spacing * head_w, eye_y)
        r_eye = (head_c[0] - lr * identity.eye_spacing * head_w, eye_y)
        nose = (head_c[0], head_c[1] + head_h * 0.1)
        l_ear = (head_c[0] + lr * head_w * 0.5, head_c[1] + head_h * 0.02)
        r_ear = (head_c[0] - lr * head_w * 0.5, head_c[1] + head_h * 0.02)
        v = 2 if view == "front" else 1
        face_vis = {"nose": v, "left_eye": v, "right_eye": v, "left_ear": 2, "right_ear": 2}
    points = {
        "nose": nose, "left_eye": l_eye, "right_eye": r_eye, "left_ear": l_ear, "right_ear": r_ear,
        "left_shoulder": l_sh, "right_shoulder": r_sh, "left_elbow": l_el, "right_elbow": r_el,
        "left_wrist": l_wr, "right_wrist": r_wr, "left_hip": l_hip, "right_hip": r_hip,
        "left_knee": l_kn, "right_knee": r_kn, "left_ankle": l_an, "right_ankle": r_an,
    }
    far_side = ("left" if view == "right" else "right") if side else None
    keypoints = np.zeros((17, 3), np.float32)
    for i, name in enumerate(COCO17):
        x, y = points[name]
        vis = face_vis.get(name, 2)
        if far_side and name.startswith(far_side) and name not in face_vis:
            vis = 1
        if not (0 <= x < W and 0 <= y < H):
            vis = 0
        keypoints[i] = (x, y, vis)

    face_box = np.full(4, np.nan, np.float32)
    if view != "back":
        ys, xs = np.nonzero(parts == L["head"])
        if len(xs) >= 4:
            face_box[:] = (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1)
    return Rendered(image=image, parts=parts, keypoints=keypoints, face_box=face_box)
