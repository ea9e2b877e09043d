"""Metric writers: CSV, TensorBoard and W&B (offline), crash safety and resume without duplicate steps.

TensorBoard files are read back by `read_events` below: the TFRecord framing (8-byte length, its
masked CRC-32C, the data, its masked CRC-32C, both CRCs checked) and tensorboardX's `Event` protos,
with TensorBoard's purge rule applied (a `SessionLog.START` at step s drops the events read so far
at steps >= s). TensorBoard's own reader is not a dependency; where it is importable,
`test_tensorboard_own_reader_agrees` checks the same files with its `EventAccumulator`.
"""

from __future__ import annotations

import csv
import json
import os
import pathlib
import struct
import subprocess
import sys
import textwrap
import time
import zlib

import numpy as np
import pytest

from metaplastic.core import metric_writers
from metaplastic.core.metric_writers import (CsvWriter, CurvePicture, MetricWriter, MultiWriter, TensorBoardWriter,
                                             WandbWriter, create_default_writer, flatten_hparams)
from metaplastic.core.metrics import read_metrics

CONFIG = {"seed": 0, "update_rule": "simple_local", "use_bias": True,
          "optimizer": {"learning_rate": 0.01, "name": "adam"},
          "schedule": {"horizon": (5, 20), "phases": {"independent": False}}, "note": None}


# -------------------------------------------------------------------------------- TensorBoard reader


def read_events(logdir: pathlib.Path) -> list[tuple[str, object]]:
    """(file name, Event) for every record of every event file, files in name order (TensorBoard's)."""
    from tensorboardX.proto.event_pb2 import Event
    from tensorboardX.record_writer import masked_crc32c

    events = []
    for path in sorted(pathlib.Path(logdir).glob("events.out.tfevents.*")):
        data, pos = path.read_bytes(), 0
        while pos < len(data):
            header = data[pos:pos + 8]
            (length,) = struct.unpack("<Q", header)
            assert struct.unpack("<I", data[pos + 8:pos + 12])[0] == masked_crc32c(header), path
            body = data[pos + 12:pos + 12 + length]
            assert len(body) == length and pos + 16 + length <= len(data), f"{path} ends mid-record"
            assert struct.unpack("<I", data[pos + 12 + length:pos + 16 + length])[0] == masked_crc32c(body)
            event = Event()
            event.ParseFromString(body)
            events.append((path.name, event))
            pos += 16 + length
    return events


def scalar_steps(logdir: pathlib.Path, purge: bool = True) -> dict[str, list[tuple[int, float]]]:
    """tag -> [(step, value)] in reading order; with `purge`, as TensorBoard shows them."""
    from tensorboardX.proto.event_pb2 import SessionLog

    seen: list[tuple[int, str, float]] = []
    for _, event in read_events(logdir):
        if purge and event.HasField("session_log") and event.session_log.status == SessionLog.START:
            seen = [item for item in seen if item[0] < event.step]
        seen += [(event.step, value.tag, value.simple_value)
                 for value in event.summary.value if value.WhichOneof("value") == "simple_value"]
    by_tag: dict[str, list[tuple[int, float]]] = {}
    for step, tag, value in seen:
        by_tag.setdefault(tag, []).append((step, value))
    return by_tag


def write_steps(writer: MetricWriter, steps, offset: float = 0.0) -> None:
    for step in steps:
        writer.write_scalars(step, {"meta_loss": offset + 1.0 / step, "seconds": 0.5})


# ----------------------------------------------------------------------------------------------- CSV


def test_csv_resume_drops_the_rows_after_the_resume_step(tmp_path):
    with CsvWriter(tmp_path) as writer:
        write_steps(writer, range(1, 21))
    assert [r["step"] for r in read_metrics(tmp_path)] == list(range(1, 21))
    with CsvWriter(tmp_path, resume_step=10) as writer:
        assert [r["step"] for r in read_metrics(tmp_path)] == list(range(1, 11))  # dropped on open
        write_steps(writer, range(11, 16), offset=100.0)
    rows = read_metrics(tmp_path)
    assert [r["step"] for r in rows] == list(range(1, 16))
    assert rows[9]["meta_loss"] == 1.0 / 10 and rows[10]["meta_loss"] == 100.0 + 1.0 / 11
    assert (tmp_path / "metrics.csv").read_text().count("step") == 1  # one header


