import jax
import jax.flatten_util
import jax.numpy as jnp
import numpy as np
import pytest

from metaplastic.core.interfaces import Architecture, LabeledBatch
from metaplastic.plugins.base_models.mlp_bn import MLPBatchNorm
from metaplastic.plugins.meta_objectives.ridge_cosdist import RidgeCosDist
from metaplastic.plugins.update_rules.simple_local import SimpleLocalRule


def numpy_ridge_cosdist(u_a, y_a, u_b, y_b, lam):
    """Independent NumPy version: explicit inverse, as the reference implementation does."""
    mean = y_a.mean(0, keepdims=True)
    scale = np.sqrt(np.mean(np.sum((y_a - mean) ** 2, 1)))
    y_a, y_b = (y_a - mean) / scale, (y_b - mean) / scale
    a = np.hstack([u_a, np.ones((len(u_a), 1))])
    reg = np.diag(np.r_[np.ones(u_a.shape[1]), 0.0])
    w = np.linalg.inv(a.T @ a + lam * reg) @ a.T @ y_a
    pred = np.hstack([u_b, np.ones((len(u_b), 1))]) @ w
    pred /= np.linalg.norm(pred, axis=1, keepdims=True)
    return (np.sum((pred - y_b) ** 2) + lam * np.sum(w[:-1] ** 2)) / len(u_b)


@pytest.mark.parametrize("lam", [0.1, 3.0])
def test_matches_numpy(lam):
    rng = np.random.default_rng(0)
    u = rng.normal(size=(60, 7))
    y = np.eye(5)[np.r_[np.arange(5).repeat(6), np.arange(5).repeat(6)]]
    batch_a = LabeledBatch(jnp.asarray(u[:30], jnp.float32), jnp.asarray(y[:30], jnp.float32))
    batch_b = LabeledBatch(jnp.asarray(u[30:], jnp.float32), jnp.asarray(y[30:], jnp.float32))
    got = RidgeCosDist(ridge_lambda=lam).loss(lambda x: x, batch_a, batch_b)
    want = numpy_ridge_cosdist(u[:30], y[:30], u[30:], y[30:], lam)
    np.testing.assert_allclose(float(got), want, rtol=2e-4)


def test_features_see_both_batches_in_one_pass():
    calls = []
    batch = LabeledBatch(jnp.ones((4, 3)), jnp.eye(4))
    RidgeCosDist().loss(lambda x: calls.append(x.shape) or x, batch, batch)
    assert calls == [(8, 3)]


def test_theta_gradient_matches_finite_differences():
    """d meta-loss / d θ through 3 inner steps of a learned rule, in float64."""
    with jax.enable_x64(True):
        rule = SimpleLocalRule(base_model=MLPBatchNorm(), hidden=4, max_inner_lr=0.5)
        objective = RidgeCosDist(ridge_lambda=0.1)
        key = jax.random.PRNGKey(0)
        arch = Architecture(12, (10, 6))
        state0 = jax.tree.map(lambda x: x.astype(jnp.float64) if x.dtype == jnp.float32 else x,
                              rule.init_inner_state(key, arch))
        theta = jax.tree.map(lambda x: x.astype(jnp.float64), rule.init_theta(key))
        rng = np.random.default_rng(1)
        xs = jnp.asarray(rng.uniform(size=(3, 32, 12)))
        y = jnp.asarray(np.eye(3)[np.arange(24) % 3])
        batch_a = LabeledBatch(jnp.asarray(rng.uniform(size=(24, 12))), y)
        batch_b = LabeledBatch(jnp.asarray(rng.uniform(size=(24, 12))), y)

        def meta_loss(theta):
            state = state0
            for x in xs:
                state = rule.inner_step(theta, state, x, key)
            return objective.loss(lambda v: rule.features(state, v), batch_a, batch_b)

        meta_loss = jax.jit(meta_loss)
        flat, unravel = jax.flatten_util.ravel_pytree(theta)
        grad = jax.flatten_util.ravel_pytree(jax.grad(meta_loss)(theta))[0]
        assert float(jnp.linalg.norm(grad)) > 1e-6
        rng_dirs = np.random.default_rng(2)
        for _ in range(3):
            direction = jnp.asarray(rng_dirs.normal(size=flat.shape))
            eps = 1e-5
            numeric = (meta_loss(unravel(flat + eps * direction)) - meta_loss(unravel(flat - eps * direction))) / (2 * eps)
            np.testing.assert_allclose(float(grad @ direction), float(numeric), rtol=1e-5, atol=1e-9)
