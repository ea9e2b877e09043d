"""Shared by the metric-writer tests: a reader of TensorBoard event files, and a run killed while writing.

TensorBoard files are read back by `read_events`: the TFRecord framing (8-byte length, its
masked CRC-32C, the data, its masked CRC-32C, both CRCs checked) and tensorboardX's `Event` protos,
with TensorBoard's purge rule applied (a `SessionLog.START` at step s drops the events read so far
at steps >= s). TensorBoard's own reader is not a dependency; where it is importable,
`test_tensorboard_own_reader_agrees` checks the same files with its `EventAccumulator`.
"""

from __future__ import annotations

import os
import pathlib
import struct
import subprocess
import sys
import textwrap

from metaplastic.core import metric_writers
from metaplastic.core.metric_writers import MetricWriter


CONFIG = {"seed": 0, "update_rule": "simple_local", "use_bias": True,
          "optimizer": {"learning_rate": 0.01, "name": "adam"},
          "schedule": {"horizon": (5, 20), "phases": {"independent": False}}, "note": None}


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
