"""`image_classes`: classification tasks from image datasets.

A task = one dataset, a subset of its classes, and a fixed random pixel
permutation. Unlabelled batches come from the task's classes; the
meta-objective's batches A and B are class-balanced and disjoint.
Targets are one-hot over `max_classes` (zero-padded), in task-class order.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import numpy as np

from metaplastic.core.data import load_dataset
from metaplastic.core.interfaces import (Architecture, LabeledBatch, Task, TaskFamily,
                                         TruncationData, numpy_rng)
from metaplastic.registries import hookimpl


@functools.lru_cache(maxsize=16)
def prepared_images(dataset: str, split: str, image_size: int, grayscale: bool):
    """(x [N, D] float32, y [N], num_classes) resized and flattened, cached per process."""
    data = load_dataset(dataset, split)
    x = data.x.astype(np.float32)
    if x.ndim == 4:
        if grayscale and x.shape[-1] > 1:
            x = x.mean(axis=-1, keepdims=True)
        if image_size and x.shape[1:3] != (image_size, image_size):
            x = np.asarray(jax.image.resize(x, (x.shape[0], image_size, image_size, x.shape[-1]),
                                            "linear", antialias=True))
    return x.reshape(len(x), -1), data.y.astype(np.int32), data.num_classes


@dataclasses.dataclass(frozen=True)
class ImageClasses(TaskFamily):
    datasets: tuple[str, ...] = ("digits",)
    split: str = "train"
    classes: tuple[int, ...] = ()  # allowed classes; () = all
    classes_per_task: int = 0      # 0 = every allowed class
    image_size: int = 0            # 0 = native size
    grayscale: bool = True
    permute_inputs: bool = True
    examples_per_class: int = 10   # per class, in each of the meta batches A and B
    max_classes: int = 10          # one-hot width; tasks with fewer classes are zero-padded

    def __post_init__(self):
        if not self.datasets:
            raise ValueError("task_family_config.datasets: empty")
        dims = {self._images(name)[0].shape[1] for name in self.datasets}
        if len(dims) != 1:
            raise ValueError(f"task_family_config.datasets: input sizes differ {sorted(dims)}; "
                             "set image_size / grayscale so they agree")

    def _images(self, dataset):
        return prepared_images(dataset, self.split, self.image_size, self.grayscale)

    @property
    def input_dim(self) -> int:
        return self._images(self.datasets[0])[0].shape[1]

    @property
    def target_dim(self) -> int:
        return self.max_classes

    def _allowed_classes(self, dataset):
        num = self._images(dataset)[2]
        return self.classes or tuple(range(num))

    def sample_task(self, key, arch: Architecture) -> Task:
        rng = numpy_rng(key)
        dataset = self.datasets[rng.integers(len(self.datasets))]
        allowed = self._allowed_classes(dataset)
        count = self.classes_per_task or len(allowed)
        if count > min(len(allowed), self.max_classes):
            raise ValueError(f"task_family_config.classes_per_task={count} exceeds the "
                             f"{len(allowed)} classes available / max_classes={self.max_classes}")
        chosen = tuple(int(c) for c in rng.choice(allowed, size=count, replace=False))
        return Task("image_classes", dataset, arch, seed=int(rng.integers(2**31)),
                    details=(("classes", tuple(sorted(chosen))),))

    def truncation_data(self, task: Task, key, num_steps: int, batch_size: int) -> TruncationData:
        x, y, _ = self._images(task.dataset)
        classes = dict(task.details)["classes"]
        pools = [np.flatnonzero(y == c) for c in classes]
        pool = np.concatenate(pools)
        perm = (np.random.default_rng(task.seed).permutation(x.shape[1]) if self.permute_inputs
                else np.arange(x.shape[1]))
        rng = numpy_rng(key)
        unlabeled = x[rng.choice(pool, size=(num_steps, batch_size))][..., perm]
        n = self.examples_per_class
        picks = np.stack([np.stack([rng.choice(p, size=2 * n, replace=len(p) < 2 * n) for p in pools], 1)
                          for _ in range(num_steps)])  # [K, 2n, classes]
        onehot = np.eye(self.max_classes, dtype=np.float32)[: len(classes)]

        def batch(part):
            idx = part.reshape(num_steps, -1)            # [K, n * classes]
            labels = np.tile(np.arange(len(classes)), part.shape[1])
            return LabeledBatch(x[idx][..., perm], np.broadcast_to(onehot[labels], idx.shape + (self.max_classes,)).copy())

        return TruncationData(unlabeled, batch(picks[:, :n]), batch(picks[:, n:]))


@hookimpl
def metaplastic_task_families():
    return {"image_classes": ImageClasses}
