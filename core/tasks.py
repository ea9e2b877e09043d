"""Sampling meta-training work: an architecture bucket, a schedule, and T tasks.

A *task group* is T tasks of one family sharing one architecture and truncation
length K, so their unrolls stack along a leading axis and compile once per
(architecture, K). Architectures come from a small fixed set of buckets, which
bounds the number of compiled shapes.

Phases (`Schedule.phases`):
- `lockstep`: the T tasks share one horizon; they start at inner step 0 together and
  are replaced together when it ends (a new group).
- `independent`: each task has its own horizon and position in it. The first tasks of a
  group start at a random offset into their horizons (learned_optimization's
  `random_initial_iteration_offset`), and a task whose horizon ends is replaced by a new
  task of the same architecture bucket and K (`replacement_task`), so the meta-gradient
  of one θ-step mixes tasks early and late in training. A group (its architecture and K)
  lasts `group_length` inner steps. `TaskPhases` is where each task is.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Callable

import jax
import numpy as np

from metaplastic.core.documented import documented
from metaplastic.core.interfaces import Architecture, Task, TaskFamily, TruncationData, numpy_rng


@dataclasses.dataclass(frozen=True)
class ArchitectureSampler:
    """Base-model shapes from a fixed grid: len(depths) × len(widths) buckets.

    A network has `depth` hidden layers of `width` units, then the `top_width`
    representation layer. Each bucket (× each truncation length) compiles once,
    so keep the grid small: `paper()` gives Metz et al.'s 2–5 layers × 64–512
    units as 4 depths × 4 widths = 16 buckets.
    """

    depths: tuple[int, ...] = documented((2, 3), "hidden layers below the representation layer")
    widths: tuple[int, ...] = documented((64, 128), "hidden width (one per network)")
    top_width: int = documented(32, "representation size u")

    def __post_init__(self):
        if not self.depths or not self.widths or min(self.depths) < 0 or min(self.widths) < 1:
            raise ValueError(f"architecture: bad depths={self.depths} or widths={self.widths}")
        if self.top_width < 1:
            raise ValueError(f"architecture: bad top_width={self.top_width}")

    @classmethod
    def from_ranges(cls, depth_range: tuple[int, int] = (2, 5), width_range: tuple[int, int] = (64, 512),
                    num_widths: int = 4, top_width: int = 32) -> "ArchitectureSampler":
        """Every depth in depth_range (inclusive) × num_widths widths spaced geometrically
        over width_range (rounded to multiples of 8)."""
        low, high = width_range
        if not 1 <= low <= high or num_widths < 1 or not 0 <= depth_range[0] <= depth_range[1]:
            raise ValueError(f"architecture: bad depth_range={depth_range}, width_range={width_range} "
                             f"or num_widths={num_widths}")
        widths = np.geomspace(low, high, num_widths)
        widths = tuple(sorted({max(1, int(round(w / 8)) * 8) if w >= 8 else int(round(w)) for w in widths}))
        return cls(tuple(range(depth_range[0], depth_range[1] + 1)), widths, top_width)

    @classmethod
    def paper(cls) -> "ArchitectureSampler":
        """Metz et al. (2019): 2–5 hidden layers × 64–512 units: depths (2, 3, 4, 5) × widths
        (64, 128, 256, 512) = 16 buckets, 32-unit representation."""
        return cls.from_ranges((2, 5), (64, 512), 4, 32)

    def buckets(self, input_dim: int) -> list[Architecture]:
        return [Architecture(input_dim, (w,) * d + (self.top_width,))
                for d in self.depths for w in self.widths]

    def sample(self, rng: np.random.Generator, input_dim: int) -> Architecture:
        buckets = self.buckets(input_dim)
        return buckets[rng.integers(len(buckets))]


PHASES = ("lockstep", "independent")


@dataclasses.dataclass(frozen=True)
class Schedule:
    truncation_lengths: tuple[int, ...] = documented((10,), "K choices (each compiles once)")
    horizon: tuple[int, int] = documented((50, 500), "inner steps per task, log-uniform in [min, max]")
    phases: str = documented("lockstep", "lockstep | independent (see the module docstring)")
    group_length: int = documented(0, "independent: inner steps per group; 0 = K·⌈max horizon / K⌉")

    def __post_init__(self):
        low, high = self.horizon
        if not self.truncation_lengths or min(self.truncation_lengths) < 1 or not 1 <= low <= high:
            raise ValueError(f"schedule: bad truncation_lengths={self.truncation_lengths} "
                             f"or horizon={self.horizon}")
        if self.phases not in PHASES:
            raise ValueError(f"schedule.phases: '{self.phases}' is not one of {', '.join(PHASES)}")
        if self.group_length < 0:
            raise ValueError(f"schedule.group_length: must be >= 0, got {self.group_length}")

    @property
    def independent(self) -> bool:
        return self.phases == "independent"

    def sample(self, rng: np.random.Generator) -> tuple[int, int]:
        length = int(self.truncation_lengths[rng.integers(len(self.truncation_lengths))])
        return length, self.sample_horizon(rng, length)

    def sample_horizon(self, rng: np.random.Generator, length: int) -> int:
        """Inner steps, log-uniform in the horizon range, rounded up to a multiple of K."""
        low, high = self.horizon
        steps = math.exp(rng.uniform(math.log(low), math.log(high)))
        return max(length, length * math.ceil(steps / length))

    def group_steps(self, length: int) -> int:
        return self.group_length or length * math.ceil(self.horizon[1] / length)


@dataclasses.dataclass(frozen=True)
class TaskGroup:
    arch: Architecture
    truncation_length: int
    horizon: int                  # lockstep: every task's horizon; independent: the group's length
    tasks: tuple[Task, ...]
    horizons: tuple[int, ...] = ()  # independent: each task's horizon
    offsets: tuple[int, ...] = ()   # independent: each first task's starting inner step


def sample_group(family: TaskFamily, architectures: ArchitectureSampler, schedule: Schedule,
                 key: jax.Array, num_tasks: int) -> TaskGroup:
    """The same key gives the same group."""
    rng = numpy_rng(key)
    arch = architectures.sample(rng, family.input_dim)
    length, horizon = schedule.sample(rng)
    keys = jax.random.split(jax.random.fold_in(key, 1), num_tasks)
    tasks = tuple(family.sample_task(k, arch) for k in keys)
    if not schedule.independent:
        return TaskGroup(arch, length, horizon, tasks)
    horizons, offsets = [], []
    for i in range(num_tasks):
        task_rng = numpy_rng(jax.random.fold_in(jax.random.fold_in(key, 2), i))
        task_horizon = schedule.sample_horizon(task_rng, length)
        horizons.append(task_horizon)
        offsets.append(length * int(task_rng.integers(task_horizon // length)))
    return TaskGroup(arch, length, schedule.group_steps(length), tasks, tuple(horizons), tuple(offsets))


def replacement_task(family: TaskFamily, schedule: Schedule, group: TaskGroup, key: jax.Array,
                     slot: int) -> tuple[Task, int]:
    """(task, horizon) that takes over `slot` of `group` (independent phases); the same key gives the same."""
    task = family.sample_task(jax.random.fold_in(key, 2 * slot), group.arch)
    horizon = schedule.sample_horizon(numpy_rng(jax.random.fold_in(key, 2 * slot + 1)), group.truncation_length)
    return task, horizon


@dataclasses.dataclass(frozen=True, eq=False)
class TaskPhases:
    """Independent phases on the host: where each task of a group is in its horizon. Host-only and
    deterministic, so every process agrees; each method returns a new state.

    steps: each task's inner steps since its start; horizons: each task's horizon; starts: the θ-step at
    which the task in each slot was drawn (-1: one of the group's first tasks), enough to redraw it.
    """

    steps: np.ndarray         # int32 [T]
    horizons: np.ndarray      # int32 [T]
    starts: tuple[int, ...]

    @classmethod
    def start(cls, group: TaskGroup) -> "TaskPhases":
        """The group's first tasks, at their random offsets."""
        return cls(np.asarray(group.offsets, np.int32), np.asarray(group.horizons, np.int32),
                   (-1,) * len(group.tasks))

    @classmethod
    def resumed(cls, steps, horizons, starts) -> "TaskPhases":
        """From a checkpoint: positions and horizons from the estimator state, starts from its meta."""
        return cls(np.asarray(steps, np.int32), np.asarray(horizons, np.int32), tuple(starts))

    def replacements(self, family: TaskFamily, schedule: Schedule, group: TaskGroup,
                     key: jax.Array) -> tuple[TaskGroup, np.ndarray, np.ndarray]:
        """(`group` with every task that ends within the next truncation replaced, which slots, the
        horizons after the replacement)."""
        ended = self.steps + group.truncation_length >= self.horizons
        tasks, horizons = list(group.tasks), self.horizons.copy()
        for slot in np.flatnonzero(ended):
            tasks[slot], horizons[slot] = replacement_task(family, schedule, group, key, int(slot))
        return dataclasses.replace(group, tasks=tuple(tasks)), ended, horizons

    def advanced(self, length: int, step: int, ended: np.ndarray | None = None,
                 horizons: np.ndarray | None = None) -> "TaskPhases":
        """After a truncation of `length` at θ-step `step`; the `ended` slots (from `replacements`)
        restart at 0 with their new `horizons`."""
        if ended is None:
            return dataclasses.replace(self, steps=self.steps + length)
        return TaskPhases(np.where(ended, 0, self.steps + length).astype(np.int32), horizons,
                          tuple(step if e else s for e, s in zip(ended, self.starts)))

    def redrawn(self, family: TaskFamily, schedule: Schedule, group: TaskGroup,
                key_at: Callable[[int], jax.Array]) -> TaskGroup:
        """`group` with the task of every slot that was replaced redrawn (`key_at(start)`: the key
        `replacements` got at that θ-step), as a resumed run needs it."""
        tasks = list(group.tasks)
        for slot, start in enumerate(self.starts):
            if start >= 0:
                tasks[slot] = replacement_task(family, schedule, group, key_at(start), slot)[0]
        return dataclasses.replace(group, tasks=tuple(tasks))


def group_data(family: TaskFamily, group: TaskGroup, key: jax.Array, batch_size: int) -> TruncationData:
    """Data for the next truncation of every task, stacked on a leading T axis."""
    keys = jax.random.split(key, len(group.tasks))
    parts = [family.truncation_data(task, k, group.truncation_length, batch_size)
             for task, k in zip(group.tasks, keys)]
    return jax.tree.map(lambda *xs: np.stack(xs), *parts)
