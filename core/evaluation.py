"""Evaluation: train a fresh base model on held-out data with each method, read out with few labels.

A *study* (a config file in experiments/) names datasets, methods, architectures,
unsupervised step counts, shots (labelled examples per class) and seeds. Every
combination is a *cell*; its result is the test accuracy of each readout.

Per seed, every method sees the same data: the same input permutation, the
same unlabelled batches (batch t is drawn with `fold_in(data_key, t)`), the
same labelled examples and the same test subset, and every base model starts
from the same initialisation key.

Test labels are used for scoring only: a method gets unlabelled inputs (and,
if it declares `uses_labels`, the few labelled training examples); readouts
are fit on labelled training features and predict from test features; the
test labels live in `ScoringLabels`, whose only use is `accuracy(predictions)`.

Features use batch statistics (the base models normalise with the current
batch): the labelled and test examples are passed through the model together,
in one batch when they fit in `feature_batch` examples, otherwise in chunks of
test examples, each with the labelled examples prepended (labelled features are
averaged over the chunks). Readout and test examples thus share statistics.

Cells are cached in `<workdir>/cells/` (one JSON file each, written atomically)
as they finish, so an interrupted study resumes without redoing them.
"""

from __future__ import annotations

import abc
import csv
import dataclasses
import functools
import hashlib
import json
import math
import os
import pathlib
import tempfile
from typing import Any, Callable, ClassVar, Iterator, NamedTuple

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from metaplastic.core import config as config_lib
from metaplastic.core.interfaces import (Architecture, BaseModel, DatasetUnavailable, Pytree,
                                         UpdateRule)


class EvaluationError(ValueError):
    """A study, dataset, method or checkpoint cannot be evaluated as configured."""


# key purposes (per seed)
PERMUTATION, TEST_SUBSET, FEW_SHOT, DATA_ORDER, MODEL_INIT, METHOD = range(6)


# ================================================================ study config

STUDY_DEFAULTS = dict(
    name="study",
    description="",
    seed=0,
    seeds=10,                 # repetitions: permutation, data order, initialisation, label draw
    rule="simple_local",      # the learned rule when no checkpoint is given (untrained θ)
    rule_checkpoint="",       # a `metaplastic train` workdir; its latest θ is "the learned rule"
    primary_method="learned",  # compared with every other method in the report
    base_model="mlp_bn",
    architectures=((2, 64),),  # (hidden layers below the representation layer, their width)
    top_width=32,             # representation size
    batch_size=64,            # unlabelled examples per unsupervised step
    steps=(1000,),            # unsupervised steps (snapshots of one run per seed)
    shots=(10,),              # labelled examples per class
    readouts=("ridge", "logistic"),
    ridge_lambda=0.1,         # as the meta-objective
    logistic_c=1.0,
    feature_batch=4096,       # examples per feature pass (batch statistics)
    checkpoint_sweep=False,   # also evaluate the primary rule at every saved meta-training step
    num_filters=32,           # first-layer units kept for the filter pictures (seed 0)
    filters_dataset="",       # dataset whose filters are drawn ("" = the first image dataset)
    main_shots=10,            # shots shown in the pictures over datasets / steps / architectures
)
STUDY_SECTIONS = ("methods", "datasets", "base_model_config")


@dataclasses.dataclass(frozen=True)
class DatasetSpec:
    """One evaluation dataset: which data, which classes, what size."""

    dataset: str
    alternatives: tuple[str, ...] = ()  # tried in order when `dataset` is unavailable
    classes: tuple[int, ...] = ()       # () = all; labels become 0..C-1 in this order
    image_size: int = 0                 # 0 = native
    train_split: str = "train"          # unlabelled data and the labelled examples
    test_split: str = "test"            # scoring only
    max_test: int = 2000                # test examples per seed (a random subset); 0 = all
    max_unlabeled: int = 0              # 0 = the whole train split
    permute_inputs: bool = True
    required: bool = False              # a required dataset that is missing is an error


def _dataset_defaults() -> dict[str, Any]:
    return {f.name: f.default for f in dataclasses.fields(DatasetSpec) if f.name != "dataset"}


def resolve_study(config: ml_collections.ConfigDict,
                  overrides: list[tuple[str, str]] = ()) -> ml_collections.ConfigDict:
    """Fill defaults (study fields, method and dataset fields), validate, lock, apply overrides."""
    from metaplastic.registries import ComponentError, get_registry

    config = ml_collections.ConfigDict(config.to_dict())
    config.unlock()
    for key in config.keys():
        if key not in STUDY_DEFAULTS and key not in STUDY_SECTIONS:
            config_lib._unknown_field(ml_collections.ConfigDict(
                {**STUDY_DEFAULTS, **{s: {} for s in STUDY_SECTIONS}}), key)
    for key, value in STUDY_DEFAULTS.items():
        if key not in config:
            config[key] = value
    for section in STUDY_SECTIONS:
        if section not in config:
            config[section] = ml_collections.ConfigDict()
    try:
        defaults = config_lib.component_defaults("base_model", config.base_model)
    except ComponentError as error:
        raise config_lib.ConfigError(f"config.base_model: {error}") from None
    config.base_model_config = _merge_section("base_model_config", defaults, config.base_model_config)
    if not config.methods:
        raise config_lib.ConfigError("config.methods: empty")
    registry = get_registry()
    for label, entry in config.methods.items():
        if "method" not in entry:
            raise config_lib.ConfigError(f"config.methods.{label}.method: missing (registered: "
                                         f"{', '.join(registry.names('eval_method'))})")
        try:
            defaults = config_lib.component_defaults("eval_method", entry.method)
        except ComponentError as error:
            raise config_lib.ConfigError(f"config.methods.{label}.method: {error}") from None
        fields = {k: v for k, v in entry.items() if k != "method"}
        merged = _merge_section(f"methods.{label}", defaults, ml_collections.ConfigDict(fields))
        merged.method = entry.method
        config.methods[label] = merged
    if not config.datasets:
        raise config_lib.ConfigError("config.datasets: empty")
    for label, entry in config.datasets.items():
        if "dataset" not in entry:
            raise config_lib.ConfigError(f"config.datasets.{label}.dataset: missing")
        merged = _merge_section(f"datasets.{label}", _dataset_defaults(),
                                ml_collections.ConfigDict({k: v for k, v in entry.items() if k != "dataset"}))
        merged.dataset = entry.dataset
        config.datasets[label] = merged
    config.lock()
    for field, text in overrides:
        node, leaf = config_lib._lookup(config, field)
        if leaf == "method" and field.startswith("methods."):
            raise config_lib.ConfigError(f"config.{field}: a method's kind cannot be overridden; "
                                         "add a new entry in the config file")
        value = config_lib._parse_value(f"config.{field}", text, node[leaf])
        try:
            node[leaf] = value
        except (TypeError, ValueError) as error:
            raise config_lib.ConfigError(f"config.{field}: {error}") from None
    _validate(config)
    return config


