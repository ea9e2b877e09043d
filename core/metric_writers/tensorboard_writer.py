"""TensorBoard event files under `workdir/tensorboard`, each event written and flushed in the caller's thread."""

from __future__ import annotations

import json
import os
import pathlib
import socket
import time
from collections.abc import Mapping

from metaplastic.core.metric_writers.interface import HParams, MetricWriter, as_number, flatten_hparams


class TensorBoardWriter(MetricWriter):
    """TensorBoard event files under `workdir/tensorboard` (tensorboardX's protos and record framing).

    Why not `tensorboardX.SummaryWriter` itself: it hands events to a background thread through a
    queue, and its `flush()` flushes the file without waiting for that queue, so a run killed right
    after a step can lose the step's events whatever `flush_secs` is. This writer writes and
    flushes each event in the caller's thread instead.

    - Each writer opens a new event file whose name sorts after every event file already there
      (TensorBoard reads a run's files in name order).
    - When resuming (`resume_step > 0`), or when earlier event files are there, the new file starts
      with a purge event at `resume_step + 1`, as `SummaryWriter(purge_step=resume_step + 1)` would
      write it: TensorBoard's reader then drops the earlier events at steps > `resume_step`, so a
      crash and resume shows each step once.
    - `write_hparams` writes the HParams plugin's session-start summary into this run's own file
      (not `add_hparams`' extra sub-run per call, which would show as a second run with only the
      metrics passed to it), so the HParams dashboard lists this run with all its scalars as
      metrics; and the same values as JSON under the text tag `hparams`.
    """

    def __init__(self, workdir: str | os.PathLike, resume_step: int = 0,
                 subdir: str = "tensorboard", fsync: bool = False):
        from tensorboardX.proto.event_pb2 import Event, SessionLog

        self.logdir = pathlib.Path(workdir) / subdir
        self.logdir.mkdir(parents=True, exist_ok=True)
        self.fsync = fsync
        earlier = sorted(p.name for p in self.logdir.glob("events.out.tfevents.*"))
        self.path = self.logdir / self._file_name(earlier)
        self._file = self.path.open("xb")
        self._write_event(Event(wall_time=time.time(), file_version="brain.Event:2"))
        self.purge_step = resume_step + 1 if resume_step > 0 or earlier else None
        if self.purge_step is not None:
            self._write_event(Event(wall_time=time.time(), step=self.purge_step,
                                    session_log=SessionLog(status=SessionLog.START)))
        self.flush()

    @staticmethod
    def _file_name(earlier: list[str]) -> str:
        """`events.out.tfevents.<seconds>.<host>.<pid>`, with <seconds> raised past the newest file."""
        seconds = int(time.time())
        for name in earlier:
            parts = name.split(".")
            if len(parts) > 3 and parts[3].isdigit():
                seconds = max(seconds, int(parts[3]) + 1)
        return f"events.out.tfevents.{seconds:010d}.{socket.gethostname()}.{os.getpid()}"

    def _write_event(self, event) -> None:
        import struct

        from tensorboardX.record_writer import masked_crc32c

        data = event.SerializeToString()
        header = struct.pack("<Q", len(data))
        self._file.write(header + struct.pack("<I", masked_crc32c(header)) + data
                         + struct.pack("<I", masked_crc32c(data)))

    def write_scalars(self, step: int, scalars: Mapping[str, float]) -> None:
        from tensorboardX.proto.event_pb2 import Event
        from tensorboardX.proto.summary_pb2 import Summary
        from tensorboardX.summary import scalar

        values = [value for name, number in scalars.items() for value in scalar(name, as_number(number)).value]
        # one event per step: a step's scalars reach the file together or not at all
        self._write_event(Event(wall_time=time.time(), step=int(step), summary=Summary(value=values)))
        self.flush()

    def write_hparams(self, hparams: HParams) -> None:
        from tensorboardX.proto.event_pb2 import Event
        from tensorboardX.summary import hparams as hparams_summaries
        from tensorboardX.summary import text

        flat = flatten_hparams(hparams)
        _, session_start, _ = hparams_summaries(flat, {})
        now = time.time()
        self._write_event(Event(wall_time=now, step=0, summary=session_start))
        listing = json.dumps(flat, indent=2, sort_keys=True, default=str)
        self._write_event(Event(wall_time=now, step=0,
                                summary=text("hparams", "\n".join("    " + line for line in listing.splitlines()))))
        self.flush()

    def flush(self) -> None:
        if not self._file.closed:
            self._file.flush()
            if self.fsync:
                os.fsync(self._file.fileno())

    def close(self) -> None:
        if not self._file.closed:
            self.flush()
            self._file.close()

