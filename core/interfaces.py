"""The interfaces every component implements. The engine uses only these.

Shapes: B = unlabelled batch, K = inner steps in a truncation, T = tasks in a
meta-batch, D = input dimension, C = target dimension (one-hot classes padded
to a fixed size, then any regression targets), n = labelled examples in a meta
batch, F = feature width (the top layer's units). Arrays are float32 unless said.

Device side (pure, jit-able functions of pytrees):
  BaseModel        init(key, arch) -> params;  apply(params, x) -> per-layer activations
  UpdateRule       init_theta(key) -> θ;  init_inner_state(key, arch) -> φ_0;
                   inner_step(θ, φ_t, x_t, key) -> φ_{t+1}   (no labels reach it)
  MetaObjective    loss(features_fn, batch_a, batch_b) -> scalar, differentiable in θ via φ
Host side:
  TaskFamily       sample_task(key, arch) -> Task;  truncation_data(task, key, K, B) -> TruncationData
  GradientEstimator  init_state(...) / estimate(θ, state, data, key) -> (grad, state, metrics)
  GenomeStrategy   init(key, mean) / ask(key, state) / tell(key, population, fitness, state) / mean(state)
Evaluation side (core.evaluation):
  EvalMethod       train(TrainingProblem, steps) -> yields (step, FeatureModel)
  FeatureModel     features(x) -> [n, F];  first_layer_weights() -> [D, units] or None
  TrainingProblem  what a method may see: unlabelled inputs, keys, shapes (labels only if it asks)

How a component is made: each kind's hook (`registries.hookspecs`) returns {name: factory}, and
the engine calls the factory with the fields of the component's config section as keyword
arguments, plus what it supplies itself:

  kind                fields from                          the engine also passes
  base_model          config.base_model_config             -
  update_rule         config.update_rule_config            base_model= (the built BaseModel)
  meta_objective      config.meta_objective_config         -
  task_family         config.task_family_config            -
  gradient_estimator  config.gradient_estimator_config     unroll= (a core.unroll.TruncatedUnroll)
  genome_strategy     config.genome_strategy_config        -
  data_source         config.data_sources.NAME             -  (no section: factory())
  eval_method         a study's config.methods.LABEL       -  (then .resolve(study))
  pretrained_rule     -                                    -  (loader() -> core.rules.LearnedRule)

A factory parameter with a default of a config type (bool, int, float, str, None, or a tuple of
them) is a config field: filled from that default, and settable in the config file or with
`--config.<section>.<field>=value`. A parameter without a default is the engine's to pass
(`base_model=`, `unroll=`), never a config field. The usual factory is a frozen dataclass: its
fields are the config fields, and it is hashable and equal by value, which device-side components
must be (rules, base models, objectives and unrolls are static arguments of jitted functions:
equal settings share compiled code).

It is long because it is where a plugin author reads every kind's contract (what its factory
receives, shapes, dtypes, purity), so the contracts stay beside the interfaces they govern.
"""

from __future__ import annotations

import abc
import copy
import dataclasses
import functools
from typing import TYPE_CHECKING, Any, Callable, ClassVar, Iterator, NamedTuple

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np

from metaplastic.core.errors import UserError

if TYPE_CHECKING:
    import ml_collections

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
    """One layer's activity on a batch. `post` is also the next layer's input."""

    pre: Array   # [B, units] what enters the nonlinearity (mlp_bn: after normalisation and offset b)
    post: Array  # [B, units] after the nonlinearity


@flax.struct.dataclass
class InnerState:
    """φ: the base model's parameters plus whatever the rule keeps between steps.

    The carry of the inner loop (`lax.scan`, `fori_loop`), vmapped over tasks: `UpdateRule.inner_step`
    returns the tree structure, shapes and dtypes it was given.
    """

    params: Pytree      # base-model parameters, read by BaseModel.apply
    rule_state: Pytree  # rule-private state (backward weights, moments, ...); None when there is none
    step: Array         # inner steps taken so far (int32 scalar): 0 in φ_0, +1 by each inner_step


class LabeledBatch(NamedTuple):
    x: Array  # [n, D]
    y: Array  # [n, C] one-hot (zero-padded) plus regression targets


