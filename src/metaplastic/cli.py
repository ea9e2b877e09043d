"""Command line: `metaplastic train | evaluate | config | export | plugins`.

Every command that takes a config accepts overrides of any of its fields after the other
options, as `--config.FIELD=VALUE` or `--config.FIELD VALUE` (absl / ml_collections style).
A user error (any `metaplastic.core.errors.UserError`: a bad config, field, value, path, file,
dataset or workdir) ends in one line on stderr and exit status 2; anything else is a bug and keeps
its traceback. A `train` or `evaluate` that SIGTERM stopped saves and exits with status 75
(EX_TEMPFAIL), one that Ctrl-C stopped with status 130: run the same command again to resume.
"""

from __future__ import annotations

import argparse
import csv
import datetime
import io
import os
import pathlib
import shlex
import shutil
import sys
import textwrap

from metaplastic.config_listing import _is_study, _training_lines, _study_lines, _aligned, file_lines
from metaplastic.core.errors import UserError, one_line

EXIT_USER_ERROR = 2
EXIT_PREEMPTED = 75  # EX_TEMPFAIL: stopped by SIGTERM before num_steps, saved; the same command resumes
EXIT_INTERRUPTED = 130  # Ctrl-C (128 + SIGINT), as shells report it
NO_PROGRESS_HELP = ("no progress bar on a terminal, and no progress lines (done/total, rate, ETA every 30 s) "
                    "into a file or a pipe")

OVERRIDES_HELP = """\
overrides:
  Any field of the resolved config can be set after the other options, as
  --config.FIELD=VALUE or --config.FIELD VALUE; dots reach into sections
  (--config.optimizer.learning_rate=1e-3). VALUE is read as a Python literal of
  the field's type: 3, 1e-3, true, (2, 4), a name. Choosing another component
  (--config.update_rule=metz2019) resets its section (update_rule_config) to that
  component's defaults. A misspelt field or a wrong type stops with one line.
  `metaplastic config FILE[:VARIANT]` lists every field with its default and meaning."""

STUDY_OVERRIDES_HELP = """\
overrides:
  Any field of the resolved study can be set after the other options, as
  --config.FIELD=VALUE or --config.FIELD VALUE; dots reach into sections
  (--config.datasets.digits_5_9.max_test=500). VALUE is read as a Python literal of
  the field's type: 3, 1e-3, true, (2, 4), a name. The fields set most often:
  --config.rule_checkpoint=DIR (a `metaplastic train` workdir, a rule folder from
  `metaplastic export`, or pretrained:NAME), --config.seeds=5, --config.steps='(100, 1000)',
  --config.shots='(1, 10)'. A misspelt field or a wrong type stops with one line.
  --config.datasets.LABEL.dataset=NAME adds a dataset (your own: a data source's name or
  an .npz path); --config.data_sources.SOURCE.FIELD=VALUE configures a data source.
  `metaplastic config FILE[:VARIANT]` lists every field with its default and meaning."""

TRAIN_EPILOG = f"""\
{OVERRIDES_HELP}

example:
  metaplastic train --config experiments/train/digits.py:tiny --workdir runs/smoke \\
      --config.num_steps=20 --config.optimizer.learning_rate 1e-3 \\
      --config.update_rule_config.hidden=32

configs:
  Training configs are Python files whose get_config(arg) returns the config;
  FILE:VARIANT passes VARIANT as arg (`metaplastic config FILE` lists a file's variants).
  They live in experiments/train/ (default.py documents every field); a path not found
  here is looked up among the installed ones:
  {{shipped}}/train/
{{listing}}

The workdir gets config.json, metrics.csv, tensorboard/ and checkpoints/; the same
command resumes an interrupted run from its latest checkpoint. Exit status: 0 when done
(num_steps, or config.time_limit_seconds), 2 for a user error, 75 when SIGTERM (a
scheduler's preemption) stopped it early: it saved first, so requeue the same command.
Ctrl-C also stops it after the current step, saved (exit status 130); a second Ctrl-C
quits at once, leaving the latest checkpoint to resume from."""

EVALUATE_EPILOG = f"""\
{STUDY_OVERRIDES_HELP}

example:
  metaplastic evaluate --config experiments/eval/datasets.py:quick --workdir runs/eval_smoke \\
      --config.rule_checkpoint=runs/smoke --config.seeds 3

configs:
  Studies are Python files whose get_config(arg) returns the study; FILE:VARIANT
  passes VARIANT as arg (`metaplastic config FILE` lists a file's variants). They live
  in experiments/eval/; a path not found here is looked up among the installed ones:
  {{shipped}}/eval/
{{listing}}

The workdir gets results.json, results.csv, report.md and pictures; finished cells
are cached in cells/, so the same command resumes an interrupted study."""

