"""The hand-designed `hebbian` rule (Sanger's generalised Hebbian algorithm) against NumPy."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from metaplastic.core.interfaces import Architecture
from metaplastic.plugins.update_rules import hebbian
from metaplastic.plugins.update_rules.hebbian import HebbianRule, sanger_update
from metaplastic.plugins.base_models.mlp_bn import MLPBatchNorm


def sanger_reference(w, x):
    """Sanger's rule unit by unit: Δw_j = Σ_b y_bj (x_b − Σ_{k≤j} y_bk w_k) / (B · mean‖x_b‖²)."""
    x = x - x.mean(axis=0)
    y = x @ w
    delta = np.zeros_like(w)
    for j in range(w.shape[1]):
        for b in range(x.shape[0]):
            residual = x[b] - sum(y[b, k] * w[:, k] for k in range(j + 1))
            delta[:, j] += y[b, j] * residual
    return delta / (x.shape[0] * np.mean(np.sum(x * x, axis=1)))


def test_update_matches_unit_by_unit_sanger():
    rng = np.random.default_rng(0)
    w = rng.normal(size=(6, 4))
    x = rng.normal(size=(9, 6)) + 3.0  # the offset must be removed by centring
    np.testing.assert_allclose(np.asarray(sanger_update(jnp.asarray(w), jnp.asarray(x))),
                               sanger_reference(w, x), rtol=1e-4, atol=1e-6)


def test_first_layer_converges_to_leading_principal_components():
    rng = np.random.default_rng(1)
    rotation, _ = np.linalg.qr(rng.normal(size=(6, 6)))
    x = (rng.normal(size=(2000, 6)) * np.sqrt([6.0, 3.0, 1.5, 0.5, 0.2, 0.1])) @ rotation.T
    rule = HebbianRule(base_model=MLPBatchNorm(), mode="sanger", learning_rate=0.3)
    state = rule.init_inner_state(jax.random.PRNGKey(0), Architecture(6, (3,)))
    data = jnp.asarray(x, jnp.float32)
    step = jax.jit(lambda s: jax.lax.fori_loop(0, 400, lambda _, s: rule.inner_step({}, s, data, None), s))
    w = np.asarray(step(state).params["layer_0"]["w"])
    eigenvalues, eigenvectors = np.linalg.eigh(np.cov(x.T))
    leading = eigenvectors[:, np.argsort(eigenvalues)[::-1][:3]]
    cosines = np.abs(np.sum(w * leading, axis=0)) / np.linalg.norm(w, axis=0)
    assert cosines.min() > 0.999, cosines  # in order: unit j -> j-th component


def test_hand_designed_rule_is_registered_with_no_learned_parameters():
    factory = hebbian.metaplastic_update_rules()["hebbian"]
    rule = factory(base_model=MLPBatchNorm())
    assert rule.init_theta(jax.random.PRNGKey(0)) == {}
    state = jax.jit(rule.init_inner_state, static_argnums=1)(jax.random.PRNGKey(1), Architecture(8, (5, 3)))
    x = jax.random.normal(jax.random.PRNGKey(2), (16, 8))
    after = jax.jit(rule.inner_step)({}, state, x, jax.random.PRNGKey(3))
    assert int(after.step) == 1
    for layer, old in zip(MLPBatchNorm().layers(after.params), MLPBatchNorm().layers(state.params)):
        np.testing.assert_allclose(np.linalg.norm(layer["w"], axis=0), 1.0, rtol=1e-5)
        np.testing.assert_array_equal(layer["b"], old["b"])  # offsets stay
        assert not np.allclose(layer["w"], old["w"])


@pytest.mark.parametrize("rate", [0.0, 1.0, -0.1])
def test_bad_learning_rate_is_one_clear_line(rate):
    with pytest.raises(ValueError, match="learning_rate"):
        HebbianRule(base_model=MLPBatchNorm(), learning_rate=rate)


def competitive_reference(x, pre, temperature):
    """Competitive Hebbian unit by unit: unit j moves toward each centred example by its softmax win."""
    centred = x - x.mean(axis=0)
    logits = pre / temperature
    wins = np.exp(logits - logits.max(axis=1, keepdims=True))
    wins /= wins.sum(axis=1, keepdims=True)
    delta = np.zeros((x.shape[1], pre.shape[1]))
    for j in range(pre.shape[1]):
        for b in range(x.shape[0]):
            delta[:, j] += wins[b, j] * centred[b]
    return delta / (x.shape[0] * np.sqrt(np.mean(np.sum(centred * centred, axis=1))))


def test_competitive_update_matches_unit_by_unit_form():
    from metaplastic.plugins.update_rules.hebbian import competitive_update

    rng = np.random.default_rng(2)
    x = rng.normal(size=(12, 7)) * 2.0 + 1.0
    pre = rng.normal(size=(12, 5))
    np.testing.assert_allclose(np.asarray(competitive_update(jnp.asarray(x), jnp.asarray(pre), 0.3)),
                               competitive_reference(x, pre, 0.3), rtol=1e-4, atol=1e-6)


def test_competitive_units_become_cluster_templates():
    """On well-separated clusters every cluster's centred mean direction is some unit's weight vector:
    the units share out the clusters instead of all learning the same one."""
    rng = np.random.default_rng(4)
    means = 3.0 * np.eye(8)[:4] + 0.5
    labels = rng.integers(4, size=(400, 128))
    batches = jnp.asarray(means[labels] + 0.3 * rng.normal(size=labels.shape + (8,)), jnp.float32)
    rule = HebbianRule(base_model=MLPBatchNorm(), mode="competitive")
    state = rule.init_inner_state(jax.random.PRNGKey(1), Architecture(8, (8,)))
    state, _ = jax.jit(lambda s, b: jax.lax.scan(lambda s, x: (rule.inner_step({}, s, x, None), None), s, b))(
        state, batches)
    w = np.asarray(state.params["layer_0"]["w"])
    directions = means - means.mean(axis=0)
    directions /= np.linalg.norm(directions, axis=1, keepdims=True)
    best = (directions @ w).max(axis=1)
    assert np.all(best > 0.9), best


@pytest.mark.parametrize("field, value", [("mode", "oja"), ("temperature", 0.0)])
def test_bad_mode_or_temperature_is_one_clear_line(field, value):
    with pytest.raises(ValueError, match=field):
        HebbianRule(base_model=MLPBatchNorm(), **{field: value})
