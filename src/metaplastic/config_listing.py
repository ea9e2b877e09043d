"""What the command line says about config files: `metaplastic config` (a resolved config as
`config.field = value  # doc` lines, with every component's fields, their defaults where the value
differs, and one-line docs read from the dataclass fields' metadata: `core.documented`), the list of
config files in a folder that `--help` shows, and which kind of config a file holds."""

from __future__ import annotations

import ast
import inspect
import pathlib
import shlex
import textwrap


def is_study(config) -> bool:
    from metaplastic.core.config import COMPONENT_FIELDS

    return "methods" in config or "datasets" in config or not any(k in config for k in COMPONENT_FIELDS)


def check_config_kind(config, spec: str, command: str) -> None:
    """A study given to `train`, or a training config given to `evaluate`: say which it is."""
    from metaplastic.core.config import COMPONENT_FIELDS, ConfigError

    study = "methods" in config or "datasets" in config
    components = [field for field in COMPONENT_FIELDS if field in config]
    if command == "train" and study and not components:
        raise ConfigError(f"'{spec}' is an evaluation study (it has methods and datasets); "
                          f"use `metaplastic evaluate --config {spec}`")
    if command == "evaluate" and components and not study:
        raise ConfigError(f"'{spec}' is a training config (it has {', '.join(components)}); "
                          f"use `metaplastic train --config {spec}`")


def resolved_listing(spec: str, overrides: list[str], shipped: pathlib.Path) -> str:
    """What `metaplastic config SPEC [overrides]` prints: a header, the file's docstring and variants,
    then every field of the resolved config (training config or study)."""
    from metaplastic.core import config as config_lib

    base, about = config_lib.read_config_file(spec, shipped)
    pairs = config_lib.parse_overrides(overrides)
    if is_study(base):
        from metaplastic.core.evaluation import resolve_study

        lines, kind = study_lines(resolve_study(base, pairs)), "study"
    else:
        lines, kind = training_lines(config_lib.resolve(base, pairs)), "training config"
    shown = " ".join([spec, *map(shlex.quote, overrides)])
    return "\n".join([f"# {shown}: resolved {kind}. Set a field with --config.FIELD=VALUE; "
                      "[default: X] marks a value that is not the default.",
                      *file_lines(about, spec.partition(":")[2]), *aligned(lines)])


def config_file_listing(folder: pathlib.Path, width: int = 88) -> str:
    """'  name.py  first sentence of its docstring' for each config file (a .py with get_config) in
    `folder`, read without running them (help stays fast)."""
    from metaplastic.registries.registry import doc_summary  # light: no JAX (help stays fast)

    rows = []
    for path in sorted(folder.glob("*.py")):
        try:
            tree = ast.parse(path.read_text())
        except (OSError, SyntaxError, ValueError):
            continue
        if any(isinstance(node, ast.FunctionDef) and node.name == "get_config" for node in tree.body):
            rows.append((path.name, ast.get_docstring(tree) or ""))
    column = max((len(name) for name, _ in rows), default=0) + 2
    indent = " " * (4 + column)
    return "\n".join(textwrap.fill(doc_summary(doc, 2 * (width - len(indent))) or "-", width,
                                   initial_indent=f"    {name.ljust(column)}", subsequent_indent=indent)
                     for name, doc in rows)


def file_lines(about, chosen: str = "") -> list[str]:
    """`# ` lines of a config file's docstring and its variants (`core.config.ConfigFile`), the
    `chosen` one marked; what `metaplastic config FILE` prints above the fields."""
    lines = ["#"] + [f"# {line}".rstrip() for line in about.doc.splitlines()] if about.doc else []
    if about.variants:
        width = max(len(name) for name in about.variants) + 1
        lines += ["#", f"# variants ({about.path.name}:NAME):"]
        for name, summary in about.variants.items():
            mark = "*" if name == chosen else " "
            lines.append(f"# {mark} :{name.ljust(width)} {summary}".rstrip())
    else:
        lines += ["#", f"# variants: none ({about.path.name} takes no :NAME)"]
    return lines + ["#"]