CONFIG_EPILOG = f"""\
{OVERRIDES_HELP}

example:
  metaplastic config experiments/train/digits.py:tiny --config.update_rule=metz2019
  metaplastic config experiments/eval/datasets.py:quick"""

EXPORT_EPILOG = """\
example:
  metaplastic export runs/glyphs exported/glyphs-v3 --step 2000
  python -c "import metaplastic; print(metaplastic.load_rule('exported/glyphs-v3'))"

The folder gets rule.json and theta.npz (what metaplastic.load_rule reads),
meta_training_curve.csv (the metrics up to the exported step) and its picture
meta_training_curve.png, and meta_training_config.json (the workdir's config.json)."""


MAIN_EPILOG = """\
examples:
  metaplastic train --config experiments/train/quickstart.py --workdir runs/quickstart
  metaplastic config experiments/train/quickstart.py    # every field: value, default, meaning
  metaplastic evaluate --config experiments/eval/datasets.py --workdir runs/quickstart_eval \\
      --config.rule_checkpoint=runs/quickstart
  metaplastic export runs/quickstart my_rule            # then metaplastic.load_rule("my_rule")
  metaplastic COMMAND --help"""


class UsageError(UserError):
    """A command-line mistake outside the config (a path, an argument): one line, exit status 2."""


class _Parser(argparse.ArgumentParser):
    """argparse, with its errors in one line (not the usage block)."""

    def error(self, message):
        self.exit(EXIT_USER_ERROR, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _shipped_configs() -> pathlib.Path:
    """The configs installed with the package (used when a config path does not exist here)."""
    import metaplastic.experiments

    return pathlib.Path(metaplastic.experiments.__file__).parent


def config_file_listing(folder: pathlib.Path, width: int = 88) -> str:
    """'  name.py  first sentence of its docstring' for each config file (a .py with get_config) in
    `folder`, read without running them (help stays fast)."""
    import ast

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


def _version() -> str:
    from metaplastic import __version__

    return __version__


def version_line() -> str:
    """'metaplastic 0.1.0 (jax 0.10.2, flax 0.12.8, backend cpu: 2 devices)': what a bug report needs.
    The backend is started here (a second or two), so only `--version` asks for it."""
    import importlib.metadata

    def installed(name):
        try:
            return importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            return "not installed"

    try:
        import jax

        devices = jax.devices()
        backend = f"backend {jax.default_backend()}: {len(devices)} device{'s' if len(devices) != 1 else ''}"
    except Exception as error:  # noqa: BLE001 - a version line reports a broken backend, it does not fail
        reason = one_line(error)
        backend = f"backend unavailable: {reason if len(reason) <= 150 else reason[:149] + '…'}"
    return f"metaplastic {_version()} (jax {installed('jax')}, flax {installed('flax')}, {backend})"


class _VersionAction(argparse.Action):
    """`--version`, computed only when asked (the backend takes a moment to start)."""

    def __init__(self, option_strings, dest=argparse.SUPPRESS, default=argparse.SUPPRESS, help=None):
        super().__init__(option_strings, dest=dest, default=default, nargs=0, help=help)

    def __call__(self, parser, namespace, values, option_string=None):
        print(version_line())
        parser.exit()


def _parser() -> argparse.ArgumentParser:
    shipped = _shipped_configs()
    parser = _Parser(prog="metaplastic", description=__doc__, epilog=MAIN_EPILOG,
                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action=_VersionAction,
                        help="show the versions of metaplastic, jax and flax and the JAX backend, and exit")
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
        epilog=TRAIN_EPILOG.format(shipped=shipped, listing=config_file_listing(shipped / "train")))
    train.add_argument("--config", required=True, metavar="FILE[:VARIANT]",
                       help="training config, e.g. experiments/train/digits.py:tiny")
    train.add_argument("--workdir", required=True, metavar="DIR",
                       help="where config, metrics and checkpoints go (created if missing)")
    train.add_argument("--no-progress", action="store_true", help=NO_PROGRESS_HELP)

    evaluate = command(
        "evaluate", "evaluate learned rules against baselines on held-out data (resumes)",
        description="Train fresh base models on held-out data with each method, read out with few "
                    "labels; writes results.json/.csv, report.md and pictures (resumes).",
        usage="metaplastic evaluate --config FILE[:VARIANT] --workdir DIR [--no-progress] "
              "[--config.FIELD=VALUE ...]",
        epilog=EVALUATE_EPILOG.format(shipped=shipped, listing=config_file_listing(shipped / "eval")))
    evaluate.add_argument("--config", required=True, metavar="FILE[:VARIANT]",
                          help="study config, e.g. experiments/eval/datasets.py")
    evaluate.add_argument("--workdir", required=True, metavar="DIR",
                          help="where results, report and cached cells go (created if missing)")
    evaluate.add_argument("--no-progress", action="store_true", help=NO_PROGRESS_HELP)

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
    export.add_argument("--step", type=_step_or_best, default=None, metavar="N|best",
                        help="the saved θ-step to export (default: the latest; 0 = the initial θ; best = the "
                             "best-validated θ, kept when config.validation.every is set)")
    export.add_argument("--recommended-steps", type=int, default=None, metavar="N",
                        help="the inner steps load_rule(...).fit and apply_rule default to for this rule "
                             "(write its model card's advice; default: none recorded, 1,000)")
    export.add_argument("--force", action="store_true", help="write into a non-empty OUT_DIR")

    snapshot = command(
        "snapshot", "write a compact, resumable snapshot of a meta-training run (θ, optimiser, step)",
        description="Write the newest intact checkpoint of WORKDIR as one .npz file of a few MB (θ, "
                    "optimiser state, step, config), replacing FILE if it exists. A run continues from it "
                    "on any machine with `metaplastic train ... --config.init_snapshot=FILE`.")
    snapshot.add_argument("workdir", metavar="WORKDIR", help="a `metaplastic train` workdir")
    snapshot.add_argument("file", metavar="FILE", help="the snapshot to write (.npz)")

    command("plugins", "list registered components: kind, name, origin and a one-line description")
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


