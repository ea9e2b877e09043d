"""Meta-validation: θ scored on fixed held-out tasks during meta-training, and the best-validated θ kept.

The validation family is the training family with `config.validation.task_family_config` replacing some
of its fields (another split, other classes), so validation data is neither meta-training data nor an
evaluation dataset. Its tasks, architectures, inner batches and meta-batches are drawn once, from
`config.validation.seed`, so successive scores compare θs and nothing else (unlike the training curve,
which moves with the task group). A score is the meta-objective after each of `validation.points`
inner steps of a whole run (`core.unroll.trajectory_losses`), averaged over tasks and architectures.

The best-validated θ is written as a rule folder `<workdir>/best/` (rule.json records its step and
score), which `load_rule`, `metaplastic evaluate` and `metaplastic export --step best` read.
"""

from __future__ import annotations

import functools
import json
import pathlib

import flax.struct
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from metaplastic.core import config as config_lib
from metaplastic.core.interfaces import MetaObjective, Pytree, UpdateRule
from metaplastic.core.tasks import ArchitectureSampler
from metaplastic.core.unroll import trajectory_losses

BEST_DIR = "best"


@functools.partial(jax.jit, static_argnames=("rule", "objective", "points"))
def _task_losses(rule: UpdateRule, objective: MetaObjective, points: tuple[int, ...], theta, states,
                 unlabelled, meta_a, meta_b, keys) -> jax.Array:
    """[N, P] meta-losses of N fixed tasks of one architecture."""
    run = functools.partial(trajectory_losses, rule, objective, theta, points=points)
    return jax.vmap(lambda s, u, a, b, k: run(s, u, a, b, key=k))(states, unlabelled, meta_a, meta_b, keys)


@flax.struct.dataclass
class FixedTasks:
    """N tasks of one architecture, with everything a whole run needs, drawn once."""

    states: Pytree       # φ_0 [N, ...]
    unlabelled: np.ndarray  # [N, max(points), B, D]
    meta_a: object       # LabeledBatch [N, P, n, ...]
    meta_b: object
    keys: jax.Array      # [N] unroll keys


def draw_task_data(family, arch, num_tasks: int, points: tuple[int, ...], batch_size: int, key: jax.Array):
    """Host part of `draw_fixed_tasks` (NumPy only, safe on a data thread): the tasks' data for a run to
    max(points), as FixedTasks without inner states or keys."""
    index = np.asarray(points) - 1  # the meta-batches after inner step p are the data of step p - 1
    parts = []
    for i in range(num_tasks):
        task_key = jax.random.fold_in(key, i)
        task = family.sample_task(jax.random.fold_in(task_key, 0), arch)
        data = family.truncation_data(task, jax.random.fold_in(task_key, 1), max(points), batch_size)
        parts.append((data.unlabelled, jax.tree.map(lambda a: a[index], data.meta_a),
                      jax.tree.map(lambda a: a[index], data.meta_b)))
    unlabelled, meta_a, meta_b = jax.tree.map(lambda *xs: np.stack(xs), *parts)
    return FixedTasks(None, unlabelled, meta_a, meta_b, None)


@functools.partial(jax.jit, static_argnames=("rule", "arch", "num_tasks"))
def _fresh_states(rule: UpdateRule, arch, num_tasks: int, key: jax.Array):
    """(φ_0 [N], unroll keys [N]) of the tasks `draw_task_data` drew from `key`."""
    keys = jax.vmap(lambda i: jax.random.fold_in(key, i))(jnp.arange(num_tasks))
    states = jax.vmap(rule.init_inner_state, in_axes=(0, None))(
        jax.vmap(lambda k: jax.random.fold_in(k, 2))(keys), arch)
    return states, jax.vmap(lambda k: jax.random.fold_in(k, 3))(keys)


def with_states(rule: UpdateRule, arch, tasks: FixedTasks, key: jax.Array) -> FixedTasks:
    """`tasks` (from `draw_task_data` with the same key) with their φ_0 and unroll keys (device work)."""
    states, keys = _fresh_states(rule, arch, tasks.unlabelled.shape[0], key)
    return tasks.replace(states=states, keys=keys)


def draw_fixed_tasks(rule: UpdateRule, family, arch, num_tasks: int, points: tuple[int, ...], batch_size: int,
                     key: jax.Array) -> FixedTasks:
    """`num_tasks` tasks of `family` for base models of shape `arch`, their data for a run to max(points)."""
    tasks = draw_task_data(family, arch, num_tasks, points, batch_size, key)
    return with_states(rule, arch, tasks, key)


@functools.partial(jax.jit, static_argnames=("rule", "objective"))
def _untrained_losses(rule: UpdateRule, objective: MetaObjective, states, meta_a, meta_b) -> jax.Array:
    """[N, P] meta-losses of N fixed tasks' untrained networks φ_0 (no inner step) on the same meta-batches."""
    def one(state, batch_a, batch_b):
        features = functools.partial(rule.features, state)
        return jax.vmap(lambda a, b: objective.loss(features, a, b))(batch_a, batch_b)
    return jax.vmap(one)(states, meta_a, meta_b)