def test_csv_drops_a_row_cut_short_by_a_crash(tmp_path):
    with CsvWriter(tmp_path) as writer:
        write_steps(writer, range(1, 4))
    with (tmp_path / "metrics.csv").open("a") as f:
        f.write("4,0.2")  # no newline: the process died mid-row
    CsvWriter(tmp_path, resume_step=10).close()
    assert [r["step"] for r in read_metrics(tmp_path)] == [1, 2, 3]


def test_csv_keeps_non_finite_rows_and_adds_new_columns(tmp_path):
    with CsvWriter(tmp_path) as writer:
        writer.write_scalars(1, {"meta_loss": 0.5})
        writer.write_scalars(2, {"meta_loss": float("nan"), "skipped": 1})  # a skipped step, a new key
        writer.write_scalars(3, {"meta_loss": np.float32(0.25), "skipped": np.int64(1), "ok": True})
        writer.write_scalars(4, {"meta_loss": float("inf")})  # a key missing
    with (tmp_path / "metrics.csv").open() as f:
        assert next(csv.reader(f)) == ["step", "meta_loss", "skipped", "ok"]
    rows = read_metrics(tmp_path)
    assert [r["step"] for r in rows] == [1, 2, 3, 4]
    assert np.isnan(rows[1]["meta_loss"]) and rows[1]["skipped"] == 1 and np.isnan(rows[0]["skipped"])
    assert rows[2] == {"step": 3, "meta_loss": 0.25, "skipped": 1, "ok": 1}
    assert rows[3]["meta_loss"] == float("inf") and np.isnan(rows[3]["ok"])


def test_csv_row_flush_is_cheap(tmp_path):
    """1,000 rows of 13 columns, measured here (a cloud VM's disk, while a CPU-bound study ran):

    - flush to the OS per row (CsvWriter's default, survives SIGKILL): ~12 us/row
    - open / append / close per row (the writer before this one):       ~33 us/row
    - flush + fsync per row (`fsync=True`, survives a power cut too):   ~2,400 us/row
    - TensorBoardWriter, one event per row, flushed:                    ~150 us/row (pure-Python CRC)
    """
    row = {f"m{i}": 0.123456789 * i for i in range(12)}
    with CsvWriter(tmp_path) as writer:
        started = time.perf_counter()
        for step in range(1, 1001):
            writer.write_scalars(step, row)
            if step == 500:  # every row so far is on disk already, before any close
                assert len((tmp_path / "metrics.csv").read_text().splitlines()) == 501
        per_row = (time.perf_counter() - started) / 1000
    assert len(read_metrics(tmp_path)) == 1000
    assert per_row < 2e-3, f"{per_row * 1e6:.0f} us per row"  # loose: a busy machine, yet no fsync


# ------------------------------------------------------------------------------------ crash and resume

KILLED_RUN = textwrap.dedent("""
    import os, sys
    from metaplastic.core.metric_writers import create_default_writer

    writer = create_default_writer(sys.argv[1], resume_step=int(sys.argv[2]))
    writer.write_hparams({"optimizer": {"learning_rate": 0.01}})
    for step in range(int(sys.argv[2]) + 1, int(sys.argv[3]) + 1):
        writer.write(step, {"meta_loss": float(sys.argv[4]) + 1.0 / step, "seconds": 0.5})
    os.kill(os.getpid(), 9)  # no close, no flush, no atexit
""")


def killed_run(workdir, resume_step: int, last_step: int, offset: float = 0.0) -> None:
    env = {k: v for k, v in os.environ.items() if k != metric_writers.WANDB_ENV}
    process = subprocess.run([sys.executable, "-c", KILLED_RUN, str(workdir), str(resume_step), str(last_step),
                              str(offset)], env=env, capture_output=True, text=True, timeout=120)
    assert process.returncode == -9, process.stderr[-2000:]


def test_sigkill_keeps_every_completed_step(tmp_path):
    killed_run(tmp_path, 0, 30)
    assert [r["step"] for r in read_metrics(tmp_path)] == list(range(1, 31))
    steps = scalar_steps(tmp_path / "tensorboard")
    assert sorted(steps) == ["meta_loss", "seconds"]
    assert [s for s, _ in steps["meta_loss"]] == list(range(1, 31))
    assert [s for s, _ in steps["seconds"]] == list(range(1, 31))
    np.testing.assert_allclose([v for _, v in steps["meta_loss"]], [1.0 / s for s in range(1, 31)], rtol=1e-6)