def _progress(args) -> str:
    """The `core.progress` mode: a bar for a person watching, timestamped lines (done/total, rate, ETA)
    into a file or a pipe (logs stay readable, no bar frames), nothing with --no-progress."""
    if args.no_progress:
        return "off"
    return "bar" if _isatty(sys.stdout) and _isatty(sys.stderr) else "lines"


def _stopped(signal_name: str, where: str) -> int:
    """Say where a run that SIGTERM or Ctrl-C stopped (`where`: "saved at step N of M") and how it goes on;
    the exit status: 75 for SIGTERM (schedulers requeue), 130 for Ctrl-C."""
    code = EXIT_PREEMPTED if signal_name == "SIGTERM" else EXIT_INTERRUPTED
    how = "preempted (SIGTERM)" if signal_name == "SIGTERM" else f"interrupted ({signal_name})"
    print(f"metaplastic: {how}: {where}; run the same command to resume (exit status {code})", file=sys.stderr)
    return code


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


def _refuse_other_kind(config, spec: str, command: str) -> None:
    """A study given to `train`, or a training config given to `evaluate`: say which it is."""
    from metaplastic.core.config import COMPONENT_FIELDS

    study = "methods" in config or "datasets" in config
    components = [field for field in COMPONENT_FIELDS if field in config]
    if command == "train" and study and not components:
        raise UsageError(f"'{spec}' is an evaluation study (it has methods and datasets); "
                         f"use `metaplastic evaluate --config {spec}`")
    if command == "evaluate" and components and not study:
        raise UsageError(f"'{spec}' is a training config (it has {', '.join(components)}); "
                         f"use `metaplastic train --config {spec}`")


def _cmd_train(args, overrides) -> int:
    from metaplastic.core import config as config_lib
    from metaplastic.core.genome import train  # the trainer config.trainer names

    base = config_lib.load_config_file(args.config, _shipped_configs())
    _refuse_other_kind(base, args.config, "train")
    config = config_lib.resolve(base, config_lib.parse_overrides(overrides))
    workdir = check_workdir(args.workdir)
    summary = train(config, args.workdir, progress=_progress(args))
    if summary.get("stopped"):
        return _stopped(summary["stopped"], f"saved at step {summary['steps']} of {config.num_steps}")
    if summary["steps_run"] == 0 and summary["steps"] >= config.num_steps:
        print(f"already complete: {summary['steps']} of {config.num_steps} steps, workdir {args.workdir}")
    else:
        print(f"done: {summary['steps']} steps, {summary['skipped']} skipped, "
              f"{summary['steps_per_second']:.2f} steps/s, workdir {args.workdir}")
    if "validation" in summary:
        from metaplastic.core.validation import held_out_summary

        print(held_out_summary(summary["validation"]))
    print(f"next: {next_evaluation(config, workdir)}")
    return 0


