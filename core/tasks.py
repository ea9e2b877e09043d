"""Sampling meta-training work: an architecture bucket, a schedule, and T tasks.

A *task group* is T tasks of one family sharing one architecture, truncation
length K and horizon, so their unrolls stack along a leading axis and compile
once per (architecture, K). Architectures come from a small fixed set of
buckets, which bounds the number of compiled shapes.
"""

from __future__ import annotations

import dataclasses
import math

import jax
import numpy as np

from metaplastic.core.interfaces import Architecture, Task, TaskFamily, TruncationData, numpy_rng


@dataclasses.dataclass(frozen=True)
class ArchitectureSampler:
    depths: tuple[int, ...] = (2, 3)      # hidden layers below the representation layer
    widths: tuple[int, ...] = (64, 128)   # hidden width (one per network)
    top_width: int = 32                   # representation size u

    def __post_init__(self):
        if not self.depths or not self.widths or min(self.depths) < 0 or min(self.widths) < 1:
            raise ValueError(f"architecture: bad depths={self.depths} or widths={self.widths}")

    def buckets(self, input_dim: int) -> list[Architecture]:
        return [Architecture(input_dim, (w,) * d + (self.top_width,))
                for d in self.depths for w in self.widths]

    def sample(self, rng: np.random.Generator, input_dim: int) -> Architecture:
        buckets = self.buckets(input_dim)
        return buckets[rng.integers(len(buckets))]


@dataclasses.dataclass(frozen=True)
class Schedule:
    truncation_lengths: tuple[int, ...] = (10,)  # K choices (each compiles once)
    horizon: tuple[int, int] = (50, 500)         # inner steps per task, log-uniform in [min, max]

    def __post_init__(self):
        low, high = self.horizon
        if not self.truncation_lengths or min(self.truncation_lengths) < 1 or not 1 <= low <= high:
            raise ValueError(f"schedule: bad truncation_lengths={self.truncation_lengths} "
                             f"or horizon={self.horizon}")

    def sample(self, rng: np.random.Generator) -> tuple[int, int]:
        length = int(self.truncation_lengths[rng.integers(len(self.truncation_lengths))])
        low, high = self.horizon
        steps = math.exp(rng.uniform(math.log(low), math.log(high)))
        return length, max(length, length * math.ceil(steps / length))


@dataclasses.dataclass(frozen=True)
class TaskGroup:
    arch: Architecture
    truncation_length: int
    horizon: int
    tasks: tuple[Task, ...]


def sample_group(family: TaskFamily, architectures: ArchitectureSampler, schedule: Schedule,
                 key: jax.Array, num_tasks: int) -> TaskGroup:
    """The same key gives the same group."""
    rng = numpy_rng(key)
    arch = architectures.sample(rng, family.input_dim)
    length, horizon = schedule.sample(rng)
    keys = jax.random.split(jax.random.fold_in(key, 1), num_tasks)
    return TaskGroup(arch, length, horizon, tuple(family.sample_task(k, arch) for k in keys))


def group_data(family: TaskFamily, group: TaskGroup, key: jax.Array, batch_size: int) -> TruncationData:
    """Data for the next truncation of every task, stacked on a leading T axis."""
    keys = jax.random.split(key, len(group.tasks))
    parts = [family.truncation_data(task, k, group.truncation_length, batch_size)
             for task, k in zip(group.tasks, keys)]
    return jax.tree.map(lambda *xs: np.stack(xs), *parts)
