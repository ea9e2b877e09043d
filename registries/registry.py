"""The registry: pluggy plugin manager + named tables of components by kind.

Built-in plugins (every module of `metaplastic.plugins.<kind folder>`, e.g.
`plugins/update_rules/metz2019.py`) and external packages (entry-point group
``metaplastic``) are registered the same way.
Set ``METAPLASTIC_DISABLE_PLUGIN_AUTOLOAD=1`` to skip external packages.
"""

from __future__ import annotations

import dataclasses
import difflib
import importlib
import importlib.metadata
import os
import pathlib
import pkgutil
import sys
from typing import Any, Callable

import pluggy

from metaplastic.registries import hookspecs

hookimpl = pluggy.HookimplMarker(hookspecs.PROJECT)

AUTOLOAD_ENV = "METAPLASTIC_DISABLE_PLUGIN_AUTOLOAD"
BUILTIN_ORIGIN = "built-in"

KINDS = hookspecs.kinds()  # kind -> hook name, read off the hook specifications


class ComponentError(ValueError):
    """A component is missing, duplicated or misconfigured."""


@dataclasses.dataclass(frozen=True)
class Entry:
    kind: str
    name: str
    factory: Callable[..., Any]
    origin: str  # "built-in" or the providing distribution's name
    module: str


def _warn(message: str) -> None:
    print(f"metaplastic: {message}", file=sys.stderr)


class Registry:
    """All components known to this process, by kind and name."""

    def __init__(self, autoload: bool | None = None, extra_plugins: tuple = ()):
        if autoload is None:
            autoload = os.environ.get(AUTOLOAD_ENV, "").lower() not in ("1", "true", "yes")
        self.plugin_manager = pluggy.PluginManager(hookspecs.PROJECT)
        self.plugin_manager.add_hookspecs(hookspecs)
        self.skipped: list[str] = []  # one line per plugin that failed to import
        self._origins: dict[str, str] = {}  # plugin name -> origin
        self._register_builtins()
        if autoload:
            self._register_entry_points()
        for plugin in extra_plugins:
            self._register(plugin, getattr(plugin, "__name__", repr(plugin)), "test")
        self.plugin_manager.check_pending()
        self.tables: dict[str, dict[str, Entry]] = {kind: {} for kind in KINDS}
        self._collect()

    def _register(self, module, name: str, origin: str) -> None:
        self.plugin_manager.register(module, name=name)
        self._origins[name] = origin

    def _register_builtins(self) -> None:
        import metaplastic.plugins as package

        for kind in KINDS:
            folder = pathlib.Path(package.__path__[0]) / hookspecs.folder(kind)
            for info in sorted(pkgutil.iter_modules([str(folder)]), key=lambda m: m.name):
                if not info.name.startswith("_"):
                    self._register_builtin(f"{package.__name__}.{folder.name}.{info.name}")

    def _register_builtin(self, module_name: str) -> None:
        try:
            module = importlib.import_module(module_name)
        except Exception as error:  # a broken plugin must not stop the run
            self._skip(f"built-in plugin {module_name} failed to import "
                       f"({type(error).__name__}: {error}); skipped")
            return
        self._register(module, module_name, BUILTIN_ORIGIN)

    def _register_entry_points(self) -> None:
        for entry_point in importlib.metadata.entry_points(group=hookspecs.PROJECT):
            dist = entry_point.dist.name if entry_point.dist else "unknown distribution"
            try:
                module = entry_point.load()
            except Exception as error:
                self._skip(f"plugin '{entry_point.name}' from {dist} failed to import "
                           f"({type(error).__name__}: {error}); skipped")
                continue
            if self.plugin_manager.is_registered(module):
                continue
            self._register(module, f"{dist}:{entry_point.name}", dist)

    def _skip(self, line: str) -> None:
        self.skipped.append(line)
        _warn(line)

    def _collect(self) -> None:
        for kind, hook_name in KINDS.items():
            caller = getattr(self.plugin_manager.hook, hook_name)
            for impl in caller.get_hookimpls():
                origin = self._origins.get(impl.plugin_name, impl.plugin_name)
                module = getattr(impl.plugin, "__name__", impl.plugin_name)
                provided = impl.function() or {}
                for name, factory in provided.items():
                    existing = self.tables[kind].get(name)
                    if existing is not None:
                        raise ComponentError(
                            f"duplicate {kind} '{name}': provided by {existing.origin} "
                            f"({existing.module}) and by {origin} ({module})")
                    self.tables[kind][name] = Entry(kind, name, factory, origin, module)

    def names(self, kind: str) -> list[str]:
        self._check_kind(kind)
        return sorted(self.tables[kind])

    def entry(self, kind: str, name: str) -> Entry:
        self._check_kind(kind)
        table = self.tables[kind]
        if name not in table:
            known = ", ".join(sorted(table)) or "none"
            close = difflib.get_close_matches(name, list(table), n=1)
            hint = f"; did you mean '{close[0]}'?" if close else ""
            raise ComponentError(f"unknown {kind} '{name}' (registered: {known}){hint}")
        return table[name]

    def get(self, kind: str, name: str) -> Callable[..., Any]:
        return self.entry(kind, name).factory

    def all_entries(self) -> list[Entry]:
        return [entry for kind in KINDS for _, entry in sorted(self.tables[kind].items())]

    @staticmethod
    def _check_kind(kind: str) -> None:
        if kind not in KINDS:
            raise ComponentError(f"unknown component kind '{kind}' (kinds: {', '.join(KINDS)})")


_REGISTRY: Registry | None = None


def get_registry(refresh: bool = False) -> Registry:
    """The process-wide registry, built on first use."""
    global _REGISTRY
    if _REGISTRY is None or refresh:
        _REGISTRY = Registry()
    return _REGISTRY
