"""The interfaces every component implements. The engine uses only these.

Shapes: B = unlabelled batch, K = inner steps in a truncation, T = tasks in a
meta-batch, D = input dimension, C = target dimension (one-hot classes padded
to a fixed size, then any regression targets).

Device side (pure, jit-able functions of pytrees):
  BaseModel        init(key, arch) -> params;  apply(params, x) -> per-layer activations
  UpdateRule       init_theta(key) -> θ;  init_inner_state(key, arch) -> φ_0;
                   inner_step(θ, φ_t, x_t, key) -> φ_{t+1}   (no labels reach it)
  MetaObjective    loss(features_fn, batch_a, batch_b) -> scalar, differentiable in θ via φ
Host side:
  TaskFamily       sample_task(key, arch) -> Task;  truncation_data(task, key, K) -> TruncationData
  GradientEstimator  init_state(...) / estimate(θ, state, data, key) -> (grad, state, metrics)
  GenomeStrategy   init(key, mean) / ask(key, state) / tell(key, population, fitness, state) / mean(state)
Evaluation side (core.evaluation):
  EvalMethod       train(TrainingProblem, steps) -> yields (step, FeatureModel)
  FeatureModel     features(x) -> [n, F];  first_layer_weights() -> [D, units] or None
  TrainingProblem  what a method may see: unlabelled inputs, keys, shapes (labels only if it asks)
"""

from __future__ import annotations

import abc
import copy
import dataclasses
import functools
from typing import TYPE_CHECKING, Any, Callable, ClassVar, Iterator, NamedTuple

import flax.struct
import jax
import numpy as np

from metaplastic.core.errors import UserError

if TYPE_CHECKING:
    import ml_collections

    from metaplastic.core.evaluation.data import UnlabeledPool
    from metaplastic.core.unroll import TruncatedUnroll

Pytree = Any
Array = jax.Array


# ---------------------------------------------------------------- data types

@dataclasses.dataclass(frozen=True)
class Architecture:
    """Static shape of a base model: input dimension and layer widths (top last)."""

    input_dim: int
    widths: tuple[int, ...]

    def __post_init__(self):
        if self.input_dim < 1 or not self.widths or min(self.widths) < 1:
            raise ValueError(f"bad architecture: input_dim={self.input_dim}, widths={self.widths}")


class LayerActivation(NamedTuple):
    pre: Array   # [B, units] before the nonlinearity (after normalisation and offset)
    post: Array  # [B, units] after the nonlinearity


@flax.struct.dataclass
class InnerState:
    """φ: the base model's parameters plus whatever the rule keeps between steps."""

    params: Pytree      # base-model parameters, read by BaseModel.apply
    rule_state: Pytree  # rule-private state (backward weights, moments, ...)
    step: Array         # inner steps taken so far (int32 scalar)


class LabeledBatch(NamedTuple):
    x: Array  # [n, D]
    y: Array  # [n, C] one-hot (zero-padded) plus regression targets


class TruncationData(NamedTuple):
    """Everything one task needs for K inner steps. Arrays lead with K (then T when batched)."""

    unlabeled: Array     # [K, B, D]   what the update rule sees
    meta_a: LabeledBatch  # [K, n, D] / [K, n, C]  fits the readout
    meta_b: LabeledBatch  # [K, n, D] / [K, n, C]  scores the readout


# ---------------------------------------------------------------- device side

class BaseModel(abc.ABC):
    """A network whose parameters an update rule changes.

    What rules need: per-layer activations (`apply`), and each dense layer's weights as
    `{"w": [units_in, units_out], "b": [units_out]}` (`layers`), written back with `from_layers`.
    Rules read and write parameters only through these, never through a model's own layout.
    """

    @abc.abstractmethod
    def init(self, key: Array, arch: Architecture) -> Pytree:
        """Fresh parameters for `arch`."""

    @abc.abstractmethod
    def apply(self, params: Pytree, x: Array, statistics: Pytree | None = None) -> list[LayerActivation]:
        """Per-layer activations for inputs x [B, D]; the last post-activation is the feature u.

        `statistics`: fixed normalisation statistics from `statistics(params, data)` instead of the
        batch's (only models whose `statistics` returns something need to accept it).
        """

    @abc.abstractmethod
    def layers(self, params: Pytree) -> list[dict]:
        """Each layer's {"w": [units_in, units_out], "b": [units_out]}, input layer first."""

    @abc.abstractmethod
    def from_layers(self, params: Pytree, layers: list[dict]) -> Pytree:
        """`params` with every layer's "w" and "b" replaced by `layers` (as `layers` returns them)."""

    def statistics(self, params: Pytree, x: Array) -> Pytree | None:
        """Normalisation statistics of data x [N, D] for `apply(..., statistics=)`; None: the model has none."""
        return None

    def features(self, params: Pytree, x: Array, statistics: Pytree | None = None) -> Array:
        if statistics is None:
            return self.apply(params, x)[-1].post
        return self.apply(params, x, statistics=statistics)[-1].post

    def first_layer_weights(self, params: Pytree) -> Array:
        """[D, units] input weights of the first layer (the filter pictures)."""
        return self.layers(params)[0]["w"]

    def init_weight_std(self) -> float:
        """The standard deviation of this model's initial weights (a Python float).

        Rules that draw weights of their own beside the model's (metz2019's backward weights V)
        draw them at this scale. Default 0.01; override when `init` uses another scale.
        """
        return 0.01


