"""The one base of every user error: a wrong input (a config, a field, a path, a file, a dataset,
a workdir, the machine's devices), not a bug.

Each user-facing error class derives from `UserError` (and, for existing callers, from the built-in
class it always had: `ConfigError(UserError, ValueError)`, ...) and is raised where the mistake is
found, with its context in the message: which field, file, dataset and split. The command line
shows a `UserError` as its one line, exit status 2; any other exception is a bug and keeps its
traceback.
"""

from __future__ import annotations


class UserError(Exception):
    """A mistake in what the user gave; the message names the culprit, on one line."""


class ConfigError(UserError, ValueError):
    """A config file, field or value is wrong (here, below every module that raises it)."""


def one_line(error: BaseException, with_type: bool = False) -> str:
    """`error`'s message on one line (its type's name when it has none; `with_type`: 'Type: message')."""
    text = " ".join(str(error).split())
    if not text:
        return type(error).__name__
    return f"{type(error).__name__}: {text}" if with_type else text
