"""Shared machinery for classification task families (not a plugin itself).

A task = one dataset, a subset of its classes and a fixed random input
permutation. `ClassTasks` turns prepared arrays (x [N, D], y [N]) into
TruncationData with NumPy only:

* unlabelled batches [K, B, D] drawn uniformly from the task's classes;
* meta batches A and B [K, n·C, D], class-balanced (n per class each), with
  A and B disjoint within a step whenever a class has at least 2n examples;
* targets [K, n·C, max_classes + E]: one-hot labels in task-class order,
  zero-padded to max_classes, then E family-specific regression targets, scaled by
  the family's `regression_weight` (default 1) against the labels.

Everything is vectorised over steps, classes and examples; the only Python
loop is over families' datasets. No queues, no threads.
"""

from __future__ import annotations

import numpy as np

from metaplastic.core.data import dataset_cache
from metaplastic.core.interfaces import LabeledBatch, Task, TruncationData, numpy_rng


@dataset_cache(maxsize=64)
def class_index(family, dataset: str):
    """(order, starts, counts): examples of class c are order[starts[c]:starts[c] + counts[c]]."""
    _, y, num_classes = family._arrays(dataset)
    order = np.argsort(y, kind="stable")
    counts = np.bincount(y, minlength=num_classes)
    return order, np.cumsum(counts) - counts, counts


def distinct_draws(rng: np.random.Generator, sizes: np.ndarray, shape: tuple[int, int], m: int) -> np.ndarray:
    """[*shape, m] offsets; along the last axis offsets into a pool of size sizes[c] for the
    c-th column of `shape[1]`, distinct whenever sizes[c] >= m (else drawn with replacement),
    in random order."""
    sizes = np.asarray(sizes)[None, :, None]
    u = rng.random((*shape, m))
    enough = sizes >= m
    # m distinct values from [0, P): sort m draws from [0, P - m] and add 0..m-1
    spread = np.sort(np.floor(u * np.where(enough, sizes - m + 1, 1)), axis=-1) + np.arange(m)
    offsets = np.where(enough, spread, np.floor(u * sizes)).astype(np.int64)
    shuffle = np.argsort(rng.random((*shape, m)), axis=-1)
    return np.take_along_axis(offsets, shuffle, axis=-1)


