"""Shared by the task-family tests: private cache and npz folders, bundled fonts, clean caches."""

from __future__ import annotations

import jax
import numpy as np
import pytest

from metaplastic.core.interfaces import Architecture
from metaplastic.plugins.data_sources import glyphs

from helpers.caches import clear_data_caches


ARCH = Architecture(64, (32, 16))


@pytest.fixture
def isolated(tmp_path, monkeypatch):
    (tmp_path / "npz").mkdir()
    monkeypatch.setenv("METAPLASTIC_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("METAPLASTIC_NPZ_DIR", str(tmp_path / "npz"))
    monkeypatch.setenv("METAPLASTIC_GLYPH_FONTS", "bundled")
    monkeypatch.setattr(glyphs, "VARIANTS", {"train": 2, "test": 1})
    clear_data_caches()
    yield tmp_path
    clear_data_caches()


def key(i=0):
    return jax.random.key(i)


def tree_equal(a, b):
    return all(jax.tree.leaves(jax.tree.map(np.array_equal, a, b)))


POSITIVE = "great wonderful superb moving brilliant".split()
NEGATIVE = "awful boring terrible dull waste".split()
NEUTRAL = "film movie plot actor scene story director music".split()


def write_corpus(folder, n=60):
    rng = np.random.default_rng(0)

    def review(label):
        words = list(rng.choice(NEUTRAL, 6)) + list(rng.choice(POSITIVE if label else NEGATIVE, 3))
        return " ".join(words) + " <br /><br />the end"

    y = np.arange(n) % 2
    np.savez(folder / "imdb_reviews.npz", x_train=np.asarray([review(v) for v in y]), y_train=y,
             x_test=np.asarray([review(v) for v in y[:20]]), y_test=y[:20])
