"""Command line: `metaplastic train | evaluate | config | export | snapshot | plugins`.

Every command that takes a config accepts overrides of any of its fields after the other
options, as `--config.FIELD=VALUE` or `--config.FIELD VALUE` (absl / ml_collections style).
A user error (any `metaplastic.core.errors.UserError`: a bad config, field, value, path, file,
dataset or workdir) ends in one line on stderr and exit status 2; anything else is a bug and keeps
its traceback. A `train` or `evaluate` that SIGTERM stopped saves and exits with status 75
(EX_TEMPFAIL), one that Ctrl-C stopped with status 130: run the same command again to resume.
"""

from __future__ import annotations

import io
import os
import sys

from metaplastic.command_line import (EXIT_USER_ERROR, build_parser, next_evaluation, shipped_configs,
                                      split_overrides)
from metaplastic.config_listing import check_config_kind, resolved_listing
from metaplastic.core.errors import UserError, one_line
from metaplastic.core.workdir import check_workdir, missing_root, remove_if_empty

EXIT_PREEMPTED = 75  # EX_TEMPFAIL: stopped by SIGTERM before num_steps, saved; the same command resumes
EXIT_INTERRUPTED = 130  # Ctrl-C (128 + SIGINT), as shells report it


class UsageError(UserError):
    """A command-line mistake outside the config (a path, an argument): one line, exit status 2."""


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


# ---------------------------------------------------------------- commands

def _cmd_plugins(_args, _overrides) -> int:
    from metaplastic.registries import get_registry

    print("\n".join(get_registry().report_lines()))
    return 0


def _cmd_train(args, overrides) -> int:
    from metaplastic.core import config as config_lib
    from metaplastic.core.genome import train  # the trainer config.trainer names

    base = config_lib.load_config_file(args.config, shipped_configs())
    check_config_kind(base, args.config, "train")
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


def _cmd_evaluate(args, overrides) -> int:
    from metaplastic.core import config as config_lib
    from metaplastic.core import evaluation
    from metaplastic.core.distributed import check_devices

    base = config_lib.load_config_file(args.config, shipped_configs())
    check_config_kind(base, args.config, "evaluate")
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
    print(resolved_listing(args.file, overrides, shipped_configs()))
    return 0


def _cmd_export(args, _overrides) -> int:
    from metaplastic.core.distributed import check_devices
    from metaplastic.core.export import export_rule

    check_devices()
    done = export_rule(args.workdir, args.out_dir, args.step, args.recommended_steps, force=args.force)
    spent = f" ({done['seconds'] / 3600:.2f} h of meta-training)" if done["seconds"] is not None else ""
    print(f"exported step {done['step']}{spent} of {args.workdir} to {args.out_dir}; "
          f"load it with metaplastic.load_rule({str(args.out_dir)!r})")
    return 0


def _cmd_snapshot(args, _overrides) -> int:
    from metaplastic.core.distributed import check_devices
    from metaplastic.core.snapshot import export_snapshot

    check_devices()
    if not os.path.exists(args.workdir):
        raise UsageError(f"WORKDIR '{args.workdir}': does not exist (expected a `metaplastic train` workdir)")
    meta = export_snapshot(args.workdir, args.file)  # SnapshotError: one line
    size = os.path.getsize(args.file) / 1e6
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
    args = build_parser(__doc__).parse_args(rest)  # --help, --version and argparse's one-line errors exit here
    created = missing_root(getattr(args, "workdir", None)) if args.command in ("train", "evaluate") else None
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
            remove_if_empty(created)


if __name__ == "__main__":
    sys.exit(main())
