"""Dataset lookup across every registered data source."""

from __future__ import annotations

import functools

from metaplastic.core.interfaces import Dataset, DatasetUnavailable


@functools.lru_cache(maxsize=32)
def load_dataset(name: str, split: str, source: str | None = None) -> Dataset:
    """`name`/`split` from `source`, or from the first registered source that has it."""
    from metaplastic.registries import get_registry

    registry = get_registry()
    sources = [source] if source else registry.names("data_source")
    reasons = []
    for source_name in sources:
        try:
            return registry.get("data_source", source_name)().load(name, split)
        except DatasetUnavailable as why:
            reasons.append(f"{source_name}: {why}")
    raise DatasetUnavailable(f"dataset '{name}' split '{split}' is unavailable; tried "
                             + "; ".join(reasons or ["no data sources registered"]))