def score_untrained(rule: UpdateRule, objective: MetaObjective, tasks: list[FixedTasks]) -> np.ndarray:
    """[P] mean meta-loss of the tasks' random-init networks: the score a rule must beat to have learned."""
    losses = [_untrained_losses(rule, objective, t.states, t.meta_a, t.meta_b) for t in tasks]
    return np.mean([np.mean(np.asarray(loss), axis=0) for loss in losses], axis=0)


def score_tasks(rule: UpdateRule, objective: MetaObjective, points: tuple[int, ...], theta,
                tasks: list[FixedTasks]) -> np.ndarray:
    """[P] mean meta-loss at each point over every architecture's tasks."""
    losses = [_task_losses(rule, objective, points, theta, t.states, t.unlabelled, t.meta_a, t.meta_b, t.keys)
              for t in tasks]
    return np.mean([np.mean(np.asarray(loss), axis=0) for loss in losses], axis=0)


class Validator:
    """Scores θ every `config.validation.every` θ-steps and keeps the best-validated θ in `<workdir>/best/`."""

    def __init__(self, config: ml_collections.ConfigDict, rule: UpdateRule, objective: MetaObjective,
                 workdir: pathlib.Path):
        settings = config.validation
        self.every, self.patience = int(settings.every), int(settings.patience)
        self.points = tuple(int(p) for p in settings.points)
        if not self.points or list(self.points) != sorted(set(self.points)) or self.points[0] < 1:
            raise config_lib.ConfigError(f"config.validation.points: need ascending inner-step counts >= 1, "
                                         f"got {tuple(settings.points)!r}")
        self.rule, self.objective, self.workdir = rule, objective, workdir
        self.config_dict = config.to_dict()
        family_config = ml_collections.ConfigDict(config.to_dict())
        for field, value in settings.task_family_config.items():
            if field not in family_config.task_family_config:
                raise config_lib.ConfigError(
                    f"config.validation.task_family_config.{field}: not a field of task_family "
                    f"'{config.task_family}' (fields: {', '.join(family_config.task_family_config)})")
            family_config.task_family_config[field] = value
        family = config_lib.build(family_config, "task_family")
        architectures = ArchitectureSampler(tuple(settings.depths), tuple(settings.widths),
                                            config.architecture.top_width)
        key = jax.random.PRNGKey(settings.seed)
        self.tasks = [draw_fixed_tasks(rule, family, arch, settings.num_tasks, self.points,
                                       settings.batch_size or config.batch_size, jax.random.fold_in(key, i))
                      for i, arch in enumerate(architectures.buckets(family.input_dim))]
        best = self.read_best(workdir)
        self.best_loss = best["validation_loss"] if best else float("inf")
        self.best_step = best["step"] if best else -1
        self.first_step = best.get("first_step", -1) if best else -1
        self.first_loss = best.get("first_loss", float("inf")) if best else float("inf")

    @staticmethod
    def read_best(workdir: pathlib.Path) -> dict | None:
        path = pathlib.Path(workdir) / BEST_DIR / "rule.json"
        if not path.is_file():
            return None
        description = json.loads(path.read_text())
        return description.get("validation")

    def due(self, step: int) -> bool:
        return self.every > 0 and step % self.every == 0

    def score(self, theta) -> dict[str, float]:
        losses = score_tasks(self.rule, self.objective, self.points, theta, self.tasks)
        scores = {f"validation_loss_at_{p}": float(v) for p, v in zip(self.points, losses)}
        scores["validation_loss"] = float(np.mean(losses))
        return scores

    def score_random_init(self) -> float:
        """The validation score of the untrained networks (same tasks, same meta-batches, no inner step)."""
        return float(np.mean(score_untrained(self.rule, self.objective, self.tasks)))

    def observe(self, step: int, theta) -> dict[str, float]:
        """Score θ at `step`; keep it in `<workdir>/best/` if it is the best so far. Returns the scores."""
        from metaplastic.core.rules import save_rule

        scores = self.score(theta)
        loss = scores["validation_loss"]
        if self.first_step < 0:
            self.first_step, self.first_loss = step, loss
        if np.isfinite(loss) and loss < self.best_loss:
            self.best_loss, self.best_step = loss, step
            record = {"step": step, "validation_loss": loss, "points": list(self.points),
                      "first_step": self.first_step, "first_loss": self.first_loss, **scores}
            save_rule(self.workdir / BEST_DIR, self.config_dict, jax.device_get(theta),
                      {"validation": record, "step": step})
        scores["validation_best_step"] = float(self.best_step)
        return scores

    def should_stop(self, step: int) -> bool:
        """`validation.patience` θ-steps after the first score without beating it (0: never)."""
        return (self.patience > 0 and self.first_step >= 0 and step - self.first_step >= self.patience
                and not self.best_loss < self.first_loss)


def held_out_summary(validation: dict) -> str:
    """One line comparing the best-validated θ with its start and with random init (`train`'s summary)."""
    best, start, untrained = validation["best"], validation["start"], validation["random_init"]
    verdict = ("better than its start and than random init" if best < start and best < untrained
               else "better than its start only" if best < start
               else "not better than its start")
    return (f"held-out validation meta-loss (lower is better; {validation['points']} inner steps): "
            f"best θ {best:.4f} (step {validation['best_step']}), its start {start:.4f} "
            f"(step {validation['start_step']}), random init {untrained:.4f}: {verdict}")
