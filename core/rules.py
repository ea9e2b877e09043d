"""Learned rules outside meta-training: save, load, fit a base model to unlabelled data, get features.

    import metaplastic
    rule = metaplastic.load_rule("pretrained:genome-glyphs-v1")          # or a `metaplastic train` workdir
    model = rule.fit(unlabelled_array, widths=(256, 256, 32))    # steps: rule.recommended_steps
    features = model.features(unlabelled_array)

`fit` reads data as training does (integer pixels scaled by 1/255, examples flattened) and checks every
argument. `features` uses the *population* statistics of the data the model was fitted on (up to
10,000 rows of it), so an example's features do not depend on the other rows passed with it; the
per-chunk batch statistics of meta-training are `features(x, statistics="batch")`. Population
statistics need a base model with `statistics(params, x)` and `apply(params, x, statistics=)`; for one
without them whose features depend on the batch, features use batch statistics, with a warning.

A rule on disk is a folder with `rule.json` and `theta.npz` (`core.rule_files`, which also holds the
format's checks); a rule.json without `recommended_steps` has DEFAULT_STEPS as its step default. A
meta-training workdir is read through its `config.json` and latest intact checkpoint (`core.checkpoint`).
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import os
import pathlib
import warnings

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from metaplastic.core.checkpoint import checkpoint_steps, load_rule_from_workdir, workdir_config
from metaplastic.core.data import to_unit_float
from metaplastic.core.interfaces import Architecture, BaseModel, InnerState, Pytree, UpdateRule
from metaplastic.core.rule_files import (PACKAGE_KEYS, REQUIRED_KEYS, RuleError, non_finite_count, read_rule_folder,
                                         write_rule_folder)
from metaplastic.core.unroll import rule_features, run_inner_steps

PRETRAINED_PREFIX = "pretrained:"
# the shipped rule to use: load_rule() and the release studies' learned rule (it beats glyphs-v2 in 14 of the
# release table's 15 cells, paired over seeds; README Results)
RECOMMENDED_RULE = "pretrained:genome-glyphs-v1"
STATISTICS_ROWS = 10_000  # rows of the fitted data the population statistics are computed from
FEATURE_CHUNK = 1024      # population-statistics features: fixed-size (padded) chunks, one compilation
STATISTICS = ("population", "batch")
DEFAULT_STEPS = 1000      # inner steps of fit/run/apply_rule for a rule whose rule.json has no recommended_steps


# ---------------------------------------------------------------- arguments

def prepare_data(x, flatten: bool = True, input_spec: dict | None = None) -> np.ndarray:
    """Float32 examples [N, D] (or [N, ...] with flatten=False) as training reads them, or a one-line error."""
    array = np.asarray(x)
    if array.dtype.kind not in "biuf":
        raise ValueError(f"data: expected a numeric array, got dtype {array.dtype}")
    if array.ndim < 2:
        raise ValueError(f"data: expected an array [examples, ...], got shape {array.shape}")
    if array.shape[0] == 0 or array[0].size == 0:
        raise ValueError(f"data: no {'examples' if array.shape[0] == 0 else 'features'} (shape {array.shape})")
    if array.dtype.kind in "iu":
        low, high = int(array.min()), int(array.max())
        if low < 0 or high > 255:
            raise ValueError(f"data: integer values in [{low}, {high}]; integers are read as 8-bit pixels "
                             "(0-255, scaled by 1/255): pass floats in [0, 1] instead")
    array = to_unit_float(array.astype(np.float32) if array.dtype.kind == "b" else array)
    bad = array.size - int(np.count_nonzero(np.isfinite(array)))
    if bad:
        raise ValueError(f"data: {bad} non-finite values")
    if input_spec and input_spec.get("pixels") == "[0, 1]":
        low, high = float(array.min()), float(array.max())
        if low < -1e-3 or high > 1 + 1e-3:
            warnings.warn(f"data: values in [{low:.3g}, {high:.3g}]; the rule was meta-trained on pixels in "
                          "[0, 1] (input_spec in its rule.json)", stacklevel=3)
    return array.reshape(len(array), -1) if flatten else array


def _integer(name: str, value, low: int, high: int | None = None, why: str = "") -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)) \
            or value < low or (high is not None and value > high):
        expected = f"an integer ≥ {low}" if high is None else f"an integer in [{low}, {high}]"
        raise ValueError(f"{name}: expected {expected}{why}, got {value!r}")
    return int(value)


def _widths(widths) -> tuple[int, ...]:
    out = tuple(widths) if isinstance(widths, (tuple, list, np.ndarray)) else ()
    if not out or any(isinstance(w, (bool, np.bool_)) or not isinstance(w, (int, np.integer)) or w < 1
                      for w in out):
        raise ValueError(f"widths: expected a non-empty sequence of integers ≥ 1 (one per layer, top last), "
                         f"got {widths!r}")
    return tuple(int(w) for w in out)


# ---------------------------------------------------------------- features

@dataclasses.dataclass(frozen=True)
class FittedModel:
    """A base model trained by a rule; `features` uses the population `statistics` of the fitted data
    (None: the model has none; then `batch_dependent` says whether its features depend on the batch)."""

    rule: UpdateRule
    state: InnerState
    batch_size: int
    statistics: Pytree = None
    batch_dependent: bool = False

    def features(self, x, statistics: str = "population") -> np.ndarray:
        """Features [n, F]; statistics="batch": batch statistics over chunks of `batch_size` rows."""
        if statistics not in STATISTICS:
            raise ValueError(f"statistics: expected 'population' or 'batch', got {statistics!r}")
        x = prepare_data(x)
        expected = _input_dim(self.rule.base_model, self.state.params)
        if x.shape[1] != expected:
            raise ValueError(f"data: expected {expected} features per example (as fitted), got {x.shape[1]}")
        if statistics == "population" and self.statistics is not None:
            padded = np.pad(x, ((0, -len(x) % FEATURE_CHUNK), (0, 0)))  # fixed chunk shape: one compilation
            chunks = [np.asarray(_population_features(self.rule.base_model, self.state.params, self.statistics,
                                                      jnp.asarray(padded[i:i + FEATURE_CHUNK])))
                      for i in range(0, len(padded), FEATURE_CHUNK)]
            return np.concatenate(chunks)[:len(x)]
        if statistics == "population" and self.batch_dependent:
            warnings.warn(f"features: base model {type(self.rule.base_model).__name__} normalises with batch "
                          "statistics and has no statistics(params, x): features use batch statistics over "
                          f"chunks of {self.batch_size} rows", stacklevel=2)
        chunks = [np.asarray(rule_features(self.rule, self.state, jnp.asarray(x[i:i + self.batch_size])))
                  for i in range(0, len(x), self.batch_size)]
        return np.concatenate(chunks)


def _input_dim(base_model: BaseModel, params) -> int:
    return int(base_model.layers(params)[0]["w"].shape[0])


@functools.partial(jax.jit, static_argnames=("model",))
def _population_features(model, params, statistics, x):
    if "statistics" in inspect.signature(model.features).parameters:
        return model.features(params, x, statistics=statistics)
    return model.apply(params, x, statistics=statistics)[-1].post


@functools.partial(jax.jit, static_argnames=("model",))
def _statistics(model, params, x):
    return model.statistics(params, x)


def population_statistics(rule: UpdateRule, state: InnerState, data: np.ndarray, seed: int = 0
                          ) -> tuple[Pytree, bool]:
    """(the base model's statistics over up to STATISTICS_ROWS rows of `data`, or None; batch_dependent)."""
    if len(data) > STATISTICS_ROWS:
        rows = np.random.default_rng(seed).choice(len(data), STATISTICS_ROWS, replace=False)
        data = data[np.sort(rows)]
    model = rule.base_model
    statistics = jax.device_get(_statistics(model, state.params, jnp.asarray(data)))
    if statistics is not None:
        return statistics, True
    if len(data) < 4:
        return None, False
    four = np.asarray(rule_features(rule, state, jnp.asarray(data[:4])))[:2]
    two = np.asarray(rule_features(rule, state, jnp.asarray(data[:2])))
    return None, not np.allclose(four, two, rtol=1e-5, atol=1e-6)


# ---------------------------------------------------------------- rules with θ

@functools.partial(jax.jit, static_argnames=("rule", "steps", "batch_size"))
def _fit(rule, theta, state, data, key, steps, batch_size):
    if steps == 0:
        return state
    step_keys = jax.random.split(key, steps)

    def inputs_at(t):
        pick_key, rule_key = jax.random.split(step_keys[t])
        return data[jax.random.randint(pick_key, (batch_size,), 0, data.shape[0])], rule_key

    return run_inner_steps(rule, theta, state, inputs_at, 0, steps)


@dataclasses.dataclass(frozen=True, eq=False)
class LearnedRule:
    """An update rule with its meta-parameters θ, as `load_rule` returns it.

    `fit(x, widths=...)` trains a fresh base model on unlabelled data and returns a `FittedModel`
    (`.features(x)`); `run` returns the inner state only; `metaplastic.apply_rule` drives your own Flax
    MLP. Their `steps` default is `recommended_steps`. `description` is the rule.json (or the
    workdir's config); `source` is what it was loaded from.
    """

    rule: UpdateRule
    theta: Pytree
    description: dict = dataclasses.field(default_factory=dict)
    source: str = ""

    @property
    def name(self) -> str:
        return self.description.get("update_rule") or type(self.rule).__name__

    @property
    def recommended_steps(self) -> int:
        """Inner steps its rule.json recommends (the model card's advice), else DEFAULT_STEPS (1,000)."""
        return self.description.get("recommended_steps") or DEFAULT_STEPS

    def __repr__(self) -> str:
        size = sum(int(np.size(leaf)) for leaf in jax.tree.leaves(self.theta))
        package = self.description.get(PACKAGE_KEYS["update_rule"])
        origin = (f" from {package['name']} {package.get('version') or ''}".rstrip()
                  if isinstance(package, dict) and package.get("name") else "")
        model = self.description.get("base_model") or type(self.rule.base_model).__name__
        steps = self.description.get("recommended_steps")
        advice = f"recommended steps {steps}" if steps else f"steps default {DEFAULT_STEPS} (none recommended)"
        source = f"{self.source}: " if self.source else ""
        return (f"<LearnedRule {source}update rule {self.name}{origin} on {model}, "
                f"θ {size:,} values, {advice}>")

    def init(self, input_dim: int, widths: tuple[int, ...], seed: int = 0) -> InnerState:
        input_dim = _integer("input_dim", input_dim, 1)
        return self.rule.init_inner_state(jax.random.PRNGKey(_integer("seed", seed, 0)),
                                          Architecture(input_dim, _widths(widths)))

    def run(self, x, steps: int | None = None, batch_size: int = 128, seed: int = 0,
            state: InnerState | None = None, widths=(128, 128, 32)) -> InnerState:
        """φ after `steps` inner steps (default `recommended_steps`) on batches of unlabelled `x`, from
        `state` or a fresh model of `widths`."""
        return self._run(prepare_data(x, input_spec=self.description.get("input_spec")), steps, batch_size,
                         seed, state, widths)

    def _run(self, data, steps, batch_size, seed, state, widths) -> InnerState:
        steps = _integer("steps", self.recommended_steps if steps is None else steps, 0)
        batch_size = _integer("batch_size", batch_size, 1, len(data), " (at most the number of examples)")
        seed = _integer("seed", seed, 0)
        bad = non_finite_count(self.theta)
        if bad:
            raise ValueError(f"θ of rule '{self.name}': non-finite ({bad} values)")
        if state is None:
            state = self.init(data.shape[1], widths, seed)
        else:
            expected = _input_dim(self.rule.base_model, state.params)
            if data.shape[1] != expected:
                raise ValueError(f"data: expected {expected} features per example (the input dimension of "
                                 f"state), got {data.shape[1]}")
        key = jax.random.fold_in(jax.random.PRNGKey(seed), 1)
        return _fit(self.rule, self.theta, state, jnp.asarray(data), key, steps, batch_size)

    def fit(self, x, widths=(128, 128, 32), steps: int | None = None, batch_size: int = 128, seed: int = 0,
            state: InnerState | None = None) -> FittedModel:
        """Train a fresh base model (or continue `state`) on unlabelled `x` [N, ...] for `steps` inner steps.

        x: examples as training read them, flattened to [N, D]: floats in [0, 1] (pixels) or integer
        pixels 0-255 (scaled by 1/255). widths: units per layer, the top (feature) layer last; ignored
        when continuing `state`. steps: default `recommended_steps` (from rule.json, else 1,000).
        """
        data = prepare_data(x, input_spec=self.description.get("input_spec"))
        state = self._run(data, steps, batch_size, seed, state, widths)
        statistics, dependent = population_statistics(self.rule, state, data, seed)
        return FittedModel(self.rule, state, int(batch_size), statistics, dependent)


# ---------------------------------------------------------------- saved rules


def save_rule(directory: str | os.PathLike, rule: LearnedRule | dict, theta: Pytree | None = None,
              extra: dict | None = None, *, recommended_steps: int | None = None) -> pathlib.Path:
    """Save a learned rule as a rule folder that `load_rule` reads; returns the folder.

    The one writer of rule folders (`metaplastic export` and validation's `best/` use it): `theta.npz`
    (θ's leaves by path) and `rule.json`, each written atomically.

    rule: a `LearnedRule` (e.g. from `load_rule`), or the resolved config (a dict) of a meta-training
        run: it names update_rule, update_rule_config, base_model and base_model_config.
    theta: the meta-parameters to save; default the LearnedRule's own (required with a config).
    recommended_steps: the inner steps `fit`, `run` and `apply_rule` default to for this rule (the
        advice of its model card); default the LearnedRule's, else none is recorded (1,000 then).
    extra: more rule.json fields (provenance: meta_training_steps, validation, ...).

    rule.json also records format_version, metaplastic_version, theta_sha256, input_spec (the
    LearnedRule's, else pixels in [0, 1], flattened) and the distribution and version providing the
    update rule and the base model (`update_rule_package`, `base_model_package`): loading the folder
    where that package is missing says in one line what to `pip install`.
    """
    if isinstance(rule, ml_collections.ConfigDict):
        rule = rule.to_dict()
    if isinstance(rule, LearnedRule):
        missing = [key for key in REQUIRED_KEYS if key not in rule.description]
        if missing:
            raise RuleError(f"rule: its description lacks {', '.join(missing)} (a rule from load_rule has "
                            "them; or pass the meta-training config as a dict)")
        description = {key: rule.description[key] for key in REQUIRED_KEYS}
        for key in ("input_spec", "recommended_steps"):
            if rule.description.get(key) is not None:
                description[key] = rule.description[key]
        theta = rule.theta if theta is None else theta
        _check_theta_fits(rule, theta)
    elif isinstance(rule, dict) and theta is not None:
        missing = [key for key in REQUIRED_KEYS if key not in rule]
        if missing:
            raise RuleError(f"config: missing {', '.join(missing)}")
        description = {key: rule[key] for key in REQUIRED_KEYS}
    else:
        raise RuleError(f"rule: expected a LearnedRule, or a meta-training config (dict) with theta, "
                        f"got {type(rule).__name__}" + ("" if theta is not None else " without theta"))
    if recommended_steps is not None:
        if isinstance(recommended_steps, bool) or not isinstance(recommended_steps, (int, np.integer)) \
                or recommended_steps < 1:
            raise RuleError(f"recommended_steps: expected an integer ≥ 1, got {recommended_steps!r}")
        description["recommended_steps"] = int(recommended_steps)
    description.update(extra or {})
    return write_rule_folder(directory, description, theta)


def _check_theta_fits(learned: LearnedRule, theta: Pytree) -> None:
    """θ has the tree and leaf shapes of the rule's own θ, or a one-line RuleError."""
    template = learned.rule.init_theta(jax.random.PRNGKey(0))
    given = jax.tree_util.tree_flatten_with_path(theta)[0]
    expected = {jax.tree_util.keystr(path): np.shape(leaf) for path, leaf in
                jax.tree_util.tree_flatten_with_path(template)[0]}
    found = {jax.tree_util.keystr(path): np.shape(leaf) for path, leaf in given}
    for name, shape in expected.items():
        if found.get(name) != shape:
            what = "missing" if name not in found else f"of shape {found[name]}"
            raise RuleError(f"theta: entry {name} {what}; rule '{learned.name}' needs shape {shape}")
    extra = sorted(set(found) - set(expected))
    if extra:
        raise RuleError(f"theta: entry {extra[0]} is not part of rule '{learned.name}'")


def _load_workdir(workdir: pathlib.Path) -> LearnedRule:
    config = workdir_config(workdir)
    rule, theta = load_rule_from_workdir(workdir)
    return LearnedRule(rule, theta, {**config.to_dict(), "step": checkpoint_steps(workdir)[-1]}, str(workdir))


def load_rule(source: str | os.PathLike = RECOMMENDED_RULE) -> LearnedRule:
    """Load a learned rule: a shipped one (`"pretrained:genome-glyphs-v1"`, the default: the recommended
    rule; `metaplastic plugins` lists them), a rule folder (rule.json + theta.npz, from `save_rule` or `metaplastic export`), or a
    `metaplastic train` workdir (its latest intact checkpoint).

    Returns a `LearnedRule`: `.fit(x, widths=...)` trains a fresh base model, `metaplastic.apply_rule`
    your own Flax MLP; `.recommended_steps` is their inner-step default. A wrong source, a damaged
    file or a component that is not installed is a one-line error (a `UserError`).
    """
    text = str(source)
    if text.startswith(PRETRAINED_PREFIX):
        from metaplastic.registries import get_registry

        learned = get_registry().get("pretrained_rule", text[len(PRETRAINED_PREFIX):])()
        return dataclasses.replace(learned, source=text) if isinstance(learned, LearnedRule) else learned
    path = pathlib.Path(text)
    if (path / "rule.json").exists():
        return LearnedRule(*read_rule_folder(path), str(path))
    if (path / "config.json").exists():
        return _load_workdir(path)
    if not path.expanduser().exists():
        raise RuleError(f"rule '{text}': does not exist (expected pretrained:NAME, a saved rule directory or "
                        "a meta-training workdir)")
    raise RuleError(f"rule '{text}': not a pretrained name (pretrained:NAME), a saved rule directory "
                     "(rule.json + theta.npz) or a meta-training workdir (config.json + checkpoints/)")

