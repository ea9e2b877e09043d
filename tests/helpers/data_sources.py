"""Data-source tests' private folders: cache and search paths under tmp_path, bundled fonts, clean caches."""

from __future__ import annotations

import pytest

from metaplastic.plugins.data_sources import glyphs

from helpers.caches import clear_data_caches


@pytest.fixture
def isolated(tmp_path, monkeypatch):
    """Private cache/search folders, bundled fonts only, few glyph copies, clean caches."""
    for env, sub in (("METAPLASTIC_CACHE_DIR", "cache"), ("METAPLASTIC_IDX_DIR", "idx"),
                     ("METAPLASTIC_NPZ_DIR", "npz"), ("METAPLASTIC_TFDS_DATA_DIR", "tfds")):
        (tmp_path / sub).mkdir()
        monkeypatch.setenv(env, str(tmp_path / sub))
    monkeypatch.delenv("TFDS_DATA_DIR", raising=False)
    monkeypatch.setenv("METAPLASTIC_GLYPH_FONTS", "bundled")
    monkeypatch.setattr(glyphs, "VARIANTS", {"train": 2, "test": 1})
    clear_data_caches()
    yield tmp_path
    clear_data_caches()
