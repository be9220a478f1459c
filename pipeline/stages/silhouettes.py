"""Silhouette backends: one binary person mask per image, stored PNG-encoded (`mask_png`, 0/1).

- `grabcut`: OpenCV GrabCut as the 3DSL paper uses it (3DSL paper §3.2.3; docs/preprocessing.md#grabcut): a
  rectangle inset by `margin` from the crop's border (ReID images are person crops), optionally seeded with
  the keypoints stage's confident limbs as sure foreground; `iterations` GrabCut rounds.
- `sam`: segment-anything prompted with the image as the box and the keypoints stage's confident joints
  as positive points; official checkpoints (vit_b / vit_l / vit_h) from data/models/.
- `mediapipe`: the selfie/person segmentation model bundled in the mediapipe wheel, thresholded.
- `parsing`: the foreground (label > 0) of a human-parsing store (the parsing stage, issue 5).
- `groundtruth`: the synthetic dataset's part maps > 0, for testing downstream logic.
"""
from __future__ import annotations

import cv2
import numpy as np

from ..errors import InputError
from .backends import (
    AT_LEAST_1,
    DEVICE,
    FRACTION,
    UNIT,
    Backend,
    GroundTruthBackend,
    Item,
    OneOf,
    Range,
    load_state_strictly,
    load_weights,
    register,
    resolve_device,
)
from .keypoints import SKELETON
from .store import decode_png, encode_png


def record(mask: np.ndarray) -> dict:
    mask = (mask > 0).astype(np.uint8)
    return {"mask_png": encode_png(mask), "found": np.bool_(mask.any()),
            "area": np.float32(mask.mean() if mask.size else 0.0)}


def limb_seeds(shape: tuple[int, int], keypoints: np.ndarray, min_score: float, thickness: float) -> np.ndarray:
    """Sure-foreground pixels: lines along limbs whose two joints are confident, and the confident joints."""
    h, w = shape
    seeds = np.zeros((h, w), np.uint8)
    width = max(1, round(thickness * w))
    ok = keypoints[:, 2] >= min_score
    pts = np.round(keypoints[:, :2]).astype(np.int32)
    for a, b in SKELETON:
        if ok[a] and ok[b]:
            cv2.line(seeds, tuple(map(int, pts[a])), tuple(map(int, pts[b])), 1, width)
    for j in np.flatnonzero(ok):
        cv2.circle(seeds, tuple(map(int, pts[j])), width, 1, -1)
    return seeds


@register
class GrabCut(Backend):
    stage, name = "silhouettes", "grabcut"
    defaults = {"iterations": 5, "margin": 0.05, "seed_keypoints": True, "min_score": 0.5, "limb_thickness": 0.04}
    limits = {"iterations": AT_LEAST_1, "margin": Range(0, 0.5, high_open=True), "min_score": UNIT,
              "limb_thickness": FRACTION}
    input_stages = optional_inputs = ("keypoints",)

    @property
    def version(self) -> str:
        return f"opencv {cv2.__version__} grabCut, RNG seeded per image"

    def __call__(self, image: np.ndarray, item: Item) -> dict:
        h, w = image.shape[:2]
        mx, my = round(self.params["margin"] * w), round(self.params["margin"] * h)
        rect = (mx, my, max(1, w - 2 * mx), max(1, h - 2 * my))
        mask = np.full((h, w), cv2.GC_BGD, np.uint8)
        mask[rect[1]: rect[1] + rect[3], rect[0]: rect[0] + rect[2]] = cv2.GC_PR_FGD
        kp = item.inputs.get("keypoints")
        if self.params["seed_keypoints"] and kp is not None and kp["found"]:
            seeds = limb_seeds((h, w), kp["keypoints"], self.params["min_score"], self.params["limb_thickness"])
            mask[seeds > 0] = cv2.GC_FGD
        if not (np.isin(mask, (cv2.GC_BGD, cv2.GC_PR_BGD)).any() and np.isin(mask, (cv2.GC_FGD, cv2.GC_PR_FGD)).any()):
            # GrabCut models both classes from its initial mask and refuses one without either; a crop
            # too small for a background margin (or seeded all over) has nothing to separate: not found
            return record(np.zeros((h, w), np.uint8))
        bgd, fgd = np.zeros((1, 65), np.float64), np.zeros((1, 65), np.float64)
        bgr = np.ascontiguousarray(image[..., ::-1])
        # grabCut's GMMs start from k-means on OpenCV's global RNG, which every call advances: unseeded, an
        # image's mask would depend on the images computed before it in the process (the shard split, a resume)
        cv2.setRNGSeed(0)
        cv2.grabCut(bgr, mask, rect, bgd, fgd, self.params["iterations"], cv2.GC_INIT_WITH_MASK)
        return record(np.isin(mask, (cv2.GC_FGD, cv2.GC_PR_FGD)))


