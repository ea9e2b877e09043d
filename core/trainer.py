"""The meta-trainer: sample tasks -> estimator gives a meta-gradient -> Adam updates θ -> log, checkpoint.

Nothing here knows which rule, objective, task family or estimator it runs.
Randomness: every key is `fold_in(PRNGKey(seed), purpose, step)`, so a resumed
run reproduces an uninterrupted one bit for bit.
"""

from __future__ import annotations

import json
import pathlib
import time
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import optax

from metaplastic.core import config as config_lib
from metaplastic.core.checkpoint import Checkpointer
from metaplastic.core.metrics import MetricsWriter
from metaplastic.core.tasks import ArchitectureSampler, Schedule, group_data, sample_group
from metaplastic.core.unroll import TruncatedUnroll

# key purposes
_THETA, _GROUP, _DATA, _UNROLL, _INIT = range(5)


def make_optimizer(config: ml_collections.ConfigDict) -> optax.GradientTransformation:
    return optax.chain(optax.clip_by_global_norm(config.optimizer.clip_norm),
                       optax.adam(config.optimizer.learning_rate))


def _tree_finite(tree) -> jax.Array:
    leaves = [jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(tree)]
    return jnp.all(jnp.stack(leaves)) if leaves else jnp.asarray(True)


def make_update_fn(optimizer: optax.GradientTransformation):
    """Jitted θ update that leaves θ and the optimiser untouched when anything is non-finite."""

    @jax.jit
    def update(theta, opt_state, grad, loss):
        ok = jnp.isfinite(loss) & _tree_finite(grad)
        safe_grad = jax.tree.map(lambda g: jnp.where(ok, g, 0.0), grad)
        updates, new_opt_state = optimizer.update(safe_grad, opt_state, theta)
        new_theta = optax.apply_updates(theta, updates)
        pick = lambda new, old: jax.tree.map(lambda a, b: jnp.where(ok, a, b), new, old)
        return pick(new_theta, theta), pick(new_opt_state, opt_state), ok, optax.global_norm(safe_grad)

    return update


class MetaTrainer:
    """Holds the built components and the loop state; `run()` trains to config.num_steps."""

    def __init__(self, config: ml_collections.ConfigDict, workdir: str | pathlib.Path):
        self.config = config
        self.workdir = pathlib.Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.components = config_lib.build_components(config)
        self.unroll = TruncatedUnroll(self.components.rule, self.components.objective,
                                      remat=config.remat)
        self.architectures = ArchitectureSampler(**config.architecture)
        self.schedule = Schedule(**config.schedule)
        self.optimizer = make_optimizer(config)
        self.update = make_update_fn(self.optimizer)
        self.root = jax.random.PRNGKey(config.seed)
        self.checkpointer = Checkpointer(self.workdir / "checkpoints", keep=config.checkpoint_keep)

        self.step = 0
        self.skipped = 0
        self.theta = self.components.rule.init_theta(self._key(_THETA, 0))
        self.opt_state = self.optimizer.init(self.theta)
        self.group = None
        self.group_start = 0
        self.estimator_state = None
        self._restore()

    def _key(self, purpose: int, step: int) -> jax.Array:
        return jax.random.fold_in(jax.random.fold_in(self.root, purpose), step)

    # -- task groups ---------------------------------------------------------
    def _start_group(self, step: int) -> None:
        family = self.components.family
        self.group = sample_group(family, self.architectures, self.schedule, self._key(_GROUP, step),
                                  self.config.tasks_per_step)
        self.group_start = step
        self.estimator_state = self.components.estimator.init_state(
            self.unroll, self.theta, self._key(_INIT, step), self.group.arch,
            self.config.tasks_per_step, self.group.horizon)

    def _group_done(self) -> bool:
        state = self.estimator_state
        return self.group is None or int(state.step_in_horizon) >= int(state.horizon)

    # -- checkpoints ---------------------------------------------------------
    def _state(self) -> dict[str, Any]:
        return {"theta": self.theta, "opt_state": self.opt_state, "estimator": self.estimator_state}

    def save(self) -> None:
        meta = {"step": self.step, "skipped": self.skipped, "group_start": self.group_start,
                "has_group": self.group is not None}
        self.checkpointer.save(self.step, self._state(), meta)

    def _restore(self) -> None:
        latest = self.checkpointer.latest_step()
        if latest is None:
            return
        meta = self.checkpointer.restore_meta(latest)
        if meta["has_group"]:
            self._start_group(meta["group_start"])  # rebuilds the group and a template of its state
        else:
            self.group, self.estimator_state = None, None
        restored = self.checkpointer.restore(latest, self._state())
        self.theta, self.opt_state = restored["theta"], restored["opt_state"]
        self.estimator_state = restored["estimator"]
        self.step, self.skipped = meta["step"], meta["skipped"]
        self.group_start = meta["group_start"]

    # -- the loop ------------------------------------------------------------
    def train_step(self) -> dict[str, float]:
        if self._group_done():
            self._start_group(self.step)
        data = group_data(self.components.family, self.group, self._key(_DATA, self.step),
                          self.config.batch_size)
        grad, next_state, metrics = self.components.estimator.estimate(
            self.unroll, self.theta, self.estimator_state, data, self._key(_UNROLL, self.step))
        self.theta, self.opt_state, ok, grad_norm = self.update(
            self.theta, self.opt_state, grad, metrics["meta_loss"])
        if bool(ok):
            self.estimator_state = next_state
        else:  # the non-finite step never reaches θ; its tasks are abandoned
            self.skipped += 1
            self.group = None
        self.step += 1
        out = {k: float(v) for k, v in metrics.items()}
        out.update(grad_norm=float(grad_norm), skipped=self.skipped,
                   inner_step=int(next_state.step_in_horizon), horizon=int(next_state.horizon),
                   depth=len(self.group.arch.widths) if self.group else 0)
        return out

    def run(self, progress: bool = True) -> dict[str, Any]:
        config = self.config
        (self.workdir / "config.json").write_text(json.dumps(config.to_dict(), indent=2, default=str))
        writer = MetricsWriter(self.workdir, resume_step=self.step)
        first_step, started = self.step, time.perf_counter()
        last_saved = self.step
        bar = None
        if progress:
            from tqdm import tqdm

            bar = tqdm(total=config.num_steps, initial=self.step, desc="meta-train", dynamic_ncols=True)
        try:
            while self.step < config.num_steps:
                tick = time.perf_counter()
                metrics = self.train_step()
                metrics["seconds"] = time.perf_counter() - tick
                if self.step % config.log_every == 0 or self.step == config.num_steps:
                    writer.write(self.step, metrics)
                if bar is not None:
                    bar.update(1)
                    rate = (self.step - first_step) / max(time.perf_counter() - started, 1e-9)
                    bar.set_postfix(meta_loss=f"{metrics['meta_loss']:.4f}", steps_per_s=f"{rate:.2f}")
                if self.step % config.checkpoint_every == 0:
                    self.save()
                    last_saved = self.step
        finally:
            if self.step != last_saved:
                self.save()  # at exit, including KeyboardInterrupt
            writer.close()
            if bar is not None:
                bar.close()
            self.checkpointer.close()
        elapsed = time.perf_counter() - started
        return {"steps": self.step, "skipped": self.skipped, "seconds": elapsed,
                "steps_per_second": (self.step - first_step) / max(elapsed, 1e-9)}


def train(config: ml_collections.ConfigDict, workdir: str | pathlib.Path, progress: bool = True):
    """Meta-train (resuming from `workdir` if it holds a checkpoint). Returns a summary dict."""
    return MetaTrainer(config, workdir).run(progress=progress)

