"""The project's error types for problems with what a user gave (a file, a path, a list line, a config value).

Command-line tools print these as one line (`error: <message>`, exit 2); anything else is a bug and keeps its
traceback. Each type also derives from the built-in error it refines, so `except ValueError` and
`except FileNotFoundError` keep working for callers that use the library directly.
"""
from __future__ import annotations


class UserError(Exception):
    """Something the user supplied is wrong or missing; the message names it and says what to do."""


class InputError(UserError, ValueError):
    """A value, a file's content or a layout is wrong."""


class MissingInputError(UserError, FileNotFoundError):
    """A file or folder the user must provide is not there."""


class OutputExistsError(UserError, FileExistsError):
    """An output the user named is already there and would be overwritten."""
