"""Experiment configs: loading `get_config(arg)` files, command-line overrides, building components.

A component is chosen by name, `config.<kind> = "name"`, and configured by
`config.<kind>_config`, whose fields are the keyword arguments of the
registered factory. Missing fields are filled from the factory's defaults, so
every field can be overridden from the command line, and the config is then
locked: a misspelt field or a wrong type is a one-line `ConfigError`.

Data sources are all consulted (none is chosen), so they are configured by name:
`config.data_sources.<source>` holds the fields of each source that needs settings (training
configs and studies alike), filled from that source's defaults; `--config.data_sources.<source>.<field>=v`
adds the section on the command line.

It is long because a config file, its variants, the overrides, every component's section (data
sources included) and the training fields' checks are one path from a file to built components, and
each step's one-line error names what the others define.
"""

from __future__ import annotations

import ast
import dataclasses
import difflib
import importlib.util
import inspect
import pathlib
import sys
import traceback
from typing import Any, Callable, Mapping

import ml_collections

from metaplastic.core.errors import ConfigError, UserError, one_line
from metaplastic.core.renamed_fields import current_config, current_overrides
from metaplastic.core.unroll import TruncatedUnroll
from metaplastic.registries import ComponentError, get_registry, training_kinds

# config field -> registry kind, in build order (read off the hook specifications)
COMPONENT_FIELDS = training_kinds()
# components a training config may choose when it has the field (config.trainer="genome" uses it)
OPTIONAL_COMPONENT_FIELDS = ("genome_strategy",)


# while `read_config_file` runs a get_config: the variant table of each apply_variant call, in order
_variant_tables: list[Mapping[str, Callable]] | None = None


@dataclasses.dataclass(frozen=True)
class ConfigFile:
    """What a config file says about itself: its path, its docstring and its `:variants`
    (name -> the first sentence of the variant function's docstring, '' without one)."""

    path: pathlib.Path
    doc: str
    variants: dict[str, str]


def apply_variant(config: ml_collections.ConfigDict, arg: str | None,
                  variants: Mapping[str, Callable[[ml_collections.ConfigDict], Any]],
                  where: str) -> ml_collections.ConfigDict:
    """`config` changed in place by the variant named `arg` (none when `arg` is empty).

    Every config file picks its `:arg` variants through here, so an unknown one is a one-line
    error naming the known ones instead of being silently ignored (and `metaplastic config FILE`
    lists them: see `read_config_file`).
    """
    if _variant_tables is not None:
        _variant_tables.append(variants)
    if arg:
        if arg not in variants:
            raise ConfigError(f"{where}: unknown variant '{arg}' (known: {', '.join(variants) or 'none'})")
        variants[arg](config)
    return config


def _config_file(spec: str, shipped: pathlib.Path | None) -> tuple[pathlib.Path, str | None]:
    path, _, arg = spec.partition(":")
    candidate = pathlib.Path(path)
    if not candidate.exists() and shipped is not None:  # the same path among the installed configs
        parts = candidate.parts
        relative = pathlib.Path(*parts[parts.index("experiments") + 1:]) if "experiments" in parts \
            else candidate
        shipped_path = shipped / relative
        if shipped_path.is_file():
            print(f"metaplastic: config file '{path}' not found here; using the installed "
                  f"experiments/{relative}", file=sys.stderr)
            candidate = shipped_path
    if not candidate.is_file():
        raise ConfigError(f"config file '{path}' not found")
    return candidate, (arg or None)


def load_config_file(spec: str, shipped: str | pathlib.Path | None = None) -> ml_collections.ConfigDict:
    """`path/to/x.py[:arg]` -> get_config(arg).

    `shipped`: a folder of installed configs (the command line passes the package's
    experiments/) tried, with a one-line notice, when `path` does not exist.

    A config file is the user's code: a syntax error in it, or an exception raised while it is
    imported or while `get_config` runs, is a one-line `ConfigError` naming the file and line.
    """
    return read_config_file(spec, shipped)[0]


