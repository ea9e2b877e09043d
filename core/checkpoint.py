"""Orbax checkpoints of the whole meta-training state.

Orbax writes each step into a temporary directory and renames it when
complete, so a process killed during a save leaves the previous checkpoint
as the latest restorable one. Each save also records the state's sha256
(`core.digest.pytree_digest`) in its metadata; `restore_newest_intact` checks it and falls back, with a
one-line warning naming the bad step, to the newest step that restores intact,
so a truncated, byte-flipped or partly deleted checkpoint is never loaded.

`load_rule_from_workdir` reads the θ of a `metaplastic train` workdir (its config.json and checkpoints)
for evaluation, export and `load_rule`.
"""

from __future__ import annotations

import json
import logging
import os
import pathlib
import shutil
import sys
import time
import traceback
import warnings
from typing import Any, Callable

import flax.serialization
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import orbax.checkpoint as ocp

from metaplastic.core import config as config_lib
from metaplastic.core.digest import pytree_digest
from metaplastic.core.errors import UserError, one_line
from metaplastic.core.interfaces import BaseModel, EvaluationError, Pytree, UpdateRule
from metaplastic.core.keys import initial_theta
from metaplastic.core.renamed_fields import current_config


class CheckpointError(UserError, RuntimeError):
    """No saved step can be restored intact."""


class CheckpointMismatch(CheckpointError):
    """A saved step holds a state of other shapes than this run builds: its config changed, the step is
    not damaged."""


def state_digest(state) -> str | None:
    """`pytree_digest` of the state as Orbax stores it (nested dicts, so a state restored without a
    template digests the same); None when some leaf lives partly on other processes (several hosts:
    each sees only its own shards, Orbax's own checks remain)."""
    if any(isinstance(leaf, jax.Array) and not leaf.is_fully_addressable for leaf in jax.tree.leaves(state)):
        return None
    return pytree_digest(flax.serialization.to_state_dict(jax.device_get(state)))


def _shapes(tree, shape_of) -> dict[str, tuple[int, ...]]:
    """{'theta/w': shape} for every leaf of a nested-dict state."""
    return {"/".join(str(getattr(key, "key", getattr(key, "idx", key))) for key in path): tuple(shape_of(leaf))
            for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]}


def _quiet_closed_event_loops() -> None:
    """Drop the "Event loop is closed" noise of a failed restore, once per process.

    Orbax restores through asyncio; after a restore fails, TensorStore's callbacks still post to the
    closed loop, and each reports `RuntimeError: Event loop is closed` as an unraisable exception,
    as does each of its array reads left unawaited (some 28 tracebacks that bury the one-line warning
    and say nothing the restore's own error does not). Those alone are dropped; every other
    unraisable exception goes to the hook that was there before."""
    previous = sys.unraisablehook
    if getattr(previous, "metaplastic_quiet", False):
        return

    def hook(unraisable):
        error = unraisable.exc_value
        if isinstance(error, RuntimeError) and str(error) == "Event loop is closed":
            return
        code = getattr(unraisable.object, "cr_code", None)  # a coroutine's
        if code is not None and f"{os.sep}orbax{os.sep}" in code.co_filename:
            return
        previous(unraisable)

    hook.metaplastic_quiet = True
    sys.unraisablehook = hook
    # its coroutines left unawaited warn when collected, often at exit ("sys:1: RuntimeWarning: coroutine
    # 'Store._get_array_metadatas' was never awaited"); the warning carries no module, so match the name
    warnings.filterwarnings("ignore", category=RuntimeWarning,
                            message=r"coroutine '\w*(Store|Handler)\.\w+' was never awaited")
    # its tasks and gathering futures that failed unawaited are logged by asyncio when collected, often
    # at exit ("Task exception was never retrieved", "_GatheringFuture exception was never retrieved")
    logging.getLogger("asyncio").addFilter(lambda record: not _orbax_leftover(record))


