import os
import subprocess
import sys

from pipeline.atomic import atomic_path, write_text
from pipeline.pack import main as pack_main


def dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def test_the_next_write_removes_temporaries_of_killed_writers(tmp_path):
    target = tmp_path / "store.h5"
    leaked = tmp_path / f".store.h5.tmp-{dead_pid()}"
    leaked.write_bytes(b"half a store")
    live = tmp_path / f".store.h5.tmp-{os.getppid()}"  # a process that still runs: another writer's file
    live.write_bytes(b"in progress")
    other = tmp_path / f".other.h5.tmp-{dead_pid()}"  # another target's: not this write's business
    other.write_bytes(b"x")
    write_text(target, "done")
    assert target.read_text() == "done"
    assert not leaked.exists() and live.exists() and other.exists()


def test_a_failed_write_leaves_neither_target_nor_temporary(tmp_path):
    target = tmp_path / "out.txt"
    try:
        with atomic_path(target) as tmp:
            tmp.write_text("partial")
            raise KeyboardInterrupt
    except KeyboardInterrupt:
        pass
    assert list(tmp_path.iterdir()) == []


def test_pack_cleans_up_after_a_killed_pack(tmp_path, tiny_dataset):
    out = tmp_path / "images.h5"
    leaked = tmp_path / f".images.h5.tmp-{dead_pid()}"
    leaked.write_bytes(b"\x89HDF half")
    assert pack_main(["--lists", str(tiny_dataset["lists"]), "--root", str(tiny_dataset["root"]),
                      "--out", str(out)]) == 0
    assert out.is_file() and not leaked.exists()