def read_config_file(spec: str, shipped: str | pathlib.Path | None = None
                     ) -> tuple[ml_collections.ConfigDict, ConfigFile]:
    """`load_config_file`, plus the file's docstring and variants. The variants are the table its
    get_config handed to `apply_variant` last (a file built on another's config calls that one's
    get_config, and so its apply_variant, first)."""
    global _variant_tables
    path, arg = _config_file(spec, pathlib.Path(shipped) if shipped else None)
    outer, _variant_tables = _variant_tables, []
    try:
        config = _run_config_file(path, arg)
        table = _variant_tables[-1] if _variant_tables else {}
    finally:
        _variant_tables = outer
    from metaplastic.registries.registry import doc_summary

    variants = {name: doc_summary(getattr(function, "__doc__", None)) for name, function in table.items()}
    return config, ConfigFile(path, config_module_doc(path), variants)


def config_module_doc(path: pathlib.Path) -> str:
    """The module docstring of a config file, read without running it ('' when it has none)."""
    try:
        return ast.get_docstring(ast.parse(path.read_text())) or ""
    except (OSError, SyntaxError, ValueError, UnicodeDecodeError):
        return ""


def _run_config_file(path: pathlib.Path, arg: str | None) -> ml_collections.ConfigDict:
    module_spec = importlib.util.spec_from_file_location(f"metaplastic_config_{path.stem}", path)
    module = importlib.util.module_from_spec(module_spec)
    try:
        module_spec.loader.exec_module(module)
    except SyntaxError as error:
        where = "" if not error.filename or _same_file(error.filename, path) else f" (in {error.filename})"
        raise ConfigError(f"config file '{path}' line {error.lineno}: syntax error{where}: {error.msg}") from None
    except ConfigError:
        raise
    except Exception as error:  # noqa: BLE001 - the user's file, reported in one line
        raise ConfigError(f"config file '{path}'{_line_in(path, error)}: {one_line(error, with_type=True)} "
                          "(while importing it)") from None
    if not hasattr(module, "get_config"):
        raise ConfigError(f"config file '{path}' has no get_config()")
    params = inspect.signature(module.get_config).parameters
    try:
        config = module.get_config(arg) if params else module.get_config()
    except ConfigError:
        raise
    except Exception as error:  # noqa: BLE001 - the user's file, reported in one line
        raise ConfigError(f"config file '{path}'{_line_in(path, error)}: get_config raised "
                          f"{one_line(error, with_type=True)}") from None
    if not isinstance(config, ml_collections.ConfigDict):
        if not isinstance(config, dict):
            raise ConfigError(f"config file '{path}': get_config() returned {type(config).__name__}, "
                              "not a ConfigDict (or a dict)")
        try:
            config = ml_collections.ConfigDict(config)
        except (TypeError, ValueError, AttributeError) as error:
            raise ConfigError(f"config file '{path}': get_config() returned a dict that is no config "
                              f"({one_line(error, with_type=True)})") from None
    return config


def _same_file(name: str, path: pathlib.Path) -> bool:
    try:
        return pathlib.Path(name).resolve() == path.resolve()
    except (OSError, ValueError):
        return False


def _line_in(path: pathlib.Path, error: BaseException) -> str:
    """' line N': where in the config file `path` the error was raised (the innermost of its traceback's
    entries there), or ''; the traceback is the only record of it."""
    lines = [entry.lineno for entry in traceback.extract_tb(error.__traceback__) if _same_file(entry.filename, path)]
    return f" line {lines[-1]}" if lines else ""


