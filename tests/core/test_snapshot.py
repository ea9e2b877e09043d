"""Snapshots continue a run on a clean workdir."""

from __future__ import annotations

import numpy as np

from metaplastic.core.checkpoint import Checkpointer
from metaplastic.core.metrics import read_metrics
from metaplastic.core.snapshot import export_snapshot, read_meta
from metaplastic.core.trainer import MetaTrainer

from helpers.workdirs import leaves, tiny


def test_a_snapshot_continues_the_run_on_a_clean_workdir(tmp_path):
    MetaTrainer(tiny(num_steps=4), tmp_path / "first").run(progress=False)
    path = tmp_path / "run.snapshot.npz"
    meta = export_snapshot(tmp_path / "first", path)
    assert meta["step"] == 4 and meta["config"]["update_rule"] == "simple_local"
    assert path.stat().st_size < 5_000_000
    trainer = MetaTrainer(tiny(num_steps=6, init_snapshot=str(path)), tmp_path / "elsewhere")
    source = Checkpointer(tmp_path / "first" / "checkpoints").restore_raw(4)
    assert trainer.step == 4
    for a, b in zip(leaves(trainer.theta), leaves(source["theta"]), strict=True):
        np.testing.assert_array_equal(a, b)
    trainer.run(progress=False)
    assert [row["step"] for row in read_metrics(tmp_path / "elsewhere")] == [5, 6]
    export_snapshot(tmp_path / "elsewhere", path)  # a new snapshot replaces the old file
    assert read_meta(path)["step"] == 6
