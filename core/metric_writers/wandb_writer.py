"""A Weights & Biases run (`pip install metaplastic[wandb]`), its id kept in `workdir/wandb_id`."""

from __future__ import annotations

import os
import pathlib
import secrets
import string
from collections.abc import Mapping

from metaplastic.core.metric_writers.interface import HParams, MetricWriter, as_number, flatten_hparams
from metaplastic.core.ops.files import write_atomic

WANDB_PROJECT = "metaplastic"



def wandb_available() -> bool:
    try:
        import wandb  # noqa: F401
    except ImportError:
        return False
    return True



class WandbWriter(MetricWriter):
    """A Weights & Biases run in `workdir/wandb`, resumed across restarts of the same workdir.

    The run id is made once and kept in `workdir/wandb_id`, and `wandb.init(resume="allow")` joins
    that run again after a restart. Set `WANDB_MODE=offline` to write the run only to disk (sync it
    later with `wandb sync workdir/wandb/offline-run-*`). W&B keeps one value per step and refuses
    steps below the highest it has seen, so after a resume from step R the steps R+1.. logged again
    are dropped by W&B with a warning (its first record of them stays); the CSV and TensorBoard
    writers replace them.
    """

    def __init__(self, workdir: str | os.PathLike, config_dict: HParams | None = None,
                 resume_step: int = 0, project: str = WANDB_PROJECT, **init_kwargs):
        try:
            import wandb
        except ImportError as e:
            raise ImportError("WandbWriter needs wandb: pip install 'metaplastic[wandb]'") from e
        workdir = pathlib.Path(workdir)
        workdir.mkdir(parents=True, exist_ok=True)
        id_path = workdir / "wandb_id"
        if id_path.exists() and id_path.read_text().strip():
            run_id = id_path.read_text().strip()
        else:
            alphabet = string.ascii_lowercase + string.digits  # W&B's own id alphabet
            run_id = "".join(secrets.choice(alphabet) for _ in range(8))
            write_atomic(id_path, run_id.encode())
        self.run_id = run_id
        self.resume_step = resume_step
        config = flatten_hparams(config_dict) if config_dict else None
        self.run = wandb.init(project=project, dir=str(workdir), config=config, resume="allow",
                              id=run_id, **init_kwargs)

    def write_scalars(self, step: int, scalars: Mapping[str, float]) -> None:
        self.run.log({name: as_number(value) for name, value in scalars.items()}, step=int(step))

    def write_hparams(self, hparams: HParams) -> None:
        self.run.config.update(flatten_hparams(hparams), allow_val_change=True)

    def close(self) -> None:
        """Finish the run, then wait for W&B's service process to write it out (`wandb.teardown`):
        `run.finish()` alone returns before an offline run's `.wandb` file holds the run (seen with
        wandb 0.31: about half the time only its 7-byte header, the records following later)."""
        if self.run is not None:
            import wandb

            self.run.finish()
            self.run = None
            if hasattr(wandb, "teardown"):
                wandb.teardown()

