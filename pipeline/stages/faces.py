"""Face backends: per image a found flag, box (x1 y1 x2 y2, original pixels), 5 landmarks in RetinaFace's
order (image-left eye, image-right eye, nose, image-left mouth corner, image-right mouth corner; NaN where a
detector gives none), a score, and a crop aligned by a similarity transform to the 5-point face template.

- `mediapipe` (faces): the BlazeFace detectors shipped in the mediapipe wheel, the offline default.
  Person crops are small and faces tiny, so it looks at the head region (from the keypoints store when
  there is one, else the top of the crop) upscaled to `head_size` pixels wide (`head_region: false`: the
  whole crop as it is, for comparison).
- `retinaface` (faces): retinaface-pytorch's ResNet-50 RetinaFace with its released weights (or the
  Pytorch_Retinaface `Resnet50_Final.pth` GPEN uses: the same key names under `module.`), thresholds as
  params (GPEN's: confidence 0.9, NMS 0.4), on the same head region, aligned with all 5 landmarks.
- `gpen` (faces_restored): GPEN-BFR-512 or -256 (pipeline.stages.gpen) on the aligned crop resized to the
  model's size, as GPEN's FaceGAN.process feeds it (bilinear resize, RGB in [-1, 1]).
- `groundtruth` (faces): the synthetic dataset's true face box (none where the face is turned away), eyes and
  nose from its true keypoints (no mouth corners: NaN), and a crop of the box squared and enlarged by
  `context` — not landmark-aligned; for the benchmark and for testing downstream logic.
- `bicubic` (faces_restored): the aligned crop upsampled with bicubic interpolation — no restoration,
  named for what it is.
"""
from __future__ import annotations

import cv2
import numpy as np

from .backends import AT_LEAST_1, DEVICE, UNIT, Backend, GroundTruthBackend, Item, OneOf, Range, register
from .store import decode_rgb, encode_rgb

GPEN_SIZES = (256, 512)  # GPEN-BFR-256 and -512: pipeline.stages.gpen.CONFIGS, named here without importing torch

# the 5-point template of ArcFace-style alignment, in a 112×112 crop (RetinaFace landmark order)
TEMPLATE_112 = np.array([[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366], [41.5493, 92.3655],
                         [70.7299, 92.2041]], np.float32)


def warp_crop(image: np.ndarray, matrix: np.ndarray, size: int) -> np.ndarray:
    """The size×size face crop under a 2×3 affine `matrix`, the image's border repeated where it reaches outside."""
    return cv2.warpAffine(image, matrix, (size, size), flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REPLICATE)


def align(image: np.ndarray, points: np.ndarray, template_points: np.ndarray, size: int) -> np.ndarray | None:
    """Warp `image` by the similarity transform that takes `points` (N×2) onto `template_points` (the
    same N points of the 112×112 template) scaled to size×size; None when no transform fits."""
    matrix, _ = cv2.estimateAffinePartial2D(points.reshape(-1, 1, 2),
                                            (template_points * size / 112.0).reshape(-1, 1, 2), method=cv2.LMEDS)
    if matrix is None:
        return None
    return warp_crop(image, matrix, size)


def search_region(shape, keypoints: dict | None, around_head: bool = True) -> tuple[int, int, int, int]:
    """x1, y1, x2, y2 where a detector looks: around the head (the face joints' extent enlarged, or the
    top 40% of the crop without keypoints), or the whole crop."""
    h, w = shape
    if not around_head:
        return 0, 0, w, h
    if keypoints is not None and keypoints["found"]:
        face = keypoints["keypoints"][:5]
        face = face[face[:, 2] >= 0.3, :2]
        if len(face):
            centre = face.mean(0)
            half = max(0.12 * h, 1.5 * float(np.ptp(face[:, 0])) if len(face) > 1 else 0.0)
            return (max(0, int(centre[0] - half)), max(0, int(centre[1] - half)),
                    min(w, int(centre[0] + half) + 1), min(h, int(centre[1] + half) + 1))
    return 0, 0, w, max(1, int(0.4 * h))


def not_found(size: int) -> dict:
    return {"found": np.bool_(False), "box": np.full(4, np.nan, np.float32),
            "landmarks": np.full((5, 2), np.nan, np.float32), "score": np.float32(0),
            "crop_png": encode_rgb(np.zeros((size, size, 3), np.uint8))}


