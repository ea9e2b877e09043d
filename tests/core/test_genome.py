"""The hand-designed prior inside metz2019, genome-first training by an evolution strategy, whole-run
objectives and meta-validation."""

import csv
import functools
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from metaplastic.core import config as config_lib, evaluation
from metaplastic.core.genome import GenomeView, fitness_of, population_losses
from metaplastic.core.interfaces import Architecture
from metaplastic.core.ops.plasticity import unit_columns
from metaplastic.core.snapshot import export_snapshot, load_snapshot
from metaplastic.core.unroll import run_inner_steps
from metaplastic.plugins.meta_objectives.ridge_cosdist import RidgeCosDist
from metaplastic.plugins.update_rules.hebbian import HebbianRule
from metaplastic.plugins.update_rules.metz2019 import Metz2019Rule
from metaplastic.plugins.update_rules.simple_local import SimpleLocalRule

from helpers.genome import BASE, PRIOR_NO_NETS, SMALL, fixed_tasks


PRIOR = Metz2019Rule(base_model=BASE, prior="hebbian", **SMALL)
ARCH = Architecture(36, (16, 8))
XS = jax.random.uniform(jax.random.PRNGKey(3), (100, 32, 36))


@functools.lru_cache(maxsize=None)
def _run(rule, steps):
    """Layers after `steps` inner steps of `rule` at its θ₀ from init key 1."""
    theta = rule.init_theta(jax.random.PRNGKey(0))
    state = rule.init_inner_state(jax.random.PRNGKey(1), ARCH)
    run = jax.jit(lambda th, s: run_inner_steps(rule, th, s, lambda t: (XS[t], jax.random.PRNGKey(0)), 0, steps))
    return BASE.layers(run(theta, state).params)


@pytest.mark.parametrize("rule", [PRIOR, PRIOR_NO_NETS], ids=["nets", "no_nets"])
def test_prior_rule_at_theta0_is_the_hand_designed_rule(rule):
    hebbian = _run(HebbianRule(base_model=BASE), 100)
    ours = _run(rule, 100)
    start = BASE.layers(HebbianRule(base_model=BASE).init_inner_state(jax.random.PRNGKey(1), ARCH).params)
    for mine, theirs, first in zip(ours, hebbian, start):
        assert float(jnp.max(jnp.abs(theirs["w"] - first["w"]))) > 0.01  # 100 steps really moved W (500× the tolerance)
        np.testing.assert_allclose(mine["w"], theirs["w"], atol=2e-5)
        np.testing.assert_array_equal(mine["b"], theirs["b"])


def test_prior_rule_leaves_theta0_when_a_learned_term_is_on():
    theta = PRIOR_NO_NETS.init_theta(jax.random.PRNGKey(0))
    hebb = list(PRIOR_NO_NETS.genome_mask(theta)["forward"]["mix"]["w"]).index(True) + 1  # a hand term
    theta["forward"]["mix"]["w"] = theta["forward"]["mix"]["w"].at[hebb].set(3.0)
    state = PRIOR_NO_NETS.init_inner_state(jax.random.PRNGKey(1), ARCH)
    moved = PRIOR_NO_NETS.inner_step(theta, state, XS[0], None)
    plain = PRIOR_NO_NETS.inner_step(PRIOR_NO_NETS.init_theta(jax.random.PRNGKey(0)), state, XS[0], None)
    assert float(jnp.max(jnp.abs(BASE.layers(moved.params)[0]["w"] - BASE.layers(plain.params)[0]["w"]))) > 1e-4


