"""Shared fixtures: fake installed plugin distributions, a fresh registry. Also the suite's XLA
flags and the `slow` marker: `slow` tests are skipped unless asked for (`pytest -m slow`)."""

from __future__ import annotations

import importlib.metadata
import os

# Test graphs are small and compiled once each, so compiling dominates the suite's time:
# - XLA's backend optimisation costs more than it saves;
# - XLA:CPU's MLIR fusion emitters compile about twice as slowly as its classic emitters, for the
#   same computation (measured with jaxlib 0.10.2). The flag is given only where jaxlib is known
#   to have it (an unknown flag in XLA_FLAGS aborts the process).
# Tests that compare numbers compare runs made under the same flags (tests/test_distributed.py
# hands them to its worker processes; subprocesses inherit them).
TEST_XLA_FLAGS = ["--xla_backend_optimization_level=0"]
try:
    if tuple(int(p) for p in importlib.metadata.version("jaxlib").split(".")[:2]) >= (0, 6):
        TEST_XLA_FLAGS.append("--xla_cpu_use_fusion_emitters=false")
except (importlib.metadata.PackageNotFoundError, ValueError):
    pass
for _flag in TEST_XLA_FLAGS:
    if _flag.split("=")[0] not in os.environ.get("XLA_FLAGS", ""):
        os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " " + _flag).strip()

import pathlib
import textwrap

import pytest

from metaplastic.registries import registry as registry_module


def pytest_collection_modifyitems(config, items):
    """`slow` tests are skipped unless the -m expression names the marker (`pytest -m slow`)."""
    if "slow" in (config.getoption("markexpr") or ""):
        return
    skip = pytest.mark.skip(reason="slow: run with -m slow (tests/conftest.py)")
    for item in items:
        if item.get_closest_marker("slow"):
            item.add_marker(skip)


def as_float64(tree):
    """Every float32 leaf as float64 (call inside `jax.enable_x64(True)`): gradient checks in float64."""
    import jax
    import jax.numpy as jnp
    return jax.tree.map(lambda a: a.astype(jnp.float64) if a.dtype == jnp.float32 else a, tree)


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