def test_resume_after_a_kill_shows_each_step_once(tmp_path):
    killed_run(tmp_path, 0, 30)
    killed_run(tmp_path, 10, 20, offset=100.0)  # resumed from the checkpoint at 10, killed again at 20
    rows = read_metrics(tmp_path)
    assert [r["step"] for r in rows] == list(range(1, 21))
    assert rows[10]["meta_loss"] == 100.0 + 1.0 / 11

    logdir = tmp_path / "tensorboard"
    files = sorted(p.name for p in logdir.glob("events.out.tfevents.*"))
    assert len(files) == 2
    # the purge event opens the second file, at the step after the resume step
    purges = [(name, event.step) for name, event in read_events(logdir) if event.HasField("session_log")]
    assert purges == [(files[1], 11)]
    raw = [s for s, _ in scalar_steps(logdir, purge=False)["meta_loss"]]
    assert raw == list(range(1, 31)) + list(range(11, 21))  # without the purge: duplicates
    shown = scalar_steps(logdir)["meta_loss"]
    assert [s for s, _ in shown] == list(range(1, 21))  # each step once, the resumed values after 10
    np.testing.assert_allclose([v for _, v in shown],
                               [1.0 / s for s in range(1, 11)] + [100.0 + 1.0 / s for s in range(11, 21)],
                               rtol=1e-6)


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


# ---------------------------------------------------------------------------------------------- hparams


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


# ------------------------------------------------------------------------------------------------- W&B


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


# ------------------------------------------------------------------------------------ the picture


def test_curve_picture_is_drawn_as_the_run_goes_and_at_its_end(tmp_path, monkeypatch):
    """Redrawn once `every` seconds have passed since the last drawing, and at close: the picture
    shows every logged θ-step so far (read back from metrics.csv)."""
    from PIL import Image

    clock = [100.0]
    monkeypatch.setattr(metric_writers.curve_picture.time, "monotonic", lambda: clock[0])
    picture = tmp_path / metric_writers.CURVE_FILE
    drawn = []
    real_draw = CurvePicture.draw
    monkeypatch.setattr(CurvePicture, "draw", lambda self: (drawn.append(clock[0]), real_draw(self)))
    writer = create_default_writer(tmp_path)
    writer.write_hparams({"update_rule": "simple_local"})
    writer.write(1, {"meta_loss": 1.0})
    clock[0] += metric_writers.CURVE_SECONDS - 1
    writer.write(2, {"meta_loss": 0.9})
    assert not picture.exists() and drawn == []  # not yet a minute
    clock[0] += 1
    writer.write(3, {"meta_loss": 0.8})
    assert drawn == [100.0 + metric_writers.CURVE_SECONDS] and Image.open(picture).size[0] > 400
    first = picture.read_bytes()
    writer.write(4, {"meta_loss": 0.7})
    writer.close()  # the end of the run: drawn with step 4
    assert len(drawn) == 2 and picture.read_bytes() != first


def test_curve_picture_that_cannot_be_written_never_stops_the_run(tmp_path, capsys):
    writer = CurvePicture(tmp_path / "no_such_folder", every=0.0)
    writer.write_scalars(1, {"meta_loss": 1.0})
    writer.write_scalars(2, {"meta_loss": 1.0})
    writer.close()
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and "not drawn" in err[0] and "the run goes on" in err[0]


# -------------------------------------------------------------------------------------------- fan-out


class Recorder(MetricWriter):
    def __init__(self, fail_close=False):
        self.calls, self.fail_close = [], fail_close

    def write_scalars(self, step, scalars):
        self.calls.append(("scalars", step, dict(scalars)))

    def write_hparams(self, hparams):
        self.calls.append(("hparams", dict(hparams)))

    def flush(self):
        self.calls.append(("flush",))

    def close(self):
        self.calls.append(("close",))
        if self.fail_close:
            raise RuntimeError("close failed")


def test_multi_writer_fans_out_and_closes_every_writer():
    first, second = Recorder(fail_close=True), Recorder()
    writer = MultiWriter([first, second])
    writer.write(3, {"a": 1.0})
    writer.write_hparams({"lr": 0.1})
    writer.flush()
    with pytest.raises(RuntimeError, match="close failed"):
        writer.close()
    expected = [("scalars", 3, {"a": 1.0}), ("hparams", {"lr": 0.1}), ("flush",), ("close",)]
    assert first.calls == expected and second.calls == expected


def test_metric_writer_is_abstract():
    with pytest.raises(TypeError):
        MetricWriter()

    class OnlyScalars(MetricWriter):
        def write_scalars(self, step, scalars):
            pass

    with pytest.raises(TypeError):
        OnlyScalars()