def test_nets_false_ignores_everything_outside_the_genome():
    theta = PRIOR.init_theta(jax.random.PRNGKey(0))
    mask = PRIOR.genome_mask(theta)
    noisy = jax.tree.map(lambda t, m: jnp.where(m, t, t + 1.0), theta, mask)
    noisy["forward"]["mix"]["w"] = jnp.where(mask["forward"]["mix"]["w"], noisy["forward"]["mix"]["w"], 0.0)
    state = PRIOR.init_inner_state(jax.random.PRNGKey(1), ARCH)
    a = PRIOR_NO_NETS.inner_step(theta, state, XS[0], None)
    b = PRIOR_NO_NETS.inner_step(noisy, state, XS[0], None)
    jax.tree.map(np.testing.assert_array_equal, a.params, b.params)
    with_nets = PRIOR.inner_step(noisy, state, XS[0], None)  # the networks do read those leaves
    assert float(jnp.max(jnp.abs(BASE.layers(with_nets.params)[0]["b"] - BASE.layers(a.params)[0]["b"]))) > 0


def test_every_rule_starts_from_the_random_init_baselines_network():
    key = jax.random.PRNGKey(7)
    baseline = BASE.layers(BASE.init(key, ARCH))
    for rule in (Metz2019Rule(base_model=BASE, **SMALL), PRIOR, HebbianRule(base_model=BASE),
                 SimpleLocalRule(base_model=BASE)):
        start = BASE.layers(rule.init_inner_state(key, ARCH).params)
        for mine, theirs in zip(start, baseline):  # same directions (some rules rescale the columns)
            np.testing.assert_allclose(unit_columns(mine["w"]), unit_columns(theirs["w"]), atol=1e-6)
            np.testing.assert_array_equal(mine["b"], theirs["b"])


def test_evaluation_suite_scores_theta0_like_the_hand_designed_rule(tmp_path):
    config = config_lib.load_config_file("experiments/eval/datasets.py:quick")
    options = ("prior='hebbian'", "nets=False", "top_delta_size=8", "compute_h_size=8", "delta_dim=4")
    config.methods = dict(hebbian=dict(method="update_rule", rule="hebbian"),
                          prior=dict(method="update_rule", rule="metz2019", rule_options=options))
    config.primary_method = "prior"
    study = evaluation.resolve_study(config, [("seeds", "2"), ("steps", "(20,)")])
    results = evaluation.run_study(study, tmp_path, progress=False)
    by_method = {}
    for row in results["summary"]:
        by_method.setdefault(row["method"], []).append(row["mean"])
    assert len(by_method["prior"]) >= 2 and by_method["prior"] == pytest.approx(by_method["hebbian"], abs=1e-9)


def test_genome_view_round_trip_and_names():
    theta = PRIOR.init_theta(jax.random.PRNGKey(0))
    view = GenomeView(theta, PRIOR.genome_mask(theta))
    vector = view.vector(theta)
    assert view.size == vector.shape[0] == len(view.names()) == 2 + 1 + 1 + 4 + 1 + 4 + 4 + 1 + 1
    back = view.theta(vector + 1.0)
    jax.tree.map(lambda a, b, m: np.testing.assert_allclose(np.asarray(a), np.where(m, b + 1.0, b)),
                 back, theta, PRIOR.genome_mask(theta))


def test_fitness_sees_a_rule_that_falls_after_the_early_points():
    """Two genomes that agree over the first 10 steps and differ later: a fitness with a late point
    tells them apart; one with early points only does not."""
    theta = PRIOR_NO_NETS.init_theta(jax.random.PRNGKey(0))
    view = GenomeView(theta, PRIOR_NO_NETS.genome_mask(theta))
    late = view.theta(view.vector(theta))
    late["genome"]["prior_step_time"] = late["genome"]["prior_step_time"].at[3].set(400.0)  # τ = 10,000
    population = jnp.stack([view.vector(theta), view.vector(late)])
    objective = RidgeCosDist()
    early_only = population_losses(PRIOR_NO_NETS, objective, (2,), view, population, fixed_tasks((2,)))
    with_late = population_losses(PRIOR_NO_NETS, objective, (2, 40), view, population, fixed_tasks((2, 40)))
    assert abs(float(early_only[0].mean() - early_only[1].mean())) < 0.02
    fitness, finite = fitness_of(with_late)
    assert bool(jnp.all(finite)) and abs(float(fitness[1] - fitness[0])) > 0.05


