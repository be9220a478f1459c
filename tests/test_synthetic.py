import hashlib
import json

import cv2
import h5py
import numpy as np
import pytest

from pipeline.datasets import load
from pipeline.errors import InputError
from pipeline.synthetic import COCO17, PART_LABELS, SyntheticSpec, generate, read_parts

from .conftest import TINY


def digest(root):
    h = hashlib.sha256()
    for p in sorted(root.rglob("*.jpg")):
        h.update(p.relative_to(root).as_posix().encode() + p.read_bytes())
    return h.hexdigest()


def test_deterministic_for_a_seed_and_independent_of_workers(tmp_path, tiny_dataset):
    again = tmp_path / "again"
    generate(TINY, again, jobs=2, progress=False)
    assert digest(again) == digest(tiny_dataset["root"])
    other = tmp_path / "other"
    generate(SyntheticSpec(**{**TINY.__dict__, "seed": TINY.seed + 1}), other, jobs=1, progress=False)
    assert digest(other) != digest(tiny_dataset["root"])


def test_written_in_prcc_layout_and_read_by_the_real_adapter(tiny_dataset):
    root = tiny_dataset["root"]
    assert (root / "prcc/rgb/train").is_dir() and (root / "prcc/rgb/test/C").is_dir()
    assert not list((root / "prcc").rglob("*.h5")), "ground truth must stay outside the layout"
    data = load("prcc", root)
    assert len({s.pid for s in data.train}) == TINY.train_ids
    assert len({s.pid for s in data.splits["gallery"]}) == TINY.test_ids
    assert not {s.pid for s in data.splits["gallery"]} & set(range(1, TINY.train_ids + 1))


def test_outfits_follow_the_prcc_protocol_and_are_shared(tiny_dataset):
    meta = json.loads((tiny_dataset["root"] / "groundtruth/identities.json").read_text())
    with h5py.File(tiny_dataset["root"] / "groundtruth/groundtruth.h5") as f:
        pid, cam, outfit = f["pid"][:], f["camid"][:], f["outfit"][:]
    for p in np.unique(pid):
        a, b, c = (set(outfit[(pid == p) & (cam == k)]) for k in range(3))
        assert a == b and len(a) == 1, "cameras A and B show one outfit"
        assert c and not (c & a), "camera C shows a different outfit"
    wearers = {}
    for p, o in meta["outfit_of"].items():
        for v in set(o.values()):
            wearers.setdefault(v, set()).add(p)
    assert max(len(w) for w in wearers.values()) >= 2, "outfits are shared between identities"


def test_ground_truth_is_consistent_with_the_pixels(tiny_dataset):
    root = tiny_dataset["root"]
    with h5py.File(root / "groundtruth/groundtruth.h5") as f:
        assert json.loads(f.attrs["keypoint_names"]) == list(COCO17)
        n = len(f["path"])
        on_body = total = 0
        for i in range(n):
            parts = read_parts(f, i)
            image = cv2.imread(str(root / f["path"][i].decode()))
            assert parts.shape == image.shape[:2] == tuple(f["size"][i])
            assert (parts == PART_LABELS["top"]).any() and (parts == PART_LABELS["bottom"]).any()
            kp = f["keypoints"][i]
            for x, y, v in kp[5:]:  # body joints
                if v == 2:
                    total += 1
                    on_body += parts[min(int(y), parts.shape[0] - 1), min(int(x), parts.shape[1] - 1)] > 0
            box = f["face_box"][i]
            if f["view"][i] == 1:  # back view: no face
                assert np.isnan(box).all()
            else:
                x1, y1, x2, y2 = box.astype(int)
                face = parts[y1:y2, x1:x2] == PART_LABELS["head"]
                assert face.mean() > 0.3
        assert on_body / total > 0.95


def test_images_differ_in_size_view_and_background(tiny_dataset):
    with h5py.File(tiny_dataset["root"] / "groundtruth/groundtruth.h5") as f:
        assert len({tuple(s) for s in f["size"][:]}) > 5
        assert set(f["view"][:]) == {0, 1, 2, 3}


def test_invalid_spec_and_existing_output_are_refused(tmp_path, tiny_dataset):
    with pytest.raises(ValueError, match="val_ids"):
        generate(SyntheticSpec(train_ids=2, val_ids=3), tmp_path / "x")
    with pytest.raises(FileExistsError, match="already exists"):
        generate(TINY, tiny_dataset["root"])


def test_erase_clothes_variant_removes_the_clothes_signal(tmp_path, tiny_dataset):
    erased = tmp_path / "erased"
    generate(SyntheticSpec(**{**TINY.__dict__, "erase_clothes": True}), erased, progress=False)

    def top_bottom_difference(root):
        with h5py.File(root / "groundtruth/groundtruth.h5") as f:
            diffs = []
            for i in range(len(f["path"])):
                parts = read_parts(f, i)
                image = cv2.imread(str(root / f["path"][i].decode())).astype(float)
                top, bottom = (image[parts == PART_LABELS[k]].mean(0) for k in ("top", "bottom"))
                diffs.append(np.abs(top - bottom).mean())
        return np.mean(diffs)

    # a top and a bottom differ in colour; erased, both are the same grey under the same light
    assert top_bottom_difference(erased) < 0.35 * top_bottom_difference(tiny_dataset["root"])


def test_trait_spread_and_head_scale_make_the_same_people_more_distinct():
    import numpy as np

    from pipeline.synthetic.traits import sample_identity

    def people(spread, head):
        return [sample_identity(np.random.default_rng([0, 1, pid]), spread, head) for pid in range(300)]

    plain, wide = people(1.0, 1.0), people(2.0, 1.4)
    assert plain == [sample_identity(np.random.default_rng([0, 1, pid])) for pid in range(300)]  # the defaults
    for trait in ("shoulder_width", "hip_width", "girth", "leg_ratio", "head_aspect"):
        a = np.array([getattr(p, trait) for p in plain])
        b = np.array([getattr(p, trait) for p in wide])
        assert 1.7 < b.std() / a.std() < 2.05, trait  # twice as spread, a little less where clipped
        assert np.corrcoef(a, b)[0, 1] > 0.97, trait  # the same people, ordered alike
    ratio = np.array([w.head_size / p.head_size for p, w in zip(plain, wide, strict=True)])
    assert np.median(ratio) == pytest.approx(1.4, rel=0.05)
    assert [p.skin for p in plain] == [p.skin for p in wide] and [p.hair_style for p in plain] == \
        [p.hair_style for p in wide]
    with pytest.raises(InputError, match="trait_spread must be in"):
        SyntheticSpec(trait_spread=5).validate()