def _merge_section(where: str, defaults: dict, section) -> ml_collections.ConfigDict:
    import difflib

    for key in section.keys():
        if key not in defaults:
            close = difflib.get_close_matches(key, list(defaults), n=1)
            hint = f"; did you mean '{close[0]}'?" if close else ""
            raise config_lib.ConfigError(f"config.{where}.{key}: unknown field "
                                         f"(fields: {', '.join(defaults) or 'none'}){hint}")
    merged = dict(defaults)
    merged.update(section.to_dict())
    return ml_collections.ConfigDict(merged)


def _validate(config) -> None:
    def bad(field, why):
        raise config_lib.ConfigError(f"config.{field}: {why}")

    if config.seeds < 1:
        bad("seeds", f"must be >= 1, got {config.seeds}")
    if not config.steps or min(config.steps) < 0:
        bad("steps", f"need non-negative step counts, got {config.steps}")
    if not config.shots or min(config.shots) < 1:
        bad("shots", f"need positive shots, got {config.shots}")
    unknown = [r for r in config.readouts if r not in READOUTS]
    if not config.readouts or unknown:
        bad("readouts", f"unknown {unknown or 'none given'} (known: {', '.join(READOUTS)})")
    for arch in config.architectures:
        if len(arch) != 2 or arch[0] < 0 or arch[1] < 1:
            bad("architectures", f"each entry is (hidden layers >= 0, width >= 1), got {arch}")
    if config.top_width < 1 or config.batch_size < 2:
        bad("top_width/batch_size", f"got {config.top_width}/{config.batch_size}")
    if config.primary_method not in config.methods:
        bad("primary_method", f"'{config.primary_method}' is not in config.methods "
                              f"({', '.join(config.methods)})")


# ================================================================ data

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
        from metaplastic.plugins._image_ops import resize_images

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
    from metaplastic.core.data import load_dataset

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
        if spec.max_unlabeled:
            keep = np.random.default_rng(0).permutation(len(x_train))[: spec.max_unlabeled]
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


class UnlabeledPool(NamedTuple):
    """Unlabelled inputs on the device, rows padded to a power of two so that datasets of
    similar size share compiled training loops; only the first `count` rows are drawn."""

    x: jax.Array      # [P, D], P >= count
    count: jax.Array  # int32 scalar

    @classmethod
    def of(cls, x: np.ndarray) -> "UnlabeledPool":
        padded = np.resize(x, (1 << max(0, len(x) - 1).bit_length(), x.shape[1]))
        return cls(jnp.asarray(padded), jnp.asarray(len(x), jnp.int32))


def unlabeled_batch(pool: UnlabeledPool, data_key: jax.Array, step, batch_size: int) -> jax.Array:
    """Unlabelled batch number `step` [B, D]: the same for every method of a seed."""
    index = jax.random.randint(jax.random.fold_in(data_key, step), (batch_size,), 0, pool.count)
    return pool.x[index]


# ================================================================ readouts