TINY_GENOME = [("trainer", "genome"), ("update_rule", "metz2019"), ("update_rule_config.prior", "hebbian"),
               ("update_rule_config.nets", "False"), ("update_rule_config.top_delta_size", "8"),
               ("update_rule_config.compute_h_size", "8"), ("update_rule_config.delta_dim", "4"),
               ("genome_strategy_config.population_size", "4"), ("genome.objective_points", "(2, 6)"),
               ("validation.every", "2"), ("validation.points", "(3, 6)"), ("validation.num_tasks", "2"),
               ("validation.widths", "(16,)"), ("num_steps", "4")]


def _train(workdir, extra=()):
    from metaplastic.core.genome import train

    config = config_lib.resolve(config_lib.load_config_file("experiments/train/digits.py:tiny"),
                                TINY_GENOME + list(extra))
    return train(config, workdir, progress=False)


def _restored(workdir):
    from metaplastic.core.checkpoint import Checkpointer

    checkpointer = Checkpointer(workdir / "checkpoints")
    try:
        return checkpointer.restore_newest_intact(None)
    finally:
        checkpointer.close()


GENOME_RUN_SUMMARY = {}


@pytest.fixture(scope="module")
def genome_run(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("genome") / "run"
    GENOME_RUN_SUMMARY.update(_train(workdir))
    return workdir


def test_genome_training_resumes_bit_for_bit(genome_run, tmp_path):
    _train(tmp_path / "split", [("num_steps", "2")])
    _train(tmp_path / "split", [("num_steps", "4")] + [("allow_config_change", "True")])
    whole, split = _restored(genome_run), _restored(tmp_path / "split")
    assert whole[0] == split[0] == 4
    jax.tree.map(np.testing.assert_array_equal, whole[2]["theta"], split[2]["theta"])
    jax.tree.map(np.testing.assert_array_equal, whole[2]["opt_state"], split[2]["opt_state"])
    initial = PRIOR_NO_NETS.init_theta(jax.random.PRNGKey(0))["genome"]["log_prior_step"]
    assert float(whole[2]["theta"]["genome"]["log_prior_step"]) != float(initial)  # the genome moved


def test_genome_run_snapshots_and_continues(genome_run, tmp_path):
    meta = export_snapshot(genome_run, tmp_path / "snap.npz")
    assert meta["step"] == 4
    _, _, stored = _restored(genome_run)
    theta, opt_state, _ = load_snapshot(tmp_path / "snap.npz", stored["theta"], stored["opt_state"])
    jax.tree.map(np.testing.assert_array_equal, theta, stored["theta"])
    summary = _train(tmp_path / "more", [("num_steps", "5"), ("init_snapshot", str(tmp_path / "snap.npz"))])
    assert summary["steps"] == 5


def test_best_validated_theta_is_the_one_kept_and_exported(genome_run, tmp_path):
    from metaplastic.cli import main
    from metaplastic.core.rules import load_rule

    with (genome_run / "metrics.csv").open() as f:
        rows = [row for row in csv.DictReader(f) if row["validation_loss"] not in ("", "nan")]
    assert [int(r["step"]) for r in rows] == [0, 2, 4]
    best = min(rows, key=lambda r: float(r["validation_loss"]))
    record = json.loads((genome_run / "best" / "rule.json").read_text())["validation"]
    assert record["step"] == int(best["step"])
    assert record["validation_loss"] == pytest.approx(float(best["validation_loss"]))
    assert main(["export", str(genome_run), str(tmp_path / "out"), "--step", "best"]) == 0
    exported = load_rule(tmp_path / "out")
    jax.tree.map(np.testing.assert_array_equal, exported.theta, load_rule(genome_run / "best").theta)
    # the kept θ scores what was recorded on the same validation tasks
    from metaplastic.core.validation import Validator

    config = config_lib.resolve(config_lib.load_config_file("experiments/train/digits.py:tiny"), TINY_GENOME)
    components = config_lib.build_components(config)
    scores = Validator(config, components.rule, components.objective, tmp_path / "fresh").score(exported.theta)
    assert scores["validation_loss"] == pytest.approx(record["validation_loss"], rel=1e-5)


def test_patience_stops_a_run_that_does_not_beat_its_first_score(tmp_path, capsys):
    from metaplastic.core.trainer import train

    overrides = [(k, v) for k, v in TINY_GENOME if k not in ("trainer",)] + [
        ("update_rule_config.nets", "True"), ("optimizer.learning_rate", "0.0"), ("num_steps", "20"),
        ("validation.every", "1"), ("validation.patience", "3")]
    config = config_lib.resolve(config_lib.load_config_file("experiments/train/digits.py:tiny"), overrides)
    summary = train(config, tmp_path / "run", progress=False)
    assert summary["steps"] == 3
    assert "validation has not beaten its first score" in capsys.readouterr().out


def test_relative_change_is_the_step_measured_against_the_weights():
    theta = PRIOR_NO_NETS.init_theta(jax.random.PRNGKey(0))
    state = PRIOR_NO_NETS.init_inner_state(jax.random.PRNGKey(1), ARCH)
    moved = PRIOR_NO_NETS.inner_step(theta, state, XS[0], None)
    ratios = [np.sqrt(np.mean(np.square(np.asarray(new["w"]) - np.asarray(old["w"]))))
              / np.sqrt(np.mean(np.square(np.asarray(old["w"]))))
              for new, old in zip(BASE.layers(moved.params), BASE.layers(state.params))]
    got = float(PRIOR_NO_NETS.relative_change(theta, state, XS[0]))
    assert got == pytest.approx(float(np.mean(ratios)), rel=1e-5) and got > 1e-3


def test_train_ends_with_the_held_out_score_beside_its_start_and_random_init(genome_run):
    from metaplastic.command_line import next_evaluation
    from metaplastic.core.validation import Validator, held_out_summary

    validation = GENOME_RUN_SUMMARY["validation"]
    record = json.loads((genome_run / "best" / "rule.json").read_text())["validation"]
    assert (validation["best"], validation["best_step"]) == (pytest.approx(record["validation_loss"]), record["step"])
    assert validation["start_step"] == 0 and validation["start"] == pytest.approx(record["first_loss"])
    # random init: the untrained networks on the same meta-batches, task by task without vmap
    config = config_lib.resolve(config_lib.load_config_file("experiments/train/digits.py:tiny"), TINY_GENOME)
    components = config_lib.build_components(config)
    validator = Validator(config, components.rule, components.objective, genome_run / "elsewhere")
    losses = []
    for tasks in validator.tasks:
        for i in range(tasks.unlabelled.shape[0]):
            state = jax.tree.map(lambda a: a[i], tasks.states)
            for p in range(len(validator.points)):
                batch_a, batch_b = jax.tree.map(lambda a: a[i, p], (tasks.meta_a, tasks.meta_b))
                features = functools.partial(components.rule.features, state)
                losses.append(float(components.objective.loss(features, batch_a, batch_b)))
    assert validation["random_init"] == pytest.approx(np.mean(losses), rel=1e-5)
    line = held_out_summary(validation)
    assert f"best θ {validation['best']:.4f}" in line and f"random init {validation['random_init']:.4f}" in line
    verdict = line.rsplit(": ", 1)[1]
    assert (verdict == "better than its start and than random init") == (
        validation["best"] < validation["start"] and validation["best"] < validation["random_init"])
    command = next_evaluation(config, genome_run)
    assert "datasets.py:check" in command and f"rule_checkpoint={genome_run / 'best'}" in command
    assert "--config.steps='(6,)'" in command  # within what it was trained for: objective points (2, 6)
