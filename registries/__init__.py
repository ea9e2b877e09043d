"""Named component registries, filled through pluggy hooks (see `hookspecs`)."""

from metaplastic.registries.hookspecs import training_kinds
from metaplastic.registries.registry import (
    KINDS,
    ComponentError,
    Registry,
    get_registry,
    hookimpl,
)

__all__ = ["KINDS", "ComponentError", "Registry", "get_registry", "hookimpl", "training_kinds"]
