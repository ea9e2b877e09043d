"""Genome-first meta-training (`config.trainer = "genome"`): an evolution strategy over the rule's genome,
every candidate scored on whole, untruncated inner runs.

The *genome* is the few scalars of θ that `UpdateRule.genome_mask` names (for `metaplastic.metz2019` with
`prior="hebbian"`: the prior's mix, temperature and step-size schedule, the hand-designed terms' mix
weights); the rest of θ stays as it started. Each generation:
  1. draws one architecture bucket and T tasks (`config.tasks_per_step`) and their data for a run of
     max(`config.genome.objective_points`) inner steps;
  2. asks the strategy (`config.genome_strategy`, e.g. evosax's CMA-ES) for a population of genomes;
  3. runs every genome on every task from the same φ_0 and data (common random numbers), as one
     vmapped computation over genomes × tasks, scoring the meta-objective after each objective point
     (`core.unroll.trajectory_losses`); a genome's fitness is the mean over points and tasks, so a
     rule that peaks early and then falls is seen falling, and there is no truncation bias;
  4. tells the strategy the fitnesses; θ is the strategy's mean genome.
Whole runs need no gradient and no inner-state carry-over between generations, so a checkpoint holds
θ and the strategy's state only ("opt_state" in checkpoints and snapshots), and a resumed run repeats an
uninterrupted one bit for bit (every key is `run_key(seed, purpose, generation)`). A generation is a
θ-step: `num_steps`, checkpoints, metrics, validation, time limits and SIGTERM work as for the gradient
trainer (`GenomeTrainer` is a `MetaTrainer` with another step). A generation's population run is
compiled ahead of time (`core.device_memory.CheckedStep`), so one too big for memory is refused in one
line before anything is written, rather than failing when it runs.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from metaplastic.core import config as config_lib
from metaplastic.core.device_memory import CheckedStep
from metaplastic.core.interfaces import GenomeStrategy, MetaObjective, Pytree, UpdateRule, numpy_rng
from metaplastic.core.keys import KeyPurpose
from metaplastic.core.trainer import MetaTrainer
from metaplastic.core.unroll import trajectory_losses
from metaplastic.core.validation import FixedTasks, draw_task_data, with_states

BAD_FITNESS = 1e6  # a member whose run turns non-finite ranks last


@dataclasses.dataclass(frozen=True, eq=False)
class GenomeView:
    """The genome elements of θ as one flat vector [d], and θ from such a vector (jit-able).

    Elements outside the mask keep the values of `template`. Hashable by identity, so it can be a
    static argument of a jitted function.
    """

    template: Pytree
    mask: Pytree

    def __post_init__(self):
        leaves, treedef = jax.tree.flatten(jax.tree.map(np.asarray, self.template))
        masks = jax.tree.leaves(self.mask)
        if len(masks) != len(leaves) or any(m.shape != leaf.shape for m, leaf in zip(masks, leaves)):
            raise ValueError("genome mask: not shaped like θ (UpdateRule.genome_mask must mirror θ's leaves)")
        object.__setattr__(self, "_leaves", leaves)
        object.__setattr__(self, "_treedef", treedef)
        object.__setattr__(self, "_indices", [np.flatnonzero(np.ravel(m)) for m in masks])

    @property
    def size(self) -> int:
        return int(sum(len(i) for i in self._indices))

    def vector(self, theta: Pytree) -> jax.Array:
        leaves = jax.tree.leaves(theta)
        parts = [jnp.ravel(leaf)[index] for leaf, index in zip(leaves, self._indices) if len(index)]
        return jnp.concatenate(parts) if parts else jnp.zeros((0,), jnp.float32)

    def theta(self, vector: jax.Array) -> Pytree:
        leaves, offset = [], 0
        for leaf, index in zip(self._leaves, self._indices):
            if len(index):
                leaf = jnp.ravel(jnp.asarray(leaf)).at[index].set(vector[offset:offset + len(index)]
                                                                  ).reshape(leaf.shape)
                offset += len(index)
            leaves.append(jnp.asarray(leaf))
        return jax.tree.unflatten(self._treedef, leaves)

    def names(self) -> list[str]:
        """A readable name per genome element (θ path and index), in vector order."""
        paths = [jax.tree_util.keystr(path) for path, _ in jax.tree_util.tree_flatten_with_path(self.template)[0]]
        return [f"{path}[{i}]" if leaf.size > 1 else path
                for path, leaf, index in zip(paths, self._leaves, self._indices) for i in index]


@functools.partial(jax.jit, static_argnames=("rule", "objective", "points", "view"))
def population_losses(rule: UpdateRule, objective: MetaObjective, points: tuple[int, ...], view: GenomeView,
                      population: jax.Array, tasks: FixedTasks) -> jax.Array:
    """[M, T, P]: every genome of the population [M, d] on every task, one compiled computation."""
    def member(vector):
        theta = view.theta(vector)
        run = lambda s, u, a, b, k: trajectory_losses(rule, objective, theta, s, u, a, b, points, k)
        return jax.vmap(run)(tasks.states, tasks.unlabelled, tasks.meta_a, tasks.meta_b, tasks.keys)
    # members one after another, tasks vmapped: XLA:CPU runs a large batch of LAPACK solves (the ridge
    # readouts) in parallel, which was seen to deadlock at 16 × 8 runs (jaxlib 0.10); batches of T are safe
    return jax.lax.map(member, population)


def fitness_of(losses: jax.Array) -> tuple[jax.Array, jax.Array]:
    """(fitness [M]: mean over tasks and points, non-finite members set to BAD_FITNESS; finite mask [M])."""
    fitness = jnp.mean(losses, axis=(1, 2))
    finite = jnp.isfinite(fitness)
    return jnp.where(finite, fitness, BAD_FITNESS), finite


class GenomeTrainer(MetaTrainer):
    """`MetaTrainer` whose θ-step is one generation of an evolution strategy over the genome."""

    def _init_meta_optimiser(self) -> None:
        config = self.config
        self.strategy: GenomeStrategy = config_lib.build(config, "genome_strategy")
        self.points = tuple(int(p) for p in config.genome.objective_points)
        if not self.points or list(self.points) != sorted(set(self.points)) or self.points[0] < 1:
            raise config_lib.ConfigError(f"config.genome.objective_points: need ascending inner-step counts >= 1, "
                                         f"got {tuple(config.genome.objective_points)!r}")
        self._population_losses = CheckedStep(population_losses, self._too_big,
                                              static_argnames=("rule", "objective", "points", "view"))
        self._ready = None  # (step, the generation's inputs) made by compile_next_step
        self._set_view(self.theta)

    def _set_view(self, theta) -> None:
        rule = self.components.rule
        self.view = GenomeView(jax.device_get(theta), rule.genome_mask(theta))
        if self.view.size == 0:
            raise config_lib.ConfigError(f"config.trainer='genome': update rule '{self.config.update_rule}' has "
                                         "an empty genome (UpdateRule.genome_mask)")

    def _fresh_opt_state(self, theta) -> Any:
        self._set_view(theta)
        return self.strategy.init(self._key(KeyPurpose.THETA, 1), self.view.vector(theta))

    def _state(self) -> dict[str, Any]:
        return {"theta": self.theta, "opt_state": self.opt_state, "estimator": None}

    def _restore(self) -> bool:
        restored = super()._restore()
        if restored:
            self._set_view(self.theta)
        return restored

    def _start_from(self, snapshot: str, theta_source: str) -> None:
        super()._start_from(snapshot, theta_source)
        self._set_view(self.theta)

    # -- a generation ----------------------------------------------------------
    def _prepare(self, step: int, group_start: int, group) -> tuple[Any, FixedTasks]:
        """The generation's architecture, tasks and their data (host work)."""
        family = self.components.family
        arch = self.architectures.sample(numpy_rng(self._key(KeyPurpose.GROUP, step)), family.input_dim)
        tasks = draw_task_data(family, arch, self.config.tasks_per_step, self.points, self.config.batch_size,
                               self._key(KeyPurpose.DATA, step))
        return arch, tasks

    def _sizing_fields(self) -> str:
        return (f"config.batch_size ({self.config.batch_size}), config.tasks_per_step "
                f"({self.config.tasks_per_step}) or config.genome.objective_points (up to {self.points[-1]})")

    def _generation(self) -> tuple[Any, Any, jax.Array, dict[str, Any]]:
        """This generation's architecture, what the strategy asked with, the key that tells, and the
        arguments of its population run (the population, the tasks with their φ_0)."""
        if self._ready is not None and self._ready[0] == self.step:
            ready, self._ready = self._ready[1], None
            return ready
        # the data on this thread, not prefetched: on a 2-core machine, JAX work on a data thread during a
        # long population run was seen to stall XLA:CPU's thread pool for good (host work is ~10 % of a step)
        arch, tasks = self._prepare(self.step, self.step, None)
        tasks = with_states(self.components.rule, arch, tasks, self._key(KeyPurpose.DATA, self.step))
        ask_key, tell_key = jax.random.split(self._key(KeyPurpose.UNROLL, self.step))
        population, asked = self.strategy.ask(ask_key, self.opt_state)
        run = dict(rule=self.components.rule, objective=self.components.objective, points=self.points,
                   view=self.view, population=population, tasks=tasks)
        return arch, asked, tell_key, run

    def compile_next_step(self) -> None:
        """Compile the next generation's population run, refused if it cannot fit in memory (its inputs,
        made for that, are the generation's own)."""
        generation = self._generation()
        self._ready = (self.step, generation)
        self._population_losses.compiled(**generation[-1])

    def train_step(self) -> dict[str, float]:
        arch, asked, tell_key, run = self._generation()
        population = run["population"]
        losses = self._population_losses(**run)
        fitness, finite = fitness_of(losses)
        host = jax.device_get({"fitness": fitness, "finite": finite,
                               "at_points": jnp.mean(jnp.where(finite[:, None, None], losses, jnp.nan), axis=1)})
        ok = bool(np.any(host["finite"]))
        metrics: dict[str, float] = {}
        if ok:
            self.opt_state, strategy_metrics = self.strategy.tell(tell_key, population, fitness, asked)
            self.theta = self.view.theta(self.strategy.mean(self.opt_state))
            metrics.update({k: float(v) for k, v in strategy_metrics.items()})
            self.consecutive_skipped = 0
        else:  # every member blew up: the strategy is not told, θ stays
            self.skipped += 1
            self.consecutive_skipped += 1
        self.step += 1
        fit = np.where(host["finite"], host["fitness"], np.nan)
        at_points = np.nanmean(host["at_points"], axis=0) if ok else np.full(len(self.points), np.nan)
        metrics.update(meta_loss=float(np.nanmean(fit)) if ok else float("nan"),
                       fitness_best=float(np.nanmin(fit)) if ok else float("nan"),
                       fitness_spread=float(np.nanstd(fit)) if ok else float("nan"),
                       nonfinite_members=float(np.sum(~host["finite"])), skipped=self.skipped,
                       skip_reason=0 if ok else 1, depth=len(arch.widths))
        metrics.update({f"meta_loss_at_{p}": float(v) for p, v in zip(self.points, at_points)})
        return metrics


