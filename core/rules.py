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

A rule on disk is a directory with `rule.json` (the rule's and base model's registry names and fields,
`format_version`, the package version, `theta_sha256`, the `input_spec` it was meta-trained on, the
distribution providing each component, `update_rule_package` and `base_model_package` ({"name",
"version"}), and optionally `recommended_steps`, the inner-step default of `fit`, `run` and `apply_rule`)
and `theta.npz` (the flattened meta-parameters). `theta_sha256` is the sha256 over θ's leaf names in
sorted order, each followed by its array's byte count and bytes (C order, little-endian). A rule.json
without these fields (older exports) loads unchecked, with DEFAULT_STEPS as its step default. A rule whose
update rule or base model is not registered here, but whose rule.json names the package providing it, is
refused in one line saying what to install. A meta-training workdir is read through its `config.json`
and latest Orbax checkpoint.

The module is ~630 lines because saving, loading, checking and fitting a rule share one file format
and one set of one-line errors; split, each part would repeat them.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import importlib.metadata
import inspect
import json
import os
import pathlib
import warnings

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from metaplastic.core import config as config_lib
from metaplastic.core.data import to_unit_float
from metaplastic.core.interfaces import (Architecture, BaseModel, EvaluationError, InnerState, Pytree,
                                         UpdateRule)
from metaplastic.core.errors import UserError
from metaplastic.core.ops.files import NpzError, read_npz, save_npz_atomic, write_atomic
from metaplastic.core.unroll import rule_features, run_inner_steps

PRETRAINED_PREFIX = "pretrained:"
# the shipped rule to use: load_rule() and the release studies' learned rule (it beats glyphs-v2 in 14 of the
# release table's 15 cells, paired over seeds; README Results)
RECOMMENDED_RULE = "pretrained:genome-glyphs-v1"
FORMAT_VERSION = 1
INPUT_SPEC = {"pixels": "[0, 1]", "layout": "flattened"}
REQUIRED_KEYS = ("update_rule", "update_rule_config", "base_model", "base_model_config")
STATISTICS_ROWS = 10_000  # rows of the fitted data the population statistics are computed from
FEATURE_CHUNK = 1024      # population-statistics features: fixed-size (padded) chunks, one compilation
STATISTICS = ("population", "batch")
DEFAULT_STEPS = 1000      # inner steps of fit/run/apply_rule for a rule whose rule.json has no recommended_steps
PACKAGE_KEYS = {"update_rule": "update_rule_package", "base_model": "base_model_package"}


class RuleError(UserError, ValueError):
    """A saved rule (rule.json + theta.npz) or a rule source that cannot be loaded."""


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


def _non_finite(tree) -> int:
    return sum(int(np.size(leaf) - np.count_nonzero(np.isfinite(np.asarray(leaf)))) for leaf in jax.tree.leaves(tree))


def theta_sha256(arrays: dict[str, np.ndarray]) -> str:
    """sha256 over the sorted leaf names of θ, each followed by its byte count and bytes (C order, little-endian)."""
    digest = hashlib.sha256()
    for name in sorted(arrays):
        array = np.asarray(arrays[name])
        data = np.ascontiguousarray(array.astype(array.dtype.newbyteorder("<"), copy=False)).tobytes()
        digest.update(name.encode() + b"\0" + str(len(data)).encode() + b"\0" + data)
    return digest.hexdigest()


def theta_arrays(theta: Pytree) -> dict[str, np.ndarray]:
    leaves, _ = jax.tree_util.tree_flatten_with_path(theta)
    return {jax.tree_util.keystr(path): np.asarray(leaf) for path, leaf in leaves}


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
        bad = _non_finite(self.theta)
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

def _rule_components(rule_name: str, rule_fields: dict, model_name: str, model_fields: dict) -> UpdateRule:
    from metaplastic.registries import get_registry

    registry = get_registry()
    base_model = registry.get("base_model", model_name)(**_tuples(model_fields))
    return registry.get("update_rule", rule_name)(base_model=base_model, **_tuples(rule_fields))


def _tuples(fields: dict) -> dict:
    return {k: tuple(v) if isinstance(v, list) else v for k, v in fields.items()}


def _package_version() -> str:
    from metaplastic import __version__

    return __version__


def component_package(kind: str, name: str) -> dict | None:
    """{"name", "version"} of the distribution providing the registered component `name` of `kind`
    (None when it is not registered or not from an installed distribution, e.g. a test's plugin)."""
    from metaplastic.registries import ComponentError, get_registry
    from metaplastic.registries.registry import BUILTIN_ORIGIN

    try:
        origin = get_registry().entry(kind, name).origin
    except ComponentError:
        return None
    if origin == BUILTIN_ORIGIN:
        return {"name": "metaplastic", "version": _package_version()}
    version = _installed_version(origin)
    return None if version is None else {"name": origin, "version": version}