def ridge_readout(train_features, train_labels, test_features, num_classes: int,
                  ridge_lambda: float) -> np.ndarray:
    """Argmax of the meta-objective's ridge solution (unpenalised bias) fit to one-hot labels."""
    # zero feature columns get zero weight and padded test rows are dropped: padding both to
    # bucket sizes leaves the answer unchanged and bounds the number of compiled shapes
    train_features, test_features = np.asarray(train_features), np.asarray(test_features)
    width = -(-train_features.shape[1] // 32) * 32
    rows = 1 << max(0, len(test_features) - 1).bit_length()
    train = np.zeros((len(train_features), width), np.float32)
    train[:, : train_features.shape[1]] = train_features
    test = np.zeros((rows, width), np.float32)
    test[: len(test_features), : test_features.shape[1]] = test_features
    targets = np.eye(num_classes, dtype=np.float32)[np.asarray(train_labels)]
    return np.asarray(_ridge_argmax(train, targets, test, ridge_lambda))[: len(test_features)]


@jax.jit
def _ridge_argmax(train, targets, test, ridge_lambda):
    from metaplastic.plugins.ridge_cosdist import ridge_fit, ridge_predict

    return jnp.argmax(ridge_predict(ridge_fit(train, targets, ridge_lambda), test), axis=1)


def logistic_readout(train_features, train_labels, test_features, num_classes: int,
                     c: float) -> np.ndarray:
    """scikit-learn logistic regression (C=c) on features standardised with training statistics."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    del num_classes
    scaler = StandardScaler().fit(train_features)
    model = LogisticRegression(C=c, max_iter=2000)
    model.fit(scaler.transform(train_features), train_labels)
    return model.predict(scaler.transform(test_features))


READOUTS: dict[str, Callable[..., np.ndarray]] = {"ridge": ridge_readout, "logistic": logistic_readout}


def _readout_args(config, readout):
    return {"ridge": {"ridge_lambda": config.ridge_lambda}, "logistic": {"c": config.logistic_c}}[readout]


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


# ================================================================ methods

@dataclasses.dataclass(frozen=True, eq=False)
class TrainingProblem:
    """What a method may see. Labels only when the method declares `uses_labels`."""

    arch: Architecture
    base_model: BaseModel
    unlabeled: np.ndarray            # [N, D] (permuted) training inputs
    batch_size: int
    data_key: jax.Array              # unlabelled batch t = unlabeled_batch(self.pool, data_key, t, B)
    init_key: jax.Array              # base-model initialisation, shared by methods
    method_key: jax.Array            # anything else the method draws
    num_classes: int
    labeled_x: np.ndarray | None = None
    labeled_y: np.ndarray | None = None

    @functools.cached_property
    def pool(self) -> UnlabeledPool:
        return UnlabeledPool.of(self.unlabeled)


class FeatureModel(abc.ABC):
    """A trained representation."""

    @abc.abstractmethod
    def features(self, x: np.ndarray) -> np.ndarray:
        """Features [n, F] of one batch x [n, D] (batch statistics may be used)."""

    def first_layer_weights(self) -> np.ndarray | None:
        """[D, units] input weights of the first layer, if there is such a thing."""
        return None


class EvalMethod(abc.ABC):
    """Produces a representation from a TrainingProblem. Registered via `metaplastic_eval_methods`."""

    uses_labels: ClassVar[bool] = False

    def resolve(self, study: ml_collections.ConfigDict) -> "EvalMethod":
        """This method with study-level settings filled in (e.g. the rule checkpoint)."""
        return self

    def identity(self) -> dict[str, Any]:
        """JSON-able settings that determine results (part of every cell's cache key)."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)} \
            if dataclasses.is_dataclass(self) else {}

    def describe(self) -> str:
        return type(self).__name__

    @abc.abstractmethod
    def train(self, problem: TrainingProblem, steps: tuple[int, ...]) -> Iterator[tuple[int, FeatureModel]]:
        """Yield (step, model) for each step count in ascending `steps`."""


class BaseModelFeatures(FeatureModel):
    def __init__(self, model: BaseModel, params: Pytree):
        self.model, self.params = model, params

    def features(self, x):
        return np.asarray(_base_features(self.model, self.params, jnp.asarray(x)))

    def first_layer_weights(self):
        return first_layer_of(self.params)


class RuleFeatures(FeatureModel):
    def __init__(self, rule: UpdateRule, state):
        self.rule, self.state = rule, state

    def features(self, x):
        return np.asarray(_rule_features(self.rule, self.state, jnp.asarray(x)))

    def first_layer_weights(self):
        return first_layer_of(self.state.params)


def first_layer_of(params) -> np.ndarray | None:
    if isinstance(params, dict) and "layer_0" in params and "w" in params["layer_0"]:
        return np.asarray(params["layer_0"]["w"])
    return None


@functools.partial(jax.jit, static_argnames=("model",))
def _base_features(model, params, x):
    return model.features(params, x)


@functools.partial(jax.jit, static_argnames=("rule",))
def _rule_features(rule, state, x):
    return rule.features(state, x)


@functools.partial(jax.jit, static_argnames=("rule", "batch_size"))
def run_rule_steps(rule: UpdateRule, theta, state, pool, data_key, step_key, start, stop, batch_size: int):
    """Inner steps start..stop-1 of `rule` on batches drawn from `pool`."""

    def body(t, state):
        x = unlabeled_batch(pool, data_key, t, batch_size)
        return rule.inner_step(theta, state, x, jax.random.fold_in(step_key, t))

    return jax.lax.fori_loop(start, stop, body, state)


def rule_snapshots(rule: UpdateRule, theta, problem: TrainingProblem,
                   steps: tuple[int, ...]) -> Iterator[tuple[int, FeatureModel]]:
    """Run an update rule from a fresh φ_0, yielding features after each requested step count."""
    state = rule.init_inner_state(problem.init_key, problem.arch)
    pool = problem.pool
    done = 0
    for target in steps:
        state = run_rule_steps(rule, theta, state, pool, problem.data_key, problem.method_key,
                               done, target, problem.batch_size)
        done = target
        yield target, RuleFeatures(rule, state)


def build_method(label: str, entry: ml_collections.ConfigDict, study) -> EvalMethod:
    from metaplastic.registries import get_registry

    factory = get_registry().get("eval_method", entry.method)
    kwargs = {k: (tuple(v) if isinstance(v, list) else v) for k, v in entry.to_dict().items() if k != "method"}
    try:
        return factory(**kwargs).resolve(study)
    except (TypeError, ValueError) as error:
        raise EvaluationError(f"config.methods.{label} ('{entry.method}'): {error}") from None


# ================================================================ learned rules from workdirs

def _checkpointer(workdir: pathlib.Path):
    from metaplastic.core.checkpoint import Checkpointer

    directory = workdir / "checkpoints"
    if not directory.is_dir():
        raise EvaluationError(f"rule checkpoint '{workdir}': no checkpoints/ directory "
                              "(expected a `metaplastic train` workdir)")
    return Checkpointer(directory)


def checkpoint_steps(workdir: str | os.PathLike) -> list[int]:
    """Saved meta-training steps in a `metaplastic train` workdir."""
    checkpointer = _checkpointer(pathlib.Path(workdir))
    try:
        return sorted(int(s) for s in checkpointer.manager.all_steps())
    finally:
        checkpointer.close()


def workdir_config(workdir: str | os.PathLike) -> ml_collections.ConfigDict:
    path = pathlib.Path(workdir) / "config.json"
    if not path.is_file():
        raise EvaluationError(f"rule checkpoint '{workdir}': no config.json (expected a `metaplastic train` workdir)")
    return ml_collections.ConfigDict(json.loads(path.read_text()))


def load_rule_from_workdir(workdir: str | os.PathLike, step: int | None = None,
                           base_model: BaseModel | None = None) -> tuple[UpdateRule, Pytree]:
    """(rule, θ) saved by `metaplastic train` in `workdir` at `step` (default: the latest).

    Step 0 is the trainer's initial θ (recomputed from the config's seed). Only θ
    is restored. The rule is built from config.json, on `base_model` if given.
    """
    import orbax.checkpoint as ocp

    workdir = pathlib.Path(workdir)
    config = workdir_config(workdir)
    if base_model is None:
        base_model = config_lib.build(config, "base_model")
    rule = config_lib.build(config, "update_rule", base_model=base_model)
    if step == 0:
        return rule, initial_theta(rule, config.seed)
    checkpointer = _checkpointer(workdir)
    try:
        available = sorted(int(s) for s in checkpointer.manager.all_steps())
        if not available:
            raise EvaluationError(f"rule checkpoint '{workdir}': no saved steps")
        step = available[-1] if step is None or step < 0 else step
        if step not in available:
            raise EvaluationError(f"rule checkpoint '{workdir}': no step {step} (saved: {available})")
        restored = checkpointer.manager.restore(step, args=ocp.args.Composite(
            state=ocp.args.StandardRestore()))["state"]
    finally:
        checkpointer.close()
    theta = jax.tree.map(jnp.asarray, restored["theta"])
    template = rule.init_theta(jax.random.PRNGKey(0))
    if jax.tree.structure(template) != jax.tree.structure(theta) or any(
            a.shape != b.shape for a, b in zip(jax.tree.leaves(template), jax.tree.leaves(theta))):
        raise EvaluationError(f"rule checkpoint '{workdir}' step {step}: θ does not match update rule "
                              f"'{config.update_rule}' as configured in its config.json")
    return rule, theta


def initial_theta(rule: UpdateRule, seed: int) -> Pytree:
    """θ at meta-training step 0, drawn exactly as the trainer draws it."""
    theta_purpose = 0  # the trainer's key purpose for θ
    key = jax.random.fold_in(jax.random.fold_in(jax.random.PRNGKey(seed), theta_purpose), 0)
    return rule.init_theta(key)


# ================================================================ features and one cell

def compute_features(model: FeatureModel, labeled_x: np.ndarray, test_x: np.ndarray,
                     feature_batch: int) -> tuple[np.ndarray, np.ndarray]:
    """Features of labelled and test examples computed with shared batch statistics."""
    n = len(labeled_x)
    if n + len(test_x) <= feature_batch:
        both = model.features(np.concatenate([labeled_x, test_x]))
        return both[:n], both[n:]
    room = feature_batch - n
    if room < 64:
        raise EvaluationError(f"feature_batch={feature_batch} leaves {room} test examples per pass "
                              f"beside {n} labelled ones; raise config.feature_batch")
    chunks = np.array_split(np.arange(len(test_x)), math.ceil(len(test_x) / room))
    size = max(len(c) for c in chunks)
    labeled_parts, test_parts = [], []
    for chunk in chunks:  # pad the last chunk by repeating examples so every pass has one shape
        index = np.resize(chunk, size)
        out = model.features(np.concatenate([labeled_x, test_x[index]]))
        labeled_parts.append(out[:n])
        test_parts.append(out[n:n + len(chunk)])
    return np.mean(labeled_parts, axis=0), np.concatenate(test_parts)


def predict(model: FeatureModel, labeled_x, labeled_y, test_x, num_classes: int,
            readouts: dict[str, dict], feature_batch: int) -> tuple[dict[str, np.ndarray], bool]:
    """Predictions of each readout for test_x. Sees training labels only."""
    train_f, test_f = compute_features(model, labeled_x, test_x, feature_batch)
    finite = bool(np.all(np.isfinite(train_f)) and np.all(np.isfinite(test_f)))
    out = {}
    for name, kwargs in readouts.items():
        if finite:
            out[name] = np.asarray(READOUTS[name](train_f, labeled_y, test_f, num_classes, **kwargs))
        else:  # a diverged representation scores as a constant guess
            out[name] = np.zeros(len(test_x), np.int64)
    return out, finite


# ================================================================ cell cache

def _canonical(value):
    if isinstance(value, dict):
        return {str(k): _canonical(v) for k, v in sorted(value.items())}
    if isinstance(value, (list, tuple)):
        return [_canonical(v) for v in value]
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating,)):
        return float(value)
    return value


