"""Command line: `metaplastic train | evaluate | config | export | plugins`.

Every command that takes a config accepts overrides of any of its fields after the other
options, as `--config.FIELD=VALUE` or `--config.FIELD VALUE` (absl / ml_collections style).
A user error (a bad config, field, value, path or dataset) ends in one line on stderr and exit
status 2.
"""

from __future__ import annotations

import argparse
import ast
import csv
import datetime
import inspect
import io
import os
import pathlib
import shlex
import shutil
import sys
import textwrap
import tokenize

EXIT_USER_ERROR = 2

OVERRIDES_HELP = """\
overrides:
  Any field of the resolved config can be set after the other options, as
  --config.FIELD=VALUE or --config.FIELD VALUE; dots reach into sections
  (--config.optimizer.learning_rate=1e-3). VALUE is read as a Python literal of
  the field's type: 3, 1e-3, true, (2, 4), a name. Choosing another component
  (--config.update_rule=metz2019) resets its section (update_rule_config) to that
  component's defaults. A misspelt field or a wrong type stops with one line.
  `metaplastic config FILE[:VARIANT]` lists every field with its default and meaning."""

TRAIN_EPILOG = f"""\
{OVERRIDES_HELP}

example:
  metaplastic train --config experiments/train/quickstart.py:tiny --workdir runs/smoke \\
      --config.num_steps=20 --config.optimizer.learning_rate 1e-3 \\
      --config.update_rule_config.hidden=32

configs:
  Training configs are Python files whose get_config(arg) returns the config;
  FILE:VARIANT passes VARIANT as arg. They live in experiments/train/
  (default.py documents every field; quickstart.py, glyphs.py, paper.py); a path
  not found here is looked up among the installed ones:
  {{shipped}}/train/

The workdir gets config.json, metrics.csv, tensorboard/ and checkpoints/; the same
command resumes an interrupted run from its latest checkpoint."""

EVALUATE_EPILOG = f"""\
{OVERRIDES_HELP}

example:
  metaplastic evaluate --config experiments/eval/datasets.py:quick --workdir runs/eval_smoke \\
      --config.rule_checkpoint=runs/smoke --config.seeds 3

configs:
  Studies are Python files whose get_config(arg) returns the study; FILE:VARIANT
  passes VARIANT as arg. They live in experiments/eval/ (datasets.py, time.py,
  imdb.py, architectures.py, architectures_large.py, filters.py); a path not found
  here is looked up among the installed ones:
  {{shipped}}/eval/

The workdir gets results.json, results.csv, report.md and pictures; finished cells
are cached in cells/, so the same command resumes an interrupted study."""

CONFIG_EPILOG = f"""\
{OVERRIDES_HELP}

example:
  metaplastic config experiments/train/quickstart.py:tiny --config.update_rule=metz2019
  metaplastic config experiments/eval/datasets.py:quick"""

EXPORT_EPILOG = """\
example:
  metaplastic export runs/glyphs exported/glyphs-v3 --step 2000
  python -c "import metaplastic; print(metaplastic.load_rule('exported/glyphs-v3'))"

The folder gets rule.json and theta.npz (what metaplastic.load_rule reads),
meta_training_curve.csv (the metrics up to the exported step) and
meta_training_config.json (the workdir's config.json)."""


MAIN_EPILOG = """\
examples:
  metaplastic train --config experiments/train/quickstart.py --workdir runs/quickstart
  metaplastic config experiments/train/quickstart.py    # every field: value, default, meaning
  metaplastic evaluate --config experiments/eval/datasets.py --workdir runs/quickstart_eval \\
      --config.rule_checkpoint=runs/quickstart
  metaplastic export runs/quickstart my_rule            # then metaplastic.load_rule("my_rule")
  metaplastic COMMAND --help"""


class UsageError(Exception):
    """A command-line mistake outside the config (a path, an argument): one line, exit status 2."""


