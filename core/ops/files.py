"""Atomic file writes: the one way the project writes result, cache and rule files; and `read_npz`,
the one way it reads a user's .npz (data, snapshots, rules) with a one-line reason when it cannot.

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
import zipfile
import zlib
from typing import Collection

import numpy as np

from metaplastic.core.errors import UserError


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


class NpzError(UserError, ValueError):
    """A file that cannot be read as a NumPy .npz; `reason` is the why without the path."""

    def __init__(self, path: str | os.PathLike, reason: str):
        self.path, self.reason = pathlib.Path(path), reason
        super().__init__(f"'{path}': {reason}")

    def __reduce__(self):  # picklable (a process pool passes errors back)
        return type(self), (self.path, self.reason)


ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")  # a zip archive (an empty one starts with the second)


def read_npz(path: str | os.PathLike, only: Collection[str] | None = None) -> dict[str, np.ndarray]:
    """Every array of the .npz at `path` (`only`: those of these names it has), no pickles; or
    NpzError saying why not: no such file, an empty file, not a NumPy .npz at all (a text file, an
    .npy), truncated or damaged."""
    path = pathlib.Path(path)
    try:
        with path.open("rb") as handle:
            head = handle.read(6)
    except FileNotFoundError:
        raise NpzError(path, "no such file") from None
    except IsADirectoryError:
        raise NpzError(path, "is a directory, not a file") from None
    except OSError as error:
        raise NpzError(path, f"cannot be read ({error.strerror or error})") from None
    if not head:
        raise NpzError(path, "empty file (0 bytes), not a NumPy .npz")
    if head.startswith(b"\x93NUMPY"):
        raise NpzError(path, "a single-array .npy file, not a NumPy .npz (write one with numpy.savez)")
    if not head.startswith(ZIP_MAGIC):
        raise NpzError(path, f"not a NumPy .npz file (it starts with {head[:4]!r}; numpy.savez writes a zip "
                             "archive)")
    try:
        with np.load(path, allow_pickle=False) as stored:
            return {name: stored[name] for name in stored.files if only is None or name in only}
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile, zlib.error) as error:
        text = " ".join(str(error).split())
        if "allow_pickle" in text:  # numpy's advice would be to load it unsafely: never
            raise NpzError(path, "holds object arrays (pickled Python objects), which are never loaded; "
                                 "save numbers or strings") from None
        text = f"{type(error).__name__}: {text}" if text else type(error).__name__
        raise NpzError(path, f"truncated or damaged .npz ({text})") from None
