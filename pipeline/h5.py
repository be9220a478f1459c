"""HDF5 files of the pipeline (images.h5, stores, shards, features): opened and created with errors that name them.

h5py reports a truncated or foreign file as a bare OSError without the path ("Unable to synchronously open
file (truncated file: ...)"); a user who killed a copy half-way needs the file's name and what to rebuild.
Creating one goes through `new_h5`, which survives a full disk (see _GuardedFile).
"""
from __future__ import annotations

import contextlib
import errno
import io
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import h5py

from .atomic import atomic_path
from .errors import InputError, MissingInputError


def open_h5(path: str | Path, what: str, rebuild: str) -> h5py.File:
    """Open `path` read-only. what: what the file should be ("image pack"); rebuild: how to make it again."""
    path = Path(path)
    if not path.is_file():
        raise MissingInputError(f"{path}: {what} missing; {rebuild}")
    if path.stat().st_size == 0:
        raise InputError(f"{path}: {what} is empty (0 bytes); {rebuild}")
    try:
        return h5py.File(path, "r")
    except OSError as e:  # only the open: a truncated, empty, non-HDF5 or locked file
        # HDF5 locks a file it writes; another process's lock is BlockingIOError (EAGAIN) "unable to lock file"
        if e.errno in (errno.EAGAIN, errno.EWOULDBLOCK) or "unable to lock file" in str(e):
            raise InputError(f"{path}: {what} is locked by another process that has it open for writing; wait "
                             "for that process to finish, or stop it, then run this again") from None
        raise InputError(f"{path}: {what} cannot be opened as HDF5 ({e}); it is truncated or not an HDF5 "
                         f"file: {rebuild}") from None


class _GuardedFile(io.RawIOBase):
    """The file h5py's fileobj driver writes a new store through, so that HDF5 never sees a failed write.

    HDF5 cannot survive one: a write that fails while it flushes (disk full, ENOSPC; file size limit, EFBIG)
    leaves datasets half-closed, and its exit handler later closes them again and crashes the interpreter
    (SIGSEGV in H5D_close from H5_term_library; HDF5 2.0.0 in h5py 3.16). Here the first failed write is
    recorded in `error` and everything from then on lives in memory pages, so HDF5 finishes and closes
    cleanly; the caller then raises `error` and discards the file. Reads see whatever was last written.
    """

    PAGE = 1 << 16

    def __init__(self, path: Path):
        super().__init__()
        self.error: OSError | None = None
        self._fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
        self._pos = 0
        self._size = 0  # of the file as HDF5 sees it
        self._disk = 0  # bytes of it on disk, valid to read back
        self._pages: dict[int, bytearray] = {}  # after a failed write: the file's pages from then on

    def readable(self) -> bool:
        return True

    def writable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        base = {os.SEEK_SET: 0, os.SEEK_CUR: self._pos, os.SEEK_END: self._size}[whence]
        self._pos = base + offset
        return self._pos

    def tell(self) -> int:
        return self._pos

    def _read_disk(self, offset: int, size: int) -> bytes:
        data = os.pread(self._fd, max(0, min(size, self._disk - offset)), offset) if offset < self._disk else b""
        return data + bytes(size - len(data))  # never written: zeros, as HDF5's own drivers read them

    def _page(self, number: int) -> bytearray:
        if number not in self._pages:
            self._pages[number] = bytearray(self._read_disk(number * self.PAGE, self.PAGE))
        return self._pages[number]

    def readinto(self, buffer) -> int:
        view = memoryview(buffer).cast("B")
        offset, end = self._pos, self._pos + len(view)
        if not self._pages:
            view[:] = self._read_disk(offset, len(view))
        else:
            while offset < end:
                number, start = divmod(offset, self.PAGE)
                n = min(self.PAGE - start, end - offset)
                at = offset - self._pos
                if number in self._pages:
                    view[at: at + n] = self._pages[number][start: start + n]
                else:
                    view[at: at + n] = self._read_disk(offset, n)
                offset += n
        self._pos = end
        return len(view)

    def write(self, data) -> int:
        view = memoryview(data).cast("B")
        offset, end = self._pos, self._pos + len(view)
        if self.error is None:
            while offset < end:
                try:
                    written = os.pwrite(self._fd, view[offset - self._pos:], offset)
                except OSError as e:  # only the write itself: the disk or a limit refused it
                    self.error = e
                    break
                if not written:  # no progress and no error: treat as full rather than spin
                    self.error = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
                    break
                offset += written
                self._disk = max(self._disk, offset)
        while offset < end:  # h5py ignores short writes, so whatever the disk refused is kept here
            number, start = divmod(offset, self.PAGE)
            n = min(self.PAGE - start, end - offset)
            self._page(number)[start: start + n] = view[offset - self._pos: offset - self._pos + n]
            offset += n
        self._pos, self._size = end, max(self._size, end)
        return len(view)

    def truncate(self, size: int | None = None) -> int:
        size = self._pos if size is None else size
        if self.error is None:
            try:
                os.ftruncate(self._fd, size)
                self._disk = size
            except OSError as e:  # growing the file past a size limit
                self.error = e
        if self.error is not None:
            self._disk = min(self._disk, size)
            for number in [k for k in self._pages if k * self.PAGE >= size]:
                del self._pages[number]
            if size // self.PAGE in self._pages:
                page, start = self._pages[size // self.PAGE], size % self.PAGE
                page[start:] = bytes(len(page) - start)
        self._size = size
        return size

    def flush(self) -> None:
        """Nothing buffered: every write went to the disk or to a page."""

    def close(self) -> None:
        if not self.closed:
            os.close(self._fd)
        super().close()


@contextlib.contextmanager
def new_h5(target: str | Path) -> Iterator[tuple[h5py.File, Callable[[], None]]]:
    """Create the HDF5 file `target` atomically: yields the open file and a `check()` that raises as soon
    as a write has failed (long loops call it to stop early). A write that failed (disk full, file size
    limit) raises OSError naming `target`; nothing is left under its name or as a temporary file."""

    def check() -> None:
        e = sink.error
        if e is not None:
            raise OSError(e.errno, f"{e.strerror or e}; nothing was written under this name (free some space "
                          f"or raise the limit, then rerun)", str(target)) from None

    with atomic_path(target) as tmp:
        sink = _GuardedFile(tmp)
        try:
            with h5py.File(sink, "w") as f:
                yield f, check
        finally:
            sink.close()
        check()