class TruncationData(NamedTuple):
    """Everything one task needs for K inner steps. Arrays lead with K (then T when batched)."""

    unlabelled: Array     # [K, B, D]   what the update rule sees
    meta_a: LabeledBatch  # [K, n, D] / [K, n, C]  fits the readout
    meta_b: LabeledBatch  # [K, n, D] / [K, n, C]  scores the readout


# ---------------------------------------------------------------- device side

class BaseModel(abc.ABC):
    """A network whose parameters an update rule changes.

    Made by `factory(**config.base_model_config)` (a frozen dataclass: it is part of the rule, a
    static jit argument). Every method is a pure, jit-able function of its arrays.

    What rules rely on:
    - `apply(params, x)`: one `LayerActivation` per dense layer, input layer first. Layer i's input
      is layer i-1's `post` (layer 0's is x itself), so a layer's presynaptic activity is
      `([x] + [a.post for a in activations[:-1]])[i]`. The last `post` is the feature u [B, F].
    - `layers(params)`: each layer's `{"w": [units_in, units_out], "b": [units_out]}`, input layer
      first, written back with `from_layers`. Rules read and write parameters only through these,
      never through a model's own layout.
    - `b` is the layer's offset as the model uses it. In `mlp_bn` (the model rules are meta-trained
      on) it comes *after* normalisation: pre = normalise(x_in @ w) + b, so b is the unit's
      threshold in units of its batch spread, and the scale of a column of w does not change `pre`
      (normalisation removes it). A Flax model adapted by `core.flax_models` gives its Dense bias,
      which comes before any normalisation.
    """

    @abc.abstractmethod
    def init(self, key: Array, arch: Architecture) -> Pytree:
        """Fresh float32 parameters for `arch` (one dense layer per entry of arch.widths)."""

    @abc.abstractmethod
    def apply(self, params: Pytree, x: Array, statistics: Pytree | None = None) -> list[LayerActivation]:
        """Per-layer activations for inputs x [B, D], input layer first; layer i reads layer i-1's
        `post` (layer 0 reads x); the last post-activation is the feature u [B, F].

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
    """UnsupervisedUpdate(φ, x; θ). `inner_step` never sees labels.

    Made by `factory(base_model=<the built BaseModel>, **config.update_rule_config)`: declare a
    `base_model: BaseModel` field without a default (the engine's to pass, never a config field;
    evaluation passes the study's base model, `apply_rule` a user's Flax model through
    `with_base_model`). Make it a frozen dataclass: the rule is a static argument of jitted functions.

    Pure and jit-able: `init_inner_state` is vmapped over task keys; `inner_step` runs inside
    `lax.scan` / `fori_loop`, vmapped over tasks, and is differentiated with respect to θ
    (`truncated_backprop`) or evaluated at perturbed θ (the ES estimators). So: JAX operations only,
    no Python side effects, no Python branches on array values, randomness only from the keys given.
    """

    base_model: BaseModel

    @abc.abstractmethod
    def init_theta(self, key: Array) -> Pytree:
        """Meta-parameters θ: a pytree of float32 arrays ({} for a rule with nothing to learn).

        Its structure, shapes and dtypes depend only on the rule's fields, never on the key or an
        architecture: one θ drives every width and depth (networks are shared by units and layers),
        and a saved θ is read into the layout of `init_theta(PRNGKey(0))`.
        """

    @abc.abstractmethod
    def init_inner_state(self, key: Array, arch: Architecture) -> InnerState:
        """φ_0 for a new task of shape `arch`:
        `InnerState(self.base_model.init(key, arch), rule_state, jnp.zeros((), jnp.int32))`.

        Initialise the base model from `key` itself (split or fold it only for the rule's own
        state): evaluation gives every method the same key, so the rule starts from the network
        random init and the baselines start from. `rule_state` keeps its shapes in every step
        (None when the rule carries nothing).
        """

    @abc.abstractmethod
    def inner_step(self, theta: Pytree, state: InnerState, x: Array, key: Array) -> InnerState:
        """φ_{t+1} from φ_t and an unlabelled batch x [B, D] float32.

        Return `InnerState(new_params, new_rule_state, state.step + 1)` with the tree structure,
        shapes and dtypes of `state`: the rule counts its steps (the engine never does), and a
        schedule may read `state.step`. Read and write parameters through `self.base_model`
        (`apply`, `layers`, `from_layers`). `key`: this step's PRNG key (a deterministic rule ignores it).
        """

    def features(self, state: InnerState, x: Array) -> Array:
        """The representation [n, F] of x [n, D] that readouts and the meta-objective see.
        Default: the base model's top post-activation."""
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
    """Scores features; lower is better. Differentiable in θ through φ.

    Made by `factory(**config.meta_objective_config)` (a frozen dataclass: a static jit argument).
    `loss` is traced inside the inner loop after every inner step, vmapped over tasks and
    differentiated: JAX operations only, no side effects.
    """

    @abc.abstractmethod
    def loss(self, features_fn: Callable[[Array], Array], batch_a: LabeledBatch,
             batch_b: LabeledBatch) -> Array:
        """Scalar float32 meta-loss: fit a readout on batch_a, score it on batch_b.

        `features_fn(x)`: features [n, F] of inputs [n, D] under the current φ. Each batch holds
        x [n, D] and y [n, C]: one-hot class labels (zero-padded to the family's `label_dim`), then
        any regression targets.
        """

    def loss_name(self) -> str:
        """What the loss measures, for people ('cosine distance'): the meta-training curve's axis reads
        'meta-loss (<loss_name>)'. '' (the default): 'meta-loss' alone."""
        return ""


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
    """Where datasets come from (TFDS, font rendering, IDX files, ...). Host side: NumPy.

    Made by `factory(**config.data_sources.<name>)`: its config fields, filled from their defaults
    (so every field has a default; a config without that section builds `factory()`). No source is
    chosen: `core.data.load_dataset` asks every registered source in turn, in name order, until
    one has the dataset, and caches the result per (dataset, split) while the settings stay the same.
    """

    @abc.abstractmethod
    def load(self, dataset: str, split: str) -> Dataset:
        """The split ("train" and "test" are what studies and task families ask for), or raise
        DatasetUnavailable with a one-line how-to-get-it when this source does not have it: the
        next source is then asked (raise it at once for names that are not yours).

        x: [N, H, W, C] images float32 in [0, 1], [N, D] float32 features, or [N] str texts;
        y: [N] integer labels 0..num_classes-1. A source that has the dataset but cannot read it
        raises another UserError (or ValueError, OSError): the run stops with one line naming the
        dataset, split and source (`core.data.BadDataset`, which also checks the arrays).
        """

    def names(self) -> tuple[str, ...]:
        """The dataset names this source knows without looking for files: a misspelt name gets the
        closest of every source's names, and a missing dataset's message keeps only the reasons of
        the sources that know its name. () (the default): its names are whatever files it finds."""
        return ()

    def display_name(self, dataset: str) -> str | None:
        """How reports and pictures name `dataset` for people ('fashion_mnist' → 'Fashion-MNIST'), a
        note on which part of it is used in parentheses after ('mnist_5k' → 'MNIST (5k subset)');
        None (the default) for a name this source does not name (shown with spaces for underscores)."""
        return None