def _summary(obj) -> str | None:
    """The first paragraph of `obj`'s own docstring (not an inherited one, nor a dataclass's signature)."""
    doc = obj.__dict__.get("__doc__") if inspect.isclass(obj) else getattr(obj, "__doc__", None)
    if not isinstance(doc, str) or (inspect.isclass(obj) and doc.startswith(obj.__name__ + "(")):
        return None
    doc = inspect.cleandoc(doc)
    return " ".join(doc.split("\n\n")[0].split()) or None


def _component_lines(kind: str, name: str, section, prefix: str, label: str) -> list[tuple[str, str]]:
    """Lines for `prefix.<field>` of a registered component's section, in the factory's field order."""
    from metaplastic.core.config import component_defaults
    from metaplastic.core.documented import field_docs
    from metaplastic.registries import get_registry

    defaults, docs = {}, {}
    try:
        factory = get_registry().get(kind, name)
        defaults = component_defaults(kind, name)
        docs = field_docs(factory)
    except Exception:  # noqa: BLE001 - documentation is best effort
        pass
    keys = [k for k in defaults if k in section] + sorted(k for k in section.keys() if k not in defaults)
    lines = []
    for key in keys:
        value = section[key]
        doc = docs.get(key) or ""
        if key in defaults and not _same(value, defaults[key]):
            doc = f"{doc}  [default: {_show(defaults[key])}]".strip()
        lines.append((f"config.{prefix}.{key} = {_show(value)}", doc))
    if not keys:
        lines.append((f"config.{prefix} = {{}}", f"{label} has no fields"))
    return lines


def _component_summary(kind: str, name: str, fallback: str | None = None) -> str:
    """The component's own docstring summary, else `fallback` (the field's doc), else a generic line."""
    from metaplastic.registries import get_registry

    try:
        summary = _summary(get_registry().get(kind, name))
    except Exception:  # noqa: BLE001
        summary = None
    return summary or fallback or f"a registered {kind} (`metaplastic plugins` lists them)"


def training_lines(config) -> list[tuple[str, str]]:
    import ml_collections

    from metaplastic.core.config import COMPONENT_FIELDS
    from metaplastic.core.documented import nested_field_docs
    from metaplastic.experiments.train import default

    docs = nested_field_docs(default.Training)  # dotted field -> doc, in field order
    order = list(docs)
    try:
        baseline = default.get_config().to_dict()
    except Exception:  # noqa: BLE001
        baseline = {}
    rank = {name: i for i, name in enumerate(order)}

    def ordered(keys, prefix=""):
        return sorted(keys, key=lambda k: (rank.get(prefix + k, len(rank)), k))

    def field(name, value, base):
        doc = docs.get(name) or ""
        if isinstance(base, dict) and name.rsplit(".", 1)[-1] in base:
            default_value = base[name.rsplit(".", 1)[-1]]
            if not _same(value, default_value):
                doc = f"{doc}  [default: {_show(default_value)}]".strip()
        return (f"config.{name} = {_show(value)}", doc)

    def walk(node, prefix, base):
        if docs.get(prefix[:-1]):
            lines.append(("", f"{prefix[:-1]}: {docs[prefix[:-1]]}"))
        for key in ordered(node.keys(), prefix):
            value = node[key]
            if isinstance(value, ml_collections.ConfigDict):
                walk(value, f"{prefix}{key}.", base.get(key, {}) if isinstance(base, dict) else {})
            else:
                lines.append(field(prefix + key, value, base))

    lines = []
    component_sections = {kind + "_config" for kind in COMPONENT_FIELDS}
    for key in ordered(config.keys()):
        value = config[key]
        if key == "data_sources":
            lines.extend(_data_source_lines(value))
        elif key in component_sections:
            kind = key[: -len("_config")]
            lines.extend(_component_lines(kind, config[kind], value, key, f"{kind} '{config[kind]}'"))
        elif key in COMPONENT_FIELDS:
            marker = f"[default: {_show(baseline[key])}]" if key in baseline and not _same(
                value, baseline[key]) else ""
            summary = _component_summary(key, value, docs.get(key))
            lines.append((f"config.{key} = {_show(value)}", f"{summary}  {marker}".strip()))
        elif isinstance(value, ml_collections.ConfigDict):
            walk(value, key + ".", baseline.get(key, {}))
        else:
            lines.append(field(key, value, baseline))
    return lines


