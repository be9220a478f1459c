"""The notebook API (trainer/api.py) and the README's example, run on the tiny dataset."""
import contextlib
import io
import re
from pathlib import Path

import numpy as np
import pytest

from pipeline.errors import InputError
from pipeline.imagepack import ImagePack
from pipeline.listfile import read_protocol, read_split
from pipeline.stages.store import encode_rgb, merge, shard_attrs, write_shard
from trainer.config import load_method_config

from .conftest import REPO


@pytest.fixture(scope="module")
def model_file(tiny_dataset, tmp_path_factory):
    from trainer.train import train

    out = tmp_path_factory.mktemp("api_model")
    cfg = load_method_config(REPO / "config/methods/cal.yaml", "tiny", ["epochs=1"])
    return train(cfg, str(tiny_dataset["lists"]), str(tiny_dataset["images"]), out, "cpu")


@pytest.fixture(scope="module")
def faces_store(tiny_dataset, tmp_path_factory):
    out = tmp_path_factory.mktemp("api_faces")
    pack = ImagePack(str(tiny_dataset["images"]))
    records = [{"crop_png": encode_rgb(np.full((24, 20, 3), j % 256, np.uint8)), "found": np.bool_(j % 2 == 0),
                "score": np.float32(0.5)} for j in range(len(pack))]
    attrs = shard_attrs("faces", "test", pack.manifest_sha256, backend_version="fixture")
    write_shard(out / "s.h5", np.arange(len(pack)), records, attrs)
    merge([out / "s.h5"], out / "faces.h5", len(pack), pack.manifest_sha256)
    return out / "faces.h5"


def test_the_readme_example_runs(tiny_dataset, model_file, faces_store):
    import trainer.evaluate  # noqa: F401  (imported by other tests too: the example must not take it for the API)

    text = (REPO / "docs/api.md").read_text()
    section = text[text.index("## Python API"):]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    for old, new in [("data/derived/synthetic/lists", str(tiny_dataset["lists"])),
                     ("data/derived/synthetic/images.h5", str(tiny_dataset["images"])),
                     ("results/synthetic/cal/model.pt", str(model_file)),
                     ("data/derived/synthetic/faces/mediapipe.h5", str(faces_store))]:
        assert old in code, old
        code = code.replace(old, new)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(code, "README.md:Python API", "exec"), {})
    lines = out.getvalue().splitlines()
    assert re.fullmatch(r"CC mAP \d+\.\d, rank-1 \d+\.\d, CMC to rank \d+", lines[0]), lines
    assert lines[1] in ("True (24, 20, 3)", "False (24, 20, 3)")


def test_features_match_what_evaluation_computes(tiny_dataset, model_file):
    """The API's features for image files equal trainer.evaluate's for the same images (from the pack)."""
    import torch

    from trainer.api import load_model
    from trainer.features import evaluate_protocols
    from trainer.methods import method_class

    model = load_model(model_file)
    lists = str(tiny_dataset["lists"])
    root = read_protocol(lists)["root"]
    gallery = read_split(lists, "gallery")
    api = model.features([f"{root}/{s.path}" for s in gallery], batch_size=5)
    pack = ImagePack(str(tiny_dataset["images"]))
    cfg = model.config
    _, extra = evaluate_protocols(model.net, pack, lists, torch.device("cpu"),
                                  lambda samples, video: method_class(cfg).test_dataset(pack, samples, cfg, {}, video))
    np.testing.assert_allclose(api, extra["features"]["gallery"][""], atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(api, axis=1), 1, atol=1e-5)
    arrays = [pack.image(int(i)) for i in pack.indices([s.path for s in gallery[:3]])]
    np.testing.assert_allclose(model.features(arrays), api[:3], atol=1e-5)  # arrays: the same as their files
    with pytest.raises(InputError, match="H×W×3 uint8 RGB"):
        model.features([np.zeros((4, 4), np.uint8)])
    with pytest.raises(FileNotFoundError, match="no such image"):
        model.features(["missing.jpg"])
    model.config = dict(cfg, test={"stores": ["faces"]})
    with pytest.raises(InputError, match="reads the faces store"):
        model.features(arrays)


def test_evaluate_takes_features_or_a_distance_matrix():
    from trainer.api import evaluate_retrieval as evaluate

    rng = np.random.default_rng(0)
    q = rng.normal(size=(6, 8)).astype(np.float32)
    g = rng.normal(size=(10, 8)).astype(np.float32)
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    g /= np.linalg.norm(g, axis=1, keepdims=True)
    labels = dict(q_pids=np.arange(6) % 3, g_pids=np.arange(10) % 3, q_camids=np.zeros(6, int),
                  g_camids=np.ones(10, int))
    by_features = evaluate(q, g, **labels)
    by_distances = evaluate(1 - q @ g.T, None, **labels)
    assert by_features["mAP"] == pytest.approx(by_distances["mAP"])
    assert by_features["cmc"] == pytest.approx(by_distances["cmc"]) and len(by_features["cmc"]) == 10


def test_store_record_decodes_one_images_fields(tiny_dataset, faces_store):
    from trainer.api import store_record

    pack = ImagePack(str(tiny_dataset["images"]))
    record = store_record(faces_store, tiny_dataset["images"], pack.paths[3])
    assert record["found"] is False and record["crop_png"].shape == (24, 20, 3) and (record["crop_png"] == 3).all()
    assert store_record(faces_store, tiny_dataset["images"], 4)["found"] is True
    with pytest.raises(InputError, match="not in the pack"):
        store_record(faces_store, tiny_dataset["images"], "prcc/rgb/none.jpg")


@pytest.mark.parametrize("shape", [(0, 8, 3), (8, 0, 3), (0, 0, 3)])
def test_an_image_array_without_pixels_is_named(shape):
    """Refused before the resize, which would fail inside OpenCV with a traceback; the transform needs no model."""
    import torch

    from trainer.api import TrainedModel

    model = TrainedModel(torch.nn.Identity(), {"config": {"method": "m", "data": {"height": 32, "width": 16}}},
                         torch.device("cpu"))
    with pytest.raises(InputError, match=re.escape(f"images[1]: an image array of shape {shape} has no pixels")):
        model.features([np.zeros((8, 4, 3), np.uint8), np.zeros(shape, np.uint8)])


def test_store_record_takes_a_numpy_row_and_refuses_other_kinds_of_image(tiny_dataset, faces_store):
    from trainer.api import store_record

    pack = ImagePack(str(tiny_dataset["images"]))
    for row in (np.int64(3), np.int32(3), np.uint8(3), np.arange(6)[3]):
        record = store_record(faces_store, tiny_dataset["images"], row)
        assert record["found"] is False and (record["crop_png"] == 3).all()
    assert store_record(faces_store, tiny_dataset["images"], Path(pack.paths[4]))["found"] is True
    for bad, kind in ((True, "bool"), (np.bool_(False), "bool"), (3.0, "float"), (np.float64(3), "float64"),
                      (None, "NoneType"), ([3], "list")):
        with pytest.raises(InputError, match=rf"image .*: expected the image's path as listed .* got {kind}$"):
            store_record(faces_store, tiny_dataset["images"], bad)
