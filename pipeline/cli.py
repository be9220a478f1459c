"""Shared command-line behaviour: a user's mistake (bad path, layout, config) is one clear line, exit 2."""
from __future__ import annotations

import functools
import logging
import sys
from collections.abc import Callable

USER_ERRORS = (ValueError, FileNotFoundError, FileExistsError, KeyError)


def reports_user_errors(main: Callable[..., int]) -> Callable[..., int]:
    """Print `error: <message>` for the expected error types instead of a traceback; exit status 2."""

    @functools.wraps(main)
    def wrapper(*args, **kwargs) -> int:
        logging.basicConfig(level=logging.WARNING, format="warning: %(message)s")
        try:
            return main(*args, **kwargs)
        except USER_ERRORS as e:
            message = e.args[0] if isinstance(e, KeyError) and e.args else e
            print(f"error: {message}", file=sys.stderr)
            return 2

    return wrapper
