"""The `ridge_cosdist` meta-objective: against NumPy, both batches in one pass, θ's gradient by finite
differences; its targets (the regression weight, global centring) and the labels-only meta-loss
logged beside the total."""

from __future__ import annotations

import jax
import jax.flatten_util
import jax.numpy as jnp
import numpy as np
import pytest

from metaplastic.core import config as config_lib
from metaplastic.core.interfaces import Architecture, LabeledBatch
from metaplastic.core.metrics import read_metrics
from metaplastic.core.trainer import MetaTrainer
from metaplastic.plugins.base_models.mlp_bn import MLPBatchNorm
from metaplastic.plugins.meta_objectives.ridge_cosdist import RidgeCosDist
from metaplastic.plugins.task_families.image_classes import ImageClasses
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


def test_names_its_loss_for_the_meta_training_curve():
    assert RidgeCosDist().loss_name() == "cosine distance"


AUGMENTED = dict(datasets=("digits",), classes=(0, 1, 2, 3, 4), examples_per_class=3, max_classes=5,
                 max_rotation=10.0, max_noise=0.1)


def test_regression_weight_scales_only_the_regression_targets():
    arch = Architecture(64, (8,))
    plain, heavy = ImageClasses(**AUGMENTED), ImageClasses(**AUGMENTED, regression_weight=3.0)
    assert plain.label_dim == 5 and plain.target_dim == 5 + 2
    task = plain.sample_task(jax.random.PRNGKey(0), arch)
    a = plain.truncation_data(task, jax.random.PRNGKey(1), 2, 4).meta_a.y
    b = heavy.truncation_data(task, jax.random.PRNGKey(1), 2, 4).meta_a.y
    np.testing.assert_array_equal(a[..., :5], b[..., :5])
    np.testing.assert_allclose(b[..., 5:], 3.0 * a[..., 5:], rtol=1e-6)
    assert np.abs(a[..., 5:]).max() > 0
    with pytest.raises(ValueError, match="regression_weight"):
        ImageClasses(**AUGMENTED, regression_weight=-1.0)


def numpy_global_centring_loss(u_a, u_b, y_a, y_b, lam):
    """The reference's objective in float64: one scalar mean per batch, each batch its own statistics."""
    def centre(y):
        y = y - y.mean()
        return y / np.sqrt(np.mean(np.sum(y ** 2, axis=1)))
    y_a, y_b = centre(y_a), centre(y_b)
    design = np.concatenate([u_a, np.ones((len(u_a), 1))], axis=1)
    penalty = np.diag(np.r_[np.ones(u_a.shape[1]), 0.0])
    w = np.linalg.solve(design.T @ design + lam * penalty, design.T @ y_a)
    pred = u_b @ w[:-1] + w[-1]
    pred = pred / np.sqrt(np.sum(pred ** 2, axis=1, keepdims=True))
    return (np.sum((pred - y_b) ** 2) + lam * np.sum(w[:-1] ** 2)) / len(u_b)


def test_global_centring_matches_the_numpy_reference():
    rng = np.random.default_rng(0)
    features = rng.normal(size=(24, 6))
    y_a, y_b = rng.normal(size=(12, 4)) + 0.5, rng.normal(size=(12, 4)) - 0.3
    objective = RidgeCosDist(ridge_lambda=0.1, target_centring="global")
    loss = objective.loss(lambda x: x, LabeledBatch(jnp.asarray(features[:12], jnp.float32), jnp.asarray(y_a, jnp.float32)),
                          LabeledBatch(jnp.asarray(features[12:], jnp.float32), jnp.asarray(y_b, jnp.float32)))
    expected = numpy_global_centring_loss(features[:12], features[12:], y_a, y_b, 0.1)
    np.testing.assert_allclose(float(loss), expected, rtol=1e-4)
    columns = RidgeCosDist(ridge_lambda=0.1).loss(
        lambda x: x, LabeledBatch(jnp.asarray(features[:12], jnp.float32), jnp.asarray(y_a, jnp.float32)),
        LabeledBatch(jnp.asarray(features[12:], jnp.float32), jnp.asarray(y_b, jnp.float32)))
    assert abs(float(columns) - expected) > 1e-3  # the two centrings really differ
    with pytest.raises(ValueError, match="target_centring: 'rows' is not one of columns, global"):
        RidgeCosDist(target_centring="rows")


def test_labels_only_meta_loss_is_logged_beside_the_total(tmp_path):
    overrides = [("num_steps", "2"), ("task_family_config.max_rotation", "10.0"),
                 ("task_family_config.max_noise", "0.1")]
    config = config_lib.resolve(config_lib.load_config_file("experiments/train/digits.py:tiny"), overrides)
    MetaTrainer(config, tmp_path).run(progress=False)
    rows = read_metrics(tmp_path)
    assert all(np.isfinite(r["meta_loss_labels"]) and r["meta_loss_labels"] != r["meta_loss_last"] for r in rows)
    plain = config_lib.resolve(config_lib.load_config_file("experiments/train/digits.py:tiny"), [("num_steps", "1")])
    MetaTrainer(plain, tmp_path / "plain").run(progress=False)
    assert "meta_loss_labels" not in read_metrics(tmp_path / "plain")[0]  # labels are all the targets