def next_evaluation(config, workdir: pathlib.Path) -> str:
    """The command that evaluates what `train` just made: the best-validated θ if there is one, at the
    inner-step counts it was trained for, beside the hand-designed rule, random init and raw input."""
    rule = workdir / "best" if (workdir / "best" / "rule.json").is_file() else workdir
    trained = (max(config.genome.objective_points) if config.get("trainer", "gradient") == "genome"
               else max(config.schedule.horizon))
    steps = tuple(s for s in (10, 30, 100, 300, 1000, 3000) if s <= trained)[-2:] or (trained,)
    return (f"metaplastic evaluate --config experiments/eval/datasets.py:check "
            f"--workdir {shlex.quote(str(workdir) + '_eval')} --config.rule_checkpoint={shlex.quote(str(rule))} "
            f"--config.steps='{steps}'")


def _cmd_evaluate(args, overrides) -> int:
    from metaplastic.core import config as config_lib
    from metaplastic.core import evaluation
    from metaplastic.core.distributed import check_devices

    base = config_lib.load_config_file(args.config, _shipped_configs())
    _refuse_other_kind(base, args.config, "evaluate")
    study = evaluation.resolve_study(base, config_lib.parse_overrides(overrides))
    check_workdir(args.workdir)
    check_devices()
    results = evaluation.run_study(study, args.workdir, progress=_progress(args))
    if results.get("stopped"):
        return _stopped(results["stopped"], f"{results['cells_done']} of {results['cells_total']} cells done, "
                        f"kept in {args.workdir}/cells")
    if results.get("shard"):
        print(f"done: {len(results['cells'])} cells of a shard (config.only_*) in {args.workdir}/cells; "
              f"when every shard is done, the same command without config.only_* writes the report")
        return 0
    print(f"done: {len(results['cells'])} cells; report {args.workdir}/report.md")
    return 0


def _cmd_config(args, overrides) -> int:
    from metaplastic.core import config as config_lib

    base, about = config_lib.read_config_file(args.file, _shipped_configs())
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
    print("\n".join(file_lines(about, args.file.partition(":")[2])))
    print("\n".join(_aligned(lines)))
    return 0