def component_defaults(kind: str, name: str) -> dict[str, Any]:
    """Default keyword arguments of a registered component factory (dataclass or function)."""
    factory = get_registry().get(kind, name)
    defaults = {}
    if dataclasses.is_dataclass(factory):
        for field in dataclasses.fields(factory):
            if field.default is not dataclasses.MISSING:
                defaults[field.name] = field.default
            elif field.default_factory is not dataclasses.MISSING:
                defaults[field.name] = field.default_factory()
    else:
        for param in inspect.signature(factory).parameters.values():
            if param.default is not inspect.Parameter.empty:
                defaults[param.name] = param.default
    # nested components (e.g. a rule's base model) are built by the engine, not configured here
    return {k: v for k, v in defaults.items() if _is_config_value(v)}


def _is_config_value(value) -> bool:
    if isinstance(value, (tuple, list)):
        return all(_is_config_value(v) for v in value)
    return value is None or isinstance(value, (bool, int, float, str))


def parse_value(field: str, text: str, current: Any) -> Any:
    """A command-line value `text` for `field`, of the type of its `current` value."""
    if isinstance(current, bool):
        if text.lower() in ("true", "1", "yes"):
            return True
        if text.lower() in ("false", "0", "no"):
            return False
        raise ConfigError(f"{field}: expected a bool, got '{text}'")
    if isinstance(current, str):
        return text
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError):
        if current is None:
            return text
        if isinstance(current, (tuple, list)) and text.strip("() "):  # bare words: a,b or (a, b)
            return tuple(_bare_item(part.strip()) for part in text.strip("() ").split(",") if part.strip())
        raise ConfigError(f"{field}: expected {type(current).__name__}, got '{text}'") from None
    if isinstance(current, float) and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if isinstance(current, (tuple, list)) and isinstance(value, (int, float, str)):
        value = (value,)
    if isinstance(value, list):
        value = tuple(value)
    if current is not None and not isinstance(value, type(current)) and not (
            isinstance(current, (tuple, list)) and isinstance(value, (tuple, list))):
        raise ConfigError(f"{field}: expected {type(current).__name__}, got '{text}'")
    return value


def _bare_item(text: str) -> Any:
    """One item of a comma-separated tuple value: a Python literal where it is one, else the word."""
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def lookup(config, dotted: str):
    """(parent section, leaf name) of `a.b.c`; a one-line ConfigError if it does not exist."""
    *parents, leaf = dotted.split(".")
    node = config
    for i, part in enumerate(parents):
        if not isinstance(node, ml_collections.ConfigDict) or part not in node:
            unknown_field(config, ".".join(parents[: i + 1]))
        node = node[part]
    if not isinstance(node, ml_collections.ConfigDict) or leaf not in node:
        unknown_field(config, dotted)
    return node, leaf


def _all_fields(config, prefix=""):
    for key, value in config.items():
        yield prefix + key
        if isinstance(value, ml_collections.ConfigDict):
            yield from _all_fields(value, prefix + key + ".")


def unknown_field(config, dotted: str):
    """Raise the one-line error for a field that does not exist, with the closest existing one
    (within a component's section: that component's fields, and which components have it)."""
    section, _, leaf = dotted.rpartition(".")
    kind = section[: -len("_config")] if section.endswith("_config") else ""
    if kind and isinstance(config.get(kind), str) and isinstance(config.get(section), ml_collections.ConfigDict):
        _unknown_component_field(config, kind, leaf)
    close = difflib.get_close_matches(dotted, list(_all_fields(config)), n=1)
    hint = f"; did you mean 'config.{close[0]}'?" if close else ""
    raise ConfigError(f"unknown config field 'config.{dotted}'{hint}")


