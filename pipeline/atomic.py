"""Write-to-temporary-then-rename, so a crash never leaves a half-written output behind.

The temporary file is `.<name>.tmp-<pid>` beside the target. A process killed with SIGKILL cannot remove
its own, so the next write of the same target removes those whose process is gone.
"""
from __future__ import annotations

import contextlib
import logging
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

log = logging.getLogger("ccreid.atomic")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


def remove_leaked_temporaries(target: Path) -> list[Path]:
    """Remove `.<name>.tmp-<pid>` files of `target` left by processes that no longer run (a kill -9, a
    node lost mid-write); one of a live process (another writer on this host) is left alone."""
    removed = []
    prefix = f".{target.name}.tmp-"
    if not target.parent.is_dir():
        return removed
    for leftover in target.parent.glob(f"{prefix}*"):
        pid = leftover.name[len(prefix):]
        if pid.isdigit() and int(pid) != os.getpid() and not _alive(int(pid)):
            log.warning("%s: removing a temporary file left by process %s, which no longer runs", leftover, pid)
            if leftover.is_dir():
                shutil.rmtree(leftover)
            else:
                leftover.unlink(missing_ok=True)
            removed.append(leftover)
    return removed


@contextlib.contextmanager
def atomic_path(target: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside `target`; it replaces `target` only if the block succeeds."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    remove_leaked_temporaries(target)
    tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}")
    try:
        yield tmp
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_text(target: str | Path, text: str) -> None:
    write_bytes(target, text.encode())


def write_bytes(target: str | Path, data: bytes | memoryview) -> None:
    """Write `data` atomically; a failed write (disk full, quota, file size limit) is an OSError naming the
    target, and leaves the old target, if any, untouched."""
    with atomic_path(target) as tmp:
        try:
            with open(tmp, "wb") as fh:
                fh.write(data)
        except OSError as e:
            raise OSError(e.errno, e.strerror, str(target)) from None
