"""Config fields that were renamed: the one table of their old names, and how a config that still
uses one is read.

A stored config — a workdir's config.json (resuming its run, loading its θ), rule.json, a snapshot's
config — is read under the current names without a word: it was right when it was written, and a run
started before a rename resumes as the same run. A written config — a config file, a study, a
`rule_options` entry, `--config.FIELD=VALUE` — is read the same way, with one line on stderr naming the
new name. A section that holds a field under both names is a one-line ConfigError.
"""

from __future__ import annotations

import copy
import sys
from typing import Any, Iterator

from metaplastic.core.errors import ConfigError

# (section, the component its field belongs to: None for any, old name, current name); a section
# `<kind>_config` is renamed only while `<kind>` chooses that component (another may use the old name)
RENAMED_FIELDS = (
    ("update_rule_config", "metz2019", "normalize_epsilon", "normalise_epsilon"),
    ("meta_objective_config", "ridge_cosdist", "normalize_predictions", "normalise_predictions"),
    ("datasets.*", None, "max_unlabeled", "max_unlabelled"),  # '*': every dataset of a study
)


def _renames(section: tuple[str, ...], component: str | None) -> dict[str, str]:
    """{old: current} for the fields of `section` (its keys from the config's root) owned by
    `component` (the one its `<kind>` chooses)."""
    found = {}
    for pattern, owner, old, new in RENAMED_FIELDS:
        parts = tuple(pattern.split("."))
        if len(parts) == len(section) and all(p in ("*", s) for p, s in zip(parts, section)) \
                and owner in (None, component):
            found[old] = new
    return found


def _owner(parent: dict, key: str) -> str | None:
    """The component a `<kind>_config` section belongs to: what its sibling `<kind>` chooses."""
    kind = key[: -len("_config")] if key.endswith("_config") else None
    chosen = parent.get(kind) if kind else None
    return chosen if isinstance(chosen, str) else None


def current_fields(section: str, component: str | None, fields: dict, where: str = "config.",
                   warn: bool = False) -> dict:
    """`fields` of config section `section` ('update_rule_config', 'datasets.mnist') of `component`
    under their current names (the same dict when none is old). `where` starts an error's line;
    `warn`: say each old name on stderr (a written config, not a stored one)."""
    renames = {old: new for old, new in _renames(tuple(section.split(".")), component).items() if old in fields}
    if not renames:
        return fields
    renamed = {}
    for key, value in fields.items():
        new = renames.get(key)
        if new is not None and new in fields:
            raise ConfigError(f"{where}{section}.{key}: the old name of {new}, which is also given; "
                              f"keep only {new}")
        if new is not None and warn:
            print(f"metaplastic: config.{section}.{key} is now config.{section}.{new}; read as that",
                  file=sys.stderr)
        renamed[new or key] = value
    return renamed


def _sections(tree: dict, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], dict, str | None]]:
    """(path, section, its component) of every dict below `tree`."""
    for key, value in tree.items():
        if isinstance(value, dict):
            yield path + (key,), value, _owner(tree, key)
            yield from _sections(value, path + (key,))


def current_config(config: dict, where: str = "config.", warn: bool = False) -> dict:
    """A config read as a plain dict (JSON, or a ConfigDict's `to_dict()`) with every renamed field
    under its current name; the same dict when it holds no old name (see `current_fields`)."""
    if not isinstance(config, dict) or not any(_renames(path, owner).keys() & section.keys() for path, section, owner in _sections(config)):
        return config
    config = copy.deepcopy(config)
    for path, section, owner in list(_sections(config)):
        fields = current_fields(".".join(path), owner, section, where, warn)
        if fields is not section:
            section.clear()
            section.update(fields)
    return config


def current_overrides(config: Any, overrides: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """`--config.FIELD=VALUE` pairs with an old FIELD under its current name, each said in one line on
    stderr; `config` (once the overrides naming components are applied) says whose fields they are."""
    current = []
    for field, text in overrides:
        section, _, leaf = field.rpartition(".")
        parts = tuple(section.split(".")) if section else ()
        owner = _owner(config, parts[0]) if len(parts) == 1 and hasattr(config, "get") else None
        new = _renames(parts, owner).get(leaf)
        if new is not None:
            print(f"metaplastic: --config.{field} is now --config.{section}.{new}; read as that", file=sys.stderr)
            field = f"{section}.{new}"
        current.append((field, text))
    return current