def cell_id(key: dict) -> str:
    return hashlib.sha256(json.dumps(_canonical(key), sort_keys=True).encode()).hexdigest()[:20]


def write_atomic(path: pathlib.Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


class CellStore:
    """One JSON file per finished cell (and an .npy of filters where kept)."""

    def __init__(self, directory: str | os.PathLike):
        self.directory = pathlib.Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)

    def get(self, key: dict) -> dict | None:
        path = self.directory / f"{cell_id(key)}.json"
        if not path.exists():
            return None
        return json.loads(path.read_text())

    def put(self, key: dict, result: dict) -> None:
        record = {"key": _canonical(key), **_canonical(result)}
        write_atomic(self.directory / f"{cell_id(key)}.json", json.dumps(record, indent=1).encode())

    def put_filters(self, key: dict, weights: np.ndarray) -> str:
        name = f"{cell_id(key)}.filters.npy"
        import io

        buffer = io.BytesIO()
        np.save(buffer, weights.astype(np.float32))
        write_atomic(self.directory / name, buffer.getvalue())
        return name

    def filters(self, name: str) -> np.ndarray:
        return np.load(self.directory / name)


# ================================================================ the study runner

@dataclasses.dataclass(frozen=True, eq=False)
class SeedSplit:
    """One seed's view of a dataset: permuted inputs, a test subset, few-shot draws."""

    permutation: np.ndarray
    unlabeled: np.ndarray
    test_x: np.ndarray
    test_labels: ScoringLabels
    few_shot: dict[int, np.ndarray]  # shots -> indices into the training split