def _cmd_export(args, _overrides) -> int:
    from metaplastic.core.distributed import check_devices
    from metaplastic.core.rules import checkpoint_steps, load_rule_from_workdir, save_rule, workdir_config

    check_devices()
    workdir, target = pathlib.Path(args.workdir), pathlib.Path(args.out_dir)
    _must_exist("WORKDIR", workdir)
    if not workdir.is_dir():
        raise UsageError(f"WORKDIR '{workdir}': not a directory (expected a `metaplastic train` workdir)")
    if target.exists() and not target.is_dir():
        raise UsageError(f"OUT_DIR '{target}': exists and is not a directory")
    if target.is_dir() and any(target.iterdir()) and not args.force:
        raise UsageError(f"OUT_DIR '{target}': not empty (use --force to write into it)")
    config = workdir_config(workdir).to_dict()
    extra = {}
    if args.step == "best":
        from metaplastic.core.rules import load_rule
        from metaplastic.core.validation import BEST_DIR, Validator

        best = Validator.read_best(workdir)
        if best is None:
            raise UsageError(f"WORKDIR '{workdir}': no best-validated θ ({BEST_DIR}/ is written when "
                             "config.validation.every > 0)")
        theta, step = load_rule(workdir / BEST_DIR).theta, int(best["step"])
        extra["validation"] = best
    else:
        step = checkpoint_steps(workdir)[-1] if args.step is None and _has_steps(workdir) else args.step
        _, theta = load_rule_from_workdir(workdir, step)  # a one-line EvaluationError for a missing step
        step = 0 if step is None else step
    rows, seconds = _metrics_until(workdir / "metrics.csv", step)
    extra["meta_training_steps"] = step
    if seconds is not None:
        extra["meta_training_seconds"] = round(seconds)
    extra["exported"] = datetime.date.today().isoformat()
    save_rule(target, config, theta, extra=extra, recommended_steps=args.recommended_steps)
    if rows:
        fields = [f for f in ("step", "meta_loss", "skipped", "horizon", "depth", "validation_loss") if f in rows[0]]
        with (target / "meta_training_curve.csv").open("w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=fields, extrasaction="ignore")
            writer.writeheader()
            writer.writerows(rows)
        _save_curve(rows, target / "meta_training_curve.png", f"Meta-training of {config['update_rule']} "
                    f"({workdir.name}), {step} θ-steps")
    shutil.copy(workdir / "config.json", target / "meta_training_config.json")
    spent = f" ({seconds / 3600:.2f} h of meta-training)" if seconds is not None else ""
    print(f"exported step {step}{spent} of {workdir} to {target}; "
          f"load it with metaplastic.load_rule({str(target)!r})")
    return 0


def _save_curve(rows: list[dict], path: pathlib.Path, title: str) -> None:
    from metaplastic.core.evaluation.pictures import DPI, meta_training_curve_figure

    meta_training_curve_figure(rows, title).savefig(path, dpi=DPI)


def _must_exist(what: str, path: pathlib.Path) -> None:
    if not path.exists():
        raise UsageError(f"{what} '{path}': does not exist (expected a `metaplastic train` workdir)")


def _step_or_best(text: str):
    if text == "best":
        return text
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a θ-step (an integer) or 'best', got '{text}'") from None


def _has_steps(workdir: pathlib.Path) -> bool:
    from metaplastic.core.rules import checkpoint_steps

    return bool(checkpoint_steps(workdir))


def _metrics_until(path: pathlib.Path, step: int) -> tuple[list[dict], float | None]:
    """The metric rows up to `step` and their summed seconds (None without metrics)."""
    if not path.is_file():
        return [], None
    with path.open(newline="") as f:
        rows = [row for row in csv.DictReader(f) if row.get("step", "").isdigit() and int(row["step"]) <= step]
    seconds = [float(row["seconds"]) for row in rows if row.get("seconds") not in (None, "", "nan")]
    return rows, (sum(seconds) if seconds else None)


def _cmd_snapshot(args, _overrides) -> int:
    from metaplastic.core.distributed import check_devices
    from metaplastic.core.snapshot import export_snapshot

    check_devices()
    _must_exist("WORKDIR", pathlib.Path(args.workdir))
    meta = export_snapshot(args.workdir, args.file)  # SnapshotError: one line
    size = pathlib.Path(args.file).stat().st_size / 1e6
    print(f"snapshot of step {meta['step']} ({meta.get('elapsed_seconds', 0) / 3600:.2f} h of meta-training) "
          f"written to {args.file} ({size:.1f} MB); continue with --config.init_snapshot={args.file}")
    return 0


COMMANDS = {"train": _cmd_train, "evaluate": _cmd_evaluate, "config": _cmd_config, "export": _cmd_export,
            "snapshot": _cmd_snapshot, "plugins": _cmd_plugins}
TAKES_OVERRIDES = ("train", "evaluate", "config")


# ---------------------------------------------------------------- entry point

def _silence_stdout() -> None:
    """No second broken pipe when Python flushes stdout at exit."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError, io.UnsupportedOperation):
        pass


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    rest, overrides = split_overrides(argv)
    args = _parser().parse_args(rest)  # --help, --version and argparse's one-line errors exit here
    created = _missing_root(getattr(args, "workdir", None)) if args.command in ("train", "evaluate") else None
    finished = False
    try:
        if overrides and args.command not in TAKES_OVERRIDES:
            raise UsageError(f"unrecognised argument '{overrides[0]}' (metaplastic {args.command} takes "
                             "no --config.FIELD overrides)")
        code = COMMANDS[args.command](args, overrides)
        finished = code == 0
        return code
    except UserError as error:  # a wrong input, said where it was found: one line
        print(f"metaplastic: error: {one_line(error)}", file=sys.stderr)
        return EXIT_USER_ERROR
    except BrokenPipeError:  # `metaplastic config ... | head`: the reader has all it wanted
        _silence_stdout()
        return 128 + 13  # as if killed by SIGPIPE, like other command-line tools
    except OSError as error:  # the system refused a file or folder (permissions, a full disk)
        print(f"metaplastic: error: {one_line(error)}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print("metaplastic: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    finally:
        if created is not None and not finished:
            _remove_if_empty(created)


def _missing_root(workdir: str | None) -> pathlib.Path | None:
    """The outermost folder of `workdir` that does not exist yet (what a failed start must not leave
    behind), or None when it exists."""
    if not workdir or not str(workdir).strip():
        return None
    path = pathlib.Path(workdir).absolute()
    if path.exists():
        return None
    while not path.parent.exists():
        path = path.parent
    return path


# what a start writes before any work: the workdir lock, and JAX's compilation cache (the trainer's
# default, <workdir>/compilation_cache: rebuilt by the next run)
DISPOSABLE = (".lock", "compilation_cache")


def _remove_if_empty(root: pathlib.Path) -> None:
    """Remove `root` if it holds nothing but what a start writes before any work (DISPOSABLE), as a
    start that failed leaves it; anything else in it is kept."""
    if not root.is_dir():
        return
    for path in root.rglob("*"):
        if not path.is_dir() and not any(part in DISPOSABLE for part in path.relative_to(root).parts):
            return
    shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