class _Parser(argparse.ArgumentParser):
    """argparse, with its errors in one line (not the usage block)."""

    def error(self, message):
        self.exit(EXIT_USER_ERROR, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _shipped_configs() -> pathlib.Path:
    """The configs installed with the package (used when a config path does not exist here)."""
    import metaplastic.experiments

    return pathlib.Path(metaplastic.experiments.__file__).parent


def _version() -> str:
    from metaplastic import __version__

    return __version__


def _parser() -> argparse.ArgumentParser:
    shipped = _shipped_configs()
    parser = _Parser(prog="metaplastic", description=__doc__, epilog=MAIN_EPILOG,
                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"metaplastic {_version()}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=_Parser)

    def command(name, help, description=None, epilog=None, usage=None):
        return commands.add_parser(name, help=help, description=textwrap.fill(description or help, 88),
                                   epilog=epilog, usage=usage,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)

    train = command(
        "train", "meta-train an update rule (resumes from --workdir)",
        description="Meta-train an update rule's θ on a distribution of tasks; an interrupted run "
                    "resumes from --workdir.",
        usage="metaplastic train --config FILE[:VARIANT] --workdir DIR [--no-progress] "
              "[--config.FIELD=VALUE ...]",
        epilog=TRAIN_EPILOG.format(shipped=shipped))
    train.add_argument("--config", required=True, metavar="FILE[:VARIANT]",
                       help="training config, e.g. experiments/train/quickstart.py:tiny")
    train.add_argument("--workdir", required=True, metavar="DIR",
                       help="where config, metrics and checkpoints go (created if missing)")
    train.add_argument("--no-progress", action="store_true",
                       help="no progress bar (also off when stdout or stderr is not a terminal)")

    evaluate = command(
        "evaluate", "evaluate learned rules against baselines on held-out data (resumes)",
        description="Train fresh base models on held-out data with each method, read out with few "
                    "labels; writes results.json/.csv, report.md and pictures (resumes).",
        usage="metaplastic evaluate --config FILE[:VARIANT] --workdir DIR [--no-progress] "
              "[--config.FIELD=VALUE ...]",
        epilog=EVALUATE_EPILOG.format(shipped=shipped))
    evaluate.add_argument("--config", required=True, metavar="FILE[:VARIANT]",
                          help="study config, e.g. experiments/eval/datasets.py")
    evaluate.add_argument("--workdir", required=True, metavar="DIR",
                          help="where results, report and cached cells go (created if missing)")
    evaluate.add_argument("--no-progress", action="store_true",
                          help="no progress bar (also off when stdout or stderr is not a terminal)")

    show = command(
        "config", "print a resolved config: every field, its value, default and meaning",
        description="Print the resolved config (training or study), after the overrides given on the "
                    "same line: every field of every component, with its default where the value "
                    "differs, and a one-line doc where one exists.",
        usage="metaplastic config FILE[:VARIANT] [--config.FIELD=VALUE ...]", epilog=CONFIG_EPILOG)
    show.add_argument("file", metavar="FILE[:VARIANT]", help="a training or study config file")

    export = command(
        "export", "save the rule of a `metaplastic train` workdir as a rule folder",
        description="Save θ of a meta-training workdir (its latest checkpoint, or --step) with its "
                    "rule's description to OUT_DIR, as a folder metaplastic.load_rule reads.",
        epilog=EXPORT_EPILOG)
    export.add_argument("workdir", metavar="WORKDIR", help="a `metaplastic train` workdir")
    export.add_argument("out_dir", metavar="OUT_DIR", help="the rule folder to write (created)")
    export.add_argument("--step", type=int, default=None, metavar="N",
                        help="the saved θ-step to export (default: the latest; 0 = the initial θ)")
    export.add_argument("--force", action="store_true", help="write into a non-empty OUT_DIR")

    snapshot = command(
        "snapshot", "write a compact, resumable snapshot of a meta-training run (θ, optimiser, step)",
        description="Write the newest intact checkpoint of WORKDIR as one .npz file of a few MB (θ, "
                    "optimiser state, step, config), replacing FILE if it exists. A run continues from it "
                    "on any machine with `metaplastic train ... --config.init_snapshot=FILE`.")
    snapshot.add_argument("workdir", metavar="WORKDIR", help="a `metaplastic train` workdir")
    snapshot.add_argument("file", metavar="FILE", help="the snapshot to write (.npz)")

    command("plugins", "list registered components by kind, name and origin")
    return parser


def split_overrides(argv: list[str]) -> tuple[list[str], list[str]]:
    """(other arguments, `--config.FIELD[=VALUE]` arguments with their values), in order.

    Taken out before argparse sees them, so a value of the space form (`--config.x -1`) is never
    mistaken for an option. A `--config.FIELD` with no value after it is kept alone, for
    `parse_overrides` to refuse in one line.
    """
    rest, overrides = [], []
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg.startswith("--config."):
            overrides.append(arg)
            if "=" not in arg and i + 1 < len(argv) and not argv[i + 1].startswith("--"):
                overrides.append(argv[i + 1])
                i += 1
        else:
            rest.append(arg)
        i += 1
    return rest, overrides


def _progress(args) -> bool:
    """A progress bar only for a person watching: never into a file or a pipe (logs stay readable)."""
    return not args.no_progress and _isatty(sys.stdout) and _isatty(sys.stderr)


def _isatty(stream) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def check_workdir(workdir: str) -> pathlib.Path:
    """`workdir` as a path that is, or can be made, a writable directory; else a one-line UsageError."""
    path = pathlib.Path(workdir)
    if not str(workdir).strip():
        raise UsageError("--workdir: empty path")
    if path.exists():
        if not path.is_dir():
            raise UsageError(f"--workdir '{workdir}': exists and is not a directory")
        if not os.access(path, os.W_OK | os.X_OK):
            raise UsageError(f"--workdir '{workdir}': directory is not writable")
        return path
    parent = path.absolute().parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise UsageError(f"--workdir '{workdir}': cannot be created, '{parent}' is not a directory")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise UsageError(f"--workdir '{workdir}': cannot be created, '{parent}' is not writable")
    return path


# ---------------------------------------------------------------- commands

def _cmd_plugins(_args, _overrides) -> int:
    from metaplastic.registries import get_registry

    print("\n".join(get_registry().report_lines()))
    return 0


def _cmd_train(args, overrides) -> int:
    from metaplastic.core import config as config_lib
    from metaplastic.core.trainer import train

    config = config_lib.resolve(config_lib.load_config_file(args.config, _shipped_configs()),
                                config_lib.parse_overrides(overrides))
    workdir = check_workdir(args.workdir)
    summary = train(config, args.workdir, progress=_progress(args))
    print(f"done: {summary['steps']} steps, {summary['skipped']} skipped, "
          f"{summary['steps_per_second']:.2f} steps/s, workdir {args.workdir}")
    print(f"next: metaplastic evaluate --config experiments/eval/datasets.py "
          f"--workdir {shlex.quote(str(workdir) + '_eval')} --config.rule_checkpoint={shlex.quote(str(workdir))}")
    return 0


def _cmd_evaluate(args, overrides) -> int:
    from metaplastic.core import evaluation

    study = evaluation.load_study(args.config, overrides, shipped=_shipped_configs())
    check_workdir(args.workdir)
    results = evaluation.run_study(study, args.workdir, progress=_progress(args))
    print(f"done: {len(results['cells'])} cells; report {args.workdir}/report.md")
    return 0


def _cmd_config(args, overrides) -> int:
    from metaplastic.core import config as config_lib

    base = config_lib.load_config_file(args.file, _shipped_configs())
    pairs = config_lib.parse_overrides(overrides)
    if _is_study(base):
        from metaplastic.core.evaluation import resolve_study

        lines = _study_lines(resolve_study(base, pairs))
        kind = "study"
    else:
        lines = _training_lines(config_lib.resolve(base, pairs))
        kind = "training config"
    shown = " ".join([args.file, *map(shlex.quote, overrides)])
    print(f"# {shown}: resolved {kind}. Set a field with --config.FIELD=VALUE; "
          "[default: X] marks a value that is not the default.")
    print("\n".join(_aligned(lines)))
    return 0


def _cmd_export(args, _overrides) -> int:
    from metaplastic.core.rules import checkpoint_steps, load_rule_from_workdir, save_rule, workdir_config

    workdir, target = pathlib.Path(args.workdir), pathlib.Path(args.out_dir)
    if not workdir.is_dir():
        raise UsageError(f"WORKDIR '{workdir}': not a directory (expected a `metaplastic train` workdir)")
    if target.exists() and not target.is_dir():
        raise UsageError(f"OUT_DIR '{target}': exists and is not a directory")
    if target.is_dir() and any(target.iterdir()) and not args.force:
        raise UsageError(f"OUT_DIR '{target}': not empty (use --force to write into it)")
    config = workdir_config(workdir).to_dict()
    step = checkpoint_steps(workdir)[-1] if args.step is None and _has_steps(workdir) else args.step
    _, theta = load_rule_from_workdir(workdir, step)  # a one-line EvaluationError for a missing step
    step = 0 if step is None else step
    rows, seconds = _metrics_until(workdir / "metrics.csv", step)
    extra = {"meta_training_steps": step}
    if seconds is not None:
        extra["meta_training_seconds"] = round(seconds)
    extra["exported"] = datetime.date.today().isoformat()
    save_rule(target, config, theta, extra=extra)
    if rows:
        fields = [f for f in ("step", "meta_loss", "skipped", "horizon", "depth") if f in rows[0]]
        with (target / "meta_training_curve.csv").open("w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=fields, extrasaction="ignore")
            writer.writeheader()
            writer.writerows(rows)
    shutil.copy(workdir / "config.json", target / "meta_training_config.json")
    spent = f" ({seconds / 3600:.2f} h of meta-training)" if seconds is not None else ""
    print(f"exported step {step}{spent} of {workdir} to {target}; "
          f"load it with metaplastic.load_rule({str(target)!r})")
    return 0


def _has_steps(workdir: pathlib.Path) -> bool:
    from metaplastic.core.rules import checkpoint_steps

    return bool(checkpoint_steps(workdir))


def _metrics_until(path: pathlib.Path, step: int) -> tuple[list[dict], float | None]:
    """The metric rows up to `step` and their summed seconds (None without metrics)."""
    if not path.is_file():
        return [], None
    with path.open(newline="") as f:
        rows = [row for row in csv.DictReader(f) if row.get("step", "").isdigit() and int(row["step"]) <= step]
    seconds = [float(row["seconds"]) for row in rows if row.get("seconds") not in (None, "")]
    return rows, (sum(seconds) if seconds else None)


def _cmd_snapshot(args, _overrides) -> int:
    from metaplastic.core.snapshot import export_snapshot

    try:
        meta = export_snapshot(args.workdir, args.file)
    except ValueError as error:
        raise UsageError(str(error)) from None
    size = pathlib.Path(args.file).stat().st_size / 1e6
    print(f"snapshot of step {meta['step']} ({meta.get('elapsed_seconds', 0) / 3600:.2f} h of meta-training) "
          f"written to {args.file} ({size:.1f} MB); continue with --config.init_snapshot={args.file}")
    return 0


COMMANDS = {"train": _cmd_train, "evaluate": _cmd_evaluate, "config": _cmd_config, "export": _cmd_export,
            "snapshot": _cmd_snapshot, "plugins": _cmd_plugins}
TAKES_OVERRIDES = ("train", "evaluate", "config")


# ---------------------------------------------------------------- `metaplastic config`

def _is_study(config) -> bool:
    from metaplastic.core.config import COMPONENT_FIELDS

    return "methods" in config or "datasets" in config or not any(k in config for k in COMPONENT_FIELDS)


def _comments(source: str) -> dict[int, tuple[str, bool]]:
    """line number -> (comment text, whether the line holds nothing else)."""
    out = {}
    lines = source.splitlines()
    try:
        for token in tokenize.generate_tokens(io.StringIO(source).readline):
            if token.type == tokenize.COMMENT:
                row, col = token.start
                out[row] = (token.string.lstrip("#").strip(), not lines[row - 1][:col].strip())
    except (tokenize.TokenError, SyntaxError):
        pass
    return out


def _trailing(comments, node) -> str | None:
    for line in (node.lineno, getattr(node, "end_lineno", node.lineno)):
        if line in comments and not comments[line][1]:
            return comments[line][0]
    return None


def _above(comments, node) -> str | None:
    block, line = [], node.lineno - 1
    while line in comments and comments[line][1]:
        block.insert(0, comments[line][0])
        line -= 1
    return " ".join(block) or None


def _keyword_docs(node, comments, prefix: str, docs: dict, order: list) -> None:
    """Docs of `name=value,  # doc` keywords of dict(...) calls under `node` (one keyword on its line)."""
    keywords = [kw for call in ast.walk(node) if isinstance(call, ast.Call) for kw in call.keywords if kw.arg]
    per_line = {}
    for kw in keywords:
        per_line[kw.lineno] = per_line.get(kw.lineno, 0) + 1
    for kw in keywords:
        order.append(prefix + kw.arg)
        doc = comments.get(getattr(kw.value, "end_lineno", kw.lineno))
        if per_line[kw.lineno] == 1 and doc and not doc[1]:
            docs.setdefault(prefix + kw.arg, doc[0])


def _config_file_docs(path: str | os.PathLike) -> tuple[dict[str, str], list[str]]:
    """(dotted field -> doc, fields in source order) of `config.<field> = ...  # doc` lines of a
    config file's get_config (a trailing comment, else the comment block right above)."""
    source = pathlib.Path(path).read_text()
    comments, docs, order = _comments(source), {}, []
    for function in ast.walk(ast.parse(source)):
        if not (isinstance(function, ast.FunctionDef) and function.name == "get_config"):
            continue
        for statement in function.body:
            if not isinstance(statement, ast.Assign) or len(statement.targets) != 1:
                continue
            name = _dotted(statement.targets[0])
            if not name or not name.startswith("config."):
                continue
            name = name[len("config."):]
            order.append(name)
            doc = _trailing(comments, statement) or _above(comments, statement)
            if doc:
                docs.setdefault(name, doc)
            _keyword_docs(statement.value, comments, name + ".", docs, order)
    return docs, order


def _dotted(node) -> str | None:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        head = _dotted(node.value)
        return f"{head}.{node.attr}" if head else None
    return None


def field_docs(factory) -> dict[str, str]:
    """field -> the trailing `# doc` of its line in a dataclass (and its dataclass bases) or in a
    factory function's signature; {} when the source is not available."""
    import dataclasses

    docs: dict[str, str] = {}
    owners = [c for c in inspect.getmro(factory) if dataclasses.is_dataclass(c)] if inspect.isclass(factory) \
        else [factory]
    for owner in owners:
        try:
            source = textwrap.dedent(inspect.getsource(owner))
            tree = ast.parse(source)
        except (OSError, TypeError, SyntaxError, IndentationError):
            continue
        comments = _comments(source)
        node = tree.body[0] if tree.body else None
        if isinstance(node, ast.ClassDef):
            for statement in node.body:
                if isinstance(statement, ast.AnnAssign) and isinstance(statement.target, ast.Name):
                    doc = _trailing(comments, statement)
                    if doc:
                        docs.setdefault(statement.target.id, doc)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            arguments = node.args.args + node.args.kwonlyargs
            per_line = {}
            for arg in arguments:
                per_line[arg.lineno] = per_line.get(arg.lineno, 0) + 1
            for arg in arguments:
                doc = comments.get(arg.lineno)
                if per_line[arg.lineno] == 1 and doc and not doc[1]:
                    docs.setdefault(arg.arg, doc[0])
    return docs


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


def _component_summary(kind: str, name: str) -> str:
    from metaplastic.registries import get_registry

    try:
        summary = _summary(get_registry().get(kind, name))
    except Exception:  # noqa: BLE001
        summary = None
    return summary or f"a registered {kind} (`metaplastic plugins` lists them)"


def _training_lines(config) -> list[tuple[str, str]]:
    import ml_collections

    from metaplastic.core.config import COMPONENT_FIELDS
    from metaplastic.core.tasks import ArchitectureSampler, Schedule
    from metaplastic.experiments.train import default

    try:
        docs, order = _config_file_docs(default.__file__)
    except (OSError, SyntaxError, ValueError):
        docs, order = {}, []
    for section, factory in (("architecture", ArchitectureSampler), ("schedule", Schedule)):
        for key, doc in field_docs(factory).items():
            docs.setdefault(f"{section}.{key}", doc)
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
        if key in component_sections:
            kind = key[: -len("_config")]
            lines.extend(_component_lines(kind, config[kind], value, key, f"{kind} '{config[kind]}'"))
        elif key in COMPONENT_FIELDS:
            marker = f"[default: {_show(baseline[key])}]" if key in baseline and not _same(
                value, baseline[key]) else ""
            lines.append((f"config.{key} = {_show(value)}", f"{_component_summary(key, value)}  {marker}".strip()))
        elif isinstance(value, ml_collections.ConfigDict):
            walk(value, key + ".", baseline.get(key, {}))
        else:
            lines.append(field(key, value, baseline))
    return lines


def _study_lines(config) -> list[tuple[str, str]]:
    from metaplastic.core.evaluation import study as study_lib

    try:
        module_docs = _dict_docs(study_lib.__file__, "STUDY_DEFAULTS")
    except (OSError, SyntaxError, ValueError):
        module_docs = {}
    lines = []
    for key, default in study_lib.STUDY_DEFAULTS.items():
        doc = module_docs.get(key) or ""
        if key == "base_model":
            doc = doc or _component_summary("base_model", config.base_model)
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
    return lines


def _dict_docs(path: str, variable: str) -> dict[str, str]:
    """`name=value,  # doc` comments of the dict(...) assigned to `variable` in a module."""
    source = pathlib.Path(path).read_text()
    comments, docs = _comments(source), {}
    for statement in ast.parse(source).body:
        if isinstance(statement, ast.Assign) and any(
                isinstance(t, ast.Name) and t.id == variable for t in statement.targets):
            _keyword_docs(statement.value, comments, "", docs, [])
    return docs


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


def _aligned(lines: list[tuple[str, str]], column_max: int = 48) -> list[str]:
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


# ---------------------------------------------------------------- entry point

def _user_errors() -> tuple[type[BaseException], ...]:
    """The exception classes that mean a wrong input, not a bug: shown in one line."""
    from metaplastic.core.config import ConfigError
    from metaplastic.core.interfaces import DatasetUnavailable, EvaluationError
    from metaplastic.registries import ComponentError

    from metaplastic.core.checkpoint import CheckpointError
    from metaplastic.core.trainer import TrainingError
    from metaplastic.core.workdir import WorkdirError  # a workdir in use, or holding another run

    return (UsageError, ConfigError, ComponentError, DatasetUnavailable, EvaluationError, WorkdirError,
            CheckpointError, TrainingError)


def _silence_stdout() -> None:
    """No second broken pipe when Python flushes stdout at exit."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError, io.UnsupportedOperation):
        pass


def _one_line(error: BaseException) -> str:
    return " ".join(str(error).split()) or type(error).__name__


def main(argv: list[str] | None = None) -> int:
    import zipfile

    argv = sys.argv[1:] if argv is None else list(argv)
    rest, overrides = split_overrides(argv)
    args = _parser().parse_args(rest)  # --help, --version and argparse's one-line errors exit here
    user_errors = _user_errors()
    try:
        if overrides and args.command not in TAKES_OVERRIDES:
            raise UsageError(f"unrecognised argument '{overrides[0]}' (metaplastic {args.command} takes "
                             "no --config.FIELD overrides)")
        return COMMANDS[args.command](args, overrides)
    except user_errors as error:
        print(f"metaplastic: error: {_one_line(error)}", file=sys.stderr)
        return EXIT_USER_ERROR
    except BrokenPipeError:  # `metaplastic config ... | head`: the reader has all it wanted
        _silence_stdout()
        return 128 + 13  # as if killed by SIGPIPE, like other command-line tools
    except OSError as error:  # a file or folder that cannot be read or written
        print(f"metaplastic: error: {_one_line(error)}", file=sys.stderr)
        return EXIT_USER_ERROR
    except (ValueError, zipfile.BadZipFile) as error:
        from metaplastic.core.config import dataset_being_read

        where = dataset_being_read(error)
        if where is None:
            raise  # not a user error: a bug, shown with its traceback
        print(f"metaplastic: error: {where}: unreadable ({type(error).__name__}: {_one_line(error)})",
              file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print("metaplastic: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
