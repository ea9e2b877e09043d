"""Fake installed plugin distributions: a module plus a dist-info with a `metaplastic` entry point."""

from __future__ import annotations

import pathlib
import textwrap


def make_distribution(root: pathlib.Path, dist: str, module: str, source: str,
                      entry_name: str | None = None) -> None:
    """Write an importable module plus a dist-info that advertises it in the `metaplastic` group."""
    (root / f"{module}.py").write_text(textwrap.dedent(source))
    info = root / f"{dist}-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(f"[metaplastic]\n{entry_name or module} = {module}\n")
