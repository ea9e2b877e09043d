"""Evaluation data: datasets prepared as flat inputs, few-shot draws, unlabelled batches, and each
seed's split (permutation, test subset, labelled examples) with its test labels held for scoring only."""

from __future__ import annotations

import dataclasses

import numpy as np

from metaplastic.core.data import load_dataset
from metaplastic.core.evaluation.study import DatasetSpec
from metaplastic.core.interfaces import DatasetUnavailable, EvaluationError
from metaplastic.core.keys import StudyPurpose, study_rng
from metaplastic.core.ops.images import resize_images


@dataclasses.dataclass(frozen=True, eq=False)
class PreparedData:
    """A dataset ready for evaluation: flat inputs, labels 0..C-1."""

    label: str
    dataset: str          # the dataset actually used (maybe an alternative)
    x_train: np.ndarray   # [N, D] float32
    y_train: np.ndarray   # [N] int32
    x_test: np.ndarray    # [M, D]
    y_test: np.ndarray    # [M]
    num_classes: int
    image_shape: tuple[int, ...] | None  # (H, W) for images, None for feature vectors


def _flat_inputs(x: np.ndarray, image_size: int) -> tuple[np.ndarray, tuple | None]:
    x = x.astype(np.float32)
    if x.ndim == 2:
        return x, None
    if x.ndim != 4:
        raise EvaluationError(f"inputs must be [N, H, W, C] or [N, D], got shape {x.shape}")
    if x.shape[-1] > 1:
        x = x.mean(axis=-1, keepdims=True)
    if image_size:
        x = resize_images(x, image_size)
    return x.reshape(len(x), -1), tuple(x.shape[1:3])


def _select_classes(x, y, classes, where):
    if not classes:
        return x, y.astype(np.int32)
    mapping = np.full(int(max(y.max(), max(classes))) + 1, -1, np.int32)
    mapping[list(classes)] = np.arange(len(classes))
    keep = np.isin(y, classes)
    if not keep.any():
        raise EvaluationError(f"{where}: none of classes {classes} present")
    return x[keep], mapping[y[keep]]


def prepare_dataset(label: str, spec: DatasetSpec) -> PreparedData:
    """Load train and test splits (trying alternatives); raises DatasetUnavailable."""
    reasons = []
    for name in (spec.dataset,) + tuple(spec.alternatives):
        try:
            train, test = load_dataset(name, spec.train_split), load_dataset(name, spec.test_split)
        except DatasetUnavailable as why:
            reasons.append(str(why))
            continue
        x_train, shape = _flat_inputs(train.x, spec.image_size)
        x_test, _ = _flat_inputs(test.x, spec.image_size)
        bad = [c for c in spec.classes if not 0 <= c < train.num_classes]
        if bad:
            raise EvaluationError(f"datasets.{label}.classes: {bad} not in 0..{train.num_classes - 1} "
                                  f"of dataset '{name}'")
        x_train, y_train = _select_classes(x_train, train.y, spec.classes, f"datasets.{label} ({name})")
        x_test, y_test = _select_classes(x_test, test.y, spec.classes, f"datasets.{label} ({name})")
        num_classes = len(spec.classes) or train.num_classes
        if spec.max_unlabelled:
            keep = np.random.default_rng(0).permutation(len(x_train))[: spec.max_unlabelled]
            x_train, y_train = x_train[np.sort(keep)], y_train[np.sort(keep)]
        return PreparedData(label, name, x_train, y_train, x_test, y_test, num_classes, shape)
    raise DatasetUnavailable(f"datasets.{label}: " + " | ".join(reasons))


def sample_few_shot(labels: np.ndarray, num_classes: int, shots: int,
                    rng: np.random.Generator) -> np.ndarray:
    """Indices of `shots` distinct examples of every class 0..C-1 (class-major order)."""
    picks = []
    for c in range(num_classes):
        pool = np.flatnonzero(labels == c)
        if len(pool) < shots:
            raise EvaluationError(f"class {c} has {len(pool)} training examples, fewer than shots={shots}")
        picks.append(rng.choice(pool, size=shots, replace=False))
    return np.concatenate(picks)


class ScoringLabels:
    """Holds test labels; their only use is scoring predictions."""

    def __init__(self, labels: np.ndarray):
        self._labels = np.asarray(labels)
        self.reads = 0

    def __len__(self):
        return len(self._labels)

    def accuracy(self, predictions: np.ndarray) -> float:
        predictions = np.asarray(predictions)
        if predictions.shape != self._labels.shape:
            raise EvaluationError(f"predictions shape {predictions.shape} != test labels {self._labels.shape}")
        self.reads += 1
        return float(np.mean(predictions == self._labels))


@dataclasses.dataclass(frozen=True, eq=False)
class SeedSplit:
    """One seed's view of a dataset: permuted inputs, a test subset, few-shot draws."""

    permutation: np.ndarray
    unlabelled: np.ndarray
    test_x: np.ndarray
    test_labels: ScoringLabels
    few_shot: dict[int, np.ndarray]  # shots -> indices into the training split


def seed_split(config, spec: DatasetSpec, data: PreparedData, seed: int) -> SeedSplit:
    def rng(purpose: StudyPurpose, *extra: int) -> np.random.Generator:
        return study_rng(config.seed, seed, purpose, *extra)

    dim = data.x_train.shape[1]
    perm = rng(StudyPurpose.PERMUTATION).permutation(dim) if spec.permute_inputs else np.arange(dim)
    test_index = np.arange(len(data.y_test))
    if spec.max_test and len(test_index) > spec.max_test:
        test_index = np.sort(rng(StudyPurpose.TEST_SUBSET).choice(test_index, spec.max_test, replace=False))
    few_shot = {shots: sample_few_shot(data.y_train, data.num_classes, shots, rng(StudyPurpose.FEW_SHOT, shots))
                for shots in config.shots}
    return SeedSplit(perm, data.x_train[:, perm], data.x_test[test_index][:, perm],
                     ScoringLabels(data.y_test[test_index]), few_shot)