def _rng(config, seed: int, purpose: int, *extra: int) -> np.random.Generator:
    return np.random.default_rng([config.seed, seed, purpose, *extra])


def _key(config, seed: int, purpose: int) -> jax.Array:
    return jax.random.fold_in(jax.random.fold_in(jax.random.PRNGKey(config.seed), seed), purpose)


def seed_split(config, spec: DatasetSpec, data: PreparedData, seed: int) -> SeedSplit:
    dim = data.x_train.shape[1]
    perm = _rng(config, seed, PERMUTATION).permutation(dim) if spec.permute_inputs else np.arange(dim)
    test_index = np.arange(len(data.y_test))
    if spec.max_test and len(test_index) > spec.max_test:
        test_index = np.sort(_rng(config, seed, TEST_SUBSET).choice(test_index, spec.max_test, replace=False))
    few_shot = {shots: sample_few_shot(data.y_train, data.num_classes, shots,
                                       _rng(config, seed, FEW_SHOT, shots))
                for shots in config.shots}
    return SeedSplit(perm, data.x_train[:, perm], data.x_test[test_index][:, perm],
                     ScoringLabels(data.y_test[test_index]), few_shot)


def expand_methods(config, log: Callable[[str], None] = print) -> dict[str, EvalMethod]:
    methods = {label: build_method(label, entry, config) for label, entry in config.methods.items()}
    primary = methods[config.primary_method]
    sweep = config.checkpoint_sweep and getattr(primary, "workdir", None) is not None
    if config.checkpoint_sweep and not sweep:
        log(f"metaplastic evaluate: config.checkpoint_sweep: primary method '{config.primary_method}' "
            "has no meta-training checkpoint (set config.rule_checkpoint); evaluating it alone")
    if sweep:
        swept = {f"{config.primary_method}@{step}": method
                 for step, method in primary.at_checkpoint_steps()}
        methods = {**swept, **{k: v for k, v in methods.items() if k != config.primary_method}}
    else:  # the primary method first, then the baselines
        methods = {config.primary_method: methods[config.primary_method],
                   **{k: v for k, v in methods.items() if k != config.primary_method}}
    return methods


def _architecture(config, input_dim: int, arch) -> Architecture:
    depth, width = arch
    return Architecture(input_dim, (int(width),) * int(depth) + (int(config.top_width),))


def run_study(config: ml_collections.ConfigDict, workdir: str | os.PathLike, progress: bool = True,
              log: Callable[[str], None] = print) -> dict:
    """Compute (or reuse) every cell, then write results.json, results.csv, report.md and pictures."""
    workdir = pathlib.Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    store = CellStore(workdir / "cells")
    base_model = config_lib.build(config, "base_model")
    methods = expand_methods(config, log)
    readouts = {name: _readout_args(config, name) for name in config.readouts}
    steps = tuple(sorted(set(int(s) for s in config.steps)))

    datasets, status = {}, {}
    for label, entry in config.datasets.items():
        spec = DatasetSpec(**{k: (tuple(v) if isinstance(v, list) else v) for k, v in entry.to_dict().items()})
        try:
            datasets[label] = (spec, prepare_dataset(label, spec))
            status[label] = f"ok: '{datasets[label][1].dataset}'"
        except DatasetUnavailable as why:
            if spec.required:
                raise EvaluationError(f"required dataset unavailable: {why}") from None
            status[label] = f"skipped: {why}"
            log(f"metaplastic evaluate: skipping dataset '{label}': {why}")
    if not datasets:
        raise EvaluationError(f"study '{config.name}': none of its datasets is available here "
                              f"({'; '.join(f'{k}: {v}' for k, v in status.items())})")

    common = {"seed": config.seed, "base_model": config.base_model,
              "base_model_config": config.base_model_config.to_dict(), "top_width": config.top_width,
              "batch_size": config.batch_size, "feature_batch": config.feature_batch}
    units = [(d, a, s, m) for d in datasets for a in config.architectures
             for s in range(config.seeds) for m in methods]
    total = len(units) * len(steps) * len(config.shots)
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=total, desc=f"evaluate {config.name}", dynamic_ncols=True)
    records = []
    try:
        for dataset_label, arch_spec, seed, method_label in units:
            spec, data = datasets[dataset_label]
            method = methods[method_label]
            arch = _architecture(config, data.x_train.shape[1], arch_spec)
            keys = {}
            for n_steps in steps:
                for shots in config.shots:
                    keys[n_steps, shots] = {
                        **common, "method": method_label, "method_settings": method.identity(),
                        "dataset": dataclasses.asdict(spec), "dataset_used": data.dataset,
                        "arch": list(arch.widths), "input_dim": arch.input_dim, "seed_index": seed,
                        "steps": n_steps, "shots": shots, "readouts": readouts}
            done = {k: store.get(key) for k, key in keys.items()}
            pending = [k for k, result in done.items() if result is None]
            if bar is not None:
                bar.update(len(keys) - len(pending))
                bar.set_postfix_str(f"{method_label} | {dataset_label} | {arch_spec} | seed {seed}")
            if pending:
                split = seed_split(config, spec, data, seed)
                for cell, result in _compute_unit(config, method, base_model, arch, data, split, seed,
                                                  pending, readouts, keys, store):
                    done[cell] = result
                    if bar is not None:
                        bar.update(1)
            for (n_steps, shots), result in done.items():
                records.append({"method": method_label, "dataset": dataset_label,
                                "arch": f"{arch_spec[0]}x{arch_spec[1]}", "depth": arch_spec[0],
                                "width": arch_spec[1], "seed": seed, "steps": n_steps, "shots": shots,
                                "accuracy": result["accuracy"], "finite": result["finite"],
                                "filters": result.get("filters")})
    finally:
        if bar is not None:
            bar.close()
    return write_results(config, workdir, records, methods, datasets, status, store)


