"""`pytree_digest`: the documented byte layout, every part of a leaf counted, and the value checkpoints
have always stored."""

from __future__ import annotations

import hashlib

import jax
import jax.numpy as jnp
import ml_dtypes
import numpy as np
import pytest

from metaplastic.core.checkpoint import state_digest
from metaplastic.core.digest import pytree_digest


def reference_digest(named_leaves: list[tuple[str, np.ndarray]]) -> str:
    """The layout as core/digest.py documents it, written out by hand: per leaf in flattening order,
    'path|dtype|shape' (a scalar as (1,)), then its bytes in C order, little-endian."""
    digest = hashlib.sha256()
    for path, array in named_leaves:
        shape = array.shape or (1,)
        digest.update(f"{path}|{array.dtype.name}|{shape}".encode())
        digest.update(array.astype(array.dtype.newbyteorder("<")).tobytes(order="C"))
    return digest.hexdigest()


def tree():
    return {"theta": {"w": np.arange(6, dtype=np.float32).reshape(2, 3),
                      "g": np.asarray([1.5, -2], ml_dtypes.bfloat16)},
            "opt_state": {"count": np.int32(7), "mask": np.asarray([True, False])}, "step": 3}


def test_the_digest_is_the_documented_byte_layout():
    w, g = tree()["theta"]["w"], tree()["theta"]["g"]
    expected = reference_digest([("['opt_state']['count']", np.asarray(np.int32(7))),
                                 ("['opt_state']['mask']", np.asarray([True, False])),
                                 ("['step']", np.asarray(3)),
                                 ("['theta']['g']", g), ("['theta']['w']", w)])
    assert pytree_digest(tree()) == expected
    fortran = np.asfortranarray(w)  # the same values in another memory order: C order is hashed
    assert pytree_digest({"w": fortran}) == pytree_digest({"w": w}) == reference_digest([("['w']", w)])


def test_it_is_the_value_checkpoints_have_always_stored():
    # computed with the checkpoint digest of earlier versions, so their state_sha256 values stay valid
    # (a checkpoint's state is nested dicts, as here: Flax's state dict of the trainer's state)
    assert pytree_digest(tree()) == "c322d36395ff9c6a7e8a36b2393db80c003490f64ffa472426a609713853b43d"
    assert state_digest(tree()) == pytree_digest(tree())


def test_equal_trees_give_equal_digests_on_any_device_or_byte_order():
    on_device = jax.tree.map(jnp.asarray, {"a": np.linspace(0, 1, 5, dtype=np.float32), "b": np.int32(2)})
    on_host = {"a": np.linspace(0, 1, 5, dtype=np.float32), "b": np.int32(2)}
    assert pytree_digest(on_device) == pytree_digest(on_host)
    big_endian = {"a": on_host["a"].astype(">f4"), "b": np.asarray(2, ">i4")}
    assert pytree_digest(big_endian) == pytree_digest(on_host)


@pytest.mark.parametrize("change", [
    lambda t: {**t, "w": t["w"] + np.float32(1e-7)},                # one value
    lambda t: {**t, "w": t["w"].reshape(3, 2)},                     # the shape, same bytes
    lambda t: {**t, "w": t["w"].view(np.int32)},                    # the dtype, same bytes
    lambda t: {"v": t["w"], "b": t["b"]},                           # a path, same leaves in the same order
    lambda t: {**t, "c": np.zeros(0, np.float32)},                  # an extra, empty leaf
    lambda t: {"w": t["w"]},                                        # a leaf fewer
    lambda t: {"w": [t["w"]], "b": t["b"]},                         # the structure around a leaf
])
def test_every_part_of_a_leaf_is_counted(change):
    base = {"w": np.arange(6, dtype=np.float32).reshape(2, 3), "b": np.float32(1)}
    assert pytree_digest(change(base)) != pytree_digest(base)
