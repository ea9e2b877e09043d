"""Checkpoints: a damaged latest one falls back to the newest intact one; none intact is one line."""

from __future__ import annotations

import numpy as np
import pytest

from metaplastic.core.checkpoint import CheckpointError, Checkpointer
from metaplastic.core.trainer import MetaTrainer

from helpers.workdirs import damage, leaves, tiny


@pytest.mark.parametrize("how", ["truncate", "flip", "delete"])
def test_a_damaged_latest_checkpoint_falls_back_to_the_newest_intact_one(tmp_path, how, capsys):
    MetaTrainer(tiny(num_steps=4), tmp_path).run(progress=False)  # checkpoints at 2 and 4
    reference = MetaTrainer(tiny(num_steps=4), tmp_path / "clean")
    reference.run(progress=False)
    intact = Checkpointer(tmp_path / "checkpoints").all_steps()
    assert intact == [2, 4]
    damage(tmp_path / "checkpoints" / "4", how)
    resumed = MetaTrainer(tiny(num_steps=4), tmp_path)
    lines = [line for line in capsys.readouterr().err.splitlines() if "damaged" in line]
    assert len(lines) == 1 and "step 4" in lines[0] and "falling back to step 2" in lines[0]
    assert resumed.step == 2
    resumed.run(progress=False)  # and redoing steps 3-4 gives the uninterrupted run's θ
    for a, b in zip(leaves(resumed.theta), leaves(reference.theta), strict=True):
        np.testing.assert_array_equal(a, b)


def test_when_no_checkpoint_is_intact_one_line_says_so(tmp_path):
    MetaTrainer(tiny(num_steps=2, checkpoint_keep=1), tmp_path).run(progress=False)
    damage(tmp_path / "checkpoints" / "2", "truncate")
    with pytest.raises(CheckpointError, match="no checkpoint .* restores intact"):
        MetaTrainer(tiny(num_steps=2), tmp_path)