def _compute_unit(config, method: EvalMethod, base_model, arch, data: PreparedData, split: SeedSplit,
                  seed: int, pending, readouts, keys, store: CellStore):
    """Train `method` for one (dataset, arch, seed) and evaluate its pending cells as they come."""
    problem = TrainingProblem(arch=arch, base_model=base_model, unlabeled=split.unlabeled,
                              batch_size=config.batch_size, data_key=_key(config, seed, DATA_ORDER),
                              init_key=_key(config, seed, MODEL_INIT),
                              method_key=_key(config, seed, METHOD), num_classes=data.num_classes)
    shots_groups = ([(s,) for s in config.shots] if method.uses_labels else [tuple(config.shots)])
    for group in shots_groups:
        wanted = [k for k in pending if k[1] in group]
        if not wanted:
            continue
        run_problem = problem
        if method.uses_labels:
            index = split.few_shot[group[0]]
            run_problem = dataclasses.replace(problem, labeled_x=split.unlabeled[index],
                                              labeled_y=data.y_train[index])
        max_steps = max(k[0] for k in wanted)
        wanted_steps = tuple(sorted({k[0] for k in wanted}))
        for n_steps, model in method.train(run_problem, wanted_steps):
            filters_name = None
            weights = model.first_layer_weights()
            if seed == 0 and weights is not None and data.image_shape is not None:
                unpermuted = np.empty_like(weights)
                unpermuted[split.permutation] = weights  # row j belongs to pixel permutation[j]
                filters_name = store.put_filters(keys[n_steps, group[0]],
                                                 unpermuted[:, : config.num_filters])
            for shots in group:
                if (n_steps, shots) not in wanted:
                    continue
                index = split.few_shot[shots]
                predictions, finite = predict(model, split.unlabeled[index], data.y_train[index],
                                              split.test_x, data.num_classes, readouts,
                                              config.feature_batch)
                accuracy = {name: split.test_labels.accuracy(p) for name, p in predictions.items()}
                result = {"accuracy": accuracy, "finite": finite, "filters": filters_name}
                store.put(keys[n_steps, shots], result)
                yield (n_steps, shots), result
            if n_steps >= max_steps:
                break


def load_study(spec: str, overrides: list[str] = ()) -> ml_collections.ConfigDict:
    """`experiments/eval_x.py[:variant]` plus ['--config.a=1', ...] -> a resolved study config."""
    return resolve_study(config_lib.load_config_file(spec), config_lib.parse_overrides(list(overrides)))


def evaluate(spec: str, workdir: str | os.PathLike, overrides: list[str] = (), progress: bool = True):
    return run_study(load_study(spec, overrides), workdir, progress=progress)


# ================================================================ results, report, pictures

SUMMARY_FIELDS = ("dataset", "arch", "depth", "width", "steps", "shots", "readout", "method",
                  "mean", "se", "n", "non_finite")


def _mean_se(values) -> tuple[float, float]:
    values = np.asarray(values, np.float64)
    se = float(np.std(values, ddof=1) / math.sqrt(len(values))) if len(values) > 1 else float("nan")
    return float(np.mean(values)), se


def summarise(records: list[dict], readouts) -> list[dict]:
    """Mean ± standard error over seeds for every (dataset, arch, steps, shots, readout, method)."""
    groups: dict[tuple, list[dict]] = {}
    for r in records:
        groups.setdefault((r["dataset"], r["arch"], r["depth"], r["width"], r["steps"], r["shots"],
                           r["method"]), []).append(r)
    rows = []
    for (dataset, arch, depth, width, steps, shots, method), group in groups.items():
        for readout in readouts:
            mean, se = _mean_se([r["accuracy"][readout] for r in group])
            rows.append(dict(dataset=dataset, arch=arch, depth=depth, width=width, steps=steps,
                             shots=shots, readout=readout, method=method, mean=mean, se=se,
                             n=len(group), non_finite=sum(not r["finite"] for r in group)))
    return rows


def primary_label(config, methods) -> str:
    swept = [label for label in methods if label.startswith(config.primary_method + "@")]
    if swept:
        return max(swept, key=lambda label: int(label.rsplit("@", 1)[1]))
    return config.primary_method


def compare(records: list[dict], primary: str, readouts) -> list[dict]:
    """Primary method minus each other method, paired by seed: mean ± standard error."""
    by_cell: dict[tuple, dict[str, dict[int, dict]]] = {}
    for r in records:
        cell = (r["dataset"], r["arch"], r["steps"], r["shots"])
        by_cell.setdefault(cell, {}).setdefault(r["method"], {})[r["seed"]] = r["accuracy"]
    out = []
    for (dataset, arch, steps, shots), methods in by_cell.items():
        if primary not in methods:
            continue
        for other, accuracies in methods.items():
            if other == primary:
                continue
            seeds = sorted(set(accuracies) & set(methods[primary]))
            for readout in readouts:
                diffs = [methods[primary][s][readout] - accuracies[s][readout] for s in seeds]
                mean, se = _mean_se(diffs)
                margin = 2 * se if se == se else 0.0
                verdict = "wins" if mean > margin else "loses" if mean < -margin else "ties"
                out.append(dict(dataset=dataset, arch=arch, steps=steps, shots=shots, readout=readout,
                                baseline=other, difference=mean, se=se, n=len(seeds), verdict=verdict,
                                primary_mean=float(np.mean([methods[primary][s][readout] for s in seeds])),
                                baseline_mean=float(np.mean([accuracies[s][readout] for s in seeds]))))
    return out


