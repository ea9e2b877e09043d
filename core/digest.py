"""`pytree_digest`: the one sha256 of a pytree's contents, used by checkpoints (`state_sha256` in a
step's metadata), rule files (`theta_sha256` in rule.json, format 2) and evaluation (θ in a cell's
settings, so a cell is recomputed when θ changes).

The bytes hashed, leaf by leaf in `jax.tree_util.tree_flatten_with_path` order: the UTF-8 text
`f"{keystr(path)}|{dtype}|{shape}"`, then the leaf's bytes in C order, little-endian. `dtype` is
NumPy's name of it (`float32`); `shape` is the Python tuple's text, a scalar counting as `(1,)` (as it
always has in checkpoints, so the digests they carry stay valid).
"""

from __future__ import annotations

import hashlib

import jax
import numpy as np


def pytree_digest(tree) -> str:
    """The sha256 (64 hex digits) of `tree`'s leaf paths, dtypes, shapes and bytes; its leaves must be
    readable here (NumPy arrays, scalars, or JAX arrays held wholly by this process)."""
    digest = hashlib.sha256()
    for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
        array = np.asarray(leaf)
        array = np.ascontiguousarray(array.astype(array.dtype.newbyteorder("<"), copy=False))
        digest.update(f"{jax.tree_util.keystr(path)}|{array.dtype}|{array.shape or (1,)}".encode())
        digest.update(array.tobytes())
    return digest.hexdigest()
