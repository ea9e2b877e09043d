"""Atomic file writes: the one way the project writes result, cache and rule files.

A file is written to a temporary file in the same folder and renamed over the target, so a reader
(or a process killed mid-write) sees either the old file or the new one, never a partial one. The
new file gets the permissions an ordinary `open(path, "w")` would give it (0o666 less the umask),
not the private 0o600 of a temporary file.
"""

from __future__ import annotations

import io
import os
import pathlib
import tempfile

import numpy as np


def _read_umask() -> int:
    old = os.umask(0)
    os.umask(old)
    return old


_UMASK = _read_umask()  # once, at import: os.umask is process-wide, so never toggle it mid-run


def write_atomic(path: str | os.PathLike, data: bytes) -> None:
    """Write `data` to `path` atomically (creating its folder); on failure nothing is left behind."""
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-" + path.name + ".")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, 0o666 & ~_UMASK)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def save_npz_atomic(path: str | os.PathLike, arrays: dict[str, np.ndarray]) -> None:
    """`np.savez(path, **arrays)`, written atomically."""
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    write_atomic(path, buffer.getvalue())
