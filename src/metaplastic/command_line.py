"""The command line's arguments and help: the parser of `metaplastic`, the help texts, the split of
`--config.FIELD` overrides from the other arguments, the `--version` line and the command that
evaluates what `train` made. `metaplastic.cli` parses with these and calls the library."""

from __future__ import annotations

import argparse
import pathlib
import shlex
import textwrap

from metaplastic.config_listing import config_file_listing
from metaplastic.core.errors import one_line

EXIT_USER_ERROR = 2

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


class _Parser(argparse.ArgumentParser):
    """argparse, with its errors in one line (not the usage block)."""

    def error(self, message):
        self.exit(EXIT_USER_ERROR, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def shipped_configs() -> pathlib.Path:
    """The configs installed with the package (used when a config path does not exist here)."""
    import metaplastic.experiments

    return pathlib.Path(metaplastic.experiments.__file__).parent


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


def build_parser(description: str) -> argparse.ArgumentParser:
    """The `metaplastic` parser; `description` heads its --help (the CLI module's docstring)."""
    shipped = shipped_configs()
    parser = _Parser(prog="metaplastic", description=description, epilog=MAIN_EPILOG,
                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action=_VersionAction,
                        help="show the versions of metaplastic, jax and flax and the JAX backend, and exit")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=_Parser)

    def command(name, help, description=None, epilog=None, usage=None):
        return commands.add_parser(name, help=help, description=textwrap.fill(description or help, 88),
                                   epilog=epilog, usage=usage,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)

    def run_arguments(parser, config_help: str, workdir_help: str) -> None:
        """What `train` and `evaluate` both take: a config, a workdir, and whether to show progress."""
        parser.add_argument("--config", required=True, metavar="FILE[:VARIANT]", help=config_help)
        parser.add_argument("--workdir", required=True, metavar="DIR", help=workdir_help)
        parser.add_argument("--no-progress", action="store_true", help=NO_PROGRESS_HELP)

    train = command(
        "train", "meta-train an update rule (resumes from --workdir)",
        description="Meta-train an update rule's θ on a distribution of tasks; an interrupted run "
                    "resumes from --workdir.",
        usage="metaplastic train --config FILE[:VARIANT] --workdir DIR [--no-progress] "
              "[--config.FIELD=VALUE ...]",
        epilog=TRAIN_EPILOG.format(shipped=shipped, listing=config_file_listing(shipped / "train")))
    run_arguments(train, "training config, e.g. experiments/train/digits.py:tiny",
                  "where config, metrics and checkpoints go (created if missing)")

    evaluate = command(
        "evaluate", "evaluate learned rules against baselines on held-out data (resumes)",
        description="Train fresh base models on held-out data with each method, read out with few "
                    "labels; writes results.json/.csv, report.md and pictures (resumes).",
        usage="metaplastic evaluate --config FILE[:VARIANT] --workdir DIR [--no-progress] "
              "[--config.FIELD=VALUE ...]",
        epilog=EVALUATE_EPILOG.format(shipped=shipped, listing=config_file_listing(shipped / "eval")))
    run_arguments(evaluate, "study config, e.g. experiments/eval/datasets.py",
                  "where results, report and cached cells go (created if missing)")

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


def _step_or_best(text: str):
    if text == "best":
        return text
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a θ-step (an integer) or 'best', got '{text}'") from None