def study_lines(config) -> list[tuple[str, str]]:
    from metaplastic.core.documented import field_docs
    from metaplastic.core.evaluation import study as study_lib

    module_docs = field_docs(study_lib.StudyFields)
    lines = []
    for key, default in study_lib.STUDY_DEFAULTS.items():
        doc = module_docs.get(key) or ""
        if key == "base_model":
            doc = _component_summary("base_model", config.base_model, doc)
        if not _same(config[key], default):
            doc = f"{doc}  [default: {_show(default)}]".strip()
        lines.append((f"config.{key} = {_show(config[key])}", doc))
    lines.extend(_component_lines("base_model", config.base_model, config.base_model_config,
                                  "base_model_config", f"base_model '{config.base_model}'"))
    for label in config.methods.keys():
        entry = config.methods[label]
        lines.append((f"config.methods.{label}.method = {_show(entry.method)}",
                      _component_summary("eval_method", entry.method)))
        fields = {k: entry[k] for k in entry.keys() if k != "method"}
        if fields:
            import ml_collections

            lines.extend(_component_lines("eval_method", entry.method, ml_collections.ConfigDict(fields),
                                          f"methods.{label}", f"eval_method '{entry.method}'"))
    spec_docs = field_docs(study_lib.DatasetSpec)
    spec_defaults = study_lib._dataset_defaults()
    for label in config.datasets.keys():
        entry = config.datasets[label]
        lines.append((f"config.datasets.{label}.dataset = {_show(entry.dataset)}",
                      spec_docs.get("dataset") or "a dataset name (`metaplastic plugins` lists the sources)"))
        for key in spec_defaults:
            if key in entry:
                doc = spec_docs.get(key) or ""
                if not _same(entry[key], spec_defaults[key]):
                    doc = f"{doc}  [default: {_show(spec_defaults[key])}]".strip()
                lines.append((f"config.datasets.{label}.{key} = {_show(entry[key])}", doc))
    lines.extend(_data_source_lines(config.get("data_sources") or {}))
    return lines


def _data_source_lines(sections) -> list[tuple[str, str]]:
    """Lines for `config.data_sources.<source>.<field>`: each configured source's fields."""
    lines = []
    for name in sections.keys():
        lines.extend(_component_lines("data_source", name, sections[name], f"data_sources.{name}",
                                      f"data_source '{name}'"))
    return lines


def _same(a, b) -> bool:
    def norm(v):
        if isinstance(v, (list, tuple)):
            return tuple(norm(x) for x in v)
        if hasattr(v, "to_dict"):
            return norm(v.to_dict())
        if isinstance(v, dict):
            return tuple(sorted((k, norm(x)) for k, x in v.items()))
        return v
    return norm(a) == norm(b)


def _show(value) -> str:
    if isinstance(value, list):
        value = tuple(value)
    if hasattr(value, "to_dict"):
        value = value.to_dict()
    return repr(value)


def aligned(lines: list[tuple[str, str]], column_max: int = 48) -> list[str]:
    width = min(max((len(code) for code, _ in lines), default=0), column_max)
    out = []
    for code, doc in lines:
        if not code:
            out.append(f"# {doc}")
        elif doc:
            out.append(f"{code.ljust(width)}  # {doc}")
        else:
            out.append(code)
    return out