class ClassTasks:
    """Mixin for frozen-dataclass families. Subclasses define the fields `split`,
    `classes`, `classes_per_task`, `permute_inputs`, `examples_per_class`,
    `max_classes`, and the methods below."""

    family_name = "class_tasks"
    # scale of the regression targets against the one-hot labels (0 = labels only); a family
    # may make it a config field
    regression_weight: float = 1.0

    # ---- to override
    def _datasets(self) -> tuple[str, ...]:
        raise NotImplementedError

    def _dataset_weights(self) -> tuple[float, ...]:
        return ()

    def _arrays(self, dataset: str) -> tuple[np.ndarray, np.ndarray, int]:
        """(x [N, D], y [N] int, num_classes), prepared and cached."""
        raise NotImplementedError

    @property
    def num_regression_targets(self) -> int:
        return 0

    def _augment(self, x: np.ndarray, task: Task, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """x [M, D] float32 -> (augmented x, regression targets [M, E])."""
        return x, np.zeros((len(x), 0), np.float32)

    # ---- shared
    @property
    def input_dim(self) -> int:
        return self._arrays(self._datasets()[0])[0].shape[1]

    @property
    def target_dim(self) -> int:
        return self.max_classes + self.num_regression_targets

    @property
    def label_dim(self) -> int:
        return self.max_classes

    @property
    def classes_in_task(self) -> int:
        """Classes per task (C); meta batches A and B hold examples_per_class · C rows."""
        return self._class_count(self._datasets()[0])

    @property
    def labeled_batch_size(self) -> int:
        return self.examples_per_class * self.classes_in_task

    def _allowed_classes(self, dataset: str) -> tuple[int, ...]:
        num = self._arrays(dataset)[2]
        return tuple(self.classes) or tuple(range(num))

    def _class_count(self, dataset: str) -> int:
        return self.classes_per_task or len(self._allowed_classes(dataset))

    def _validate(self) -> None:
        """Call from __post_init__: loads every dataset once and checks the config."""
        datasets = self._datasets()
        if not datasets:
            raise ValueError("task_family_config.datasets: empty")
        weights = self._dataset_weights()
        if weights and (len(weights) != len(datasets) or min(weights) < 0 or sum(weights) <= 0):
            raise ValueError(f"task_family_config.weights: need {len(datasets)} non-negative weights "
                             f"with a positive sum, got {weights}")
        if self.examples_per_class < 1:
            raise ValueError(f"task_family_config.examples_per_class: must be >= 1, "
                             f"got {self.examples_per_class}")
        dims, counts = {}, {}
        for name in datasets:
            x, _, num = self._arrays(name)
            dims[name] = x.shape[1]
            bad = [c for c in self.classes if not 0 <= c < num]
            if bad:
                raise ValueError(f"task_family_config.classes: {bad} out of range for '{name}' "
                                 f"({num} classes)")
            counts[name] = self._class_count(name)
            available = len(self._allowed_classes(name))
            if counts[name] > min(available, self.max_classes):
                raise ValueError(f"task_family_config.classes_per_task={counts[name]} exceeds the "
                                 f"{available} classes of '{name}' or max_classes={self.max_classes}")
        if len(set(dims.values())) != 1:
            raise ValueError(f"task_family_config.datasets: input sizes differ {dims}; "
                             "set image_size / grayscale so they agree")
        if len(set(counts.values())) != 1:
            raise ValueError(f"task_family_config.classes_per_task: datasets give different class "
                             f"counts {counts}; set classes_per_task")

    def sample_task(self, key, arch) -> Task:
        rng = numpy_rng(key)
        datasets = self._datasets()
        weights = np.asarray(self._dataset_weights() or [1.0] * len(datasets), float)
        dataset = datasets[rng.choice(len(datasets), p=weights / weights.sum())]
        allowed = self._allowed_classes(dataset)
        count = self._class_count(dataset)
        chosen = rng.choice(np.asarray(allowed), size=count, replace=False)
        return Task(self.family_name, dataset, arch, seed=int(rng.integers(2**31)),
                    details=(("classes", tuple(sorted(int(c) for c in chosen))),))

    def permutation(self, task: Task, dim: int) -> np.ndarray | None:
        """The task's fixed input permutation (None when permute_inputs is off)."""
        return np.random.default_rng(task.seed).permutation(dim) if self.permute_inputs else None

    def truncation_data(self, task: Task, key, num_steps: int, batch_size: int) -> TruncationData:
        x, _, _ = self._arrays(task.dataset)
        order, starts, counts = class_index(self, task.dataset)
        classes = np.asarray(dict(task.details)["classes"])
        sizes = counts[classes]
        if sizes.min() == 0:
            empty = [int(c) for c in classes[sizes == 0]]
            raise ValueError(f"dataset '{task.dataset}' split '{self.split}' has no examples of "
                             f"classes {empty}; check task_family_config.classes")
        rng = numpy_rng(key)
        k, n, c = num_steps, self.examples_per_class, len(classes)

        # unlabelled: uniform over the union of the task's classes
        cumulative = np.cumsum(sizes)
        flat = rng.integers(cumulative[-1], size=(k, batch_size))
        which = np.searchsorted(cumulative, flat, side="right")
        unlabelled = order[starts[classes][which] + flat - (cumulative - sizes)[which]]

        # labelled: 2n distinct examples per class and step, first n -> A, last n -> B
        offsets = distinct_draws(rng, sizes, (k, c), 2 * n)           # [K, C, 2n]
        picked = order[starts[classes][None, :, None] + offsets]
        a = picked[:, :, :n].transpose(0, 2, 1).reshape(k, n * c)    # rows: class 0..C-1, repeated n times
        b = picked[:, :, n:].transpose(0, 2, 1).reshape(k, n * c)

        index = np.concatenate([unlabelled, a, b], axis=1)             # one gather for everything
        features = x[index.ravel()].astype(np.float32, copy=False)
        features, extra = self._augment(features, task, rng)
        perm = self.permutation(task, features.shape[1])
        if perm is not None:
            features = features[:, perm]
        features = features.reshape(*index.shape, features.shape[-1])
        extra = extra.reshape(*index.shape, extra.shape[-1])

        onehot = np.zeros((n * c, self.max_classes), np.float32)
        onehot[np.arange(n * c), np.tile(np.arange(c), n)] = 1.0

        regression = extra * np.float32(self.regression_weight)

        def batch(lo, hi):
            targets = np.concatenate([np.broadcast_to(onehot, (k, n * c, self.max_classes)),
                                      regression[:, lo:hi]], axis=-1)
            return LabeledBatch(features[:, lo:hi], targets.astype(np.float32))

        return TruncationData(features[:, :batch_size],
                              batch(batch_size, batch_size + n * c),
                              batch(batch_size + n * c, batch_size + 2 * n * c))