def _unknown_component_field(config, kind: str, leaf: str, shown: int = 8):
    """'config.update_rule_config.hidden: not a field of update_rule 'metz2019' (fields: ...); did you
    mean ...? (a field of update_rule 'simple_local')' — after another component was chosen, its
    fields are what a user still types."""
    fields = list(config[kind + "_config"].keys())
    close = difflib.get_close_matches(leaf, fields, n=1)
    listed = ", ".join(fields[:shown]) + (f", … ({len(fields)} in all)" if len(fields) > shown else "")
    hint = f"; did you mean 'config.{kind}_config.{close[0]}'?" if close else ""
    registry = get_registry()
    others = []
    for name in registry.names(kind):
        try:
            if name != config[kind] and leaf in component_defaults(kind, name):
                others.append(f"'{name}'")
        except (ComponentError, TypeError, ValueError):
            continue
    owners = f" ({leaf} is a field of {kind} {', '.join(others[:3])})" if others else ""
    raise ConfigError(f"config.{kind}_config.{leaf}: not a field of {kind} '{config[kind]}' "
                      f"(fields: {listed or 'none'}){hint}{owners}")


OVERRIDE_PREFIX = "--config."


def parse_overrides(args: list[str]) -> list[tuple[str, str]]:
    """['--config.a.b=1', '--config.c', '2', ...] -> [('a.b', '1'), ('c', '2'), ...].

    As with absl flags, `--config.field value` (the value in the next argument) is the same as
    `--config.field=value`; a `--config.field` with no value after it is a one-line error.
    """
    pairs = []
    args = list(args)
    i = 0
    while i < len(args):
        arg = args[i]
        if not arg.startswith(OVERRIDE_PREFIX) or len(arg) == len(OVERRIDE_PREFIX):
            raise ConfigError(f"unrecognised argument '{arg}' (expected --config.field=value "
                              "or --config.field value)")
        if "=" in arg:
            field, _, value = arg[len(OVERRIDE_PREFIX):].partition("=")
        else:
            field = arg[len(OVERRIDE_PREFIX):]
            if i + 1 >= len(args) or args[i + 1].startswith(OVERRIDE_PREFIX):
                raise ConfigError(f"config.{field}: no value given (expected --config.{field}=value "
                                  f"or --config.{field} value)")
            i += 1
            value = args[i]
        pairs.append((field, value))
        i += 1
    return pairs


def resolve(config: ml_collections.ConfigDict, overrides: list[tuple[str, str]] = ()) -> ml_collections.ConfigDict:
    """Apply overrides, fill component defaults, validate, lock. Returns a new ConfigDict."""
    config = ml_collections.ConfigDict(current_config(config.to_dict(), warn=True))
    config.unlock()
    remaining = []
    for field, text in overrides:  # component names first: they decide which fields exist
        if field in COMPONENT_FIELDS or (field in OPTIONAL_COMPONENT_FIELDS and field in config):
            if text != config.get(field):
                config[field + "_config"] = ml_collections.ConfigDict()
            config[field] = text
        else:
            remaining.append((field, text))
    remaining = current_overrides(config, remaining)  # whose fields they are is known now
    registry = get_registry()
    optional = tuple(kind for kind in OPTIONAL_COMPONENT_FIELDS if kind in config)
    for kind in COMPONENT_FIELDS + optional:
        if kind not in config:
            raise ConfigError(f"config.{kind}: missing (registered: {', '.join(registry.names(kind))})")
        try:
            defaults = component_defaults(kind, config[kind])
        except ComponentError as error:
            raise ConfigError(f"config.{kind}: {error}") from None
        section = config.get(kind + "_config") or ml_collections.ConfigDict()
        config[kind + "_config"] = merge_section(f"{kind}_config", defaults, section,
                                                 f"{kind} '{config[kind]}'")
    fill_data_sources(config, remaining)
    config.lock()
    apply_overrides(config, remaining)
    validate_training(config)
    return config


DATA_SOURCES = "data_sources"


