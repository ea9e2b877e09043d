"""The W&B writer, offline: steps and hparams; a requested but missing wandb falls back with a warning."""

from __future__ import annotations

import json
import pathlib
import struct
import time
import zlib

import pytest

from metaplastic.core import metric_writers
from metaplastic.core.metric_writers import (CsvWriter, CurvePicture, TensorBoardWriter, WandbWriter,
                                             create_default_writer)
from metaplastic.core.metrics import read_metrics

from helpers.metric_writers import CONFIG, scalar_steps, write_steps


def wandb_records(run_dir: pathlib.Path) -> list:
    """The records of an offline run's `run-<id>.wandb` (W&B's LevelDB-style log of `Record` protos)."""
    from wandb.proto import wandb_internal_pb2

    (path,) = run_dir.glob("run-*.wandb")
    data = path.read_bytes()
    assert data[:4] == b":W&B"
    block, pos, chunks, pending = 32768, 7, [], b""
    while pos + 7 <= len(data):
        if block - pos % block < 7:  # block trailer
            pos += block - pos % block
            continue
        crc, length, kind = struct.unpack("<IHB", data[pos:pos + 7])
        if (crc, length, kind) == (0, 0, 0):
            pos += block - pos % block
            continue
        chunk = data[pos + 7:pos + 7 + length]
        assert zlib.crc32(bytes([kind]) + chunk) == crc
        pos += 7 + length
        if kind == 1:  # full
            chunks.append(chunk)
        elif kind in (2, 3):  # first, middle
            pending += chunk
        else:  # last
            chunks.append(pending + chunk)
            pending = b""
    return [wandb_internal_pb2.Record.FromString(chunk) for chunk in chunks]


def history_of(records) -> list[dict]:
    return [{item.key or "/".join(item.nested_key): json.loads(item.value_json) for item in r.history.item}
            for r in records if r.HasField("history")]


@pytest.fixture
def wandb_offline(tmp_path, monkeypatch):
    pytest.importorskip("wandb", reason="wandb is not installed: pip install 'metaplastic[wandb]'")
    for name, value in {"WANDB_MODE": "offline", "WANDB_SILENT": "true", metric_writers.WANDB_ENV: "1",
                        "WANDB_CONFIG_DIR": str(tmp_path / "wandb-config"),
                        "WANDB_CACHE_DIR": str(tmp_path / "wandb-cache"),
                        "WANDB_DATA_DIR": str(tmp_path / "wandb-data")}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("WANDB_RUN_ID", raising=False)
    monkeypatch.delenv("WANDB_DIR", raising=False)
    return tmp_path / "run"


def test_wandb_offline_run_has_the_steps_and_hparams(wandb_offline):
    workdir = wandb_offline
    with create_default_writer(workdir) as writer:
        assert any(isinstance(w, WandbWriter) for w in writer.writers)
        writer.write_hparams(CONFIG)
        write_steps(writer, range(1, 6))
    run_id = (workdir / "wandb_id").read_text()
    (run_dir,) = (workdir / "wandb").glob(f"offline-run-*-{run_id}")
    records = wandb_records(run_dir)
    kinds = [r.WhichOneof("record_type") for r in records]
    assert kinds[-1] == "exit"
    (run,) = [r.run for r in records if r.HasField("run")]
    assert run.run_id == run_id and run.project == "metaplastic"
    history = history_of(records)
    assert [h["_step"] for h in history] == [1, 2, 3, 4, 5]
    assert [h["meta_loss"] for h in history] == [1.0 / s for s in range(1, 6)]
    config = {item.key or "/".join(item.nested_key): json.loads(item.value_json)
              for r in records if r.HasField("config") for item in r.config.update}
    assert config["optimizer.learning_rate"] == 0.01 and config["schedule.horizon"] == "(5, 20)"
    assert config["use_bias"] is True
    # CSV and TensorBoard still there alongside
    assert len(read_metrics(workdir)) == 5 and len(scalar_steps(workdir / "tensorboard")["meta_loss"]) == 5

    # a restart of the same workdir joins the same run id, in a new offline run folder
    time.sleep(1)  # the folder is named by the start second: two starts in one second would share one
    with WandbWriter(workdir, {"seed": 1}, resume_step=5) as again:
        again.write_scalars(6, {"meta_loss": 0.1})
    assert (workdir / "wandb_id").read_text() == run_id
    (later,) = set((workdir / "wandb").glob(f"offline-run-*-{run_id}")) - {run_dir}
    later = wandb_records(later)
    assert [r.run.run_id for r in later if r.HasField("run")] == [run_id]
    assert [h["_step"] for h in history_of(later)] == [6]


def test_wandb_requested_but_missing_falls_back_with_a_warning(tmp_path, monkeypatch):
    monkeypatch.setenv(metric_writers.WANDB_ENV, "1")
    monkeypatch.setattr(metric_writers, "wandb_available", lambda: False)
    with pytest.warns(UserWarning, match="wandb is not installed"):
        writer = create_default_writer(tmp_path)
    assert [type(w) for w in writer.writers] == [CsvWriter, TensorBoardWriter, CurvePicture]
    writer.close()


def test_no_wandb_unless_asked(tmp_path, monkeypatch):
    monkeypatch.delenv(metric_writers.WANDB_ENV, raising=False)
    with create_default_writer(tmp_path) as writer:
        assert [type(w) for w in writer.writers] == [CsvWriter, TensorBoardWriter, CurvePicture]
    assert not (tmp_path / "wandb").exists() and not (tmp_path / "wandb_id").exists()
