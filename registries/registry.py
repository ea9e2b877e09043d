"""The registry: pluggy plugin manager + named tables of components by kind.

Built-in plugins (every module of `metaplastic.plugins.<kind folder>`, e.g.
`plugins/update_rules/metz2019.py`) and external packages (entry-point group
``metaplastic``) are registered the same way.
Set ``METAPLASTIC_DISABLE_PLUGIN_AUTOLOAD=1`` to skip external packages.

A plugin can never take the tool down: whatever goes wrong with one (it fails to
import, does not fit the hook specifications, implements a hook that does not
exist, its hook raises or returns something that is not ``{name: factory}``) is
reported in one line on stderr, kept in `Registry.skipped`, and that part of it
is skipped. A name provided twice for one kind is kept with all its candidates
and is an error only when something asks for it (`Registry.entry`).
"""

from __future__ import annotations

import collections.abc
import dataclasses
import difflib
import importlib
import importlib.metadata
import os
import pathlib
import pkgutil
import re
import sys
from typing import Any, Callable

import pluggy

from metaplastic.core.errors import UserError, one_line  # a leaf module: the one base of user errors
from metaplastic.registries import hookspecs

hookimpl = pluggy.HookimplMarker(hookspecs.PROJECT)

AUTOLOAD_ENV = "METAPLASTIC_DISABLE_PLUGIN_AUTOLOAD"
BUILTIN_ORIGIN = "built-in"

KINDS = hookspecs.kinds()  # kind -> hook name, read off the hook specifications
HOOK_NAMES = tuple(KINDS.values())

# What a plugin's own code may raise without stopping the run (SystemExit: a plugin that
# parses sys.argv or calls sys.exit at import). KeyboardInterrupt still stops it.
PLUGIN_ERRORS = (Exception, SystemExit)


class ComponentError(UserError, ValueError):
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


def doc_summary(doc: str | None, limit: int = 100) -> str:
    """The first sentence of a docstring's first paragraph, on one line, at most `limit` characters
    ('' for no docstring); what `metaplastic plugins` and `metaplastic config` show as descriptions."""
    if not isinstance(doc, str) or not doc.strip():
        return ""
    paragraph = " ".join(doc.strip().split("\n\n")[0].split())
    sentence = re.split(r"(?<=[.!?])\s+(?=[A-Z`])", paragraph, maxsplit=1)[0]
    return sentence if len(sentence) <= limit else sentence[: limit - 1].rstrip() + "…"


def component_summary(entry: "Entry", limit: int = 100) -> str:
    """One line saying what a component is: its factory's own docstring, else its module's (one
    component per module), without the module's leading "`name`: "."""
    factory = entry.factory
    own = factory.__dict__.get("__doc__") if isinstance(factory, type) else getattr(factory, "__doc__", None)
    if isinstance(factory, type) and isinstance(own, str) and own.startswith(factory.__name__ + "("):
        own = None  # a dataclass's generated signature, not a description
    if not own:
        module = sys.modules.get(getattr(factory, "__module__", "") or "") or sys.modules.get(entry.module)
        own = re.sub(r"^`[^`]+`( [\w ]+)?: ", "", (getattr(module, "__doc__", None) or "").strip())
    summary = doc_summary(own, limit)
    return summary[:1].upper() + summary[1:]


def _dist_name(dist) -> str:
    try:
        name = dist.metadata["Name"]
    except PLUGIN_ERRORS:
        name = None
    return name or str(getattr(dist, "_path", None) or "unknown distribution")


def _folder_key(dist) -> str | None:
    """The normalised distribution name from its `name-version.dist-info` folder, without reading
    METADATA; None when the folder does not say so plainly (then the metadata is read)."""
    folder = str(getattr(getattr(dist, "_path", None), "name", ""))
    if not folder.endswith(".dist-info"):
        return None
    name, _, version = folder[: -len(".dist-info")].rpartition("-")
    if not name or not version[:1].isdigit():
        return None
    return re.sub(r"[-_.]+", "-", name).lower()


def _not_a_hook(hook_name: str) -> str:
    # compared without the shared prefix, which would make every metaplastic_* name look close
    folders = {hook[len(hookspecs.HOOK_PREFIX):]: hook for hook in HOOK_NAMES}
    bare = hook_name[len(hookspecs.HOOK_PREFIX):] if hook_name.startswith(hookspecs.HOOK_PREFIX) else hook_name
    close = [folders[match] for match in difflib.get_close_matches(bare, list(folders), n=1)]
    hint = f"did you mean {close[0]}?" if close else f"hooks: {', '.join(HOOK_NAMES)}"
    return f"{hook_name} is not a hook ({hint})"