def _installed_version(distribution: str) -> str | None:
    try:
        return importlib.metadata.version(distribution)
    except (importlib.metadata.PackageNotFoundError, ValueError):
        return None


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
    arrays = theta_arrays(theta)
    bad = _non_finite(arrays)
    if bad:
        raise RuleError(f"θ of rule '{description['update_rule']}': non-finite ({bad} values); not saved")
    description.setdefault("input_spec", dict(INPUT_SPEC))
    for kind, key in PACKAGE_KEYS.items():
        package = component_package(kind, description[kind])
        if package is not None:
            description[key] = package
    description.update(format_version=FORMAT_VERSION, metaplastic_version=_package_version(),
                       theta_sha256=theta_sha256(arrays))
    directory = pathlib.Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    save_npz_atomic(directory / "theta.npz", arrays)
    write_atomic(directory / "rule.json", json.dumps(description, indent=2).encode())
    return directory


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


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def _read_description(path: pathlib.Path) -> dict:
    try:
        description = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise RuleError(f"{path}: invalid JSON ({error.msg} at line {error.lineno}, column {error.colno})") from None
    except (OSError, UnicodeDecodeError) as error:
        raise RuleError(f"{path}: unreadable ({_first_line(error)})") from None
    if not isinstance(description, dict):
        raise RuleError(f"{path}: expected a JSON object, got {type(description).__name__}")
    missing = [key for key in REQUIRED_KEYS if key not in description]
    if missing:
        raise RuleError(f"{path}: missing key{'s' if len(missing) > 1 else ''} {', '.join(missing)}")
    wrong = [key for key in REQUIRED_KEYS if not isinstance(description[key], dict if "config" in key else str)]
    if wrong:
        raise RuleError(f"{path}: {wrong[0]} must be a {'JSON object' if 'config' in wrong[0] else 'string'}")
    version = description.get("format_version")
    if version is not None:
        if isinstance(version, bool) or not isinstance(version, int) or version < 1:
            raise RuleError(f"{path}: format_version must be an integer ≥ 1, got {version!r}")
        if version > FORMAT_VERSION:
            raise RuleError(f"{path}: format_version {version} is newer than this metaplastic "
                             f"({_package_version()}) reads ({FORMAT_VERSION}); upgrade metaplastic")
    steps = description.get("recommended_steps")
    if steps is not None and (isinstance(steps, bool) or not isinstance(steps, int) or steps < 1):
        raise RuleError(f"{path}: recommended_steps must be an integer ≥ 1, got {steps!r}")
    for key in PACKAGE_KEYS.values():
        package = description.get(key)
        if package is not None and not (isinstance(package, dict) and isinstance(package.get("name"), str)
                                        and package["name"] and isinstance(package.get("version", ""), str)):
            raise RuleError(f"{path}: {key} must be a JSON object with a name and a version, got {package!r}")
    return description


def _refuse_missing_components(directory: pathlib.Path, description: dict) -> None:
    """A component that is not registered here but whose providing package rule.json names: one line
    saying what to install (without the record, the registry's 'unknown ...' error follows)."""
    from metaplastic.registries import get_registry

    registry = get_registry()
    for kind, key in PACKAGE_KEYS.items():
        package, name = description.get(key), description[kind]
        if package is None or name in registry.candidates[kind]:
            continue
        distribution, version = package["name"], package.get("version")
        here = _installed_version(distribution)
        if here is not None and here == version:
            continue  # the package is here and has no such component: the registry's error says so
        if here is None or not version:
            saved, command = (f" (version {version})" if version else ""), f"pip install {distribution}"
        else:
            saved = f" (version {version}; {here} is installed here and does not provide it)"
            command = f"pip install '{distribution}=={version}'"
        raise RuleError(f"rule {directory} needs {kind.replace('_', ' ')} '{name}' from package "
                        f"'{distribution}'{saved}: {command}")


def _load_directory(directory: pathlib.Path) -> LearnedRule:
    json_path, npz_path = directory / "rule.json", directory / "theta.npz"
    description = _read_description(json_path)
    _refuse_missing_components(directory, description)
    try:
        rule = _rule_components(description["update_rule"], description["update_rule_config"],
                                description["base_model"], description["base_model_config"])
    except (ValueError, TypeError, LookupError) as error:
        raise RuleError(f"{json_path}: {_first_line(error)}") from error
    if not npz_path.is_file():
        raise RuleError(f"{npz_path}: missing (a saved rule is rule.json + theta.npz)")
    try:
        arrays = read_npz(npz_path)
    except NpzError as error:
        raise RuleError(f"{npz_path}: unreadable, truncated or not an .npz ({error.reason})") from None
    expected = description.get("theta_sha256")
    if expected is not None and theta_sha256(arrays) != expected:
        raise RuleError(f"{npz_path}: sha256 {theta_sha256(arrays)[:16]}… does not match theta_sha256 "
                         f"{str(expected)[:16]}… in rule.json (θ changed or corrupted)")
    template = rule.init_theta(jax.random.PRNGKey(0))
    leaves, treedef = jax.tree_util.tree_flatten_with_path(template)
    restored = []
    for path, leaf in leaves:
        name = jax.tree_util.keystr(path)
        if name not in arrays or arrays[name].shape != leaf.shape:
            found = "missing" if name not in arrays else f"of shape {arrays[name].shape}"
            raise RuleError(f"{npz_path}: θ entry {name} {found}, rule '{description['update_rule']}' as "
                             f"configured in rule.json needs shape {tuple(leaf.shape)}")
        restored.append(jnp.asarray(arrays[name], leaf.dtype))
    theta = jax.tree_util.tree_unflatten(treedef, restored)
    bad = _non_finite(theta)
    if bad:
        raise RuleError(f"{npz_path}: θ of rule '{description['update_rule']}': non-finite ({bad} values)")
    return LearnedRule(rule, theta, description, str(directory))