class UpdateRule(abc.ABC):
    """UnsupervisedUpdate(φ, x; θ). `inner_step` never sees labels."""

    base_model: BaseModel

    @abc.abstractmethod
    def init_theta(self, key: Array) -> Pytree:
        """Meta-parameters θ. Must not depend on any architecture."""

    @abc.abstractmethod
    def init_inner_state(self, key: Array, arch: Architecture) -> InnerState:
        """φ_0 for a new task."""

    @abc.abstractmethod
    def inner_step(self, theta: Pytree, state: InnerState, x: Array, key: Array) -> InnerState:
        """φ_{t+1} from φ_t and an unlabelled batch x [B, D]."""

    def features(self, state: InnerState, x: Array) -> Array:
        return self.base_model.features(state.params, x)

    def genome_mask(self, theta: Pytree) -> Pytree:
        """Which elements of θ are the rule's *genome*: bool arrays shaped like θ's leaves.

        The genome is the few scalars a rule uses without its networks (mix weights, step sizes,
        temperatures); genome-first training (`core.genome`) searches only these, and the
        optimiser may give them their own learning rate. Default: every element.
        """
        return jax.tree.map(lambda leaf: np.ones(np.shape(leaf), bool), theta)

    def with_base_model(self, base_model: BaseModel) -> "UpdateRule":
        """This rule with every setting kept, driving `base_model` instead (`apply_rule` puts a
        loaded rule on a user's Flax module this way).

        Default: `dataclasses.replace(self, base_model=base_model)` for a dataclass with a
        `base_model` field (its `__post_init__` checks run again), else a shallow copy with
        `base_model` set. Override when the rule derives anything else from its base model.
        """
        if dataclasses.is_dataclass(self) and any(f.name == "base_model" and f.init
                                                  for f in dataclasses.fields(self)):
            return dataclasses.replace(self, base_model=base_model)
        rule = copy.copy(self)
        object.__setattr__(rule, "base_model", base_model)  # also for frozen classes
        return rule


class MetaObjective(abc.ABC):
    """Scores features; lower is better. Differentiable in θ through φ."""

    @abc.abstractmethod
    def loss(self, features_fn: Callable[[Array], Array], batch_a: LabeledBatch,
             batch_b: LabeledBatch) -> Array:
        """Scalar meta-loss: fit a readout on batch_a, score it on batch_b."""


# ---------------------------------------------------------------- host side

class DatasetUnavailable(UserError, LookupError):
    """A data source does not have this dataset here; the message says how to get it."""


class EvaluationError(UserError, ValueError):
    """A study, dataset, method or checkpoint cannot be evaluated as configured."""


@dataclasses.dataclass(frozen=True, eq=False)
class Dataset:
    """A labelled dataset split in host memory (NumPy)."""

    name: str
    x: np.ndarray   # [N, H, W, C] float32 images in [0, 1], [N, D] float32 features, or [N] str texts
    y: np.ndarray   # [N] int class labels
    num_classes: int
    source: str = ""


class DataSource(abc.ABC):
    """Where datasets come from (TFDS, font rendering, IDX files, ...)."""

    @abc.abstractmethod
    def load(self, dataset: str, split: str) -> Dataset:
        """The split, or raise DatasetUnavailable with a one-line how-to-get-it."""


@dataclasses.dataclass(frozen=True)
class Task:
    """One unsupervised learning problem: data, label subset, permutation, seed."""

    family: str
    dataset: str
    arch: Architecture
    seed: int
    details: tuple = ()  # family-specific, hashable (classes, permutation seed, ...)