@dataclasses.dataclass(frozen=True)
class Task:
    """One unsupervised learning problem: data, label subset, permutation, seed."""

    family: str
    dataset: str
    arch: Architecture
    seed: int
    details: tuple = ()  # family-specific, hashable (classes, permutation seed, ...)


class TaskFamily(abc.ABC):
    """A distribution over tasks sharing input and target dimensions.

    Made by `factory(**config.task_family_config)` (meta-validation builds a second one with the
    fields of `config.validation.task_family_config` replaced). Host side: NumPy, randomness only
    from the keys given (`numpy_rng(key)`), so a key always gives the same task and data.
    """

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
        """NumPy arrays for `num_steps` inner steps of `task`, randomness from `key` only.

        unlabelled [K, B, D] float32 (B = batch_size); meta_a and meta_b: x [K, n, D] and y [K, n, C]
        float32 (C = target_dim, the first label_dim columns one-hot labels). The trainer stacks the
        T tasks of a group, so n may not depend on the task.
        """


@flax.struct.dataclass
class EstimatorState:
    """What a gradient estimator carries between truncations for a meta-batch of T tasks."""

    inner: InnerState      # leading axis T
    step_in_horizon: Array  # int32, scalar (lockstep phases) or [T] (independent): inner steps since the reset
    horizon: Array          # int32, like step_in_horizon: inner steps before the next reset
    extra: Pytree = None    # estimator-private (e.g. PES accumulated perturbations); per-task leaves lead with T


