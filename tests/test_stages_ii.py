"""Preprocessing II: geometry parsing, cloth masks, faces, restored faces, the contact sheet."""
import json

import cv2
import numpy as np
import pytest

from pipeline.imagepack import ImagePack
from pipeline.stages.__main__ import run
from pipeline.stages.backends import Item, build
from pipeline.stages.cloth import MERGE7, deskpro_target
from pipeline.stages.parsing import GEOMETRY_LABELS, nearest_part
from pipeline.stages.quality import box_iou, quality
from pipeline.stages.store import (
    Store,
    decode_png,
    decode_rgb,
    encode_png,
    encode_rgb,
    merge,
    shard_attrs,
    write_shard,
)

from .test_stages import grace_hopper, grace_hopper_pose, gt_file


def build_store(tmp_path, tiny, stage, backend, params=None, inputs=(), model_file=None):
    images = str(tiny["images"])
    pack = ImagePack(images)
    shard = tmp_path / f"{stage}-{backend}.shard.h5"
    run(stage, backend, images, 0, 1, str(shard), params or {}, model_file, tuple(str(i) for i in inputs))
    out = tmp_path / f"{stage}-{backend}.h5"
    merge([shard], out, len(pack), pack.manifest_sha256)
    return out


@pytest.fixture(scope="module")
def truth_stores(tiny_dataset, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("truth")
    kp = build_store(tmp, tiny_dataset, "keypoints", "groundtruth", model_file=gt_file(tiny_dataset))
    sil = build_store(tmp, tiny_dataset, "silhouettes", "groundtruth", model_file=gt_file(tiny_dataset))
    parsing = build_store(tmp, tiny_dataset, "parsing", "keypoint-geometry", inputs=(kp, sil))
    return {"keypoints": kp, "silhouettes": sil, "parsing": parsing, "dir": tmp}


def test_nearest_part_assigns_each_mask_pixel_the_closest_seed():
    seeds = np.zeros((5, 7), np.uint8)
    seeds[2, 0], seeds[2, 6] = 1, 2
    mask = np.ones((5, 7), bool)
    mask[:, 3] = False
    labels = nearest_part(mask, seeds)
    assert (labels[:, :3] == 1).all() and (labels[:, 4:] == 2).all() and (labels[:, 3] == 0).all()


def test_geometry_parsing_matches_the_synthetic_parts(tiny_dataset, truth_stores):
    with Store(truth_stores["parsing"]) as store:
        assert json.loads(store.attrs["labels"]) == list(GEOMETRY_LABELS)
        assert store.attrs["backend_version"].endswith("(not a learned parser)")
    q = quality(str(truth_stores["parsing"]), str(tiny_dataset["images"]), gt_file(tiny_dataset))
    # from true keypoints and silhouettes: background is exact, the coarse parts mostly right
    assert q["found_rate"] == 1.0 and q["iou_per_class"]["background"] == 1.0
    assert q["miou"] > 0.6 and min(q["iou_per_class"][c] for c in ("head", "upper", "lower")) > 0.4


def test_geometry_parsing_reports_not_found_without_keypoints():
    backend = build("parsing", "keypoint-geometry")
    none = {"keypoints": np.zeros((17, 3), np.float32), "found": np.bool_(False)}
    sil = {"mask_png": encode_png(np.ones((8, 4), np.uint8)), "found": np.bool_(True)}
    out = backend(np.zeros((8, 4, 3), np.uint8), Item(0, "x", {"keypoints": none, "silhouettes": sil}))
    assert not out["found"] and not decode_png(out["labels_png"]).any()


ATR = ["background", "hat", "hair", "sunglasses", "upper-clothes", "skirt", "pants", "dress", "belt", "left-shoe",
       "right-shoe", "face", "left-leg", "right-leg", "left-arm", "right-arm", "bag", "scarf"]
ATR_SCHEME = {"cloth": ["upper-clothes", "skirt", "pants", "dress", "belt", "bag", "scarf"],
              "erase": ["upper-clothes", "skirt", "pants", "dress"],
              "merge7": {"head": ["hat", "hair", "sunglasses", "face"], "tops": ["upper-clothes", "scarf", "bag"],
                         "bottoms": ["pants", "skirt", "belt"], "dress": ["dress"], "arms": ["left-arm", "right-arm"],
                         "lower_limbs": ["left-leg", "right-leg", "left-shoe", "right-shoe"]}}


def test_cloth_scheme_on_an_atr_label_map():
    backend = build("cloth_masks", "parsing", {"label_set": "atr", **ATR_SCHEME})
    backend.bind({"parsing": {"labels": json.dumps(ATR)}})
    labels = np.array([[0, 2, 11, 4], [14, 4, 4, 15], [8, 6, 6, 16], [12, 6, 13, 9]], np.uint8)
    out = backend(np.zeros((4, 4, 3), np.uint8), Item(0, "x", {"parsing": {"labels_png": encode_png(labels),
                                                                            "found": np.bool_(True)}}))
    cloth = decode_png(out["cloth_png"])
    np.testing.assert_array_equal(cloth, np.isin(labels, [4, 5, 6, 7, 8, 16, 17]))
    np.testing.assert_array_equal(decode_png(out["erase_png"]), np.isin(labels, [4, 5, 6, 7]))
    np.testing.assert_array_equal(decode_png(out["body_png"]), labels > 0)
    merged = decode_png(out["merged_png"])
    assert merged[0, 1] == MERGE7.index("head") and merged[2, 0] == MERGE7.index("bottoms")
    assert merged[3, 3] == MERGE7.index("lower_limbs") and merged[1, 0] == MERGE7.index("arms") and merged[0, 0] == 0
    target = deskpro_target(cloth)
    assert set(np.unique(target)) == {np.float32(0.1), np.float32(1.0)} and target[1, 1] == np.float32(0.1)


def test_cloth_scheme_errors_name_the_labels():
    backend = build("cloth_masks", "parsing",
                    {"label_set": "atr", **{**ATR_SCHEME, "cloth": ["upper-clothes", "coat"]}})
    with pytest.raises(ValueError, match=r"names \['coat'\]"):
        backend.bind({"parsing": {"labels": json.dumps(ATR)}})
    merge7 = {k: v for k, v in ATR_SCHEME["merge7"].items() if k != "arms"}
    backend = build("cloth_masks", "parsing", {"label_set": "atr", **{**ATR_SCHEME, "merge7": merge7}})
    with pytest.raises(ValueError, match=r"labels \['left-arm', 'right-arm'\] unassigned"):
        backend.bind({"parsing": {"labels": json.dumps(ATR)}})


def test_configured_geometry_scheme_runs_on_a_geometry_store(tiny_dataset, truth_stores, tmp_path):
    import yaml

    from .conftest import REPO

    scheme = yaml.safe_load((REPO / "config/config.yaml").read_text())["cloth_schemes"]["keypoint-geometry"]
    store = build_store(tmp_path, tiny_dataset, "cloth_masks", "parsing", {"label_set": "keypoint-geometry", **scheme},
                        inputs=(truth_stores["parsing"],))
    with Store(store) as s, Store(truth_stores["parsing"]) as parsing:
        i = int(np.flatnonzero(s["found"][:])[0])
        labels = parsing.png("labels_png", i)
        np.testing.assert_array_equal(s.png("cloth_png", i), np.isin(labels, [2, 4]))  # torso, legs


def test_mediapipe_faces_find_a_real_face_and_align_it():
    image = grace_hopper()
    h, w = image.shape[:2]
    kp = grace_hopper_pose(image)
    faces = build("faces", "mediapipe")
    out = faces(image, Item(0, "grace_hopper.jpg", {"keypoints": kp}))  # the head region from the pose
    faces.close()
    assert out["found"] and out["score"] > 0.5
    x1, y1, x2, y2 = out["box"]
    nose = kp["keypoints"][0]
    assert x1 < nose[0] < x2 and y1 < nose[1] < y2 and (x2 - x1) < 0.6 * w and y2 < 0.7 * h
    left_eye, right_eye, nose = out["landmarks"][:3]
    assert left_eye[0] < nose[0] < right_eye[0] and x1 < left_eye[0] and right_eye[0] < x2
    assert np.isnan(out["landmarks"][3:]).all()  # BlazeFace gives no mouth corners
    crop = decode_rgb(out["crop_png"])
    assert crop.shape == (224, 224, 3)
    # aligned: the crop's eye row is dark-ish features at the template's height, the crop is not blank
    assert crop.std() > 10


def test_face_quality_metric_and_detector_on_synthetic_faces(tiny_dataset, truth_stores, tmp_path):
    import h5py

    images = str(tiny_dataset["images"])
    pack = ImagePack(images)
    with h5py.File(gt_file(tiny_dataset)) as gt:
        row = {p.decode(): i for i, p in enumerate(gt["path"][:])}
        boxes = gt["face_box"][:][[row[p] for p in pack.paths]]
    # a store holding the true boxes scores perfectly; the metric can fail: shift them and IoU drops
    visible = ~np.isnan(boxes).any(1)
    records = [{"found": np.bool_(v), "box": b.astype(np.float32)} for v, b in zip(visible, boxes, strict=True)]
    write_shard(tmp_path / "f.shard", np.arange(len(pack)), records,
                shard_attrs("faces", "truth", pack.manifest_sha256))
    merge([tmp_path / "f.shard"], tmp_path / "f.h5", len(pack), pack.manifest_sha256)
    q = quality(str(tmp_path / "f.h5"), images, gt_file(tiny_dataset))
    assert q["found_rate"] == 1.0 and q["mean_box_iou"] == 1.0 and q["false_detection_rate_back_views"] == 0.0
    assert box_iou(np.array([0, 0, 10, 10.0]), np.array([5, 0, 15, 10.0])) == pytest.approx(1 / 3)
    detected = build_store(tmp_path, tiny_dataset, "faces", "mediapipe", inputs=(truth_stores["keypoints"],))
    q = quality(str(detected), images, gt_file(tiny_dataset))
    # measured 58% found, box IoU 0.63 on these 96–128 px crops: a broken detector or box mapping falls below
    assert q["found_rate"] > 0.4 and q["mean_box_iou"] > 0.5


def test_bicubic_restoration_and_missing_faces():
    face = encode_rgb(np.full((8, 8, 3), 100, np.uint8))
    backend = build("faces_restored", "bicubic", {"size": 32})
    out = backend(np.zeros((4, 4, 3), np.uint8), Item(0, "x", {"faces": {"crop_png": face, "found": np.bool_(True)}}))
    assert out["found"] and decode_rgb(out["restored_png"]).shape == (32, 32, 3)
    assert (decode_rgb(out["restored_png"]) == 100).all() and np.array_equal(out["lr_png"], face)
    missing = backend(np.zeros((4, 4, 3), np.uint8),
                      Item(0, "x", {"faces": {"crop_png": face, "found": np.bool_(False)}}))
    assert not missing["found"] and not decode_rgb(missing["restored_png"]).any()  # consumers see found=false


def test_contact_sheet_shows_every_store(tiny_dataset, truth_stores, tmp_path):
    from pipeline.stages.__main__ import main
    from pipeline.stages.sheet import GAP, LINE_H, PAD, TILE_H, column_labels, render, text_strip

    stores = [str(truth_stores[s]) for s in ("keypoints", "silhouettes", "parsing")]
    assert main(["contact-sheet", "--images", str(tiny_dataset["images"]), "--out", str(tmp_path / "sheet.png"),
                 "--count", "3", *stores]) == 0
    sheet = cv2.imread(str(tmp_path / "sheet.png"))
    heading, path_label = 2 * LINE_H + PAD, LINE_H + PAD
    assert sheet.shape[0] == heading + 3 * (path_label + TILE_H + GAP)
    # one row drawn directly: a heading per column (stage, backend), the image's path above its tiles (image,
    # silhouette, parsing), and the silhouette tile is the stored mask, centred in its column
    pack = ImagePack(tiny_dataset["images"])
    h, w = pack.image(0).shape[:2]
    tile_w = round(w * TILE_H / h)
    with Store(truth_stores["keypoints"]) as kp, Store(truth_stores["silhouettes"]) as sil, \
            Store(truth_stores["parsing"]) as par:
        labels = column_labels({"keypoints": kp, "silhouettes": sil, "parsing": par})
        assert labels == [["image", "keypoints/groundtruth"], ["silhouettes", "groundtruth"],
                          ["parsing", "keypoint-geometry"]]
        row = render(pack, {"silhouettes": sil, "parsing": par}, [0])
        mask = cv2.resize(sil.png("mask_png", 0), (tile_w, TILE_H), interpolation=cv2.INTER_NEAREST)
        columns = column_labels({"silhouettes": sil, "parsing": par})
    assert columns[1:] == [["silhouettes", "groundtruth"], ["parsing", "keypoint-geometry"]]
    widths = [max(tile_w, max(cv2.getTextSize(t, cv2.FONT_HERSHEY_SIMPLEX, 0.5, 1)[0][0] + 2 * PAD for t in label))
              for label in columns]
    assert row.shape == (heading + path_label + TILE_H + GAP, sum(widths) + GAP * 3, 3)
    x = 0
    for label, width in zip(columns, widths, strict=True):  # each heading is drawn over its own column
        np.testing.assert_array_equal(row[:heading, x: x + width], text_strip(label, width, centre=True))
        assert (row[:heading, x: x + width] < 128).any()
        x += width + GAP
    path_strip = row[heading: heading + path_label]
    np.testing.assert_array_equal(path_strip, text_strip([pack.paths[0]], row.shape[1]))
    assert (path_strip < 128).any()
    top = heading + path_label
    left = widths[0] + GAP + (widths[1] - tile_w) // 2
    np.testing.assert_array_equal(row[top: top + TILE_H, left: left + tile_w, 0], (mask > 0) * 255)


def test_a_long_path_keeps_its_end_on_the_contact_sheet():
    from pipeline.stages.sheet import fit, text_width

    path = "prcc/rgb/test/A/" + "x" * 200 + "/cropped_rgb001.jpg"
    shown = fit(path, 300)
    assert shown.startswith("...") and shown.endswith("cropped_rgb001.jpg") and text_width(shown) <= 300
    assert fit("a/b.jpg", 300) == "a/b.jpg"


@pytest.mark.slow
def test_retinaface_loads_its_released_key_layout_and_detects_through_the_same_path(tmp_path):
    """retinaface-pytorch's own network, random weights saved three ways the real files come: its release
    (a zip holding the state dict), Pytorch_Retinaface's DataParallel `module.` keys, and a plain dict."""
    import zipfile

    import torch
    from retinaface.predict_single import Model

    torch.manual_seed(0)
    state = Model(max_size=320).model.state_dict()
    torch.save({"module." + k: v for k, v in state.items()}, tmp_path / "Resnet50_Final.pth")
    torch.save(state, tmp_path / "retinaface.pth")
    with zipfile.ZipFile(tmp_path / "retinaface_resnet50.zip", "w") as z:
        z.write(tmp_path / "retinaface.pth", "retinaface_resnet50_2020-07-20.pth")
    image = np.random.default_rng(0).integers(0, 255, (200, 90, 3), dtype=np.uint8)
    outputs = []
    for name in ("Resnet50_Final.pth", "retinaface.pth", "retinaface_resnet50.zip"):
        # a threshold near 0 makes the random network's best anchor a detection, so the record is complete
        backend = build("faces", "retinaface", {"confidence": 0.01, "device": "cpu"}, str(tmp_path / name))
        outputs.append(backend(image, Item(0, "x.jpg")))
    assert all(o["found"] for o in outputs)
    assert not np.isnan(outputs[0]["landmarks"]).any() and decode_rgb(outputs[0]["crop_png"]).shape == (224, 224, 3)
    np.testing.assert_allclose(outputs[0]["box"], outputs[2]["box"])  # the same weights, whichever packaging
    torch.save({k: v for k, v in state.items() if not k.startswith("LandmarkHead")}, tmp_path / "nolandmarks.pth")
    with pytest.raises(ValueError, match="not a ResNet-50 RetinaFace checkpoint: missing \\['LandmarkHead"):
        build("faces", "retinaface", {"device": "cpu"}, str(tmp_path / "nolandmarks.pth"))


@pytest.mark.slow
def test_retinaface_batches_regions_of_one_shape_and_equals_the_librarys_one_image_path(tmp_path):
    """A batch runs the network once per resized region shape, and every record equals what retinaface-pytorch's
    own predict_jsons finds on that image's region (the best face: box, landmarks, score, and so the aligned crop)."""
    import torch

    from pipeline.stages.faces import search_region

    torch.manual_seed(0)
    from retinaface.predict_single import Model

    torch.save(Model(max_size=320).model.state_dict(), tmp_path / "retinaface.pth")
    backend = build("faces", "retinaface", {"confidence": 0.5, "device": "cpu"}, str(tmp_path / "retinaface.pth"))
    rng = np.random.default_rng(3)
    images, items = [], []
    for j in range(7):
        image = cv2.GaussianBlur(rng.integers(0, 255, (160, 70, 3), dtype=np.uint8), (0, 0), 1 + j % 3)
        kp = np.zeros((17, 3), np.float32)
        kp[:5] = [[35, 40, 0.9], [31, 37, 0.9], [39, 37, 0.9], [27, 39, 0.9], [43, 39, 0.9]]
        # four with face keypoints (square head regions, one shape), three without (the crop's top 40 %)
        inputs = {"keypoints": {"found": np.bool_(True), "keypoints": kp}} if j < 4 else {}
        images.append(image)
        items.append(Item(j, f"x{j}.jpg", inputs))
    calls = []
    hook = backend.model.model.register_forward_hook(lambda m, args, out: calls.append(args[0].shape[0]))
    batched = backend.batch(images, items)
    hook.remove()
    assert sorted(calls) == [3, 4]  # two shapes, one pass each
    found = 0
    for image, item, got in zip(images, items, batched, strict=True):
        x1, y1, x2, y2 = search_region(image.shape[:2], item.inputs.get("keypoints"), True)
        faces = [f for f in backend.model.predict_jsons(np.ascontiguousarray(image[y1:y2, x1:x2]), 0.5, 0.4)
                 if f["bbox"]]
        assert bool(got["found"]) == bool(faces)
        if faces:
            found += 1
            best = max(faces, key=lambda f: f["score"])
            np.testing.assert_allclose(got["box"], np.array(best["bbox"]) + [x1, y1, x1, y1], atol=0.011)
            np.testing.assert_allclose(got["landmarks"], np.array(best["landmarks"]) + [x1, y1], atol=0.011)
            assert abs(float(got["score"]) - best["score"]) <= 0.011
    assert found >= 3  # the comparison saw detections, not only misses
    one = backend(images[0], items[0])
    np.testing.assert_array_equal(one["box"], batched[0]["box"])


def official_schp_keys(n: int) -> dict[str, tuple[int, ...]]:
    """Key names and shapes of SCHP's checkpoints, written from the official networks/AugmentCE2P.py (not
    from ccreid's module): InPlaceABN holds weight, bias, running_mean, running_var — nothing else."""
    keys: dict[str, tuple[int, ...]] = {}

    def abn(prefix, c):
        keys.update({f"{prefix}.{k}": (c,) for k in ("weight", "bias", "running_mean", "running_var")})

    for i, (cin, cout) in enumerate(((3, 64), (64, 64), (64, 128)), start=1):
        keys[f"conv{i}.weight"] = (cout, cin, 3, 3)
        abn(f"bn{i}", cout)
    inplanes = 128
    for layer, (planes, blocks) in enumerate(((64, 3), (128, 4), (256, 23), (512, 3)), start=1):
        for b in range(blocks):
            p = f"layer{layer}.{b}"
            keys[f"{p}.conv1.weight"] = (planes, inplanes, 1, 1)
            keys[f"{p}.conv2.weight"] = (planes, planes, 3, 3)
            keys[f"{p}.conv3.weight"] = (planes * 4, planes, 1, 1)
            for j, c in ((1, planes), (2, planes), (3, planes * 4)):
                abn(f"{p}.bn{j}", c)
            if b == 0:
                keys[f"{p}.downsample.0.weight"] = (planes * 4, inplanes, 1, 1)
                abn(f"{p}.downsample.1", planes * 4)
            inplanes = planes * 4
    for i in range(4):
        keys[f"context_encoding.stages.{i}.1.weight"] = (512, 2048, 1, 1)
        abn(f"context_encoding.stages.{i}.2", 512)
    keys["context_encoding.bottleneck.0.weight"] = (512, 4096, 3, 3)
    abn("context_encoding.bottleneck.1", 512)
    for i, c in ((1, 256), (2, 512), (3, 1024)):
        keys[f"edge.conv{i}.0.weight"] = (256, c, 1, 1)
        abn(f"edge.conv{i}.1", 256)
    keys.update({"edge.conv4.weight": (2, 256, 3, 3), "edge.conv4.bias": (2,), "edge.conv5.weight": (2, 6, 1, 1),
                 "edge.conv5.bias": (2,), "decoder.conv1.0.weight": (256, 512, 1, 1),
                 "decoder.conv2.0.weight": (48, 256, 1, 1),
                 "decoder.conv3.0.weight": (256, 304, 1, 1), "decoder.conv3.2.weight": (256, 256, 1, 1),
                 "decoder.conv4.weight": (n, 256, 1, 1), "decoder.conv4.bias": (n,),
                 "fushion.0.weight": (256, 1024, 1, 1),
                 "fushion.3.weight": (n, 256, 1, 1), "fushion.3.bias": (n,)})
    for prefix, c in (("decoder.conv1.1", 256), ("decoder.conv2.1", 48), ("decoder.conv3.1", 256),
                      ("decoder.conv3.3", 256), ("fushion.1", 256)):
        abn(prefix, c)
    return keys


@pytest.mark.slow
def test_schp_loads_official_checkpoint_layout_and_parses(tmp_path):
    import torch

    from pipeline.stages.schp import LABEL_SETS, SCHPNet

    keys = official_schp_keys(18)
    assert {k: tuple(v.shape) for k, v in SCHPNet(18).state_dict().items()} == keys
    g = torch.Generator().manual_seed(0)
    state = {"module." + k: torch.randn(s, generator=g) * 0.05 for k, s in keys.items()}
    for k in state:
        if k.endswith("running_var"):
            state[k] = state[k].abs() + 1
    torch.save({"state_dict": state}, tmp_path / "exp-schp-201908301523-atr.pth")  # SCHP's own file layout
    backend = build("parsing", "schp-atr", {"input_size": 96, "device": "cpu"},
                    str(tmp_path / "exp-schp-201908301523-atr.pth"))
    assert json.loads(backend.store_attrs()["labels"]) == list(LABEL_SETS["atr"])
    out = backend(np.random.default_rng(0).integers(0, 255, (150, 60, 3), dtype=np.uint8), Item(0, "x.jpg"))
    labels = decode_png(out["labels_png"])
    assert labels.shape == (150, 60) and labels.max() < 18
    # a batch of images of several sizes in one pass parses each as it alone would (float noise may move an argmax
    # where two classes tie to the last bits: allow one pixel in a thousand)
    rng = np.random.default_rng(1)
    images = [rng.integers(0, 255, shape, dtype=np.uint8) for shape in ((150, 60, 3), (90, 40, 3), (128, 64, 3))]
    items = [Item(j, f"x{j}.jpg") for j in range(len(images))]
    for got, image, item in zip(backend.batch(images, items), images, items, strict=True):
        one = decode_png(backend(image, item)["labels_png"])
        assert decode_png(got["labels_png"]).shape == image.shape[:2]
        assert np.mean(decode_png(got["labels_png"]) == one) >= 0.999
    with pytest.raises(ValueError, match="not an SCHP ResNet-101 lip checkpoint \\(20 classes\\).*wrong shapes"):
        build("parsing", "schp-lip", {"device": "cpu"}, str(tmp_path / "exp-schp-201908301523-atr.pth"))


def test_schp_input_warp_is_schps_affine():
    """SCHP maps the box centre to ((s-1)/2, (s-1)/2) and the centre's upward half-side to the top edge."""
    from pipeline.stages.schp import whole_image_transform

    m = whole_image_transform(61, 121, 473)  # box 0..60 × 0..120: side 120, centre (30, 60)
    apply = lambda x, y: m @ np.array([x, y, 1.0])  # noqa: E731
    np.testing.assert_allclose(apply(30, 60), [236, 236], atol=1e-4)
    np.testing.assert_allclose(apply(30, 0), [236, 0], atol=1e-4)
    np.testing.assert_allclose(apply(0, 120), [236 - 118, 472], atol=1e-4)


@pytest.mark.parametrize("parser", ["schp-atr", "schp-lip", "schp-pascal", "keypoint-geometry", "groundtruth"])
def test_configured_cloth_schemes_fit_their_label_sets(parser):
    import yaml

    from pipeline.stages.parsing import GEOMETRY_LABELS
    from pipeline.stages.schp import LABEL_SETS
    from pipeline.synthetic import PART_LABELS

    from .conftest import REPO

    scheme = yaml.safe_load((REPO / "config/config.yaml").read_text())["cloth_schemes"][parser]
    labels = {"keypoint-geometry": GEOMETRY_LABELS, "groundtruth": sorted(PART_LABELS, key=PART_LABELS.get)}.get(
        parser) or LABEL_SETS[parser.removeprefix("schp-")]
    backend = build("cloth_masks", "parsing", {"label_set": parser, **scheme})
    backend.bind({"parsing": {"labels": json.dumps(labels)}})  # every name known, every foreground label placed


def official_gpen_keys(size: int, channel_multiplier: int, narrow: float) -> dict[str, tuple[int, ...]]:
    """GPEN's FullGenerator state dict, written from the official face_model/gpen_model.py (not from
    ccreid's module): persistent 4×4 blur kernels included, noise concatenated (hence 2× channels)."""
    base = {4: 512, 8: 512, 16: 512, 32: 512, 64: 256 * channel_multiplier, 128: 128 * channel_multiplier,
            256: 64 * channel_multiplier, 512: 32 * channel_multiplier}
    ch = {r: int(c * narrow) for r, c in base.items()}
    keys: dict[str, tuple[int, ...]] = {}
    for i in range(1, 9):
        keys[f"generator.style.{i}.weight"], keys[f"generator.style.{i}.bias"] = (512, 512), (512,)
    keys["generator.input.input"] = (1, ch[4], 4, 4)

    def styled(prefix, cin, cout, up):
        keys[f"{prefix}.conv.weight"] = (1, cout, cin, 3, 3)
        keys[f"{prefix}.conv.modulation.weight"], keys[f"{prefix}.conv.modulation.bias"] = (cin, 512), (cin,)
        if up:
            keys[f"{prefix}.conv.blur.kernel"] = (4, 4)
        keys[f"{prefix}.noise.weight"], keys[f"{prefix}.activate.bias"] = (1,), (2 * cout,)

    def to_rgb(prefix, cin, up):
        if up:
            keys[f"{prefix}.upsample.kernel"] = (4, 4)
        keys[f"{prefix}.conv.weight"] = (1, 3, cin, 1, 1)
        keys[f"{prefix}.conv.modulation.weight"], keys[f"{prefix}.conv.modulation.bias"] = (cin, 512), (cin,)
        keys[f"{prefix}.bias"] = (1, 3, 1, 1)

    styled("generator.conv1", ch[4], ch[4], False)
    to_rgb("generator.to_rgb1", 2 * ch[4], False)
    cin, log_size = ch[4], int(np.log2(size))
    for j, i in enumerate(range(3, log_size + 1)):
        cout = ch[2 ** i]
        styled(f"generator.convs.{2 * j}", 2 * cin, cout, True)
        styled(f"generator.convs.{2 * j + 1}", 2 * cout, cout, False)
        to_rgb(f"generator.to_rgbs.{j}", 2 * cout, True)
        cin = cout
    keys["ecd0.0.0.weight"], keys["ecd0.0.1.bias"] = (ch[size], 3, 1, 1), (ch[size],)
    cin = ch[size]
    for n, i in enumerate(range(log_size, 2, -1), start=1):
        cout = ch[2 ** (i - 1)]
        keys[f"ecd{n}.0.0.kernel"], keys[f"ecd{n}.0.1.weight"], keys[f"ecd{n}.0.2.bias"] = (
            (4, 4), (cout, cin, 3, 3), (cout,))
        cin = cout
    keys["final_linear.0.weight"], keys["final_linear.0.bias"] = (512, ch[4] * 16), (512,)
    return keys


@pytest.mark.parametrize("size, multiplier, narrow", [(512, 2, 1.0), (256, 1, 0.5)])
def test_gpen_state_dict_matches_the_official_layout(size, multiplier, narrow):
    from pipeline.stages.gpen import FullGenerator

    model = FullGenerator(size, 512, 8, multiplier, narrow)
    assert {k: tuple(v.shape) for k, v in model.state_dict().items()} == official_gpen_keys(size, multiplier, narrow)
    if size == 512:  # the released GPEN-BFR-512.pth is ~284 MB of float32
        assert sum(p.numel() for p in model.parameters()) == pytest.approx(71.0e6, rel=0.005)


def test_upfirdn2d_is_zero_insertion_padding_and_true_convolution():
    """Against scipy's convolve2d on the explicitly upsampled and padded image (an independent definition)."""
    import torch
    from scipy.signal import convolve2d

    from pipeline.stages.gpen import blur_kernel, upfirdn2d

    rng = np.random.default_rng(0)
    x = rng.normal(size=(5, 6)).astype(np.float32)
    k = blur_kernel(4.0).numpy() * np.arange(1, 17, dtype=np.float32).reshape(4, 4) / 8.5  # asymmetric
    for up, down, pad in ((2, 1, (2, 1)), (1, 2, (2, 2)), (1, 1, (1, 1)), (2, 1, (-1, 0))):
        big = np.zeros((5 * up, 6 * up), np.float32)
        big[::up, ::up] = x
        p0, p1 = pad
        padded = np.pad(big, ((max(p0, 0), max(p1, 0)), (max(p0, 0), max(p1, 0))))
        padded = padded[max(-p0, 0): padded.shape[0] - max(-p1, 0), max(-p0, 0): padded.shape[1] - max(-p1, 0)]
        expected = convolve2d(padded, k, mode="valid")[::down, ::down]
        got = upfirdn2d(torch.from_numpy(x)[None, None], torch.from_numpy(k), up, down, pad)[0, 0].numpy()
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.slow
def test_gpen_batches_equal_one_face_at_a_time(tmp_path):
    import torch

    from pipeline.stages.gpen import FullGenerator

    torch.manual_seed(0)
    torch.save(FullGenerator(256, 512, 8, 1, 0.5).state_dict(), tmp_path / "GPEN-BFR-256.pth")
    backend = build("faces_restored", "gpen", {"size": 256, "device": "cpu"}, str(tmp_path / "GPEN-BFR-256.pth"))
    rng = np.random.default_rng(1)
    crops = [encode_rgb(rng.integers(0, 255, (s, s, 3), dtype=np.uint8)) for s in (224, 180, 224, 96, 200)]
    found = [True, False, True, True, False]
    items = [Item(j, f"x{j}", {"faces": {"crop_png": c, "found": np.bool_(f)}}) for j, (c, f) in
             enumerate(zip(crops, found, strict=True))]
    image = np.zeros((8, 8, 3), np.uint8)
    batched = backend.batch([image] * len(items), items)
    for got, item, was_found in zip(batched, items, found, strict=True):
        one = backend(image, item)
        assert bool(got["found"]) == was_found == bool(one["found"])
        assert np.array_equal(got["lr_png"], one["lr_png"])
        diff = np.abs(decode_rgb(got["restored_png"]).astype(int) - decode_rgb(one["restored_png"]).astype(int))
        assert diff.max() <= 1  # float noise of a batched pass, then rounding to uint8


@pytest.mark.slow
def test_gpen_restores_through_the_checkpoint_path(tmp_path):
    import torch

    from pipeline.stages.gpen import FullGenerator

    torch.manual_seed(0)
    torch.save(FullGenerator(256, 512, 8, 1, 0.5).state_dict(), tmp_path / "GPEN-BFR-256.pth")
    backend = build("faces_restored", "gpen", {"size": 256, "device": "cpu"}, str(tmp_path / "GPEN-BFR-256.pth"))
    crop = encode_rgb(np.random.default_rng(0).integers(0, 255, (224, 224, 3), dtype=np.uint8))
    out = backend(np.zeros((8, 8, 3), np.uint8), Item(0, "x", {"faces": {"crop_png": crop, "found": np.bool_(True)}}))
    restored = decode_rgb(out["restored_png"])
    assert out["found"] and restored.shape == (256, 256, 3) and restored.std() > 0
    missing = backend(np.zeros((8, 8, 3), np.uint8),
                      Item(0, "x", {"faces": {"crop_png": crop, "found": np.bool_(False)}}))
    assert not missing["found"] and not decode_rgb(missing["restored_png"]).any()
    with pytest.raises(ValueError, match="not a GPEN-BFR-512 checkpoint"):
        build("faces_restored", "gpen", {"size": 512, "device": "cpu"}, str(tmp_path / "GPEN-BFR-256.pth"))