class TaskFamily(abc.ABC):
    """A distribution over tasks sharing input and target dimensions."""

    input_dim: int
    target_dim: int

    @property
    def label_dim(self) -> int:
        """Leading target columns that are class labels (the rest are regression targets)."""
        return self.target_dim

    @abc.abstractmethod
    def sample_task(self, key: Array, arch: Architecture) -> Task:
        """A task for base models of shape `arch` (arch.input_dim == self.input_dim)."""

    @abc.abstractmethod
    def truncation_data(self, task: Task, key: Array, num_steps: int, batch_size: int) -> TruncationData:
        """NumPy arrays for `num_steps` inner steps of `task`, randomness from `key` only."""


@flax.struct.dataclass
class EstimatorState:
    """What a gradient estimator carries between truncations for a meta-batch of T tasks."""

    inner: InnerState      # leading axis T
    step_in_horizon: Array  # int32, scalar (lockstep phases) or [T] (independent): inner steps since the reset
    horizon: Array          # int32, like step_in_horizon: inner steps before the next reset
    extra: Pytree = None    # estimator-private (e.g. PES accumulated perturbations); per-task leaves lead with T


class GradientEstimator(abc.ABC):
    """Turns truncated unrolls into a meta-gradient; knows nothing of the task.

    Built around its `unroll` (a `core.unroll.TruncatedUnroll`: the rule, the objective and how
    K inner steps are unrolled), as an update rule is built around its base model.
    """

    unroll: "TruncatedUnroll"

    @abc.abstractmethod
    def init_state(self, theta: Pytree, key: Array, arch: Architecture, num_tasks: int,
                   horizon: int) -> EstimatorState:
        """Fresh inner states for T tasks of shape `arch`."""

    @abc.abstractmethod
    def estimate(self, theta: Pytree, state: EstimatorState, data: TruncationData,
                 key: Array) -> tuple[Pytree, EstimatorState, dict]:
        """(meta-gradient, next state, metrics incl. 'meta_loss') over one truncation."""


class GenomeStrategy(abc.ABC):
    """An evolution strategy over a flat genome vector [d] (`core.genome`); lower fitness is better.

    Pure, jit-able functions of the strategy's state (a pytree, checkpointed as the trainer's
    optimiser state); randomness only from the keys given.
    """

    population_size: int

    @abc.abstractmethod
    def init(self, key: Array, mean: Array) -> Pytree:
        """The state of a search centred on `mean` [d]."""

    @abc.abstractmethod
    def ask(self, key: Array, state: Pytree) -> tuple[Array, Pytree]:
        """(population [population_size, d], state to pass to `tell`)."""

    @abc.abstractmethod
    def tell(self, key: Array, population: Array, fitness: Array, state: Pytree) -> tuple[Pytree, dict]:
        """(next state, scalar metrics) from the population's fitness [population_size]."""

    @abc.abstractmethod
    def mean(self, state: Pytree) -> Array:
        """The search's current best guess [d] (θ's genome between generations)."""


# ---------------------------------------------------------------- evaluation side

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
    def pool(self) -> "UnlabeledPool":
        from metaplastic.core.evaluation.data import UnlabeledPool  # lazy: no evaluation import here

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

    def resolve(self, study: "ml_collections.ConfigDict") -> "EvalMethod":
        """This method with study-level settings filled in (e.g. the rule checkpoint)."""
        return self

    def identity(self) -> dict[str, Any]:
        """JSON-able settings that determine results (part of every cell's cache key)."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)} \
            if dataclasses.is_dataclass(self) else {}

    def describe(self) -> str:
        return type(self).__name__

    def has_checkpoints(self) -> bool:
        """Whether this method comes from a meta-training run whose saved steps `at_checkpoint_steps`
        can sweep (`config.checkpoint_sweep`). Default False."""
        return False

    def at_checkpoint_steps(self) -> Iterator[tuple[int, "EvalMethod"]]:
        """(meta-training step, this method as of that step) for each saved step, ascending.

        Only methods whose `has_checkpoints()` is True need to implement it; the default raises
        EvaluationError.
        """
        raise EvaluationError(f"{self.describe()}: no meta-training checkpoints to sweep")

    @abc.abstractmethod
    def train(self, problem: TrainingProblem, steps: tuple[int, ...]) -> Iterator[tuple[int, FeatureModel]]:
        """Yield (step, model) for each step count in ascending `steps`."""


def numpy_rng(key: Array) -> np.random.Generator:
    """A NumPy generator seeded from a JAX key: host randomness from explicit keys only."""
    return np.random.default_rng(np.asarray(jax.random.key_data(key)).ravel().tolist())
