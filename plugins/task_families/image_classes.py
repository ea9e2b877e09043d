"""`image_classes`: classification tasks from image datasets.

A task = one dataset (picked by `weights`), a subset of its classes and a
fixed random pixel permutation. Images are resized to `image_size`, made
grayscale (or all given the same channel count), and flattened. Unlabelled
batches come from the task's classes; the meta-objective's batches A and B
are class-balanced and disjoint. Targets are one-hot over `max_classes`
(zero-padded), in task-class order, then optional augmentation targets.

Augmentation (all off by default, so evaluation sees clean data): every
example, unlabelled ones included, is shifted by up to `max_shift` of the
image side, rotated by up to `max_rotation` degrees, and given Gaussian noise
of standard deviation U(0, max_noise). With `augment_targets` the normalised
coefficients (shift down, shift right, rotation in [-1, 1]; noise in [0, 1])
follow the one-hot labels, as in Metz et al. (2019):
target_dim = max_classes + 2·[shift] + [rotation] + [noise].
"""

from __future__ import annotations

import dataclasses
import functools

import numpy as np

from metaplastic.core.data import dataset_cache, load_dataset, to_unit_float
from metaplastic.core.documented import documented
from metaplastic.core.interfaces import Task, TaskFamily
from metaplastic.core.classification import ClassTasks
from metaplastic.core.ops.images import affine_warp, resize_images
from metaplastic.registries import hookimpl


@dataset_cache(maxsize=16)
def _prepared(dataset: str, split: str, image_size: int, grayscale: bool, channels: int):
    data = load_dataset(dataset, split)
    x = data.x
    if x.ndim == 3:  # [N, H, W] without a channel axis
        x = x[..., None]
    if x.ndim != 4:
        raise ValueError(f"dataset '{dataset}' is not an image dataset (x has shape {x.shape}); "
                         "use a family for feature or text data")
    x = to_unit_float(x)
    if grayscale and x.shape[-1] > 1:
        x = x.mean(axis=-1, keepdims=True)
    elif channels and x.shape[-1] != channels:
        if x.shape[-1] != 1:
            raise ValueError(f"dataset '{dataset}' has {x.shape[-1]} channels, cannot make {channels}")
        x = np.repeat(x, channels, axis=-1)
    if image_size:
        x = resize_images(x, image_size)
    shape = x.shape[1:]
    return np.ascontiguousarray(x.reshape(len(x), -1)), data.y.astype(np.int32), data.num_classes, shape


def prepared_images(dataset: str, split: str, image_size: int, grayscale: bool, channels: int = 0):
    """(x [N, D] float32, y [N], num_classes) resized and flattened, cached per process.

    `channels` (with grayscale=False) repeats single-channel images to that many channels.
    """
    return _prepared(dataset, split, image_size, grayscale, channels)[:3]


def native_channels(dataset: str, split: str) -> int:
    x = load_dataset(dataset, split).x
    return 1 if x.ndim == 3 else x.shape[-1]


@dataclasses.dataclass(frozen=True)
class ImageClasses(ClassTasks, TaskFamily):
    datasets: tuple[str, ...] = documented(
        ("digits",), "image datasets tasks are drawn from (`metaplastic plugins` lists the sources)")
    split: str = documented("train", "the datasets' split tasks are drawn from")
    classes: tuple[int, ...] = documented((), "allowed classes; () = all (e.g. held-out ImageNet classes)")
    classes_per_task: int = documented(0, "0 = every allowed class")
    image_size: int = documented(0, "0 = native size")
    grayscale: bool = documented(True, "False: keep colour; 1-channel datasets repeated to match")
    permute_inputs: bool = documented(True, "each task permutes the input pixels with its own fixed permutation")
    examples_per_class: int = documented(10, "per class, in each of the meta batches A and B")
    max_classes: int = documented(10, "one-hot width; tasks with fewer classes are zero-padded")
    weights: tuple[float, ...] = documented((), "dataset sampling weights; () = uniform")
    max_shift: float = documented(0.0, "augmentation: shift up to this fraction of the image side")
    max_rotation: float = documented(0.0, "augmentation: rotate up to this many degrees")
    max_noise: float = documented(0.0, "augmentation: Gaussian noise, std ~ U(0, max_noise)")
    augment_targets: bool = documented(True, "append augmentation coefficients to the targets")
    regression_weight: float = documented(
        1.0, "scale of those targets against the one-hot labels (0 = labels only)")

    family_name = "image_classes"

    def __post_init__(self):
        for name in ("max_shift", "max_rotation", "max_noise", "regression_weight"):
            if getattr(self, name) < 0:
                raise ValueError(f"task_family_config.{name}: must be >= 0, got {getattr(self, name)}")
        if self.image_size < 0:
            raise ValueError(f"task_family_config.image_size: must be >= 0, got {self.image_size}")
        self._validate()

    def _datasets(self):
        return tuple(self.datasets)

    def _dataset_weights(self):
        return tuple(self.weights)

    @functools.cached_property
    def _channels(self) -> int:
        if self.grayscale:
            return 0
        return max(native_channels(name, self.split) for name in self.datasets)

    def _arrays(self, dataset):
        return prepared_images(dataset, self.split, self.image_size, self.grayscale, self._channels)

    def image_shape(self, dataset: str) -> tuple[int, int, int]:
        return _prepared(dataset, self.split, self.image_size, self.grayscale, self._channels)[3]

    @property
    def regression_targets(self) -> tuple[str, ...]:
        """Names of the regression targets after the one-hot labels."""
        if not self.augment_targets:
            return ()
        return ((("shift_down", "shift_right") if self.max_shift else ())
                + (("rotation",) if self.max_rotation else ())
                + (("noise",) if self.max_noise else ()))

    @property
    def num_regression_targets(self) -> int:
        return len(self.regression_targets)

    def _augment(self, x: np.ndarray, task: Task, rng: np.random.Generator):
        m = len(x)
        coefs = []
        if self.max_shift or self.max_rotation:
            h, w, c = self.image_shape(task.dataset)
            shift = rng.uniform(-1, 1, size=(m, 2)).astype(np.float32)
            angle = rng.uniform(-1, 1, size=m).astype(np.float32)
            pixels = shift * np.float32(self.max_shift) * np.asarray([h, w], np.float32)
            radians = angle * np.float32(np.deg2rad(self.max_rotation))
            x = affine_warp(x.reshape(m, h, w, c), radians, pixels).reshape(m, -1)
            if self.max_shift:
                coefs.append(shift)
            if self.max_rotation:
                coefs.append(angle[:, None])
        if self.max_noise:
            level = rng.uniform(0, 1, size=(m, 1)).astype(np.float32)
            x = x + rng.standard_normal(x.shape, dtype=np.float32) * (level * np.float32(self.max_noise))
            coefs.append(level)
        if not self.augment_targets or not coefs:
            return x, np.zeros((m, 0), np.float32)
        return x, np.concatenate(coefs, axis=1)


@hookimpl
def metaplastic_task_families():
    return {"image_classes": ImageClasses}