def write_results(config, workdir: pathlib.Path, records, methods, datasets, status, store) -> dict:
    readouts = tuple(config.readouts)
    summary = summarise(records, readouts)
    primary = primary_label(config, methods)
    comparisons = compare(records, primary, readouts)
    descriptions = {label: method.describe() for label, method in methods.items()}
    pictures = make_pictures(config, workdir, summary, records, methods, datasets, store)
    results = {"study": config.name, "description": config.description, "primary": primary,
               "methods": descriptions, "datasets": status, "config": config.to_dict(),
               "feature_statistics": FEATURE_NOTE, "summary": summary, "comparisons": comparisons,
               "pictures": pictures,
               "cells": [{k: v for k, v in r.items() if k != "filters"} for r in records]}
    write_atomic(workdir / "results.json", json.dumps(_canonical(results), indent=1).encode())
    import io

    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=SUMMARY_FIELDS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(summary)
    write_atomic(workdir / "results.csv", text.getvalue().encode())
    write_atomic(workdir / "report.md", report_markdown(config, results).encode())
    return results


FEATURE_NOTE = ("Features use batch statistics: labelled and test examples pass through the model "
                "together (one batch of up to feature_batch examples, else test chunks each with the "
                "labelled examples).")


def _fmt(mean, se):
    return f"{mean:.3f} ± {se:.3f}" if se == se else f"{mean:.3f}"


def _varying(summary, fields):
    return [f for f in fields if len({row[f] for row in summary}) > 1]


def report_markdown(config, results) -> str:
    summary, comparisons, primary = results["summary"], results["comparisons"], results["primary"]
    lines = [f"# Evaluation: {config.name}", ""]
    if config.description:
        lines += [config.description, ""]
    lines += [f"Test accuracy, mean ± standard error over {config.seeds} seeds (each seed: its own input "
              "permutation, data order, initialisation, labelled examples and test subset). "
              f"Unsupervised batch size {config.batch_size}; representation width {config.top_width}; "
              f"readouts: {', '.join(config.readouts)} (ridge λ={config.ridge_lambda}, logistic C="
              f"{config.logistic_c} on standardised features).", "", FEATURE_NOTE, "", "## Methods", ""]
    lines += [f"- **{label}**: {text}" for label, text in results["methods"].items()]
    lines += ["", "## Datasets", ""]
    lines += [f"- **{label}**: {text}" for label, text in results["datasets"].items()]
    for title, name in results["pictures"].items():
        lines += ["", f"## {title}", "", f"![{title}]({name})"]
    lines += ["", "## Results", ""]
    columns = _varying(summary, ("arch", "steps", "shots")) or ["steps"]
    methods = list(results["methods"])
    for dataset in dict.fromkeys(row["dataset"] for row in summary):
        for readout in config.readouts:
            rows = [r for r in summary if r["dataset"] == dataset and r["readout"] == readout]
            combos = list(dict.fromkeys(tuple(r[c] for c in columns) for r in rows))
            header = [", ".join(f"{c}={v}" for c, v in zip(columns, combo)) for combo in combos]
            lines += [f"### {dataset}, {readout} readout", "",
                      "| method | " + " | ".join(header) + " |",
                      "|---" * (len(header) + 1) + "|"]
            for method in methods:
                cells = []
                for combo in combos:
                    match = [r for r in rows if r["method"] == method and tuple(r[c] for c in columns) == combo]
                    if not match:
                        cells.append("")
                        continue
                    r = match[0]
                    flag = f" ({r['non_finite']} diverged)" if r["non_finite"] else ""
                    cells.append(_fmt(r["mean"], r["se"]) + flag)
                name = f"**{method}**" if method == primary else method
                lines.append(f"| {name} | " + " | ".join(cells) + " |")
            lines.append("")
    lines += [f"## {primary} against each baseline", "",
              "Paired by seed; 'wins'/'loses' when the mean difference exceeds two standard errors.", "",
              "| baseline | wins | ties | loses |", "|---|---|---|---|"]
    for baseline in dict.fromkeys(c["baseline"] for c in comparisons):
        verdicts = [c["verdict"] for c in comparisons if c["baseline"] == baseline]
        lines.append(f"| {baseline} | {verdicts.count('wins')} | {verdicts.count('ties')} | "
                     f"{verdicts.count('loses')} |")
    losses = [c for c in comparisons if c["verdict"] == "loses"]
    lines += ["", f"### Where {primary} loses", ""]
    if not losses:
        lines.append("Nowhere by more than two standard errors.")
    for c in losses:
        lines.append(f"- to **{c['baseline']}** on {c['dataset']} ({c['arch']}, {c['steps']} steps, "
                     f"{c['shots']} shots, {c['readout']}): {c['primary_mean']:.3f} vs "
                     f"{c['baseline_mean']:.3f} (difference {_fmt(c['difference'], c['se'])})")
    return "\n".join(lines) + "\n"


def _main_value(values, preferred):
    values = sorted(set(values))
    return preferred if preferred in values else values[-1]


