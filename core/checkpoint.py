"""Orbax checkpoints of the whole meta-training state.

Orbax writes each step into a temporary directory and renames it when
complete, so a process killed during a save leaves the previous checkpoint
as the latest restorable one.
"""

from __future__ import annotations

import pathlib

import flax.serialization
import orbax.checkpoint as ocp


class Checkpointer:
    def __init__(self, directory: str | pathlib.Path, keep: int = 3):
        self.directory = pathlib.Path(directory).absolute()
        options = ocp.CheckpointManagerOptions(max_to_keep=keep, create=True,
                                               enable_async_checkpointing=False)
        self.manager = ocp.CheckpointManager(self.directory, options=options,
                                             item_names=("state", "meta"))

    def latest_step(self) -> int | None:
        return self.manager.latest_step()

    def all_steps(self) -> list[int]:
        """Every saved step, ascending."""
        return sorted(int(s) for s in self.manager.all_steps())

    def save(self, step: int, state, meta: dict) -> None:
        self.manager.save(step, args=ocp.args.Composite(
            state=ocp.args.StandardSave(flax.serialization.to_state_dict(state)),
            meta=ocp.args.JsonSave(meta)), force=True)
        self.manager.wait_until_finished()

    def restore_meta(self, step: int) -> dict:
        return self.manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))["meta"]

    def restore(self, step: int, template):
        """The saved state, with the pytree structure (and dtypes) of `template`."""
        target = flax.serialization.to_state_dict(template)
        restored = self.manager.restore(step, args=ocp.args.Composite(
            state=ocp.args.StandardRestore(target)))["state"]
        return flax.serialization.from_state_dict(template, restored)

    def restore_raw(self, step: int) -> dict:
        """The saved state as stored (nested dicts of arrays), restored without a template."""
        return self.manager.restore(step, args=ocp.args.Composite(
            state=ocp.args.StandardRestore()))["state"]

    def close(self) -> None:
        self.manager.close()
