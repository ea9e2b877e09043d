"""The TensorBoard writer: event files read back by our own reader, file order on resume, hparams."""

from __future__ import annotations

import json
import textwrap
import time

import numpy as np
import pytest

from metaplastic.core.metric_writers import TensorBoardWriter, create_default_writer, flatten_hparams
from metaplastic.core.metrics import read_metrics

from helpers.metric_writers import CONFIG, killed_run, read_events, write_steps


def test_new_event_file_sorts_after_the_old_ones(tmp_path):
    logdir = tmp_path / "tensorboard"
    logdir.mkdir()
    future = f"events.out.tfevents.{int(time.time()) + 1000:010d}.host.1"
    (logdir / future).write_bytes(b"")
    writer = TensorBoardWriter(tmp_path, resume_step=0)
    writer.close()
    assert sorted(p.name for p in logdir.glob("events.out.tfevents.*"))[-1] == writer.path.name != future
    # earlier files there: a restart from scratch purges them all (step 1 on)
    assert writer.purge_step == 1


def test_tensorboard_own_reader_agrees(tmp_path):
    event_accumulator = pytest.importorskip(
        "tensorboard.backend.event_processing.event_accumulator",
        reason="tensorboard is not installed (not a dependency): read_events alone checks the files")
    killed_run(tmp_path, 0, 30)
    killed_run(tmp_path, 10, 20, offset=100.0)
    accumulator = event_accumulator.EventAccumulator(str(tmp_path / "tensorboard"),
                                                     size_guidance={event_accumulator.SCALARS: 0})
    accumulator.Reload()
    assert [e.step for e in accumulator.Scalars("meta_loss")] == list(range(1, 21))
    assert "_hparams_/session_start_info" in accumulator.PluginTagToContent("hparams")


def test_flatten_hparams():
    flat = flatten_hparams(CONFIG)
    assert flat == {"seed": 0, "update_rule": "simple_local", "use_bias": True,
                    "optimizer.learning_rate": 0.01, "optimizer.name": "adam",
                    "schedule.horizon": "(5, 20)", "schedule.phases.independent": False, "note": "None"}
    assert all(type(v) in (str, float, int, bool) for v in flat.values())
    assert flatten_hparams({"x": np.float32(0.5), "y": [1, 2]}) == {"x": 0.5, "y": "[1, 2]"}


def test_hparams_land_in_tensorboard_not_in_the_csv(tmp_path):
    from tensorboardX.proto.plugin_hparams_pb2 import HParamsPluginData

    with create_default_writer(tmp_path) as writer:
        writer.write_hparams(CONFIG)
        write_steps(writer, range(1, 4))
    assert list(read_metrics(tmp_path)[0]) == ["step", "meta_loss", "seconds"]
    assert "learning_rate" not in (tmp_path / "metrics.csv").read_text()

    sessions, texts = [], []
    for _, event in read_events(tmp_path / "tensorboard"):
        for value in event.summary.value:
            if value.tag == "_hparams_/session_start_info":
                assert value.metadata.plugin_data.plugin_name == "hparams"
                sessions.append(HParamsPluginData.FromString(value.metadata.plugin_data.content).session_start_info)
            elif value.tag == "hparams/text_summary":
                texts.append(value.tensor.string_val[0].decode())
    assert len(sessions) == 1 and len(texts) == 1
    hparams = sessions[0].hparams
    assert hparams["optimizer.learning_rate"].number_value == 0.01
    assert hparams["schedule.horizon"].string_value == "(5, 20)"
    assert hparams["use_bias"].bool_value is True and hparams["seed"].number_value == 0
    assert json.loads(textwrap.dedent(texts[0]))["optimizer.name"] == "adam"
    # the hparams sit in this run's own event file, next to its scalars: no sub-run per call
    assert [p.name for p in (tmp_path / "tensorboard").iterdir()] == [
        p.name for p in (tmp_path / "tensorboard").glob("events.out.tfevents.*")]