# ---------------------------------------------------------------- meta-training workdirs

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
        return checkpointer.all_steps()
    finally:
        checkpointer.close()


def workdir_config(workdir: str | os.PathLike) -> ml_collections.ConfigDict:
    path = pathlib.Path(workdir) / "config.json"
    if not pathlib.Path(workdir).expanduser().exists():
        raise EvaluationError(f"rule checkpoint '{workdir}': does not exist (expected a `metaplastic train` "
                              "workdir, a rule folder or pretrained:NAME)")
    if not path.is_file():
        raise EvaluationError(f"rule checkpoint '{workdir}': no config.json (expected a `metaplastic train` workdir)")
    return ml_collections.ConfigDict(json.loads(path.read_text()))


def load_rule_from_workdir(workdir: str | os.PathLike, step: int | None = None,
                           base_model: BaseModel | None = None) -> tuple[UpdateRule, Pytree]:
    """(rule, θ) saved by `metaplastic train` in `workdir` at `step` (default: the latest that restores
    intact; damaged newer steps are said in one line on stderr and moved aside, so they are not
    used again; an explicit `step` that is damaged is an EvaluationError).

    Step 0 is the trainer's initial θ (recomputed from the config's seed). Only θ
    is restored. The rule is built from config.json, on `base_model` if given.
    """
    workdir = pathlib.Path(workdir)
    config = workdir_config(workdir)
    if base_model is None:
        base_model = config_lib.build(config, "base_model")
    rule = config_lib.build(config, "update_rule", base_model=base_model)
    if step == 0:
        from metaplastic.core.trainer import initial_theta

        return rule, initial_theta(rule, config.seed)
    from metaplastic.core.checkpoint import CheckpointError, state_digest

    checkpointer = _checkpointer(workdir)
    try:
        available = checkpointer.all_steps()
        if not available:
            raise EvaluationError(f"rule checkpoint '{workdir}': no saved steps")
        if step is None or step < 0:  # the latest: the newest step that restores intact
            try:
                step, _meta, restored = checkpointer.restore_newest_intact(None)
            except CheckpointError as error:
                raise EvaluationError(f"rule checkpoint '{workdir}': {error}") from None
        else:
            if step not in available:
                raise EvaluationError(f"rule checkpoint '{workdir}': no step {step} (saved: {available})")
            try:
                expected = checkpointer.restore_meta(step).get("state_sha256")
                restored = checkpointer.restore_raw(step)
                if expected is not None and state_digest(restored) != expected:
                    raise CheckpointError("its contents do not match the digest saved with it")
            except Exception as error:  # a truncated or flipped step fails in many ways
                why = str(error).splitlines()[0][:160] if str(error) else type(error).__name__
                raise EvaluationError(f"rule checkpoint '{workdir}': step {step} is damaged ({why}); "
                                      f"saved steps: {available}; leave the step out to use the newest "
                                      "intact one") from None
    finally:
        checkpointer.close()
    theta = jax.tree.map(jnp.asarray, restored["theta"])
    template = rule.init_theta(jax.random.PRNGKey(0))
    if jax.tree.structure(template) != jax.tree.structure(theta) or any(
            a.shape != b.shape for a, b in zip(jax.tree.leaves(template), jax.tree.leaves(theta))):
        raise EvaluationError(f"rule checkpoint '{workdir}' step {step}: θ does not match update rule "
                              f"'{config.update_rule}' as configured in its config.json")
    return rule, theta


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
        return _load_directory(path)
    if (path / "config.json").exists():
        return _load_workdir(path)
    if not path.expanduser().exists():
        raise RuleError(f"rule '{text}': does not exist (expected pretrained:NAME, a saved rule directory or "
                        "a meta-training workdir)")
    raise RuleError(f"rule '{text}': not a pretrained name (pretrained:NAME), a saved rule directory "
                     "(rule.json + theta.npz) or a meta-training workdir (config.json + checkpoints/)")

