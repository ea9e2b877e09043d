"""Results, reports, caches and rules are written with the user's umask, atomically."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import textwrap

import pytest


@pytest.mark.parametrize("umask,expected", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_written_files_follow_the_umask(tmp_path, umask, expected):
    """A fresh process per umask (the writer reads it once, at import, as the process starts)."""
    script = textwrap.dedent(f"""
        import os, sys
        os.umask({umask:#o})
        import numpy as np
        from metaplastic.core.ops.files import save_npz_atomic, write_atomic
        from metaplastic.core.evaluation.runner import CellStore
        write_atomic(sys.argv[1] + "/a.json", b"{{}}")
        save_npz_atomic(sys.argv[1] + "/b.npz", {{"x": np.zeros(3)}})
        CellStore(sys.argv[1] + "/cells").put({{"k": 1}}, {{"accuracy": {{"ridge": 0.5}}, "finite": True}})
    """)
    subprocess.run([sys.executable, "-c", script, str(tmp_path)], check=True, timeout=120)
    written = [tmp_path / "a.json", tmp_path / "b.npz", *sorted((tmp_path / "cells").glob("*.json"))]
    assert len(written) == 3
    for path in written:
        assert stat.S_IMODE(os.stat(path).st_mode) == expected, path
    assert not list(tmp_path.rglob(".tmp-*"))  # no temporary file left behind


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path, monkeypatch):
    from metaplastic.core.ops import files

    target = tmp_path / "results.json"
    files.write_atomic(target, b"old")

    def broken_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(files.os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk full"):
        files.write_atomic(target, b"new")
    assert target.read_bytes() == b"old" and sorted(p.name for p in tmp_path.iterdir()) == ["results.json"]
