"""Shared by the workdir and checkpoint tests: a tiny digits config, θ as NumPy leaves, a checkpoint
damaged on purpose."""

from __future__ import annotations

import pathlib
import shutil

import jax
import numpy as np

from metaplastic.core import config as config_lib


def tiny(**overrides):
    return config_lib.resolve(config_lib.load_config_file("experiments/train/digits.py:tiny"),
                              [(k, str(v)) for k, v in overrides.items()])


def leaves(tree):
    return [np.asarray(x) for x in jax.tree.leaves(jax.device_get(tree))]


def damage(step_dir: pathlib.Path, how: str) -> None:
    if how == "delete":  # a partly deleted checkpoint: its whole state item is gone
        shutil.rmtree(step_dir / "state")
        return
    files = sorted(p for p in step_dir.rglob("*") if p.is_file() and p.stat().st_size > 64
                   and "meta" not in p.parts)
    target = max(files, key=lambda p: p.stat().st_size)
    data = bytearray(target.read_bytes())
    if how == "truncate":
        target.write_bytes(bytes(data[: len(data) // 3]))
    else:
        middle = len(data) // 2
        data[middle: middle + 8] = bytes(b ^ 0xFF for b in data[middle: middle + 8])
        target.write_bytes(bytes(data))
