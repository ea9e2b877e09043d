"""The meta-optimiser (`core.optimizer.make_optimizer`): its defaults are today's chain bit for bit, and
per-parameter clipping, Adam's eps and the genome learning rate act as NumPy's arithmetic says."""

import flax.serialization
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from metaplastic.core import config as config_lib
from metaplastic.core.config import ConfigError
from metaplastic.core.optimizer import make_optimizer
from metaplastic.core.trainer import MetaTrainer
from metaplastic.experiments.train import default

B1, B2 = 0.9, 0.999


def optimizer_config(**fields):
    config = default.get_config()
    config.optimizer.update(fields)
    return config


def steps(optimizer, theta, grads):
    """The updates of successive steps from a fresh state, as NumPy trees."""
    state, out = optimizer.init(theta), []
    for grad in grads:
        updates, state = optimizer.update(grad, state, theta)
        out.append(jax.tree.map(np.asarray, updates))
    return out


def numpy_adam(grads, rates, eps):
    """Adam's updates in float64 NumPy (no clipping): -rate·m̂/(√v̂ + eps) per step."""
    m = v = 0.0
    out = []
    for t, g in enumerate(grads, start=1):
        g = np.asarray(g, np.float64)
        m, v = B1 * m + (1 - B1) * g, B2 * v + (1 - B2) * g * g
        out.append(-rates * (m / (1 - B1 ** t)) / (np.sqrt(v / (1 - B2 ** t)) + eps))
    return out


def state_paths(state):
    flat = jax.tree_util.tree_flatten_with_path(flax.serialization.to_state_dict(state))[0]
    return [(jax.tree_util.keystr(path), np.shape(leaf)) for path, leaf in flat]


THETA = {"a": jnp.zeros(3), "b": jnp.zeros((2, 2))}
rng = np.random.default_rng(0)
GRADS = [jax.tree.map(lambda x: jnp.asarray(rng.normal(0, 0.02, x.shape), jnp.float32), THETA) for _ in range(3)]


def test_defaults_are_global_norm_clipping_then_adam_bit_for_bit():
    config = default.get_config()
    assert (config.optimizer.eps, config.optimizer.clip_per_parameter, config.optimizer.genome_learning_rate) \
        == (1e-8, 0.0, 0.0)
    reference = optax.chain(optax.clip_by_global_norm(1.0), optax.adam(3e-3))
    ours, theirs = steps(make_optimizer(config), THETA, GRADS), steps(reference, THETA, GRADS)
    for a, b in zip(jax.tree.leaves(ours), jax.tree.leaves(theirs)):
        np.testing.assert_array_equal(a, b)
    # and that chain is Adam: the gradients' global norms are < 1, so clipping does not engage
    expected = numpy_adam([GRADS[t]["a"] for t in range(3)], 3e-3, 1e-8)
    for t in range(3):
        np.testing.assert_allclose(ours[t]["a"], expected[t], rtol=1e-4)


def test_state_layout_is_the_same_whatever_is_switched_on():
    """A snapshot of a default run continues with per-parameter clipping and a genome learning rate."""
    mask = jax.tree.map(lambda x: np.ones(x.shape, bool), THETA)
    default_paths = state_paths(make_optimizer(default.get_config()).init(THETA))
    on = make_optimizer(optimizer_config(clip_per_parameter=0.1, genome_learning_rate=0.1), genome_mask=mask)
    assert state_paths(on.init(THETA)) == default_paths
    assert any("mu" in path for path, _ in default_paths)


def test_per_parameter_clipping_clips_each_element_before_adam():
    theta = {"w": jnp.zeros(4)}
    second = {"w": jnp.asarray([-0.1, 1e-3, 1e-3, 1e-3])}
    big = [{"w": jnp.asarray([5.0, 1e-3, -1e-3, 2e-3])}, second]
    clipped = [{"w": jnp.asarray([0.1, 1e-3, -1e-3, 2e-3])}, second]
    config = optimizer_config(clip_norm=100.0, clip_per_parameter=0.1)  # global norm clipping stays off
    ours = [u["w"] for u in steps(make_optimizer(config), theta, big)]
    same = [u["w"] for u in steps(make_optimizer(config), theta, clipped)]
    np.testing.assert_array_equal(ours[1], same[1])
    # the second step tells a clipped first gradient (0.1) from an unclipped one (5.0): after 0.1 then -0.1
    # Adam's momentum points down (θ[0] rises), after 5.0 then -0.1 it still points up
    expected = numpy_adam([g["w"] for g in clipped], 3e-3, 1e-8)
    unclipped = numpy_adam([g["w"] for g in big], 3e-3, 1e-8)
    np.testing.assert_allclose(ours[1], expected[1], rtol=1e-4)
    assert ours[1][0] > 0 and unclipped[1][0] < 0
    off = [u["w"] for u in steps(make_optimizer(optimizer_config(clip_norm=100.0)), theta, big)]
    np.testing.assert_allclose(off[1], unclipped[1], rtol=1e-4)