def fill_data_sources(config: ml_collections.ConfigDict, overrides=()) -> None:
    """`config.data_sources.<source>`, one section per data source that needs settings, each filled
    from its source's defaults (in place, on an unlocked config). A source named only by an override
    (`data_sources.<source>.<field>`) gets its section here; an unknown source or field is a one-line
    ConfigError. A config that names no source is left without the section, as it was."""
    named = []
    for field, _ in overrides:
        parts = field.split(".")
        if parts[0] == DATA_SOURCES and len(parts) == 3 and parts[1] not in named:
            named.append(parts[1])
    if DATA_SOURCES not in config and not named:
        return
    sections = config.get(DATA_SOURCES)
    if sections is None:
        sections = ml_collections.ConfigDict()
    if not isinstance(sections, ml_collections.ConfigDict):
        raise ConfigError(f"config.{DATA_SOURCES}: expected a section per data source "
                          f"({{source: {{field: value}}}}), got {sections!r}")
    filled = ml_collections.ConfigDict()
    for name in list(sections.keys()) + [n for n in named if n not in sections]:
        try:
            defaults = component_defaults("data_source", name)
        except ComponentError as error:
            raise ConfigError(f"config.{DATA_SOURCES}.{name}: {error}") from None
        section = sections.get(name, ml_collections.ConfigDict())
        if not isinstance(section, ml_collections.ConfigDict):
            raise ConfigError(f"config.{DATA_SOURCES}.{name}: expected the source's fields "
                              f"({{field: value}}), got {section!r}")
        owner = f"data_source '{name}'"
        filled[name] = merge_section(f"{DATA_SOURCES}.{name}", defaults, section, owner)
        for field, _ in overrides:
            parts = field.split(".")
            if parts[:2] == [DATA_SOURCES, name] and len(parts) == 3 and parts[2] not in defaults:
                merge_section(f"{DATA_SOURCES}.{name}", defaults,
                              ml_collections.ConfigDict({parts[2]: None}), owner)  # raises, naming it
    config[DATA_SOURCES] = filled


def validate_training(config: ml_collections.ConfigDict) -> None:
    """The engine's training fields, checked once the overrides are applied: a one-line ConfigError
    naming the field (the trainer's own checks would come later, without the config's name)."""
    def bad(field, why):
        raise ConfigError(f"config.{field}: {why}")

    def get(field):
        node = config
        for part in field.split("."):
            if not isinstance(node, ml_collections.ConfigDict) or part not in node:
                return None
            node = node[part]
        return node

    def number(field, low, strict=False):
        value = get(field)
        if value is None:
            return
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            bad(field, f"expected a number, got {value!r}")
        if value < low or (strict and value == low):
            bad(field, f"must be {'>' if strict else '>='} {low}, got {value!r}")

    def sizes(field, low):
        value = get(field)
        if value is None:
            return
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            value = (value,)
        if not isinstance(value, (tuple, list)) or not value:
            bad(field, f"need at least one value, got {value!r}")
        if any(isinstance(v, bool) or not isinstance(v, int) or v < low for v in value):
            bad(field, f"each value must be an integer >= {low}, got {tuple(value)!r}")

    for field, low in (("batch_size", 1), ("num_steps", 0), ("tasks_per_step", 1), ("checkpoint_every", 1),
                       ("checkpoint_keep", 1), ("log_every", 1), ("architecture.top_width", 1),
                       ("schedule.group_length", 0), ("optimizer.learning_rate", 0),
                       ("optimizer.clip_per_parameter", 0), ("optimizer.genome_learning_rate", 0)):
        number(field, low)
    number("optimizer.clip_norm", 0, strict=True)
    number("time_limit_seconds", 0)  # 0 = no limit
    number("max_consecutive_skipped", 1)
    number("optimizer.eps", 0, strict=True)
    sizes("architecture.widths", 1)
    sizes("architecture.depths", 0)
    sizes("schedule.truncation_lengths", 1)
    horizon = get("schedule.horizon")
    if horizon is not None:
        if (not isinstance(horizon, (tuple, list)) or len(horizon) != 2
                or any(isinstance(v, bool) or not isinstance(v, int) for v in horizon)):
            bad("schedule.horizon", f"expected (low, high) inner steps, got {horizon!r}")
        low, high = horizon
        if not 1 <= low <= high:
            bad("schedule.horizon", f"need 1 <= low <= high, got {tuple(horizon)!r}")
        lengths = get("schedule.truncation_lengths")
        longest = max(lengths) if isinstance(lengths, (tuple, list)) else lengths
        if longest and low < longest:  # a task runs whole truncations: its horizon is rounded up to K
            bad("schedule.horizon", f"low {low} is shorter than the longest truncation length {longest} "
                                    "(config.schedule.truncation_lengths), which every task would run whole; "
                                    f"need low >= {longest}")
    phases = get("schedule.phases")
    if phases is not None:
        from metaplastic.core.tasks import PHASES

        if phases not in PHASES:
            bad("schedule.phases", f"'{phases}' is not one of {', '.join(PHASES)}")


