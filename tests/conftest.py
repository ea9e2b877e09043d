"""Root of every test folder: the suite's XLA flags (set before JAX starts), the `slow` marker (`slow`
tests are skipped unless asked for: `pytest -m slow`), and a fresh registry. What test modules share
otherwise lives in tests/helpers/."""

from __future__ import annotations

from helpers.xla_flags import set_test_xla_flags

set_test_xla_flags()

import pytest  # noqa: E402  (after the XLA flags)

from metaplastic.registries import registry as registry_module  # noqa: E402


def pytest_collection_modifyitems(config, items):
    """`slow` tests are skipped unless the -m expression names the marker (`pytest -m slow`)."""
    if "slow" in (config.getoption("markexpr") or ""):
        return
    skip = pytest.mark.skip(reason="slow: run with -m slow (tests/conftest.py)")
    for item in items:
        if item.get_closest_marker("slow"):
            item.add_marker(skip)


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
