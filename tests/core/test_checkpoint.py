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


def test_orbax_coroutines_left_unawaited_do_not_warn(tmp_path):
    """A failed restore can leave Orbax's array-metadata coroutines unawaited; each would print
    "coroutine 'Store._get_array_metadatas' was never awaited" when collected (often at exit)."""
    import subprocess
    import sys
    import textwrap

    script = textwrap.dedent("""
        import gc, warnings
        warnings.simplefilter("default")
        {quiet}

        class Store:
            async def _get_array_metadatas(self):
                pass

        class Other:
            async def mine(self):
                pass

        Store()._get_array_metadatas()
        Other().mine()
        gc.collect()
    """)
    quiet = f"from metaplastic.core.checkpoint import Checkpointer; Checkpointer({str(tmp_path)!r})"
    quietened = subprocess.run([sys.executable, "-c", script.replace("{quiet}", quiet)], capture_output=True,
                               text=True, timeout=120)
    plain = subprocess.run([sys.executable, "-c", script.replace("{quiet}", "")], capture_output=True,
                           text=True, timeout=120)
    assert "Store._get_array_metadatas' was never awaited" in plain.stderr  # the noise exists without it
    assert "Store._get_array_metadatas" not in quietened.stderr
    assert "Other.mine' was never awaited" in quietened.stderr  # a user's coroutine still warns


def test_asyncio_reports_of_orbax_futures_nobody_awaited_are_dropped(tmp_path, caplog):
    """asyncio logs a failed future nobody awaited when it is collected; for Orbax's that is noise after a
    failed restore (the restore's own error says it all); anyone else's still shows."""
    import logging
    import os

    Checkpointer(tmp_path)  # installs the filters

    def failure_from(filename):
        try:
            exec(compile("raise ValueError('stored shape')", filename, "exec"))
        except ValueError as error:
            return (ValueError, error, error.__traceback__)

    orbax_file = os.sep + os.path.join("site-packages", "orbax", "checkpoint", "serialization.py")
    with caplog.at_level(logging.ERROR, logger="asyncio"):
        for filename in (orbax_file, os.path.join("mine", "loader.py")):
            logging.getLogger("asyncio").error("_GatheringFuture exception was never retrieved",
                                               exc_info=failure_from(filename))
    assert [record.exc_info[1].__traceback__.tb_next.tb_frame.f_code.co_filename
            for record in caplog.records] == [os.path.join("mine", "loader.py")]
