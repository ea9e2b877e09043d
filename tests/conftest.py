"""Shared fixtures: fake installed plugin distributions, a fresh registry."""

from __future__ import annotations

import os

# Test graphs are small and compiled once each: XLA's backend optimisation costs more than it saves.
if "xla_backend_optimization_level" not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_backend_optimization_level=0").strip()

import pathlib
import textwrap

import pytest

from metaplastic.registries import registry as registry_module


def make_distribution(root: pathlib.Path, dist: str, module: str, source: str,
                      entry_name: str | None = None) -> None:
    """Write an importable module plus a dist-info that advertises it in the `metaplastic` group."""
    (root / f"{module}.py").write_text(textwrap.dedent(source))
    info = root / f"{dist}-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(f"[metaplastic]\n{entry_name or module} = {module}\n")


@pytest.fixture
def fresh_registry(monkeypatch):
    """Rebuild the process registry inside the test, and restore the old one afterwards."""
    monkeypatch.delenv(registry_module.AUTOLOAD_ENV, raising=False)
    old = registry_module._REGISTRY

    def rebuild():
        registry_module._REGISTRY = registry_module.Registry()
        return registry_module._REGISTRY

    yield rebuild
    registry_module._REGISTRY = old


def clear_data_caches() -> None:
    """Forget every in-process dataset cache, so a test sees only the data it set up."""
    from metaplastic.core import classification, text
    from metaplastic.core import data as core_data
    from metaplastic.plugins.data_sources import glyphs
    from metaplastic.plugins.task_families import image_classes

    core_data.load_dataset.cache_clear()
    glyphs.glyph_arrays.cache_clear()
    image_classes._prepared.cache_clear()
    text.vocabulary.cache_clear()
    text.bag_of_words.cache_clear()
    text.word_counts.cache_clear()
    classification.class_index.cache_clear()
