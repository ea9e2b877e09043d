"""Per-step metrics: writers behind one interface, in the spirit of CLU's `metric_writers` (no TensorFlow).

`MetricWriter` (`interface`) is the interface (`write_scalars`, `write_hparams`, `flush`, `close`); one
writer per module:

- `CsvWriter` (`csv_writer`): `workdir/metrics.csv`, one row per logged step, read back by
  `core.metrics.read_metrics`;
- `TensorBoardWriter` (`tensorboard_writer`): event files under `workdir/tensorboard`, written synchronously;
- `WandbWriter` (`wandb_writer`): a Weights & Biases run (`pip install metaplastic[wandb]`), id kept in
  `workdir/wandb_id`;
- `CurvePicture` (`curve_picture`): `workdir/meta_training_curve.png`, the meta-loss so far, redrawn at
  most every `CURVE_SECONDS` while the run trains and once when it ends;
- `MultiWriter` (`multi_writer`): fans every call out to several writers.

`create_default_writer(workdir, resume_step)` is what the trainer uses: CSV + TensorBoard + the curve
picture, plus W&B when the environment variable `METAPLASTIC_WANDB=1` is set and `wandb` is importable.

Crash safety: a run killed at any moment (SIGKILL, an OOM kill) keeps every step whose `write_scalars`
returned: the CSV and TensorBoard writers hand each row to the operating system before returning
(a flush, no fsync: an fsync per row would protect against a power cut too, at about a millisecond a
row on an ordinary disk; pass `fsync=True` for that). A run resumed from a checkpoint at step R
forgets what was logged after R: the CSV drops those rows, and TensorBoard's new event file starts
with a purge event at step R + 1 (a `SessionLog.START`, the same thing tensorboardX's
`purge_step` writes), which hides every earlier event at step > R from TensorBoard's reader.
"""

from __future__ import annotations

import os
import warnings

from metaplastic.core.metric_writers.csv_writer import CsvWriter
from metaplastic.core.metric_writers.curve_picture import CURVE_FILE, CURVE_SECONDS, CurvePicture
from metaplastic.core.metric_writers.interface import HParams, MetricWriter, flatten_hparams
from metaplastic.core.metric_writers.multi_writer import MultiWriter
from metaplastic.core.metric_writers.tensorboard_writer import TensorBoardWriter
from metaplastic.core.metric_writers.wandb_writer import WANDB_PROJECT, WandbWriter, wandb_available

WANDB_ENV = "METAPLASTIC_WANDB"


def create_default_writer(workdir: str | os.PathLike, resume_step: int = 0, loss_name: str = "") -> MultiWriter:
    """The trainer's writer: CSV + TensorBoard + the curve picture, + W&B when `METAPLASTIC_WANDB=1` and
    wandb imports (else a warning). `write_hparams` takes a flat dict (`flatten_hparams`); `loss_name`:
    what the meta-loss measures (`MetaObjective.loss_name`), for the curve picture's axis."""
    writers: list[MetricWriter] = [CsvWriter(workdir, resume_step=resume_step),  # first: the picture draws
                                   TensorBoardWriter(workdir, resume_step=resume_step),  # what it holds
                                   CurvePicture(workdir, loss_name=loss_name)]
    if os.environ.get(WANDB_ENV) == "1":
        if wandb_available():
            writers.append(WandbWriter(workdir, resume_step=resume_step))
        else:
            warnings.warn(f"{WANDB_ENV}=1 but wandb is not installed (pip install 'metaplastic[wandb]'): "
                          "logging to CSV and TensorBoard only", stacklevel=2)
    return MultiWriter(writers)


__all__ = ["CURVE_FILE", "CURVE_SECONDS", "CsvWriter", "CurvePicture", "HParams", "MetricWriter", "MultiWriter",
           "TensorBoardWriter", "WANDB_ENV", "WANDB_PROJECT", "WandbWriter", "create_default_writer",
           "flatten_hparams", "wandb_available"]
