"""Command line: `metaplastic train | evaluate | plugins`."""

from __future__ import annotations

import argparse
import pathlib
import sys


def _shipped_configs() -> pathlib.Path:
    """The configs installed with the package (used when a config path does not exist here)."""
    import metaplastic.experiments

    return pathlib.Path(metaplastic.experiments.__file__).parent


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="metaplastic", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    train = commands.add_parser("train", help="meta-train an update rule (resumes from --workdir)")
    train.add_argument("--config", required=True, help="experiments/train/x.py[:arg]")
    train.add_argument("--workdir", required=True)
    train.add_argument("--no-progress", action="store_true", help="no progress bar")
    evaluate = commands.add_parser(
        "evaluate", help="train fresh base models on held-out data with each method, read out with "
                         "few labels; writes results.json/.csv, report.md and pictures (resumes)")
    evaluate.add_argument("--config", required=True, help="experiments/eval/x.py[:arg]")
    evaluate.add_argument("--workdir", required=True)
    evaluate.add_argument("--no-progress", action="store_true", help="no progress bar")
    commands.add_parser("plugins", help="list registered components by kind, name and origin")
    return parser


def _cmd_plugins(_args, _overrides) -> int:
    from metaplastic.registries import get_registry

    registry = get_registry()
    rows = [(e.kind, e.name, e.origin, e.module) for e in registry.all_entries()]
    widths = [max(len(r[i]) for r in rows + [("kind", "name", "origin", "module")]) for i in range(4)]
    for row in [("kind", "name", "origin", "module")] + rows:
        print("  ".join(col.ljust(w) for col, w in zip(row, widths)).rstrip())
    return 0


def _cmd_train(args, overrides) -> int:
    from metaplastic.core import config as config_lib
    from metaplastic.core.trainer import train

    config = config_lib.resolve(config_lib.load_config_file(args.config, _shipped_configs()),
                                config_lib.parse_overrides(overrides))
    summary = train(config, args.workdir, progress=not args.no_progress)
    print(f"done: {summary['steps']} steps, {summary['skipped']} skipped, "
          f"{summary['steps_per_second']:.2f} steps/s, workdir {args.workdir}")
    return 0


def _cmd_evaluate(args, overrides) -> int:
    from metaplastic.core import evaluation
    from metaplastic.core.interfaces import DatasetUnavailable

    try:
        study = evaluation.load_study(args.config, overrides, shipped=_shipped_configs())
        results = evaluation.run_study(study, args.workdir, progress=not args.no_progress)
    except (evaluation.EvaluationError, DatasetUnavailable) as error:
        print(f"metaplastic: error: {error}", file=sys.stderr)
        return 2
    print(f"done: {len(results['cells'])} cells; report {args.workdir}/report.md")
    return 0


COMMANDS = {"train": _cmd_train, "evaluate": _cmd_evaluate, "plugins": _cmd_plugins}


def main(argv: list[str] | None = None) -> int:
    args, rest = _parser().parse_known_args(argv)
    from metaplastic.core.config import ConfigError
    from metaplastic.registries import ComponentError

    try:
        return COMMANDS[args.command](args, rest)
    except (ConfigError, ComponentError) as error:
        print(f"metaplastic: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
