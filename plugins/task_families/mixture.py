"""`mixture`: a task family that mixes registered families by weight.

    config.task_family = "mixture"
    config.task_family_config.members = (
        ("image_classes", {"datasets": ("cifar10",), "image_size": 16, "classes_per_task": 10}, 2.0),
        ("image_classes", {"datasets": ("glyphs",), "image_size": 16, "classes_per_task": 10}, 1.0),
    )

Each member is (family name, its config, weight); a config is a dict (or a tuple
of (field, value) pairs, which is what a command-line override can spell).
Members must agree on input_dim, target_dim and the shape of the meta batches
(examples_per_class × classes per task), because a task group stacks tasks
from different members and compiles one shape. sample_task picks a member
with probability ∝ weight, then lets it sample, all from the given key, so the
same key gives the same task. Mixtures nest.

`skip_unavailable=True` drops members whose data is not here (`DatasetUnavailable`)
with one line on stderr, so one config can name datasets that need preparing
(ImageNet, CIFAR10) beside offline ones; at least one member must remain.
"""

from __future__ import annotations

import dataclasses
import functools
import sys
from typing import Any, Mapping

import jax
import numpy as np

from metaplastic.core.documented import documented
from metaplastic.core.interfaces import (Architecture, DatasetUnavailable, Task, TaskFamily, TruncationData,
                                         numpy_rng)
from metaplastic.registries import get_registry, hookimpl


def _freeze(value: Any) -> Any:
    """Config values -> hashable: mappings to sorted (key, value) tuples, lists to tuples."""
    if hasattr(value, "to_dict"):  # ml_collections.ConfigDict
        value = value.to_dict()
    if isinstance(value, Mapping):
        return tuple(sorted((str(k), _freeze(v)) for k, v in value.items()))
    if isinstance(value, (list, tuple)):
        return tuple(_freeze(v) for v in value)
    return value


def _as_kwargs(config: Any) -> dict:
    return dict(config) if config else {}


@dataclasses.dataclass(frozen=True)
class Mixture(TaskFamily):
    members: tuple = documented((), "((family_name, config, weight), ...)")
    skip_unavailable: bool = documented(False, "drop members whose data is not here (one line on stderr)")

    def __post_init__(self):
        normalised = []
        for i, member in enumerate(self.members):
            member = tuple(member) if not isinstance(member, Mapping) else (
                member.get("family"), member.get("config", {}), member.get("weight", 1.0))
            if len(member) == 2:
                member = (*member, 1.0)
            if len(member) != 3 or not isinstance(member[0], str):
                raise ValueError(f"task_family_config.members[{i}]: expected (family, config, weight), "
                                 f"got {member!r}")
            name, config, weight = member
            if not isinstance(weight, (int, float)) or weight < 0:
                raise ValueError(f"task_family_config.members[{i}]: weight must be >= 0, got {weight!r}")
            normalised.append((name, _freeze(config or {}), float(weight)))
        if self.skip_unavailable:
            normalised = self._available(normalised)
        object.__setattr__(self, "members", tuple(normalised))
        if not self.members or sum(w for *_, w in self.members) <= 0:
            raise ValueError("task_family_config.members: need at least one member with weight > 0")
        self._check_shapes()

    @staticmethod
    def _available(members: list) -> list:
        kept, missing = [], []
        for i, member in enumerate(members):
            name, config, _ = member
            try:
                get_registry().get("task_family", name)(**_as_kwargs(config)).input_dim
                kept.append(member)
            except DatasetUnavailable as why:
                missing.append(f"members[{i}] ({why})")
            except (TypeError, ValueError):
                kept.append(member)  # reported with its index when the family is built
        if missing and kept:
            print(f"task_family 'mixture': skipping {'; '.join(missing)}", file=sys.stderr)
        if not kept:
            raise DatasetUnavailable(f"task_family 'mixture': no member's data is here: {'; '.join(missing)}")
        return kept

    @functools.cached_property
    def families(self) -> tuple[TaskFamily, ...]:
        registry = get_registry()
        built = []
        for i, (name, config, _) in enumerate(self.members):
            try:
                built.append(registry.get("task_family", name)(**_as_kwargs(config)))
            except (TypeError, ValueError) as error:
                raise ValueError(f"task_family_config.members[{i}] ('{name}'): {error}") from None
        return tuple(built)

    @property
    def weights(self) -> np.ndarray:
        weights = np.asarray([w for *_, w in self.members], float)
        return weights / weights.sum()

    def _check_shapes(self) -> None:
        dims = [(f.input_dim, f.target_dim) for f in self.families]
        if len(set(dims)) != 1:
            listing = ", ".join(f"{name}: input_dim={d[0]}, target_dim={d[1]}"
                                for (name, *_), d in zip(self.members, dims))
            raise ValueError(f"task_family_config.members: dimensions differ ({listing}); "
                             "set image_size / grayscale / max_classes / augmentation so they agree")
        # the meta batches must stack too: probe one step of one task of each member
        arch = Architecture(dims[0][0], (1,))
        shapes = []
        for family in self.families:
            key = jax.random.key(0)
            data = family.truncation_data(family.sample_task(key, arch), key, 1, 1)
            shapes.append(data.meta_a.x.shape[1])
        if len(set(shapes)) != 1:
            raise ValueError(f"task_family_config.members: meta batch sizes differ {shapes} "
                             "(examples_per_class × classes per task); set classes_per_task and "
                             "examples_per_class so they agree")

    @property
    def input_dim(self) -> int:
        return self.families[0].input_dim

    @property
    def target_dim(self) -> int:
        return self.families[0].target_dim

    def sample_task(self, key, arch: Architecture) -> Task:
        index = int(numpy_rng(key).choice(len(self.members), p=self.weights))
        inner = self.families[index].sample_task(jax.random.fold_in(key, 1), arch)
        return Task("mixture", inner.dataset, arch, inner.seed,
                    details=(("member", index), ("task", inner)))

    def truncation_data(self, task: Task, key, num_steps: int, batch_size: int) -> TruncationData:
        details = dict(task.details)
        return self.families[details["member"]].truncation_data(details["task"], key, num_steps, batch_size)


@hookimpl
def metaplastic_task_families():
    return {"mixture": Mixture}