@register
class MediaPipeFaces(Backend):
    stage, name = "faces", "mediapipe"
    # short-range model (0): in an upscaled head region the face fills the frame (measured: 80% found on
    # synthetic faces with it, 40% with the full-range model 1)
    defaults = {"min_confidence": 0.5, "crop_size": 224, "head_region": True, "head_size": 192, "model_selection": 0}
    limits = {"min_confidence": UNIT, "crop_size": AT_LEAST_1, "head_size": AT_LEAST_1,
              "model_selection": OneOf((0, 1))}
    input_stages = optional_inputs = ("keypoints",)

    def __init__(self, params=None, model_file=None):
        super().__init__(params, model_file)
        from mediapipe.python.solutions import face_detection

        self.detector = face_detection.FaceDetection(model_selection=self.params["model_selection"],
                                                     min_detection_confidence=self.params["min_confidence"])

    @property
    def version(self) -> str:
        import mediapipe

        return f"mediapipe {mediapipe.__version__} face detection (model {self.params['model_selection']})"

    def __call__(self, image: np.ndarray, item: Item) -> dict:
        size = self.params["crop_size"]
        x1, y1, x2, y2 = search_region(image.shape[:2], item.inputs.get("keypoints"), self.params["head_region"])
        region = image[y1:y2, x1:x2]
        scale = max(1.0, self.params["head_size"] / max(1, region.shape[1])) if self.params["head_region"] else 1.0
        big = cv2.resize(region, None, fx=scale, fy=scale, interpolation=cv2.INTER_CUBIC) if scale > 1 else region
        result = self.detector.process(np.ascontiguousarray(big))
        if not result.detections:
            return not_found(size)
        best = max(result.detections, key=lambda d: d.score[0])
        rh, rw = region.shape[:2]
        b = best.location_data.relative_bounding_box
        box = np.array([x1 + b.xmin * rw, y1 + b.ymin * rh,
                        x1 + (b.xmin + b.width) * rw, y1 + (b.ymin + b.height) * rh], np.float32)
        marks = np.array([(x1 + k.x * rw, y1 + k.y * rh) for k in best.location_data.relative_keypoints], np.float32)
        eyes = marks[[0, 1]][np.argsort(marks[[0, 1], 0])]  # image-left eye first, as RetinaFace orders them
        landmarks = np.full((5, 2), np.nan, np.float32)
        landmarks[0], landmarks[1], landmarks[2] = eyes[0], eyes[1], marks[2]
        # BlazeFace gives the mouth centre, not its corners: it aligns against the corners' midpoint
        points = np.vstack([landmarks[:3], marks[3:4]])
        template_points = np.vstack([TEMPLATE_112[:3], TEMPLATE_112[3:].mean(0, keepdims=True)])
        crop = align(image, points, template_points, size)
        if crop is None:
            return not_found(size)
        return {"found": np.bool_(True), "box": box, "landmarks": landmarks, "score": np.float32(best.score[0]),
                "crop_png": encode_rgb(crop)}

    def close(self) -> None:
        self.detector.close()


@register
class GroundTruthFaces(GroundTruthBackend):
    stage, name = "faces", "groundtruth"
    defaults = {"crop_size": 224, "context": 1.3}
    limits = {"crop_size": AT_LEAST_1, "context": Range(1, 4)}

    def __call__(self, image: np.ndarray, item: Item) -> dict:
        size = self.params["crop_size"]
        box = np.asarray(self.truth["face_box", item.path], np.float32)
        if np.isnan(box).any():
            return not_found(size)
        kp = np.asarray(self.truth["keypoints", item.path], np.float32)
        landmarks = np.full((5, 2), np.nan, np.float32)
        eyes = kp[[1, 2]][np.argsort(kp[[1, 2], 0])]  # image-left eye first, as RetinaFace orders them
        landmarks[:2] = np.where(eyes[:, 2:] > 0, eyes[:, :2], np.nan)
        landmarks[2] = kp[0, :2] if kp[0, 2] > 0 else np.nan
        centre, half = (box[:2] + box[2:]) / 2, self.params["context"] * float((box[2:] - box[:2]).max()) / 2
        scale = size / (2 * half)  # a square window around the box's centre
        matrix = np.array([[scale, 0, size / 2 - scale * centre[0]], [0, scale, size / 2 - scale * centre[1]]])
        crop = warp_crop(image, matrix, size)
        return {"found": np.bool_(True), "box": box, "landmarks": landmarks, "score": np.float32(1),
                "crop_png": encode_rgb(crop)}