class _PluginManager(pluggy.PluginManager):
    """Takes only implementations of hooks that exist; records the others in `unknown`.

    pluggy would register an implementation of an unknown hook and then fail
    `check_pending` for every plugin; here it is left out and reported instead.
    """

    def __init__(self, project_name: str):
        super().__init__(project_name)
        self.unknown: list[str] = []  # hook names implemented by the plugin being registered

    def parse_hookimpl_opts(self, plugin, name: str):
        opts = super().parse_hookimpl_opts(plugin, name)
        if opts is None:
            return None
        hook_name = opts.get("specname") or name
        if hook_name in HOOK_NAMES:
            return opts
        if not opts.get("optionalhook"):
            self.unknown.append(hook_name)
        return None


class Registry:
    """All components known to this process, by kind and name.

    `candidates[kind][name]` lists every entry offered under that name, in
    registration order (built-ins first); a name with more than one is ambiguous.
    """

    def __init__(self, autoload: bool | None = None, extra_plugins: tuple = ()):
        if autoload is None:
            autoload = os.environ.get(AUTOLOAD_ENV, "").lower() not in ("1", "true", "yes")
        self.plugin_manager = _PluginManager(hookspecs.PROJECT)
        self.plugin_manager.add_hookspecs(hookspecs)
        self.skipped: list[str] = []  # one line per thing of a plugin that was left out
        self._plugins: dict[str, tuple[str, str]] = {}  # plugin name -> (label, origin)
        self._register_builtins()
        if autoload:
            self._register_entry_points()
        for plugin in extra_plugins:
            label = getattr(plugin, "__name__", repr(plugin))
            self._register(plugin, label, label, "test")
        self.candidates: dict[str, dict[str, list[Entry]]] = {kind: {} for kind in KINDS}
        self._collect()

    # ------------------------------------------------------------ registration

    def _register(self, module, name: str, label: str, origin: str) -> None:
        """Register `module` as plugin `name`; `label (origin)` names it in messages."""
        who = f"plugin {label} ({origin})"
        self.plugin_manager.unknown = []
        try:
            self.plugin_manager.register(module, name=name)
        except pluggy.PluginValidationError as error:
            self._skip(f"{who} does not fit the hook specifications ({one_line(error)}); skipped")
            return
        except PLUGIN_ERRORS as error:  # e.g. an attribute that raises when looked at
            self._skip(f"{who} could not be registered ({one_line(error, with_type=True)}); skipped")
            return
        finally:
            unknown, self.plugin_manager.unknown = self.plugin_manager.unknown, []
        self._plugins[name] = (label, origin)
        for hook_name in unknown:
            self._skip(f"{who}: {_not_a_hook(hook_name)}; ignored")

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
        except PLUGIN_ERRORS as error:  # a broken plugin must not stop the run
            self._skip(f"built-in plugin {module_name} failed to import "
                       f"({one_line(error, with_type=True)}); skipped")
            return
        self._register(module, module_name, module_name, BUILTIN_ORIGIN)

    def _entry_points(self):
        """(distribution name, entry point) of the `metaplastic` group, one distribution at a time.

        Like `importlib.metadata.entry_points`, each distribution (by normalised name) counts
        once, the first on the path; unlike it, a distribution whose entry_points.txt cannot
        be read is skipped alone instead of failing the lookup for all.
        """
        seen = set()
        for dist in importlib.metadata.distributions():
            # the name from the folder (dist-info), as importlib.metadata does: parsing every
            # installed distribution's METADATA for its name costs ~0.1-0.3 s per command
            key = _folder_key(dist) or re.sub(r"[-_.]+", "-", _dist_name(dist)).lower()
            if key in seen:
                continue
            seen.add(key)
            try:
                found = list(dist.entry_points.select(group=hookspecs.PROJECT))
            except PLUGIN_ERRORS as error:
                self._skip(f"distribution {_dist_name(dist)}: its entry points could not be read "
                           f"({one_line(error, with_type=True)}); skipped")
                continue
            for entry_point in found:
                yield _dist_name(dist), entry_point

    def _register_entry_points(self) -> None:
        for dist, entry_point in self._entry_points():
            try:
                module = entry_point.load()
            except PLUGIN_ERRORS as error:
                self._skip(f"plugin '{entry_point.name}' from {dist} failed to import "
                           f"({one_line(error, with_type=True)}); skipped")
                continue
            if self.plugin_manager.is_registered(module):
                continue
            self._register(module, f"{dist}:{entry_point.name}", entry_point.name, dist)

    def _skip(self, line: str) -> None:
        self.skipped.append(line)
        _warn(line)

    # ------------------------------------------------------------ collection

    def _collect(self) -> None:
        for kind, hook_name in KINDS.items():
            caller = getattr(self.plugin_manager.hook, hook_name)
            for impl in caller.get_hookimpls():  # in registration order: built-ins first
                label, origin = self._plugins.get(impl.plugin_name, (impl.plugin_name, impl.plugin_name))
                who = f"plugin {label} ({origin}): hook {hook_name}"
                module = getattr(impl.plugin, "__name__", impl.plugin_name)
                try:
                    provided = impl.function()
                    items = list(provided.items()) if isinstance(provided, collections.abc.Mapping) else None
                except PLUGIN_ERRORS as error:
                    self._skip(f"{who} raised {one_line(error, with_type=True)}; skipped")
                    continue
                if items is None:
                    what = "None" if provided is None else type(provided).__name__
                    self._skip(f"{who} returned {what}, not a mapping of names to factories; skipped")
                    continue
                wrong = []
                for name, factory in items:
                    if not isinstance(name, str) or not name:
                        wrong.append(f"key {name!r} is not a non-empty str")
                    elif not callable(factory):
                        wrong.append(f"'{name}' is {type(factory).__name__}, not callable")
                    else:
                        entry = Entry(kind, name, factory, origin, module)
                        self.candidates[kind].setdefault(name, []).append(entry)
                if wrong:
                    self._skip(f"{who} returned entries that are not name: factory "
                               f"({'; '.join(wrong)}); those skipped")

    # ------------------------------------------------------------ lookup

    def names(self, kind: str) -> list[str]:
        """The names `get` resolves (ambiguous ones are left out; see `ambiguous`)."""
        self._check_kind(kind)
        return sorted(name for name, found in self.candidates[kind].items() if len(found) == 1)

    def ambiguous(self, kind: str) -> list[str]:
        """Names that more than one plugin provides for `kind`: an error when used."""
        self._check_kind(kind)
        return sorted(name for name, found in self.candidates[kind].items() if len(found) > 1)

    def entry(self, kind: str, name: str) -> Entry:
        self._check_kind(kind)
        table = self.candidates[kind]
        if name not in table:
            known = ", ".join(sorted(table)) or "none"
            close = difflib.get_close_matches(name, list(table), n=1)
            hint = f"; did you mean '{close[0]}'?" if close else ""
            raise ComponentError(f"unknown {kind} '{name}' (registered: {known}){hint}")
        if len(table[name]) > 1:
            raise ComponentError(self._duplicate(kind, name))
        return table[name][0]

    def get(self, kind: str, name: str) -> Callable[..., Any]:
        return self.entry(kind, name).factory

    def _duplicate(self, kind: str, name: str) -> str:
        found = [f"{entry.origin} ({entry.module})" for entry in self.candidates[kind][name]]
        return (f"duplicate {kind} '{name}': provided by {', by '.join(found[:-1])} and by {found[-1]}; "
                f"uninstall or rename one of them")

    def all_entries(self) -> list[Entry]:
        """Every candidate of every kind, by kind then name (both candidates of an ambiguous name)."""
        return [entry for kind in KINDS for _, found in sorted(self.candidates[kind].items())
                for entry in found]

    REPORT_HEADER = ("kind", "name", "origin", "description", "module")

    def report_lines(self, description_chars: int = 64) -> list[str]:
        """What `metaplastic plugins` prints: the table of entries (ambiguous ones marked), each
        with a one-line description (`component_summary`), then one line per ambiguous name and per
        skipped part of a plugin."""
        header = self.REPORT_HEADER
        rows = []
        for e in self.all_entries():
            note = "(ambiguous) " if len(self.candidates[e.kind][e.name]) > 1 else ""
            rows.append((e.kind, e.name, e.origin, note + (component_summary(e, description_chars) or "-"),
                         e.module))
        widths = [max(len(row[i]) for row in rows + [header]) for i in range(len(header))]
        lines = ["  ".join(col.ljust(w) for col, w in zip(row, widths[:-1] + [0])).rstrip()
                 for row in [header] + rows]
        notes = [f"ambiguous: {self._duplicate(kind, name)}"
                 for kind in KINDS for name in self.ambiguous(kind)]
        notes += [f"skipped: {line}" for line in self.skipped]
        return lines + ([""] + notes if notes else [])

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
