"""Keypoint backends: COCO-17 (AlphaPose's order, docs/preprocessing.md#coco-17), x, y in original pixels
and a score per joint.

- `mediapipe`: the BlazePose model bundled in the mediapipe wheel (33 landmarks mapped to COCO-17), the
  offline default. ReID crops are small, so the image is upscaled before detection (param `upscale`).
- `alphapose`: AlphaPose's FastPose with the official COCO checkpoint (data/models/). A ReID image is a
  person crop, so the whole image is the person box; box handling, the affine crop and heatmap decoding
  are the `alphapose` package's own functions (they work from its PyPI wheel), the network is ours
  (pipeline.stages.fastpose) because the wheel lacks it.
- `groundtruth`: the synthetic dataset's own keypoints, for testing downstream logic; never a detector.
"""
from __future__ import annotations

import cv2
import numpy as np

from .backends import DEVICE, UNIT, Backend, GroundTruthBackend, Item, Range, register

COCO17 = ("nose", "left_eye", "right_eye", "left_ear", "right_ear", "left_shoulder", "right_shoulder",
          "left_elbow", "right_elbow", "left_wrist", "right_wrist", "left_hip", "right_hip", "left_knee",
          "right_knee", "left_ankle", "right_ankle")
# BlazePose landmark index of each COCO-17 joint (mediapipe's PoseLandmark enum)
BLAZEPOSE_TO_COCO = (0, 2, 5, 7, 8, 11, 12, 13, 14, 15, 16, 23, 24, 25, 26, 27, 28)
# COCO limbs, used to draw skeletons and to seed silhouettes
SKELETON = ((5, 7), (7, 9), (6, 8), (8, 10), (5, 6), (5, 11), (6, 12), (11, 12), (11, 13), (13, 15), (12, 14),
            (14, 16), (0, 1), (0, 2), (1, 3), (2, 4))


def not_found() -> dict:
    return {"keypoints": np.zeros((17, 3), np.float32), "found": np.bool_(False)}


@register
class MediaPipePose(Backend):
    stage, name = "keypoints", "mediapipe"
    defaults = {"upscale": 2.0, "min_detection_confidence": 0.5}
    limits = {"upscale": Range(0, low_open=True), "min_detection_confidence": UNIT}

    def __init__(self, params=None, model_file=None):
        super().__init__(params, model_file)
        from mediapipe.python.solutions import pose

        # model_complexity 1 is the model inside the wheel (0 and 2 would be downloaded)
        self.detector = pose.Pose(static_image_mode=True, model_complexity=1, enable_segmentation=False,
                                  min_detection_confidence=self.params["min_detection_confidence"])

    @property
    def version(self) -> str:
        import mediapipe

        return f"mediapipe {mediapipe.__version__} BlazePose (complexity 1)"

    def __call__(self, image: np.ndarray, item: Item) -> dict:
        h, w = image.shape[:2]
        scale = self.params["upscale"]
        big = (cv2.resize(image, (round(w * scale), round(h * scale)), interpolation=cv2.INTER_CUBIC)
               if scale != 1 else image)
        result = self.detector.process(np.ascontiguousarray(big))
        if result.pose_landmarks is None:
            return not_found()
        marks = result.pose_landmarks.landmark
        # landmarks are normalised to the (upscaled) image, so w and h map them back to original pixels
        kp = np.array([(marks[i].x * w, marks[i].y * h, marks[i].visibility) for i in BLAZEPOSE_TO_COCO], np.float32)
        return {"keypoints": kp, "found": np.bool_(True)}

    def close(self) -> None:
        self.detector.close()


@register
class GroundTruthKeypoints(GroundTruthBackend):
    """The synthetic dataset's truth (score 1 where the joint is in the image, else 0)."""

    stage, name = "keypoints", "groundtruth"

    def __call__(self, image: np.ndarray, item: Item) -> dict:
        kp = np.array(self.truth["keypoints", item.path], np.float32)
        kp[:, 2] = kp[:, 2] > 0
        return {"keypoints": kp, "found": np.bool_(kp[:, 2].any())}


# COCO left/right joint pairs, for the flipped pass
COCO_FLIP_PAIRS = ((1, 2), (3, 4), (5, 6), (7, 8), (9, 10), (11, 12), (13, 14), (15, 16))


@register
class AlphaPose(Backend):
    stage, name = "keypoints", "alphapose"
    defaults = {"flip": False, "min_score": 0.1, "device": "auto"}
    limits = {"min_score": UNIT, "device": DEVICE}
    needs_file = True  # fast_res50_256x192.pth
    weights_source = ("https://drive.google.com/open?id=1kQhnMRURFiy7NsdS8EFL-8vtqEXOgECn "
                      "(AlphaPose docs/MODEL_ZOO.md, Fast Pose)")

    def __init__(self, params=None, model_file=None):
        super().__init__(params, model_file)
        from .backends import resolve_device
        from .fastpose import load_fastpose

        self.device = resolve_device(self.params["device"])
        self.model = load_fastpose(self.model_file, self.device)

    @property
    def version(self) -> str:
        from importlib.metadata import version

        return f"ccreid FastPose (SE-ResNet-50 + DUC, 256x192); alphapose {version('alphapose')} decoding"

    def __call__(self, image: np.ndarray, item: Item) -> dict:
        return self.batch([image], [item])[0]

    def batch(self, images: list[np.ndarray], items: list[Item]) -> list[dict]:
        """One network pass (two with flip) for the batch: every crop warped to the 256×192 input."""
        import torch
        from alphapose.utils.bbox import _box_to_center_scale, _center_scale_to_box
        from alphapose.utils.transforms import flip_heatmap, get_affine_transform, heatmap_to_coord_simple

        from .fastpose import INPUT_SIZE, PIXEL_MEAN

        inp_h, inp_w = INPUT_SIZE
        boxes, crops = [], []
        for image in images:
            h, w = image.shape[:2]
            # AlphaPose's test transform: the box widened to the input aspect ratio and enlarged ×1.25
            center, scale = _box_to_center_scale(0, 0, w, h, inp_w / inp_h)
            crops.append(torch.from_numpy(cv2.warpAffine(image, get_affine_transform(center, scale, 0, [inp_w, inp_h]),
                                                         (inp_w, inp_h), flags=cv2.INTER_LINEAR)))
            boxes.append(_center_scale_to_box(center, scale))
        x = torch.stack(crops).permute(0, 3, 1, 2).float().div(255) - torch.tensor(PIXEL_MEAN)[:, None, None]
        x = x.to(self.device)
        with torch.no_grad():
            heatmaps = self.model(x).cpu().numpy()
            flipped = None
            if self.params["flip"]:
                flipped = flip_heatmap(self.model(torch.flip(x, dims=[3])), COCO_FLIP_PAIRS, shift=True).cpu().numpy()
        records = []
        for j, box in enumerate(boxes):
            coords, scores = heatmap_to_coord_simple(heatmaps[j], box, None if flipped is None else flipped[j])
            kp = np.concatenate([coords, scores], axis=1).astype(np.float32)
            records.append({"keypoints": kp, "found": np.bool_(kp[:, 2].mean() >= self.params["min_score"])})
        return records
