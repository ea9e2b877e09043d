"""Learned rules outside meta-training: save, load, fit a base model to unlabelled data, get features.

    import metaplastic
    rule = metaplastic.load_rule("pretrained:glyphs-v2")          # or a `metaplastic train` workdir
    model = rule.fit(unlabelled_array, widths=(256, 256, 32), steps=1000)
    features = model.features(unlabelled_array)

A rule on disk is a directory with `rule.json` (the rule's and base model's registry names and fields)
and `theta.npz` (the flattened meta-parameters). A meta-training workdir is read through its
`config.json` and latest Orbax checkpoint.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import pathlib

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from metaplastic.core import config as config_lib
from metaplastic.core.interfaces import (Architecture, BaseModel, EvaluationError, InnerState, Pytree,
                                         UpdateRule)
from metaplastic.core.ops.files import save_npz_atomic, write_atomic

PRETRAINED_PREFIX = "pretrained:"


@dataclasses.dataclass(frozen=True)
class FittedModel:
    """A base model trained by a rule; `features` uses batch statistics over chunks of `batch_size`."""

    rule: UpdateRule
    state: InnerState
    batch_size: int

    def features(self, x: np.ndarray) -> np.ndarray:
        x = _flatten(x)
        chunks = [np.asarray(_features(self.rule, self.state, jnp.asarray(x[i:i + self.batch_size])))
                  for i in range(0, len(x), self.batch_size)]
        return np.concatenate(chunks)


@functools.partial(jax.jit, static_argnames=("rule",))
def _features(rule, state, x):
    return rule.features(state, x)


@functools.partial(jax.jit, static_argnames=("rule", "steps", "batch_size"))
def _fit(rule, theta, state, data, key, steps, batch_size):
    def step(state, step_key):
        pick_key, rule_key = jax.random.split(step_key)
        index = jax.random.randint(pick_key, (batch_size,), 0, data.shape[0])
        return rule.inner_step(theta, state, data[index], rule_key), None

    state, _ = jax.lax.scan(step, state, jax.random.split(key, steps))
    return state


def _flatten(x) -> np.ndarray:
    x = np.asarray(x, np.float32)
    if x.ndim < 2:
        raise ValueError(f"data: expected an array [examples, ...], got shape {x.shape}")
    return x.reshape(len(x), -1)


@dataclasses.dataclass(frozen=True, eq=False)
class LearnedRule:
    """An update rule with its meta-parameters θ."""

    rule: UpdateRule
    theta: Pytree
    description: dict = dataclasses.field(default_factory=dict)

    def init(self, input_dim: int, widths: tuple[int, ...], seed: int = 0) -> InnerState:
        return self.rule.init_inner_state(jax.random.PRNGKey(seed), Architecture(input_dim, tuple(widths)))

    def fit(self, x, widths=(128, 128, 32), steps: int = 1000, batch_size: int = 128, seed: int = 0,
            state: InnerState | None = None) -> FittedModel:
        """Train a fresh base model (or continue `state`) on unlabelled `x` for `steps` inner steps."""
        data = _flatten(x)
        if len(data) < batch_size:
            raise ValueError(f"data: {len(data)} examples, fewer than batch_size={batch_size}")
        if state is None:
            state = self.init(data.shape[1], tuple(widths), seed)
        key = jax.random.fold_in(jax.random.PRNGKey(seed), 1)
        state = _fit(self.rule, self.theta, state, jnp.asarray(data), key, int(steps), int(batch_size))
        return FittedModel(self.rule, state, batch_size)


def _rule_components(rule_name: str, rule_fields: dict, model_name: str, model_fields: dict) -> UpdateRule:
    from metaplastic.registries import get_registry

    registry = get_registry()
    base_model = registry.get("base_model", model_name)(**_tuples(model_fields))
    return registry.get("update_rule", rule_name)(base_model=base_model, **_tuples(rule_fields))


def _tuples(fields: dict) -> dict:
    return {k: tuple(v) if isinstance(v, list) else v for k, v in fields.items()}


def save_rule(directory: str | pathlib.Path, config: dict, theta: Pytree, extra: dict | None = None) -> None:
    """Write `rule.json` + `theta.npz` for the rule described by a resolved config dict (atomically)."""
    directory = pathlib.Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    description = {key: config[key] for key in
                   ("update_rule", "update_rule_config", "base_model", "base_model_config")}
    description.update(extra or {})
    leaves, _ = jax.tree_util.tree_flatten_with_path(theta)
    arrays = {jax.tree_util.keystr(path): np.asarray(leaf) for path, leaf in leaves}
    save_npz_atomic(directory / "theta.npz", arrays)
    write_atomic(directory / "rule.json", json.dumps(description, indent=2).encode())


def _load_directory(directory: pathlib.Path) -> LearnedRule:
    description = json.loads((directory / "rule.json").read_text())
    rule = _rule_components(description["update_rule"], description["update_rule_config"],
                            description["base_model"], description["base_model_config"])
    template = rule.init_theta(jax.random.PRNGKey(0))
    with np.load(directory / "theta.npz") as stored:
        arrays = dict(stored)
    leaves, treedef = jax.tree_util.tree_flatten_with_path(template)
    restored = []
    for path, leaf in leaves:
        name = jax.tree_util.keystr(path)
        if name not in arrays or arrays[name].shape != leaf.shape:
            raise ValueError(f"{directory}: θ entry {name} missing or of the wrong shape for rule "
                             f"'{description['update_rule']}'")
        restored.append(jnp.asarray(arrays[name], leaf.dtype))
    return LearnedRule(rule, jax.tree_util.tree_unflatten(treedef, restored), description)


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
    if not path.is_file():
        raise EvaluationError(f"rule checkpoint '{workdir}': no config.json (expected a `metaplastic train` workdir)")
    return ml_collections.ConfigDict(json.loads(path.read_text()))


def load_rule_from_workdir(workdir: str | os.PathLike, step: int | None = None,
                           base_model: BaseModel | None = None) -> tuple[UpdateRule, Pytree]:
    """(rule, θ) saved by `metaplastic train` in `workdir` at `step` (default: the latest).

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
    checkpointer = _checkpointer(workdir)
    try:
        available = checkpointer.all_steps()
        if not available:
            raise EvaluationError(f"rule checkpoint '{workdir}': no saved steps")
        step = available[-1] if step is None or step < 0 else step
        if step not in available:
            raise EvaluationError(f"rule checkpoint '{workdir}': no step {step} (saved: {available})")
        restored = checkpointer.restore_raw(step)
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
    return LearnedRule(rule, theta, {**config.to_dict(), "step": checkpoint_steps(workdir)[-1]})


def load_rule(source: str | pathlib.Path) -> LearnedRule:
    """A shipped rule (`pretrained:NAME`), a saved rule directory, or a meta-training workdir."""
    text = str(source)
    if text.startswith(PRETRAINED_PREFIX):
        from metaplastic.registries import get_registry

        return get_registry().get("pretrained_rule", text[len(PRETRAINED_PREFIX):])()
    path = pathlib.Path(text)
    if (path / "rule.json").exists():
        return _load_directory(path)
    if (path / "config.json").exists():
        return _load_workdir(path)
    raise ValueError(f"rule '{text}': not a pretrained name (pretrained:NAME), a saved rule directory "
                     "(rule.json + theta.npz) or a meta-training workdir (config.json + checkpoints/)")