def _orbax_leftover(record: logging.LogRecord) -> bool:
    """Whether asyncio's log record reports an Orbax task or future nobody awaited."""
    text = str(record.msg)
    if "exception was never retrieved" not in text:
        return False
    error = record.exc_info[1] if record.exc_info else None
    files = [frame.filename for frame in traceback.extract_tb(error.__traceback__)] if error else []
    return any(f"{os.sep}orbax{os.sep}" in name for name in [text, *files])


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
                if template_for:
                    template = template_for(meta)
                    self._refuse_other_shapes(step, template)  # before Orbax reads arrays it cannot fit
                    state = self.restore(step, template)
                else:
                    state = self.restore_raw(step)
                expected = meta.get("state_sha256")
                if expected is not None and state_digest(state) not in (expected, None):
                    raise CheckpointError("its contents do not match the digest saved with it")
            except CheckpointMismatch:
                raise  # intact: older steps hold the same shapes, and none of them is damaged
            except Exception as error:  # a damaged step: say so and try the one before
                older = steps[len(steps) - index - 2] if index + 1 < len(steps) else None
                why = one_line(error)[:160]
                then = f"falling back to step {older}" if older is not None else "no older step is left"
                print(f"metaplastic: checkpoint step {step} in {self.directory} is damaged ({why}); {then}",
                      file=sys.stderr)
                damaged.append(step)
                continue
            self._set_aside(damaged)
            return step, meta, state
        raise CheckpointError(f"no checkpoint in {self.directory} restores intact (steps {steps} are all "
                              "damaged); move it away to start the run again")

    def stored_shapes(self, step: int) -> dict[str, tuple[int, ...]] | None:
        """{leaf path ('theta/w'): shape} of a step's state as its metadata records it, without reading
        any array; None when the metadata is unreadable (a damaged step, which its restore reports)."""
        try:
            tree = ocp.StandardCheckpointHandler().metadata(self.directory / str(step) / "state")
            return _shapes(tree, lambda leaf: tuple(leaf.shape))
        except Exception:  # noqa: BLE001 - damaged metadata fails in many ways; the restore says which
            return None

    def _refuse_other_shapes(self, step: int, template) -> None:
        stored = self.stored_shapes(step)
        if stored is None:
            return
        built = _shapes(flax.serialization.to_state_dict(template), np.shape)
        differ = sorted((path for path in set(stored) | set(built) if stored.get(path) != built.get(path)),
                        key=lambda path: (not path.startswith("theta/"), path))  # θ's first: what users set
        if not differ:
            return
        path = differ[0]
        saved = f"{path} of shape {stored[path]}" if path in stored else f"no {path}"
        here = f"shape {built[path]}" if path in built else "no such entry"
        more = f" (and {len(differ) - 1} more entries differ)" if len(differ) > 1 else ""
        raise CheckpointMismatch(f"checkpoint step {step} in {self.directory} holds {saved}, where this run "
                                 f"builds {here}{more}")

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


# ---------------------------------------------------------------- θ of a meta-training workdir

def _checkpointer(workdir: pathlib.Path) -> Checkpointer:
    directory = workdir / "checkpoints"
    if not directory.is_dir():
        raise EvaluationError(f"rule checkpoint '{workdir}': no checkpoints/ directory "
                              "(expected a `metaplastic train` workdir)")
    return Checkpointer(directory)


def checkpoint_steps(workdir: str | os.PathLike) -> list[int]:
    """Saved meta-training steps in a `metaplastic train` workdir."""
    checkpointer = _checkpointer(pathlib.Path(workdir))
    try:
        return checkpointer.all_steps()
    finally:
        checkpointer.close()


def workdir_config(workdir: str | os.PathLike) -> ml_collections.ConfigDict:
    path = pathlib.Path(workdir) / "config.json"
    if not pathlib.Path(workdir).expanduser().exists():
        raise EvaluationError(f"rule checkpoint '{workdir}': does not exist (expected a `metaplastic train` "
                              "workdir, a rule folder or pretrained:NAME)")
    if not path.is_file():
        raise EvaluationError(f"rule checkpoint '{workdir}': no config.json (expected a `metaplastic train` workdir)")
    return ml_collections.ConfigDict(current_config(json.loads(path.read_text()), where=f"{path}: "))


def load_rule_from_workdir(workdir: str | os.PathLike, step: int | None = None,
                           base_model: BaseModel | None = None) -> tuple[UpdateRule, Pytree]:
    """(rule, θ) saved by `metaplastic train` in `workdir` at `step` (default: the latest that restores
    intact; damaged newer steps are said in one line on stderr and moved aside, so they are not
    used again; an explicit `step` that is damaged is an EvaluationError).

    Step 0 is the trainer's initial θ (recomputed from the config's seed). Only θ
    is restored. The rule is built from config.json, on `base_model` if given.
    """
    workdir = pathlib.Path(workdir)
    config = workdir_config(workdir)
    if base_model is None:
        base_model = config_lib.build(config, "base_model")
    rule = config_lib.build(config, "update_rule", base_model=base_model)
    if step == 0:
        return rule, initial_theta(rule, config.seed)
    checkpointer = _checkpointer(workdir)
    try:
        available = checkpointer.all_steps()
        if not available:
            raise EvaluationError(f"rule checkpoint '{workdir}': no saved steps")
        if step is None or step < 0:  # the latest: the newest step that restores intact
            try:
                step, _meta, restored = checkpointer.restore_newest_intact(None)
            except CheckpointError as error:
                raise EvaluationError(f"rule checkpoint '{workdir}': {error}") from None
        else:
            if step not in available:
                raise EvaluationError(f"rule checkpoint '{workdir}': no step {step} (saved: {available})")
            try:
                expected = checkpointer.restore_meta(step).get("state_sha256")
                restored = checkpointer.restore_raw(step)
                if expected is not None and state_digest(restored) != expected:
                    raise CheckpointError("its contents do not match the digest saved with it")
            except Exception as error:  # a truncated or flipped step fails in many ways
                why = one_line(error)[:160]
                raise EvaluationError(f"rule checkpoint '{workdir}': step {step} is damaged ({why}); "
                                      f"saved steps: {available}; leave the step out to use the newest "
                                      "intact one") from None
    finally:
        checkpointer.close()
    theta = jax.tree.map(jnp.asarray, restored["theta"])
    template = rule.init_theta(jax.random.PRNGKey(0))
    if jax.tree.structure(template) != jax.tree.structure(theta) or any(
            a.shape != b.shape for a, b in zip(jax.tree.leaves(template), jax.tree.leaves(theta))):
        raise EvaluationError(f"rule checkpoint '{workdir}' step {step}: θ does not match update rule "
                              f"'{config.update_rule}' as configured in its config.json")
    return rule, theta

