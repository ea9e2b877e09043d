"""Shared by the command-line tests: run a command and capture what it prints."""

from __future__ import annotations

from metaplastic import cli

from helpers import REPO_ROOT


ROOT = REPO_ROOT
TINY = "experiments/train/digits.py:tiny"


def run(capsys, *argv) -> tuple[int, str, str]:
    """(exit status, stdout, stderr) of `metaplastic argv...` run in this process."""
    try:
        code = cli.main(list(argv))
    except SystemExit as exit:  # argparse: --help, --version
        code = exit.code
    out, err = capsys.readouterr()
    return code, out, err
