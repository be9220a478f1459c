"""The command-line contract: a user's mistake is one line and exit 2; a bug keeps its traceback."""
import errno

import pytest

from pipeline.cli import key_value_args, reports_user_errors
from pipeline.errors import InputError, MissingInputError


def cli(exc):
    @reports_user_errors
    def main():
        raise exc
    return main


@pytest.mark.parametrize("exc, line", [
    (InputError("list.txt:3: bad line"), "error: list.txt:3: bad line"),
    (MissingInputError("weights.pth: missing"), "error: weights.pth: missing"),
    (OSError(errno.ENOSPC, "No space left on device", "out.h5"), "error: out.h5: No space left on device"),
    (FileNotFoundError(errno.ENOENT, "No such file or directory", "x.yaml"),
     "error: x.yaml: No such file or directory"),
])
def test_user_errors_are_one_line_with_exit_2(exc, line, capsys):
    assert cli(exc)() == 2
    err = capsys.readouterr().err
    assert err.strip() == line


@pytest.mark.parametrize("exc", [ValueError("a bug's message"), KeyError("config"), TypeError("bad call"),
                                 OSError("an error with neither file nor errno")])
def test_anything_else_is_a_bug_and_keeps_its_traceback(exc, capsys):
    with pytest.raises(type(exc)):
        cli(exc)()
    assert "error:" not in capsys.readouterr().err


def test_key_value_options_keep_the_value_whole_and_refuse_a_malformed_or_repeated_key():
    assert key_value_args(["parsing=a=b.h5", "faces=f.h5"], "--store", "STAGE=PATH") == {
        "parsing": "a=b.h5", "faces": "f.h5"}
    for bad in ("parsing", "=x.h5", "parsing="):
        with pytest.raises(InputError, match=f"--store '{bad}': expected STAGE=PATH"):
            key_value_args([bad], "--store", "STAGE=PATH")
    with pytest.raises(InputError, match=r"--teachers deskpro is given twice \(t1 and t2\)"):
        key_value_args(["deskpro=t1", "deskpro=t2"], "--teachers", "METHOD=TEACHER")


@pytest.mark.parametrize("value", ["0", "-8", "x"])
def test_evaluate_refuses_a_batch_size_below_one_while_reading_its_arguments(value, tmp_path, capsys):
    from trainer.evaluate import main

    with pytest.raises(SystemExit) as exited:
        main(["--model", str(tmp_path / "model.pt"), "--lists", str(tmp_path), "--images", str(tmp_path / "i.h5"),
              "--out", str(tmp_path / "metrics.json"), "--batch-size", value])
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and [line for line in err.splitlines() if "error:" in line] == [
        f"python -m trainer.evaluate: error: argument --batch-size: expected a positive integer, got {value!r}"]
    assert not (tmp_path / "metrics.json").exists()
