"""Reading PyTorch files a user hands us (released weights, model.pt, checkpoints) without running their code.

Every load is `torch.load(weights_only=True)`: tensors and plain containers only, so a crafted file cannot
execute anything. Before that, the file's format is checked so that an empty, truncated, corrupt or foreign
file gets a message naming it instead of a miniz or unpickler traceback: torch's zip format is verified
member by member against its CRCs (torch itself does not check them, so flipped bytes would load silently).
"""
from __future__ import annotations

import io
import pickle
import zipfile
from pathlib import Path

import torch

from .atomic import write_bytes
from .errors import InputError, MissingInputError


def _reason(e: Exception) -> str:
    """The informative part of torch's long message: from 'WeightsUnpickler error' on (e.g. 'Unsupported
    global: GLOBAL builtins.open') when there is one, else its first line."""
    text = str(e)
    at = text.find("WeightsUnpickler error")
    if at >= 0:  # without torch's advice to allow-list the global: that is what must not happen here
        return text[at:].splitlines()[0].split(" Please use")[0].strip()[:300]
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    return (lines or [type(e).__name__])[0][:300]


def _torch_load(source, path: Path, what: str, hint: str):
    try:
        return torch.load(source, map_location="cpu", weights_only=True)
    # the deserialisation only: a bad or hostile file (a truncated legacy-format file raises RuntimeError
    # "unexpected EOF" from torch's storage reader)
    except (pickle.UnpicklingError, EOFError, RuntimeError) as e:
        raise InputError(f"{path}: {what} cannot be read: truncated, not a PyTorch file, or holding objects other "
                         f"than tensors and plain containers (refused unopened: {_reason(e)}). {hint}") from None


def load_torch_file(path: str | Path, what: str, hint: str = ""):
    """The object a PyTorch file holds. what: what the file should be ("a SAM vit_b checkpoint");
    hint: where to get a good copy, added to every error."""
    path = Path(path)
    if not path.is_file():
        raise MissingInputError(f"{path}: {what} missing. {hint}".rstrip())
    if path.stat().st_size == 0:
        raise InputError(f"{path}: {what} is empty (0 bytes). {hint}".rstrip())
    with path.open("rb") as fh:
        zipped = fh.read(2) == b"PK"
    if not zipped:  # torch's legacy (pre-1.6) format: a plain pickle stream
        return _torch_load(path, path, what, hint)
    try:
        with zipfile.ZipFile(path) as z:
            bad = z.testzip()
            members = [m for m in z.namelist() if not m.endswith("/")]
            if bad is not None:
                raise InputError(f"{path}: {what} is corrupt ({bad} fails its CRC check). {hint}".rstrip())
            if any(m.endswith("/data.pkl") or m == "data.pkl" for m in members):
                return _torch_load(path, path, what, hint)
            # a checkpoint zipped on its own (retinaface-pytorch's releases)
            if len(members) != 1:
                raise InputError(f"{path}: {what}: a zip archive that is neither a PyTorch file nor one zipped "
                                 f"checkpoint (members: {members[:5]}). {hint}".rstrip())
            inner = z.read(members[0])
    except zipfile.BadZipFile as e:
        raise InputError(
            f"{path}: {what} is a damaged zip archive, probably truncated ({e}). {hint}".rstrip()) from None
    return _torch_load(io.BytesIO(inner), path, what, hint)


def load_state_dict_file(path: str | Path, what: str, hint: str = "") -> dict[str, torch.Tensor]:
    """A state dict from a weights file: saved bare or under 'state_dict' (SCHP); DataParallel's 'module.'
    prefix removed (AlphaPose, SCHP, Pytorch_Retinaface). Anything else is an error naming the file."""
    state = load_torch_file(path, what, hint)
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise InputError(f"{path}: {what} holds a {type(state).__name__}, not a state dict of named tensors. "
                         f"{hint}".rstrip())
    odd = [k for k, v in state.items() if not isinstance(k, str) or not isinstance(v, torch.Tensor)]
    if odd:
        raise InputError(f"{path}: {what}: entries {odd[:3]} are not named tensors ({len(odd)} of {len(state)}); "
                         f"not a state dict. {hint}".rstrip())
    if not state:
        raise InputError(f"{path}: {what} holds an empty state dict. {hint}".rstrip())
    return {k.removeprefix("module."): v for k, v in state.items()}


def save_torch_file(obj, path: str | Path) -> None:
    """torch.save, atomically, with write failures reported as OSError naming the file: serialised in memory
    first, because torch's own file writer turns a full disk into "[enforce fail at inline_container.cc]"."""
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    write_bytes(path, buffer.getbuffer())