# the official checkpoints by model type (segment-anything's README); `tiny` is ccreid's, for tests
SAM_FILES = {"vit_b": "sam_vit_b_01ec64.pth", "vit_l": "sam_vit_l_0b3195.pth", "vit_h": "sam_vit_h_4b8939.pth"}
SAM_TYPES = (*SAM_FILES, "tiny")


def sam_architecture(model_type: str):
    """An untrained SAM of the given type: the official vit_b/l/h, or `tiny` — a small configuration
    ccreid defines for tests (no released checkpoint exists for it)."""
    import torch
    from segment_anything import sam_model_registry
    from segment_anything.modeling import ImageEncoderViT, MaskDecoder, PromptEncoder, Sam, TwoWayTransformer

    if model_type in ("vit_b", "vit_l", "vit_h"):
        return sam_model_registry[model_type](checkpoint=None)
    if model_type != "tiny":
        raise InputError(f"SAM model_type must be one of {', '.join(SAM_TYPES)}, got {model_type!r}")
    dim, size = 32, 256
    return Sam(
        image_encoder=ImageEncoderViT(img_size=size, patch_size=16, embed_dim=64, depth=2, num_heads=2, out_chans=dim,
                                      qkv_bias=True, use_rel_pos=True, window_size=4, global_attn_indexes=(1,),
                                      norm_layer=lambda d: torch.nn.LayerNorm(d, eps=1e-6)),
        prompt_encoder=PromptEncoder(embed_dim=dim, image_embedding_size=(size // 16, size // 16),
                                     input_image_size=(size, size), mask_in_chans=4),
        mask_decoder=MaskDecoder(num_multimask_outputs=3, transformer_dim=dim, iou_head_depth=2, iou_head_hidden_dim=32,
                                 transformer=TwoWayTransformer(depth=1, embedding_dim=dim, mlp_dim=64, num_heads=2)),
        pixel_mean=[123.675, 116.28, 103.53], pixel_std=[58.395, 57.12, 57.375]).eval()


def load_sam(model_type: str, path: str, device):
    if model_type in SAM_FILES:
        hint = (f"Get it from https://dl.fbaipublicfiles.com/segment_anything/{SAM_FILES[model_type]} "
                f"(segment-anything's README).")
    else:
        hint = "SAM 'tiny' is ccreid's test configuration: no checkpoint is released for it."
    state = load_weights(SegmentAnything, path, f"a SAM {model_type} checkpoint", hint)  # before building the network
    model = load_state_strictly(sam_architecture(model_type), state, path,
                                f"a SAM {model_type} checkpoint (is model_type right?)", hint)
    return model.to(device).eval()


@register
class SegmentAnything(Backend):
    stage, name = "silhouettes", "sam"
    defaults = {"model_type": "vit_b", "min_score": 0.5, "device": "auto"}
    limits = {"model_type": OneOf(SAM_TYPES), "min_score": UNIT, "device": DEVICE}
    needs_file = True  # sam_vit_b_01ec64.pth, sam_vit_l_0b3195.pth or sam_vit_h_4b8939.pth
    weights_source = "https://dl.fbaipublicfiles.com/segment_anything/sam_vit_b_01ec64.pth"
    input_stages = optional_inputs = ("keypoints",)

    def __init__(self, params=None, model_file=None):
        super().__init__(params, model_file)
        from segment_anything import SamPredictor

        self.predictor = SamPredictor(load_sam(self.params["model_type"], self.model_file,
                                               resolve_device(self.params["device"])))

    @property
    def version(self) -> str:
        from importlib.metadata import version

        return f"segment-anything {version('segment-anything')} {self.params['model_type']}"

    def __call__(self, image: np.ndarray, item: Item) -> dict:
        return self.batch([image], [item])[0]

    def batch(self, images: list[np.ndarray], items: list[Item]) -> list[dict]:
        """The image encoder — nearly all of SAM's cost — runs once for the batch (every image resized and padded
        to its 1024² input, as SamPredictor.set_image does alone); the prompt decoder then runs per image on its
        own embedding, through the predictor's set_torch_image state."""
        import torch

        predictor, sam = self.predictor, self.predictor.model
        inputs, sizes = [], []
        for image in images:
            resized = predictor.transform.apply_image(np.ascontiguousarray(image))
            x = torch.as_tensor(resized, device=predictor.device).permute(2, 0, 1).contiguous()[None]
            sizes.append((image.shape[:2], tuple(x.shape[-2:])))
            inputs.append(sam.preprocess(x))
        with torch.no_grad():
            embeddings = sam.image_encoder(torch.cat(inputs))
        records = []
        for item, (original, resized), embedding in zip(items, sizes, embeddings, strict=True):
            h, w = original
            predictor.reset_image()
            predictor.original_size, predictor.input_size = original, resized
            predictor.features, predictor.is_image_set = embedding[None], True
            kp = item.inputs.get("keypoints")
            points = labels = None
            if kp is not None and kp["found"]:
                confident = kp["keypoints"][kp["keypoints"][:, 2] >= self.params["min_score"], :2]
                if len(confident):
                    points, labels = confident.astype(np.float32), np.ones(len(confident), np.int64)
            masks, _, _ = predictor.predict(point_coords=points, point_labels=labels,
                                            box=np.array([0, 0, w - 1, h - 1], np.float32), multimask_output=False)
            records.append(record(masks[0]))
        return records


@register
class MediaPipeSegmentation(Backend):
    stage, name = "silhouettes", "mediapipe"
    defaults = {"model_selection": 0, "threshold": 0.5}
    limits = {"model_selection": OneOf((0, 1)), "threshold": UNIT}

    def __init__(self, params=None, model_file=None):
        super().__init__(params, model_file)
        from mediapipe.python.solutions import selfie_segmentation

        self.segmenter = selfie_segmentation.SelfieSegmentation(model_selection=self.params["model_selection"])

    @property
    def version(self) -> str:
        import mediapipe

        return f"mediapipe {mediapipe.__version__} selfie segmentation (model {self.params['model_selection']})"

    def __call__(self, image: np.ndarray, item: Item) -> dict:
        probability = self.segmenter.process(np.ascontiguousarray(image)).segmentation_mask
        return record(probability >= self.params["threshold"])

    def close(self) -> None:
        self.segmenter.close()


@register
class ParsingForeground(Backend):
    """Everything a human-parsing map labels as not background (label 0)."""

    stage, name = "silhouettes", "parsing"
    input_stages = ("parsing",)

    @property
    def version(self) -> str:
        return "ccreid parsing foreground"

    def __call__(self, image: np.ndarray, item: Item) -> dict:
        parsing = item.inputs.get("parsing")
        if parsing is None:
            raise InputError("silhouettes backend 'parsing' needs a parsing store (--input-store)")
        if not parsing["found"]:
            return record(np.zeros(image.shape[:2], np.uint8))
        return record(decode_png(parsing["labels_png"]) > 0)


@register
class GroundTruthSilhouettes(GroundTruthBackend):
    stage, name = "silhouettes", "groundtruth"

    def __call__(self, image: np.ndarray, item: Item) -> dict:
        return record(decode_png(self.truth["parts_png", item.path]) > 0)
