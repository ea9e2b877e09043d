"""Hand-written backward passes of core.ops.normalise: against jax.grad of the plain forms, and by
finite differences in float64."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from metaplastic.core.ops import normalise


def _inputs(shape, seed=0):
    key_a, key_offset, key_g = jax.random.split(jax.random.PRNGKey(seed), 3)
    return (jax.random.normal(key_a, shape) * 2.0 + 0.5, 0.3 * jax.random.normal(key_offset, shape[-1:]),
            jax.random.normal(key_g, shape))


@pytest.mark.parametrize("relu", [False, True])
@pytest.mark.parametrize("shape", [(8, 5, 3), (16, 4)])
def test_batch_norm_matches_the_plain_form_and_its_autodiff(shape, relu):
    a, offset, g = _inputs(shape)
    eps = 1e-3
    plain = lambda a, o: jnp.sum(g * normalise.batch_norm_plain(a, o, eps, relu))
    fast = lambda a, o: jnp.sum(g * normalise.batch_norm(a, o, eps, relu))
    np.testing.assert_allclose(normalise.batch_norm(a, offset, eps, relu),
                               normalise.batch_norm_plain(a, offset, eps, relu), rtol=1e-6, atol=1e-6)
    for got, want in zip(jax.grad(fast, (0, 1))(a, offset), jax.grad(plain, (0, 1))(a, offset)):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("axis", [0, -1])
def test_rms_normalise_matches_the_plain_form_and_its_autodiff(axis):
    t, _, g = _inputs((6, 7, 4), seed=1)
    plain = lambda t: jnp.sum(g * normalise.rms_normalise_plain(t, axis, 1.0))
    fast = lambda t: jnp.sum(g * normalise.rms_normalise(t, axis, 1.0))
    np.testing.assert_allclose(normalise.rms_normalise(t, axis, 1.0), normalise.rms_normalise_plain(t, axis, 1.0),
                               rtol=1e-6)
    np.testing.assert_allclose(jax.grad(fast)(t), jax.grad(plain)(t), rtol=1e-4, atol=1e-6)


def _finite_difference_check(loss, args, argnum, probes=6, h=1e-6):
    """Directional derivatives of `loss` (float64) along random directions vs its gradient."""
    grad = jax.grad(loss, argnum)(*args)
    rng = np.random.default_rng(0)
    for _ in range(probes):
        direction = rng.normal(size=np.shape(args[argnum]))
        plus, minus = list(args), list(args)
        plus[argnum] = args[argnum] + h * direction
        minus[argnum] = args[argnum] - h * direction
        numeric = (loss(*plus) - loss(*minus)) / (2 * h)
        np.testing.assert_allclose(float(jnp.sum(grad * direction)), float(numeric), rtol=1e-6, atol=1e-8)


def test_hand_written_gradients_match_finite_differences():
    with jax.enable_x64(True):
        a, offset, g = (np.asarray(v, np.float64) for v in _inputs((6, 5, 3), seed=2))
        for relu in (False, True):
            loss = lambda a, o: jnp.sum(g * normalise.batch_norm(a, o, 1e-3, relu))
            _finite_difference_check(loss, (a, offset), 0)
            _finite_difference_check(loss, (a, offset), 1)
        loss = lambda t: jnp.sum(g * normalise.rms_normalise(t, 0, 1.0))
        _finite_difference_check(loss, (a,), 0)


def test_a_wrong_backward_pass_would_be_caught():
    """The comparison above can fail: a backward pass that drops the mean-of-gradient term differs."""
    a, offset, g = _inputs((8, 5, 3))
    _, rstd = normalise._batch_norm_stats(a, 1e-3)
    wrong = rstd * g
    right = jax.grad(lambda a: jnp.sum(g * normalise.batch_norm_plain(a, offset, 1e-3)))(a)
    assert float(jnp.max(jnp.abs(wrong - right))) > 1e-2