class GradientEstimator(abc.ABC):
    """Turns truncated unrolls into a meta-gradient; knows nothing of the task.

    Made by `factory(unroll=<a core.unroll.TruncatedUnroll>, **config.gradient_estimator_config)`:
    built around its `unroll` (the rule, the objective and how K inner steps are unrolled), as an
    update rule is built around its base model. The estimator is hashable (a frozen dataclass), so
    the trainer can hold it static in `jax.jit`.
    """

    unroll: Any  # a core.unroll.TruncatedUnroll (which builds on these interfaces)

    @abc.abstractmethod
    def init_state(self, theta: Pytree, key: Array, arch: Architecture, num_tasks: int,
                   horizon: int) -> EstimatorState:
        """Fresh inner states for T tasks of shape `arch`."""

    @abc.abstractmethod
    def estimate(self, theta: Pytree, state: EstimatorState, data: TruncationData,
                 key: Array) -> tuple[Pytree, EstimatorState, dict]:
        """(meta-gradient, next state, metrics incl. 'meta_loss') over one truncation.

        A pure, jit-able function of its arrays: the trainer compiles `jax.jit(estimate)` ahead of
        time (`core.trainer.estimate_step`) to refuse a θ-step too big for memory before it runs.
        Checks of the state's structure or shapes may raise here; they raise when it is compiled."""


class GenomeStrategy(abc.ABC):
    """An evolution strategy over a flat genome vector [d] (`core.genome`); lower fitness is better.

    Made by `factory(**config.genome_strategy_config)` (`config.trainer="genome"`).
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
    unlabelled: np.ndarray            # [N, D] (permuted) training inputs
    batch_size: int
    data_key: jax.Array              # unlabelled batch t = unlabelled_batch(self.pool, data_key, t, B)
    init_key: jax.Array              # base-model initialisation, shared by methods
    method_key: jax.Array            # anything else the method draws
    num_classes: int
    labeled_x: np.ndarray | None = None
    labeled_y: np.ndarray | None = None

    @functools.cached_property
    def pool(self) -> UnlabelledPool:
        return UnlabelledPool.of(self.unlabelled)


class UnlabelledPool(NamedTuple):
    """Unlabelled inputs on the device, rows padded to a power of two so that datasets of
    similar size share compiled training loops; only the first `count` rows are drawn."""

    x: jax.Array      # [P, D], P >= count
    count: jax.Array  # int32 scalar

    @classmethod
    def of(cls, x: np.ndarray) -> "UnlabelledPool":
        padded = np.resize(x, (1 << max(0, len(x) - 1).bit_length(), x.shape[1]))
        return cls(jnp.asarray(padded), jnp.asarray(len(x), jnp.int32))


def unlabelled_batch(pool: UnlabelledPool, data_key: jax.Array, step, batch_size: int) -> jax.Array:
    """Unlabelled batch number `step` [B, D]: the same for every method of a seed."""
    index = jax.random.randint(jax.random.fold_in(data_key, step), (batch_size,), 0, pool.count)
    return pool.x[index]


class FeatureModel(abc.ABC):
    """A trained representation."""

    @abc.abstractmethod
    def features(self, x: np.ndarray) -> np.ndarray:
        """Features [n, F] of one batch x [n, D] (batch statistics may be used)."""

    def first_layer_weights(self) -> np.ndarray | None:
        """[D, units] input weights of the first layer, if there is such a thing."""
        return None


class EvalMethod(abc.ABC):
    """Produces a representation from a TrainingProblem. Registered via `metaplastic_eval_methods`.

    Made by `factory(**fields)` from a study's `config.methods.<label>` (every field but `method`,
    which names the factory), then `resolve(study)`. Host side; it may jit what it runs.
    """

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
