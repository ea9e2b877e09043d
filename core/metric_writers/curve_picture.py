"""`workdir/meta_training_curve.png`: the meta-loss so far, redrawn at most every `CURVE_SECONDS`."""

from __future__ import annotations

import csv
import io
import os
import pathlib
import sys
import time
from collections.abc import Mapping

from metaplastic.core.metric_writers.interface import HParams, MetricWriter
from metaplastic.core.ops.files import write_atomic

CURVE_FILE = "meta_training_curve.png"

CURVE_SECONDS = 60.0  # a redraw costs ~0.1-0.3 s: at most once a minute, and once at the end



class CurvePicture(MetricWriter):
    """`workdir/meta_training_curve.png`: the meta-loss of every logged θ-step and its running mean,
    read back from metrics.csv (so a resumed run's picture covers the whole run). Redrawn when a row
    arrives `every` seconds after the last drawing, and at `close`; written atomically. A picture that
    cannot be drawn or written is said once on stderr and never stops the run. `loss_name`: what the
    meta-loss measures (`MetaObjective.loss_name`), shown on its axis."""

    def __init__(self, workdir: str | os.PathLike, every: float = CURVE_SECONDS, loss_name: str = ""):
        self.workdir = pathlib.Path(workdir)
        self.every = every
        self.loss_name = loss_name
        self._drawn_at = time.monotonic()
        self._pending = False
        self._rule = ""
        self._broken = False

    def write_scalars(self, step: int, scalars: Mapping[str, float]) -> None:
        self._pending = True
        if time.monotonic() - self._drawn_at >= self.every:
            self.draw()

    def write_hparams(self, hparams: HParams) -> None:
        self._rule = str(hparams.get("update_rule", "") or "")

    def close(self) -> None:
        if self._pending:
            self.draw()

    def draw(self) -> None:
        self._drawn_at, self._pending = time.monotonic(), False
        if self._broken:
            return
        try:
            with (self.workdir / "metrics.csv").open(newline="") as f:
                rows = [row for row in csv.DictReader(f) if row.get("step", "").isdigit()]
            if not rows:
                return
            from metaplastic.core.evaluation.pictures import DPI, meta_training_curve_figure

            rule = f"{self._rule} " if self._rule else ""
            figure = meta_training_curve_figure(
                rows, f"Meta-training of {rule}({self.workdir.name}), {rows[-1]['step']} θ-steps so far",
                loss_name=self.loss_name)
            image = io.BytesIO()
            figure.savefig(image, dpi=DPI, format="png")
            write_atomic(self.workdir / CURVE_FILE, image.getvalue())
        except (OSError, ValueError, RuntimeError) as error:
            self._broken = True
            print(f"metaplastic: {self.workdir / CURVE_FILE} not drawn ({type(error).__name__}: {error}); "
                  "the run goes on", file=sys.stderr)

