"""pipeline.weights: every way a weights file can be bad is an error naming it, and no file runs code."""
import io
import zipfile

import pytest
import torch

from pipeline.weights import load_state_dict_file, load_torch_file, save_torch_file


class Payload:
    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def saved(tmp_path, name, obj, legacy=False):
    path = tmp_path / name
    torch.save(obj, path, _use_new_zipfile_serialization=not legacy)
    return path


STATE = {"module.conv.weight": torch.ones(4, 3), "module.conv.bias": torch.zeros(4)}


def test_a_state_dict_loads_from_every_released_layout(tmp_path):
    plain = load_state_dict_file(saved(tmp_path, "a.pth", STATE), "w")
    assert sorted(plain) == ["conv.bias", "conv.weight"] and torch.equal(plain["conv.weight"], torch.ones(4, 3))
    assert sorted(load_state_dict_file(saved(tmp_path, "b.pth", {"state_dict": STATE, "epoch": 3}), "w")) == \
        ["conv.bias", "conv.weight"]
    assert sorted(load_state_dict_file(saved(tmp_path, "c.pth", STATE, legacy=True), "w")) == \
        ["conv.bias", "conv.weight"]
    buffer = io.BytesIO()
    torch.save(STATE, buffer)
    with zipfile.ZipFile(tmp_path / "d.zip", "w") as z:  # a checkpoint zipped on its own (retinaface-pytorch)
        z.writestr("weights.pth", buffer.getvalue())
    assert sorted(load_state_dict_file(tmp_path / "d.zip", "w")) == ["conv.bias", "conv.weight"]


@pytest.mark.parametrize("kind, expected", [
    ("missing", "missing"),
    ("empty", r"is empty \(0 bytes\)"),
    ("garbage", "cannot be read: truncated, not a PyTorch file"),
    ("truncated zip", "damaged zip archive"),
    ("truncated legacy", "cannot be read: truncated"),
    ("flipped byte", r"is corrupt \(.* fails its CRC check\)"),
    ("tensor", "holds a Tensor, not a state dict"),
    ("list", "holds a list, not a state dict"),
    ("mixed", "entries \\['epoch'\\] are not named tensors"),
    ("empty dict", "an empty state dict"),
    ("zip of two", "neither a PyTorch file nor one zipped checkpoint"),
])
def test_a_bad_weights_file_is_named_with_what_is_wrong_and_where_to_get_it(tmp_path, kind, expected):
    path = tmp_path / "w.pth"
    if kind == "empty":
        path.write_bytes(b"")
    elif kind == "garbage":
        path.write_bytes(b"<html>not found</html>" * 20)
    elif kind in ("truncated zip", "truncated legacy"):
        data = saved(tmp_path, "full.pth", {"w": torch.zeros(5000)}, legacy=kind.endswith("legacy")).read_bytes()
        path.write_bytes(data[: len(data) // 2])
    elif kind == "flipped byte":
        data = bytearray(saved(tmp_path, "full.pth", {"w": torch.zeros(5000)}).read_bytes())
        data[len(data) // 3] ^= 0xFF
        path.write_bytes(bytes(data))
    elif kind == "tensor":
        torch.save(torch.zeros(3), path)
    elif kind == "list":
        torch.save([torch.zeros(3)], path)
    elif kind == "mixed":
        torch.save({"w": torch.zeros(3), "epoch": 3}, path)
    elif kind == "empty dict":
        torch.save({}, path)
    elif kind == "zip of two":
        with zipfile.ZipFile(path, "w") as z:
            z.writestr("a.pth", b"x")
            z.writestr("b.pth", b"y")
    with pytest.raises((ValueError, FileNotFoundError), match=rf"w.pth: test weights.*{expected}.*Get them from X"):
        load_state_dict_file(path, "test weights", "Get them from X")


def test_a_file_that_would_run_code_is_refused_unopened(tmp_path):
    marker = tmp_path / "ran"
    path = saved(tmp_path, "evil.pth", {"w": torch.zeros(1), "x": Payload(marker)})
    with pytest.raises(ValueError, match=r"refused unopened: WeightsUnpickler error: "
                                         r"Unsupported global: GLOBAL io.open .*by default\.\)"):
        load_torch_file(path, "weights")
    assert not marker.exists()
    legacy = saved(tmp_path, "evil-legacy.pth", {"x": Payload(marker)}, legacy=True)
    with pytest.raises(ValueError, match="refused unopened"):
        load_torch_file(legacy, "weights")
    assert not marker.exists()


def test_save_round_trips_and_a_failed_write_names_the_file(tmp_path, monkeypatch):
    import builtins
    import errno

    save_torch_file({"a": torch.arange(3)}, tmp_path / "ok.pt")
    assert torch.equal(load_torch_file(tmp_path / "ok.pt", "x")["a"], torch.arange(3))
    real_open = builtins.open

    class Full(io.FileIO):
        def write(self, data):
            raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(builtins, "open", lambda f, mode="r", *a, **k: Full(f, "wb") if "w" in mode and "tmp-" in str(f)
                        else real_open(f, mode, *a, **k))
    with pytest.raises(OSError) as caught:
        save_torch_file({"a": torch.arange(3)}, tmp_path / "full.pt")
    monkeypatch.undo()
    assert caught.value.filename == str(tmp_path / "full.pt") and caught.value.errno == errno.ENOSPC
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ok.pt"]
