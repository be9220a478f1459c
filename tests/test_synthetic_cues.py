"""The cue measurements (pipeline.synthetic.cues): exact descriptors on drawn inputs, the 1-NN retrieval, and what
they say about a generated dataset."""
import json
import shutil

import h5py
import numpy as np
import pytest

from pipeline.errors import InputError
from pipeline.synthetic import PART_LABELS, SyntheticSpec, generate
from pipeline.synthetic.cues import (
    CUES,
    FACE_SIDE,
    body_descriptor,
    colour_descriptors,
    cue_table,
    describe,
    face_descriptor,
    main,
    nearest_neighbour_rank1,
)

L = PART_LABELS


def drawn_person() -> tuple[np.ndarray, np.ndarray]:
    """A 100×40 part map: a person from row 10 to row 89 (height 80), head and hair rows 10–29 (20)."""
    parts = np.zeros((100, 40), np.uint8)
    parts[10:25, 15:25] = L["hair"]
    parts[25:30, 15:25] = L["head"]
    parts[30:60, 10:30] = L["top"]
    parts[60:85, 12:28] = L["bottom"]
    parts[85:90, 12:28] = L["shoes"]
    keypoints = np.zeros((17, 3), np.float32)
    keypoints[5], keypoints[6] = (12, 32, 1), (28, 32, 1)  # shoulders 16 px apart
    keypoints[11], keypoints[12] = (15, 60, 1), (25, 60, 1)  # hips 10 px apart
    keypoints[15], keypoints[16] = (14, 84, 1), (26, 88, 1)  # ankles at mean row 86
    return parts, keypoints


def test_body_descriptor_measures_the_drawn_proportions():
    parts, keypoints = drawn_person()
    np.testing.assert_allclose(body_descriptor(parts, keypoints), [0.8, 20 / 80, 16 / 80, 10 / 80, 26 / 80])
    hidden = keypoints.copy()
    hidden[[15, 16], 2] = 0  # ankles out of view: no leg length, the rest stands
    got = body_descriptor(parts, hidden)
    assert np.isnan(got[4]) and not np.isnan(got[:4]).any()
    assert np.isnan(body_descriptor(np.zeros_like(parts), keypoints)).all()  # nobody in the image
    with pytest.raises(InputError, match="17×3"):
        body_descriptor(parts, keypoints[:10])


def test_face_and_colour_descriptors_read_the_right_pixels():
    parts, _ = drawn_person()
    image = np.zeros((100, 40, 3), np.uint8)
    image[parts == L["hair"]] = (10, 20, 30)
    image[parts == L["head"]] = (200, 150, 100)
    image[parts == L["top"]] = (255, 0, 0)
    image[parts == L["bottom"]] = (0, 0, 255)
    image[parts == L["shoes"]] = (5, 5, 5)
    hair_skin, clothes = colour_descriptors(image, parts)
    np.testing.assert_allclose(hair_skin, [10, 20, 30, 200, 150, 100])
    np.testing.assert_allclose(clothes, [255, 0, 0, 0, 0, 255, 5, 5, 5])
    no_shoes = np.where(parts == L["shoes"], 0, parts).astype(np.uint8)
    assert np.isnan(colour_descriptors(image, no_shoes)[1][6:]).all()

    face = face_descriptor(image, np.array([15, 25, 25, 30], np.float32))  # the skin rows only
    assert face.shape == (FACE_SIDE * FACE_SIDE * 3,)
    np.testing.assert_allclose(face.reshape(-1, 3), np.tile([200, 150, 100], (FACE_SIDE * FACE_SIDE, 1)))
    assert np.isnan(face_descriptor(image, np.full(4, np.nan, np.float32))).all()  # back view: no face
    with pytest.raises(InputError, match="outside"):
        face_descriptor(image, np.array([50, 120, 60, 130], np.float32))


def test_nearest_neighbour_rank1_counts_hits_and_leaves_unseen_rows_out():
    pids = np.array([1, 2, 3, 1, 2, 3])
    gallery = np.array([True, True, True, False, False, False])
    query = ~gallery
    features = np.array([[0, 0], [10, 0], [0, 10], [1, 0], [9, 1], [9, 0]], float)  # pid 3's query lands on pid 2
    assert nearest_neighbour_rank1(features, pids, query, gallery) == (pytest.approx(2 / 3), 3)
    scaled = features * [1000, 1]  # standardising makes the units of a dimension irrelevant
    assert nearest_neighbour_rank1(scaled, pids, query, gallery)[0] == pytest.approx(2 / 3)
    unseen = features.copy()
    unseen[5] = np.nan
    assert nearest_neighbour_rank1(unseen, pids, query, gallery) == (1.0, 2)
    assert nearest_neighbour_rank1(np.full((6, 2), np.nan), pids, query, gallery)[1] == 0
    with pytest.raises(InputError, match="do not line up"):
        nearest_neighbour_rank1(features[:4], pids, query, gallery)


@pytest.fixture(scope="module")
def cue_dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("cues") / "raw"
    generate(SyntheticSpec(seed=5, train_ids=2, test_ids=12, val_ids=0, images_per_camera=2, min_height=120,
                           max_height=150), root, jobs=1, progress=False)
    return root


def test_a_generated_dataset_carries_identity_in_body_and_colour_and_clothes_only_within_an_outfit(cue_dataset):
    d = describe(cue_dataset, cue_dataset / "groundtruth/groundtruth.h5")
    meta = json.loads((cue_dataset / "groundtruth/identities.json").read_text())["identities"]
    assert set(np.unique(d["pid"])) == set(range(3, 15))  # the test identities, nothing else
    # the descriptors follow the identities' true traits (per-image jitter aside)
    height = np.array([meta[str(p)]["height"] for p in d["pid"]])
    assert np.corrcoef(d["body"][:, 0], height)[0, 1] > 0.8
    table = cue_table(d)
    assert table["chance"] == pytest.approx(1 / 12)
    # an outfit change leaves clothes useless and body shape and colouring as good as before
    assert table["clothes"]["same_outfit_rank1"] > 3 * table["clothes"]["changed_outfit_rank1"]
    for cue in ("body", "hair_skin"):
        assert table[cue]["changed_outfit_rank1"] > 4 * table["chance"], cue
    assert all(table[c]["changed_outfit_queries"] > 0 for c in CUES)


def test_the_cli_writes_the_table_and_names_a_missing_ground_truth(cue_dataset, tmp_path, capsys):
    out = tmp_path / "cues.json"
    assert main(["--root", str(cue_dataset), "--out", str(out)]) == 0
    table = json.loads(out.read_text())
    assert set(table) == {*CUES, "chance"}
    assert "changed outfit R1" in capsys.readouterr().out
    with pytest.raises(InputError, match="groundtruth.h5: not found"):
        main(["--root", str(tmp_path)])


def test_an_image_path_outside_the_root_is_refused(cue_dataset, tmp_path):
    gt = tmp_path / "groundtruth.h5"
    shutil.copy(cue_dataset / "groundtruth/groundtruth.h5", gt)
    with h5py.File(gt, "r+") as f:
        test_row = int(np.flatnonzero(f["split"][:] == b"test")[0])
        f["path"][test_row] = "../elsewhere/x.jpg"
    with pytest.raises(InputError, match="not inside the dataset root"):
        describe(cue_dataset, gt)
