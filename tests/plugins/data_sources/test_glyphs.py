"""The `glyphs` source: its fonts field, the render cache and subsets."""

from __future__ import annotations

import os

import numpy as np
import pytest

from metaplastic.core import data as core_data
from metaplastic.core.config import build_components, load_config_file, resolve
from metaplastic.core.interfaces import DatasetUnavailable
from metaplastic.plugins.data_sources import glyphs

from helpers.data_sources import isolated  # noqa: F401  (a fixture, used by name)

pytestmark = pytest.mark.usefixtures("isolated")


def test_glyphs_fonts_field_overrides_the_environment(isolated, monkeypatch):
    from metaplastic.core.config import ConfigError

    seen = []

    def arrays(mode):
        seen.append(mode)
        return {"x_train": np.zeros((62, 28, 28, 1), np.uint8), "y_train": np.arange(62, dtype=np.int32),
                "fonts": np.array(["a"])}

    arrays.cache_clear = lambda: None  # the fixture's teardown clears the real one's cache
    monkeypatch.setattr(glyphs, "glyph_arrays", arrays)
    monkeypatch.setenv("METAPLASTIC_GLYPH_FONTS", "all")
    glyphs.GlyphSource(fonts="bundled").load("glyphs", "train")
    glyphs.GlyphSource().load("glyphs", "train")
    assert seen == ["bundled", "all"]  # the field first, else the environment
    with pytest.raises(ValueError, match="fonts: 'some' is not one of all, bundled"):
        glyphs.GlyphSource(fonts="some")
    quickstart = load_config_file("experiments/train/quickstart.py")
    assert quickstart.data_sources.glyphs.fonts == "bundled"  # the README's main job: the same data everywhere
    with pytest.raises(ConfigError, match="config.data_sources.glyphs: fonts: 'x' is not one of"):
        build_components(resolve(quickstart, [("data_sources.glyphs.fonts", "x")]))
    core_data.data_source("glyphs")  # the refused value did not stay in force for later lookups


def test_glyphs_render_cache_and_subsets(isolated):
    fonts = glyphs.find_fonts("bundled")
    assert len(fonts) >= 12 and all("Last Resort" not in name for _, name in fonts)
    train = core_data.load_dataset("glyphs", "train")
    test = core_data.load_dataset("glyphs", "test")
    assert train.num_classes == 62 and train.x.shape == (62 * len(fonts) * 2, 28, 28, 1)
    assert test.x.shape[0] == 62 * len(fonts) and np.bincount(train.y).tolist() == [2 * len(fonts)] * 62
    ink = train.x.reshape(len(train.x), -1).max(axis=1)
    assert ink.min() > 0.5  # every example shows a glyph
    assert not np.array_equal(train.x[: len(test.x)], test.x)  # different jitter per split
    cached = os.listdir(isolated / "cache" / "glyphs")
    assert len(cached) == 1 and cached[0].endswith(".npz")

    glyphs.glyph_arrays.cache_clear()  # the second build comes from the file
    monkey_calls = []
    original = glyphs.build_glyphs
    glyphs.build_glyphs = lambda fonts: monkey_calls.append(1) or original(fonts)
    try:
        again = glyphs.GlyphSource().load("glyphs", "train")
    finally:
        glyphs.build_glyphs = original
    assert not monkey_calls and np.array_equal(again.x, train.x)

    digits = core_data.load_dataset("glyphs_digits", "all")
    assert digits.num_classes == 10 and set(digits.y.tolist()) == set(range(10))
    assert len(digits.x) == 10 * len(fonts) * 3
    with pytest.raises(DatasetUnavailable, match="only has glyphs"):
        glyphs.GlyphSource().load("letters", "train")