@register
class RetinaFaceDetector(Backend):
    stage, name = "faces", "retinaface"
    defaults = {"confidence": 0.9, "nms": 0.4, "max_size": 320, "crop_size": 224, "head_region": True, "device": "auto"}
    limits = {"confidence": UNIT, "nms": UNIT, "max_size": AT_LEAST_1, "crop_size": AT_LEAST_1, "device": DEVICE}
    needs_file = True  # retinaface_resnet50_2020-07-20-f168fae3c.zip (or Resnet50_Final.pth)
    weights_source = "https://github.com/ternaus/retinaface/releases/download/0.01/retinaface_resnet50_2020-07-20-f168fae3c.zip"
    input_stages = optional_inputs = ("keypoints",)

    def __init__(self, params=None, model_file=None):
        super().__init__(params, model_file)
        from retinaface.predict_single import Model

        from .backends import load_state_strictly, load_weights, resolve_device

        what = "a ResNet-50 RetinaFace checkpoint"
        state = load_weights(self, self.model_file, what)  # a bad file fails before the network is built
        self.model = Model(max_size=self.params["max_size"], device=str(resolve_device(self.params["device"])))
        load_state_strictly(self.model.model, state, self.model_file, what, self.weights_hint())
        self.model.eval()

    @property
    def version(self) -> str:
        from importlib.metadata import version

        return f"retinaface-pytorch {version('retinaface-pytorch')} ResNet-50"

    def __call__(self, image: np.ndarray, item: Item) -> dict:
        return self.batch([image], [item])[0]

    def batch(self, images: list[np.ndarray], items: list[Item]) -> list[dict]:
        """The head regions of a batch through the network, one forward pass per resized shape.

        retinaface-pytorch's Model.predict_jsons takes one image: it resizes the region so its longest side is
        max_size (each region to its own shape), runs the network and decodes. Padding the regions to one shape would
        change what the network sees at their edges and so its detections; regions that resize to the same shape
        (head regions around the keypoints are square, so most of a batch) are stacked as they are, which gives what
        one at a time gives. The decoding is written here, step for step as predict_jsons does it (priors, box and
        landmark decoding, confidence threshold, NMS, boxes clipped away skipped, values rounded to 2 decimals),
        because the library decodes one image per call; tests compare it with predict_jsons."""
        import torch
        from retinaface.prior_box import priorbox
        from retinaface.utils import tensor_from_rgb_image

        regions = [search_region(image.shape[:2], item.inputs.get("keypoints"), self.params["head_region"])
                   for image, item in zip(images, items, strict=True)]
        resized = [self.model.transform(image=np.ascontiguousarray(image[y1:y2, x1:x2]))["image"]
                   for image, (x1, y1, x2, y2) in zip(images, regions, strict=True)]
        by_shape: dict[tuple[int, int], list[int]] = {}
        for i, r in enumerate(resized):
            by_shape.setdefault(r.shape[:2], []).append(i)
        best: list[dict | None] = [None] * len(images)
        for shape, members in by_shape.items():
            x = torch.stack([tensor_from_rgb_image(resized[i]) for i in members]).to(self.model.device)
            with torch.no_grad():
                loc, conf, land = self.model.model(x)
            # the anchors depend on the shape only: once per shape, not per image
            priors = priorbox(min_sizes=[[16, 32], [64, 128], [256, 512]], steps=[8, 16, 32], clip=False,
                              image_size=shape).to(loc.device)
            for k, i in enumerate(members):
                x1, y1, x2, y2 = regions[i]
                best[i] = self._best_face(loc[k], conf[k], land[k], priors, shape, (y2 - y1, x2 - x1))
        return [self._record(image, region, face) for image, region, face in zip(images, regions, best, strict=True)]

    def _best_face(self, loc, conf, land, priors, shape: tuple[int, int],
                   region_shape: tuple[int, int]) -> dict | None:
        """predict_jsons' first detection kept (the highest score after NMS whose clipped box is not empty), in the
        region's pixels: {bbox, score, landmarks}; None when there is none."""
        import torch
        from retinaface.box_utils import decode, decode_landm
        from torchvision.ops import nms

        h, w = shape
        # in place by integer sizes, as predict_jsons scales them: the decoded values stay float32
        boxes = decode(loc, priors, self.model.variance)
        boxes *= torch.tensor([w, h] * 2, device=loc.device)
        landmarks = decode_landm(land, priors, self.model.variance)
        landmarks *= torch.tensor([w, h] * 5, device=loc.device)
        scores = torch.softmax(conf, dim=-1)[:, 1]
        valid = torch.where(scores > self.params["confidence"])[0]
        boxes, landmarks, scores = boxes[valid], landmarks[valid], scores[valid]
        keep = nms(boxes, scores, self.params["nms"])
        region_h, region_w = region_shape
        scale = region_h / h
        for j in keep.tolist():
            box = boxes[j].cpu().numpy() * scale
            x_min = np.clip(box[0], 0, region_w - 1)
            y_min = np.clip(box[1], 0, region_h - 1)
            if x_min >= np.clip(box[2], x_min + 1, region_w - 1) or y_min >= np.clip(box[3], y_min + 1, region_h - 1):
                continue
            return {"bbox": np.round(box.astype(float), 2), "score": float(np.round(float(scores[j]), 2)),
                    "landmarks": np.round((landmarks[j].cpu().numpy() * scale).astype(float), 2).reshape(5, 2)}
        return None

    def _record(self, image: np.ndarray, region: tuple[int, int, int, int], face: dict | None) -> dict:
        size = self.params["crop_size"]
        if face is None:
            return not_found(size)
        offset = np.array(region[:2], np.float32)
        box = np.array(face["bbox"], np.float32) + np.tile(offset, 2)
        landmarks = np.array(face["landmarks"], np.float32) + offset
        crop = align(image, landmarks, TEMPLATE_112, size)
        if crop is None:
            return not_found(size)
        return {"found": np.bool_(True), "box": box, "landmarks": landmarks, "score": np.float32(face["score"]),
                "crop_png": encode_rgb(crop)}


