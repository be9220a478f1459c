"""Shared command-line behaviour: a user's mistake (bad path, layout, config) is one clear line, exit 2.

Only the project's UserError (pipeline.errors) and operating-system errors about a named file (a path that
is not there, a disk that is full) are shown that way; any other exception is a bug and keeps its traceback.
"""
from __future__ import annotations

import argparse
import functools
import logging
import sys
from collections.abc import Callable

from .errors import InputError, UserError


def _one_line(e: BaseException) -> str | None:
    if isinstance(e, UserError):
        return str(e)
    if isinstance(e, OSError) and (e.filename is not None or e.errno is not None):
        where = f"{e.filename}: " if e.filename is not None else ""
        return f"{where}{e.strerror or e}"
    return None


def reports_user_errors(main: Callable[..., int]) -> Callable[..., int]:
    """Print `error: <message>` for user errors instead of a traceback; exit status 2."""

    @functools.wraps(main)
    def wrapper(*args, **kwargs) -> int:
        logging.basicConfig(level=logging.WARNING, format="warning: %(message)s")
        try:
            return main(*args, **kwargs)
        except (UserError, OSError) as e:
            message = _one_line(e)
            if message is None:
                raise
            print(f"error: {message}", file=sys.stderr)
            return 2

    return wrapper


def positive_int(text: str) -> int:
    """argparse type of a count that must be at least 1 (a batch size): 0 or a negative value is refused while the
    arguments are read, before anything is loaded."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def key_value_args(args: list[str], option: str, form: str) -> dict[str, str]:
    """['KEY=VALUE', ...] of a repeatable option -> {key: value}; a malformed or repeated key is an error naming
    the option and the argument. `form` spells the expected shape for the message ('STAGE=PATH')."""
    pairs: dict[str, str] = {}
    for arg in args:
        key, sep, value = arg.partition("=")
        if not sep or not key or not value:
            raise InputError(f"{option} {arg!r}: expected {form}")
        if key in pairs:
            raise InputError(f"{option} {key} is given twice ({pairs[key]} and {value})")
        pairs[key] = value
    return pairs