def make_pictures(config, workdir, summary, records, methods, datasets, store) -> dict[str, str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pictures = {}
    method_order = list(methods)
    colours = {m: plt.get_cmap("tab10")(i % 10) for i, m in enumerate(method_order)}
    readouts = tuple(config.readouts)
    main_shots = _main_value([r["shots"] for r in summary], config.main_shots)
    main_steps = max(r["steps"] for r in summary)
    archs = list(dict.fromkeys(r["arch"] for r in summary))
    main_arch = archs[0]
    dataset_order = list(dict.fromkeys(r["dataset"] for r in summary))

    def rows(**match):
        return [r for r in summary if all(r[k] == v for k, v in match.items())]

    def save(fig, name, title):
        if not fig.legends:
            fig.tight_layout()
        fig.savefig(workdir / name, dpi=110)
        plt.close(fig)
        pictures[title] = name

    if len(dataset_order) > 1:
        fig, axes = plt.subplots(1, len(readouts), figsize=(max(6, 1.6 * len(dataset_order)) * len(readouts), 4),
                                 squeeze=False)
        width = 0.8 / len(method_order)
        for ax, readout in zip(axes[0], readouts):
            for i, method in enumerate(method_order):
                values = [rows(dataset=d, method=method, readout=readout, shots=main_shots,
                               steps=main_steps, arch=main_arch) for d in dataset_order]
                means = [v[0]["mean"] if v else np.nan for v in values]
                errs = [v[0]["se"] if v else 0 for v in values]
                ax.bar(np.arange(len(dataset_order)) + (i - (len(method_order) - 1) / 2) * width, means,
                       width, yerr=errs, capsize=2, label=method, color=colours[method])
            ax.set_xticks(np.arange(len(dataset_order)), dataset_order, rotation=20)
            ax.set_ylabel("test accuracy")
            ax.set_title(f"{readout} readout, {main_shots} shots, {main_steps} steps, {main_arch}")
        handles, labels = axes[0][0].get_legend_handles_labels()
        fig.legend(handles, labels, loc="lower center", ncol=len(labels), fontsize=8)
        fig.tight_layout(rect=(0, 0.07, 1, 1))
        save(fig, "datasets.png", "Accuracy over datasets")

    def curves(field, name, title, log=True, fixed=None):
        fixed = fixed or {}
        fig, axes = plt.subplots(len(readouts), len(dataset_order),
                                 figsize=(4.5 * len(dataset_order), 3.5 * len(readouts)), squeeze=False)
        for row, readout in enumerate(readouts):
            for col, dataset in enumerate(dataset_order):
                ax = axes[row][col]
                for method in method_order:
                    points = sorted((r[field], r["mean"], r["se"]) for r in
                                    rows(dataset=dataset, method=method, readout=readout, **fixed))
                    if points:
                        x, m, s = map(np.asarray, zip(*points))
                        ax.errorbar(x, m, yerr=np.nan_to_num(s), marker="o", ms=3, capsize=2,
                                    label=method, color=colours[method])
                if log:
                    ax.set_xscale("symlog" if any(r[field] == 0 for r in summary) else "log")
                ax.set_xlabel(field)
                ax.set_ylabel("test accuracy")
                ax.set_title(f"{dataset}, {readout}", fontsize=9)
        axes[0][0].legend(fontsize=7)
        save(fig, name, title)

    if len({r["steps"] for r in summary}) > 1:
        curves("steps", "steps.png", "Accuracy over unsupervised steps",
               fixed={"shots": main_shots, "arch": main_arch})
    if len({r["shots"] for r in summary}) > 1:
        curves("shots", "shots.png", "Accuracy over labelled examples per class",
               fixed={"steps": main_steps, "arch": main_arch})
    if len(archs) > 1:
        depths = [r["depth"] for r in summary]
        widths = [r["width"] for r in summary]
        ref_width = max(set(widths), key=widths.count)
        ref_depth = max(set(depths), key=depths.count)
        fixed = {"shots": main_shots, "steps": main_steps}
        if len({r["depth"] for r in rows(width=ref_width)}) > 1:
            curves("depth", "depth.png", f"Accuracy over depth (width {ref_width})", log=False,
                   fixed={**fixed, "width": ref_width})
        if len({r["width"] for r in rows(depth=ref_depth)}) > 1:
            curves("width", "width.png", f"Accuracy over width (depth {ref_depth})",
                   fixed={**fixed, "depth": ref_depth})

    tiles = _filter_tiles(records, datasets, main_shots, main_steps, main_arch, method_order, store,
                          config.filters_dataset)
    if tiles:
        dataset, shape, rows_ = tiles
        columns = min(16, max(w.shape[1] for _, w in rows_))
        fig, axes = plt.subplots(len(rows_), columns, figsize=(0.8 * columns + 1.5, 0.85 * len(rows_) + 0.4),
                                 squeeze=False)
        for (label, weights), ax_row in zip(rows_, axes):
            for j, ax in enumerate(ax_row):
                ax.set_xticks([])
                ax.set_yticks([])
                if j < weights.shape[1]:
                    tile = weights[:, j].reshape(shape)
                    limit = np.abs(tile).max() + 1e-12
                    ax.imshow(tile, cmap="RdBu_r", vmin=-limit, vmax=limit)
            ax_row[0].set_ylabel(label, rotation=0, ha="right", va="center", fontsize=7)
        fig.suptitle(f"first-layer filters, {dataset}, {main_steps} steps, seed 0", fontsize=9)
        save(fig, "filters.png", "First-layer filters")
    return pictures


def _filter_tiles(records, datasets, shots, steps, arch, method_order, store, preferred):
    order = sorted(datasets, key=lambda label: label != preferred)
    for dataset in order:
        data = datasets[dataset][1]
        if data.image_shape is None:
            continue
        found = {r["method"]: r["filters"] for r in records
                 if r["dataset"] == dataset and r["seed"] == 0 and r["steps"] == steps
                 and r["shots"] == shots and r["arch"] == arch and r.get("filters")}
        rows = [(m, store.filters(found[m])) for m in method_order if m in found]
        if rows:
            return dataset, data.image_shape, rows
    return None
