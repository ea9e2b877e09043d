"""The truncated unroll: the fast paths compute the same numbers as the plain ones, and trajectory
losses match a step-by-step loop.

Meta-batching (vmap over tasks + mean), rematerialisation, the trainer's own
per-task data and prefetching, and the bound on compiled shapes.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from metaplastic.core import config as config_lib
from metaplastic.core.interfaces import Architecture, LabeledBatch, TruncationData
from metaplastic.core.tasks import group_data
from metaplastic.core.trainer import KeyPurpose, MetaTrainer
from metaplastic.core.unroll import TruncatedUnroll, segment_length, trajectory_losses
from metaplastic.plugins.base_models.mlp_bn import MLPBatchNorm
from metaplastic.plugins.meta_objectives.ridge_cosdist import RidgeCosDist
from metaplastic.plugins.update_rules.simple_local import SimpleLocalRule

from helpers.arrays import as_float64
from helpers.genome import PRIOR_NO_NETS, fixed_tasks


ARCH = Architecture(12, (8, 6))
BATCH, META, CLASSES = 16, 12, 3


def _data(key, tasks: int, steps: int) -> TruncationData:
    keys = jax.random.split(key, 3)
    labels = jnp.broadcast_to(jax.nn.one_hot(jnp.arange(META) % CLASSES, CLASSES), (tasks, steps, META, CLASSES))
    batch = lambda k: LabeledBatch(jax.random.uniform(k, (tasks, steps, META, ARCH.input_dim)), labels)
    return TruncationData(jax.random.uniform(keys[0], (tasks, steps, BATCH, ARCH.input_dim)),
                          batch(keys[1]), batch(keys[2]))


def _unroll(remat=False) -> TruncatedUnroll:
    return TruncatedUnroll(SimpleLocalRule(MLPBatchNorm(), hidden=4), RidgeCosDist(), remat)


@functools.cache
def _grad_fn(unroll):
    """One jitted value-and-grad per unroll, so equal shapes compile once for all the tests here."""
    return jax.jit(jax.value_and_grad(unroll.batch_loss, has_aux=True))


def _grad(unroll, theta, states, data, key):
    return _grad_fn(unroll)(theta, states, data, key)


@pytest.fixture(scope="module")
def problem():
    unroll = _unroll()
    theta = unroll.rule.init_theta(jax.random.PRNGKey(0))
    theta["lr_logit"] = jnp.asarray(1.0)  # big enough inner steps that φ (and the loss) move
    states = unroll.init(jax.random.PRNGKey(1), ARCH, 3)
    return theta, states, _data(jax.random.PRNGKey(2), 3, 9), jax.random.PRNGKey(3)


def test_meta_batch_gradient_is_the_mean_of_per_task_gradients(problem):
    theta, states, data, key = problem
    unroll = _unroll()
    (loss, (_, losses)), grad = _grad(unroll, theta, states, data, key)
    task_keys = jax.random.split(key, 3)

    @jax.jit
    @jax.value_and_grad
    def task_loss(theta, state, task_data, task_key):  # one task alone; compiled once for all three
        return jnp.mean(unroll.unroll(theta, state, task_data, task_key)[1])

    per_task = [task_loss(theta, *jax.tree.map(lambda a: a[i], (states, data)), task_keys[i]) for i in range(3)]
    np.testing.assert_allclose(loss, np.mean([l for l, _ in per_task]), rtol=1e-5)
    np.testing.assert_allclose(losses.mean(axis=1), [l for l, _ in per_task], rtol=1e-5)
    mean_grad = jax.tree.map(lambda *g: np.mean(g, axis=0), *[g for _, g in per_task])
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-7), grad, mean_grad)
    assert max(float(jnp.abs(g).max()) for g in jax.tree.leaves(grad)) > 1e-6


def test_meta_gradient_matches_finite_differences(problem):
    # float64: in float32 a central difference of a ~1e-4 derivative is ~5 % rounding noise, and
    # XLA:CPU's rounding differs between machines (AVX2 vs AVX-512)
    with jax.enable_x64(True):
        theta, states, data = as_float64(problem[:3])
        key = problem[3]
        unroll = _unroll()
        grad = jax.jit(jax.grad(lambda t: unroll.batch_loss(t, states, data, key)[0]))(theta)
        loss = jax.jit(lambda lr: unroll.batch_loss({**theta, "lr_logit": lr}, states, data, key)[0])
        eps = 1e-4
        numeric = (loss(theta["lr_logit"] + eps) - loss(theta["lr_logit"] - eps)) / (2 * eps)
        np.testing.assert_allclose(grad["lr_logit"], numeric, rtol=1e-3, atol=1e-9)
        assert abs(float(numeric)) > 1e-4


@pytest.mark.parametrize("steps", [7, 9, 1])  # a tail segment; √K exactly; a single step
def test_remat_gives_the_same_loss_states_and_gradient(problem, steps):
    theta, states, data, key = problem
    data = jax.tree.map(lambda a: a[:, :steps], data)
    (loss, (next_states, losses)), grad = _grad(_unroll(False), theta, states, data, key)
    (loss_r, (next_r, losses_r)), grad_r = _grad(_unroll(True), theta, states, data, key)
    assert losses_r.shape == losses.shape == (3, steps)
    np.testing.assert_allclose(losses_r, losses, rtol=1e-5)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6), next_r, next_states)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-7), grad_r, grad)


def test_scan_unroll_gives_the_same_loss_states_and_gradient(problem, remat=True):
    theta, states, data, key = problem  # 9 steps: segments of 3 unrolled by 2 leave a remainder
    (loss, (next_states, losses)), grad = _grad(_unroll(remat), theta, states, data, key)
    unrolled = TruncatedUnroll(SimpleLocalRule(MLPBatchNorm(), hidden=4), RidgeCosDist(), remat, scan_unroll=2)
    (loss_u, (next_u, losses_u)), grad_u = _grad(unrolled, theta, states, data, key)
    np.testing.assert_allclose(losses_u, losses, rtol=1e-5)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6), next_u, next_states)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-7), grad_u, grad)


def test_segment_length_is_about_sqrt_k():
    assert [segment_length(k) for k in (1, 2, 9, 10, 50, 200)] == [1, 1, 3, 3, 7, 14]


def _temp_bytes(remat: bool, steps: int) -> int:
    unroll = _unroll(remat)
    theta = unroll.rule.init_theta(jax.random.PRNGKey(0))
    states = unroll.init(jax.random.PRNGKey(1), ARCH, 1)
    data = jax.eval_shape(lambda: _data(jax.random.PRNGKey(2), 1, steps))
    fn = jax.jit(jax.grad(lambda *a: unroll.batch_loss(*a)[0]))
    return fn.lower(theta, states, data, jax.random.PRNGKey(3)).compile().memory_analysis().temp_size_in_bytes


def test_remat_memory_grows_like_sqrt_k():
    plain = [_temp_bytes(False, k) for k in (16, 256)]
    remat = [_temp_bytes(True, k) for k in (16, 256)]
    exponent = lambda sizes: np.log(sizes[1] / sizes[0]) / np.log(16)  # 16× more steps
    assert exponent(plain) > 0.9   # residuals of every step kept: linear in K
    assert exponent(remat) < 0.75  # ~√K states kept (plus small per-step outputs)
    assert remat[1] < plain[1] / 4


@pytest.fixture()
def tiny_config():
    return config_lib.resolve(config_lib.load_config_file("experiments/train/digits.py:tiny"),
                              [("architecture.depths", "(1, 2)"), ("num_steps", "8")])


def test_trainer_data_equals_group_data(tiny_config, tmp_path):
    trainer = MetaTrainer(tiny_config, tmp_path)
    group = trainer._sample_group(0)
    built = trainer._build_data(group, 5)
    expected = group_data(trainer.components.family, group, trainer._key(KeyPurpose.DATA, 5), tiny_config.batch_size)
    jax.tree.map(lambda a, b: np.testing.assert_array_equal(np.asarray(a), b), built, expected)
    trainer.checkpointer.close()


def test_prefetching_changes_no_number_and_shapes_compile_once_per_bucket(tiny_config, tmp_path):
    trainer = MetaTrainer(tiny_config, tmp_path / "prefetched")
    archs, metrics = set(), []
    for _ in range(tiny_config.num_steps):
        metrics.append(trainer.train_step())
        archs.add(trainer.group.arch)
    assert len(archs) == 2  # both buckets visited (4 groups of 2 steps)
    assert len(trainer._estimate._executables) == len(archs)  # one checked executable per bucket
    assert trainer.update._cache_size() == 1

    plain = MetaTrainer(tiny_config, tmp_path / "plain")
    plain._prefetch = lambda *args: None  # build every step's data when it is needed
    plain_metrics = [plain.train_step() for _ in range(tiny_config.num_steps)]
    for got, want in zip(metrics, plain_metrics):
        assert got["meta_loss"] == want["meta_loss"] and got["depth"] == want["depth"]
    jax.tree.map(lambda a, b: np.testing.assert_array_equal(np.asarray(a), np.asarray(b)),
                 trainer.theta, plain.theta)
    for t in (trainer, plain):
        t.checkpointer.close()


def test_compilation_cache_is_written_to_the_workdir(tiny_config, tmp_path):
    off = config_lib.resolve(tiny_config, [("num_steps", "1"), ("compilation_cache", "False")])
    MetaTrainer(off, tmp_path / "off").run(progress=False)
    assert not (tmp_path / "off" / "compilation_cache").exists()

    previous = jax.config.jax_persistent_cache_min_compile_time_secs
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)
    try:  # a batch size no other test uses, so this process has not compiled these shapes yet
        on = config_lib.resolve(tiny_config, [("num_steps", "1"), ("batch_size", "12")])
        MetaTrainer(on, tmp_path / "on").run(progress=False)
    finally:
        jax.config.update("jax_persistent_cache_min_compile_time_secs", previous)
    assert any("estimate_step" in p.name for p in (tmp_path / "on" / "compilation_cache").iterdir())


def test_trajectory_losses_match_a_step_by_step_loop():
    points = (2, 5)
    tasks = fixed_tasks(points, 1)
    theta = PRIOR_NO_NETS.init_theta(jax.random.PRNGKey(0))
    one = jax.tree.map(lambda a: a[0], tasks)
    objective = RidgeCosDist()
    got = trajectory_losses(PRIOR_NO_NETS, objective, theta, one.states, one.unlabelled, one.meta_a, one.meta_b,
                            points, one.keys)
    state, expected = one.states, []
    for t in range(5):
        state = PRIOR_NO_NETS.inner_step(theta, state, one.unlabelled[t], None)
        if t + 1 in points:
            i = points.index(t + 1)
            batch = lambda b: jax.tree.map(lambda a: a[i], b)
            expected.append(objective.loss(functools.partial(PRIOR_NO_NETS.features, state),
                                           batch(one.meta_a), batch(one.meta_b)))
    np.testing.assert_allclose(got, np.asarray(expected), rtol=1e-5)