def test_eps_is_adams_eps():
    theta = {"w": jnp.zeros(3)}
    grad = np.asarray([1e-5, -2e-5, 3e-6], np.float32)
    lr, eps = 1e-3, 1e-4
    update = steps(make_optimizer(optimizer_config(learning_rate=lr, eps=eps)), theta, [{"w": jnp.asarray(grad)}])
    expected = -lr * grad / (np.abs(grad) + eps)  # Adam's first step: m̂ = g, √v̂ = |g|
    np.testing.assert_allclose(update[0]["w"], expected, rtol=1e-4)
    assert np.all(np.abs(update[0]["w"]) < 0.25 * lr)  # not the sign-like step of eps = 1e-8
    sign_like = steps(make_optimizer(optimizer_config(learning_rate=lr)), theta, [{"w": jnp.asarray(grad)}])
    np.testing.assert_allclose(sign_like[0]["w"], -lr * grad / (np.abs(grad) + 1e-8), rtol=1e-4)
    assert np.all(np.abs(sign_like[0]["w"]) > 0.99 * lr)


def test_genome_elements_get_the_genome_learning_rate():
    mask = {"a": np.asarray([True, False, True]), "b": np.zeros((2, 2), bool)}
    lr, genome_lr = 1e-3, 1e-1
    optimizer = make_optimizer(optimizer_config(learning_rate=lr, genome_learning_rate=genome_lr), genome_mask=mask)
    ours = steps(optimizer, THETA, GRADS)
    for name in THETA:
        rates = np.where(mask[name], genome_lr, lr)
        np.testing.assert_allclose(ours[0][name], -rates * np.sign(GRADS[0][name]), rtol=1e-4)  # first step: ≈ sign
        expected = numpy_adam([g[name] for g in GRADS], rates, 1e-8)
        for t in range(3):
            np.testing.assert_allclose(ours[t][name], expected[t], rtol=1e-4)
    # no genome element: exactly the default optimiser
    none = {"a": np.zeros(3, bool), "b": np.zeros((2, 2), bool)}
    plain = steps(make_optimizer(optimizer_config(learning_rate=lr)), THETA, GRADS)
    same = steps(make_optimizer(optimizer_config(learning_rate=lr, genome_learning_rate=genome_lr), genome_mask=none),
                 THETA, GRADS)
    for a, b in zip(jax.tree.leaves(plain), jax.tree.leaves(same)):
        np.testing.assert_array_equal(a, b)


def test_genome_learning_rate_without_a_mask_is_refused():
    with pytest.raises(ValueError, match="config.optimizer.genome_learning_rate"):
        make_optimizer(optimizer_config(genome_learning_rate=0.1))


def test_trainer_gives_the_rules_genome_its_learning_rate(tmp_path):
    base = config_lib.load_config_file("experiments/train/digits.py:tiny")
    config = config_lib.resolve(base, [("update_rule", "metz2019"), ("optimizer.learning_rate", "1e-4"),
                                       ("optimizer.genome_learning_rate", "0.1")])
    trainer = MetaTrainer(config, tmp_path)
    mask = trainer.components.rule.genome_mask(trainer.theta)
    assert any(m.any() for m in jax.tree.leaves(mask)) and not all(m.all() for m in jax.tree.leaves(mask))
    grad = jax.tree.map(lambda x: jnp.full(x.shape, 1e-4, x.dtype), trainer.theta)
    theta, _, ok, _ = trainer.update(trainer.theta, trainer.opt_state, grad, jnp.float32(0.0))
    assert bool(ok)
    moved = jax.tree.map(lambda new, old: np.asarray(old) - np.asarray(new), theta, trainer.theta)
    for step, genome in zip(jax.tree.leaves(moved), jax.tree.leaves(mask)):
        np.testing.assert_allclose(step, np.where(genome, 0.1, 1e-4), rtol=1e-2)


@pytest.mark.parametrize("field, value, message", [
    ("optimizer.eps", "0", "config.optimizer.eps: must be > 0, got 0"),
    ("optimizer.clip_per_parameter", "-1", "config.optimizer.clip_per_parameter: must be >= 0, got -1"),
    ("optimizer.genome_learning_rate", "-0.1", "config.optimizer.genome_learning_rate: must be >= 0, got -0.1"),
])
def test_optimizer_fields_are_validated(field, value, message):
    base = config_lib.load_config_file("experiments/train/digits.py")
    with pytest.raises(ConfigError) as error:
        config_lib.resolve(base, [(field, value)])
    assert str(error.value).startswith(message) and "\n" not in str(error.value)