def merge_section(where: str, defaults: dict, section, owner: str = "") -> ml_collections.ConfigDict:
    """`defaults` updated by `section`; a key that is not a default is a one-line ConfigError."""
    for key in section.keys():
        if key not in defaults:
            close = difflib.get_close_matches(key, list(defaults), n=1)
            hint = f"; did you mean '{close[0]}'?" if close else ""
            what = f"not a field of {owner}" if owner else "unknown field"
            raise ConfigError(f"config.{where}.{key}: {what} (fields: {', '.join(defaults) or 'none'}){hint}")
    merged = dict(defaults)
    merged.update(section.to_dict())
    return ml_collections.ConfigDict(merged)


def apply_overrides(config: ml_collections.ConfigDict, overrides, refuse: Callable[[str], str | None] = None):
    """Set each ('a.b', 'text') on a locked config, parsed to the type of the current value.

    `refuse(field)` may return a reason why a field cannot be overridden.
    """
    for field, text in overrides:
        node, leaf = lookup(config, field)
        reason = refuse(field) if refuse else None
        if reason:
            raise ConfigError(f"config.{field}: {reason}")
        value = parse_value(f"config.{field}", text, node[leaf])
        try:
            node[leaf] = value
        except (TypeError, ValueError) as error:
            raise ConfigError(f"config.{field}: {error}") from None


def _as_kwargs(section) -> dict[str, Any]:
    def freeze(value):
        if isinstance(value, list):
            return tuple(freeze(v) for v in value)
        return value
    return {k: freeze(v) for k, v in (section.to_dict() if section else {}).items()}


def build(config: ml_collections.ConfigDict, kind: str, **extra) -> Any:
    """Instantiate `config.<kind>` with `config.<kind>_config` (plus engine-supplied `extra`)."""
    factory = get_registry().get(kind, config[kind])
    try:
        return factory(**extra, **_as_kwargs(config.get(kind + "_config")))
    except UserError:
        raise  # already one line with its context (a dataset that cannot be read names itself)
    except (TypeError, ValueError) as error:
        raise ConfigError(f"config.{kind}='{config[kind]}': {one_line(error)}") from None


@dataclasses.dataclass(frozen=True)
class Components:
    rule: Any
    objective: Any
    family: Any
    unroll: TruncatedUnroll
    estimator: Any


def build_components(config: ml_collections.ConfigDict) -> Components:
    """The training components: a rule around its base model, an estimator around its unroll.
    Data sources are configured first (`config.data_sources`): the task family loads its data."""
    from metaplastic.core.data import configure_data_sources

    configure_data_sources(config.get(DATA_SOURCES))
    rule = build(config, "update_rule", base_model=build(config, "base_model"))
    objective = build(config, "meta_objective")
    unroll = TruncatedUnroll(rule, objective, remat=config.remat)
    return Components(rule=rule, objective=objective, family=build(config, "task_family"), unroll=unroll,
                      estimator=build(config, "gradient_estimator", unroll=unroll))