@register
class BicubicRestoration(Backend):
    stage, name = "faces_restored", "bicubic"
    defaults = {"size": 512}
    limits = {"size": AT_LEAST_1}
    input_stages = ("faces",)

    @property
    def version(self) -> str:
        return f"opencv {cv2.__version__} bicubic upsampling (no restoration)"

    def __call__(self, image: np.ndarray, item: Item) -> dict:
        face = item.inputs["faces"]
        size = self.params["size"]
        lr = decode_rgb(face["crop_png"])
        restored = cv2.resize(lr, (size, size), interpolation=cv2.INTER_CUBIC) if face["found"] else \
            np.zeros((size, size, 3), np.uint8)
        return {"found": np.bool_(face["found"]), "lr_png": face["crop_png"], "restored_png": encode_rgb(restored)}


@register
class GPENRestoration(Backend):
    stage, name = "faces_restored", "gpen"
    defaults = {"size": 512, "device": "auto"}
    limits = {"size": OneOf(GPEN_SIZES), "device": DEVICE}
    needs_file = True  # GPEN-BFR-512.pth or GPEN-BFR-256.pth
    weights_source = "the GPEN README (yangxy/GPEN), GPEN-BFR-512"
    input_stages = ("faces",)

    def __init__(self, params=None, model_file=None):
        super().__init__(params, model_file)
        from .backends import load_state_strictly, load_weights, resolve_device
        from .gpen import CONFIGS, FullGenerator

        size = self.params["size"]
        what = f"a GPEN-BFR-{size} checkpoint"
        # the configured source is GPEN-BFR-512's
        hint = self.weights_hint() if size == 512 else f"Get GPEN-BFR-{size}.pth from the GPEN README (yangxy/GPEN)."
        state = load_weights(self, self.model_file, what, hint)  # a bad file fails before the network is built
        self.device = resolve_device(self.params["device"])
        model = load_state_strictly(FullGenerator(size, 512, 8, **CONFIGS[size]), state, self.model_file, what, hint)
        self.model = model.to(self.device).eval()

    @property
    def version(self) -> str:
        return f"ccreid GPEN-BFR-{self.params['size']} (plain PyTorch)"

    def __call__(self, image: np.ndarray, item: Item) -> dict:
        return self.batch([image], [item])[0]

    def batch(self, images: list[np.ndarray], items: list[Item]) -> list[dict]:
        """One generator pass for every found face of the batch (each resized to the model's size)."""
        import torch

        size = self.params["size"]
        faces = [item.inputs["faces"] for item in items]
        found = [i for i, face in enumerate(faces) if face["found"]]
        records = [{"found": np.bool_(False), "lr_png": face["crop_png"],
                    "restored_png": encode_rgb(np.zeros((size, size, 3), np.uint8))} for face in faces]
        if not found:
            return records
        lr = np.stack([cv2.resize(decode_rgb(faces[i]["crop_png"]), (size, size)) for i in found])
        x = torch.from_numpy(lr).permute(0, 3, 1, 2).float().div(255).sub(0.5).div(0.5).to(self.device)
        with torch.no_grad():
            out = self.model(x).float().clamp(-1, 1).mul(0.5).add(0.5).mul(255)
        restored = out.permute(0, 2, 3, 1).cpu().numpy().astype(np.uint8)
        for i, face_out in zip(found, restored, strict=True):
            records[i] = {"found": np.bool_(True), "lr_png": faces[i]["crop_png"], "restored_png": encode_rgb(face_out)}
        return records