TRAINERS = ("gradient", "genome")


def trainer_class(config) -> type[MetaTrainer]:
    """MetaTrainer (config.trainer="gradient") or GenomeTrainer ("genome")."""
    trainer = config.get("trainer", "gradient")
    if trainer not in TRAINERS:
        raise config_lib.ConfigError(f"config.trainer: '{trainer}' is not one of {', '.join(TRAINERS)}")
    return GenomeTrainer if trainer == "genome" else MetaTrainer


def train(config, workdir, progress: bool | str = True) -> dict:
    """Meta-train with the trainer `config.trainer` names (resuming from `workdir`). Returns a summary; with
    meta-validation on, `summary["validation"]` holds the held-out scores of the starting θ, the best θ and
    random init (lower is better)."""
    trainer = trainer_class(config)(config, workdir)
    summary = trainer.run(progress=progress)
    validator = trainer.validator
    if validator is not None and validator.first_step >= 0 and not summary.get("stopped"):
        summary["validation"] = {"start": validator.first_loss, "start_step": validator.first_step,
                                 "best": validator.best_loss, "best_step": validator.best_step,
                                 "random_init": validator.score_random_init(),
                                 "points": validator.points, "best_dir": str(validator.workdir / "best")}
    return summary


__all__ = ["GenomeTrainer", "GenomeView", "population_losses", "train", "trainer_class"]
