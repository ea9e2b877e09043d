"""Orbax checkpoints of the whole meta-training state.

Orbax writes each step into a temporary directory and renames it when
complete, so a process killed during a save leaves the previous checkpoint
as the latest restorable one. Each save also records a sha256 of the state's
bytes in its metadata; `restore_newest_intact` checks it and falls back, with a
one-line warning naming the bad step, to the newest step that restores intact,
so a truncated, byte-flipped or partly deleted checkpoint is never loaded.
"""

from __future__ import annotations

import hashlib
import pathlib
import shutil
import sys
import time
from typing import Any, Callable

import flax.serialization
import jax
import numpy as np
import orbax.checkpoint as ocp

from metaplastic.core.errors import UserError


class CheckpointError(UserError, RuntimeError):
    """No saved step can be restored intact."""


def state_digest(state) -> str | None:
    """sha256 over every leaf's path, dtype, shape and bytes; None when some leaf lives partly on other
    processes (several hosts: each sees only its own shards, Orbax's own checks remain)."""
    if any(isinstance(leaf, jax.Array) and not leaf.is_fully_addressable for leaf in jax.tree.leaves(state)):
        return None
    digest = hashlib.sha256()
    leaves = jax.tree_util.tree_flatten_with_path(flax.serialization.to_state_dict(jax.device_get(state)))[0]
    for path, leaf in leaves:
        leaf = np.ascontiguousarray(leaf)
        digest.update(f"{jax.tree_util.keystr(path)}|{leaf.dtype}|{leaf.shape}".encode())
        digest.update(leaf.tobytes())
    return digest.hexdigest()


def _quiet_closed_event_loops() -> None:
    """Drop the "Event loop is closed" noise of a failed restore, once per process.

    Orbax restores through asyncio; after a restore fails, TensorStore's callbacks still post to the
    closed loop, and each reports `RuntimeError: Event loop is closed` as an unraisable exception
    (some 28 tracebacks that bury the one-line warning and say nothing more). Those alone are
    dropped; every other unraisable exception goes to the hook that was there before."""
    previous = sys.unraisablehook
    if getattr(previous, "metaplastic_quiet", False):
        return

    def hook(unraisable):
        error = unraisable.exc_value
        if isinstance(error, RuntimeError) and str(error) == "Event loop is closed":
            return
        previous(unraisable)

    hook.metaplastic_quiet = True
    sys.unraisablehook = hook


class Checkpointer:
    def __init__(self, directory: str | pathlib.Path, keep: int = 3):
        _quiet_closed_event_loops()
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
        digest = state_digest(state)
        meta = {**meta, **({"state_sha256": digest} if digest else {})}
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

    def restore_newest_intact(self, template_for: Callable[[dict], Any] | None) -> tuple[int, dict, Any] | None:
        """(step, meta, state) of the newest step that restores and matches its digest; None when
        nothing is saved. `template_for(meta)` gives the state's structure for a step's meta
        (None: the state as stored, nested dicts of arrays)."""
        steps = self.all_steps()
        if not steps:
            return None
        damaged = []
        for index, step in enumerate(reversed(steps)):
            try:
                meta = self.restore_meta(step)
                state = self.restore(step, template_for(meta)) if template_for else self.restore_raw(step)
                expected = meta.get("state_sha256")
                if expected is not None and state_digest(state) not in (expected, None):
                    raise CheckpointError("its contents do not match the digest saved with it")
            except Exception as error:  # a damaged step: say so and try the one before
                older = steps[len(steps) - index - 2] if index + 1 < len(steps) else None
                why = str(error).splitlines()[0][:160] if str(error) else type(error).__name__
                then = f"falling back to step {older}" if older is not None else "no older step is left"
                print(f"metaplastic: checkpoint step {step} in {self.directory} is damaged ({why}); {then}",
                      file=sys.stderr)
                damaged.append(step)
                continue
            self._set_aside(damaged)
            return step, meta, state
        raise CheckpointError(f"no checkpoint in {self.directory} restores intact (steps {steps} are all "
                              "damaged); move it away to start the run again")

    def _set_aside(self, steps: list[int]) -> None:
        """Move damaged steps out of the way (never delete them), so the run can save those steps again."""
        if not steps:
            return
        aside = self.directory.parent / (self.directory.name + "_damaged")
        aside.mkdir(exist_ok=True)
        for step in steps:
            source = self.directory / str(step)
            if source.exists():
                shutil.move(str(source), str(aside / f"{step}.{int(time.time())}"))
        self.manager.reload()

    def close(self) -> None:
        self.manager.close()
