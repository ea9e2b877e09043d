"""The evaluation engine (`run_study`): label hygiene, resumable cells and shards, checkpoint loading
and sweeps, the `evaluate` command against every baseline, text and filter studies."""

from __future__ import annotations

import dataclasses
import inspect
import json
import os
import pathlib
import re
import signal

import jax
import numpy as np
import pytest

from metaplastic import cli
from metaplastic.core import checkpoint, evaluation
from metaplastic.core.config import ConfigError, load_config_file, resolve
from metaplastic.core.evaluation import runner
from metaplastic.registries import hookimpl, registry as registry_module

from helpers.evaluation import EXPERIMENTS, tiny_study


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A `metaplastic train` workdir saved by the trainer at steps 2, 4, 6 (θ moved by hand between
    saves instead of by meta-training, to keep the test fast); returns it, θ at 6 and θ at 0."""
    from metaplastic.core.trainer import MetaTrainer

    workdir = tmp_path_factory.mktemp("meta") / "run"
    config = resolve(load_config_file(str(EXPERIMENTS / "train" / "digits.py") + ":tiny"),
                     [("num_steps", "0")])
    trainer = MetaTrainer(config, workdir)
    initial = jax.tree.map(np.asarray, trainer.theta)
    trainer.run(progress=False)  # writes config.json
    trainer.checkpointer = type(trainer.checkpointer)(workdir / "checkpoints", keep=config.checkpoint_keep)
    for step in (2, 4, 6):
        key = jax.random.PRNGKey(step)
        trainer.theta = jax.tree.map(lambda t: t + 0.1 * jax.random.normal(key, t.shape), trainer.theta)
        trainer.step = step
        trainer.save()
    trainer.checkpointer.close()
    return workdir, jax.tree.map(np.asarray, trainer.theta), initial


def test_load_rule_from_workdir_restores_the_trainers_theta(trained):
    workdir, final, initial = trained
    rule, theta = checkpoint.load_rule_from_workdir(workdir)
    assert type(rule).__name__ == "SimpleLocalRule"
    assert jax.tree.structure(theta) == jax.tree.structure(final)
    for got, want in zip(jax.tree.leaves(theta), jax.tree.leaves(final)):
        assert isinstance(got, jax.Array)
        np.testing.assert_array_equal(got, want)
    assert not all(np.array_equal(a, b) for a, b in zip(jax.tree.leaves(final), jax.tree.leaves(initial)))
    _, theta0 = checkpoint.load_rule_from_workdir(workdir, step=0)
    for got, want in zip(jax.tree.leaves(theta0), jax.tree.leaves(initial)):
        np.testing.assert_array_equal(got, want)
    assert checkpoint.checkpoint_steps(workdir) == [2, 4, 6]
    with pytest.raises(evaluation.EvaluationError, match="no step 3"):
        checkpoint.load_rule_from_workdir(workdir, step=3)
    with pytest.raises(evaluation.EvaluationError, match="config.json"):
        checkpoint.load_rule_from_workdir(workdir / "checkpoints")


def test_readouts_and_methods_never_receive_test_labels():
    assert list(inspect.signature(evaluation.predict).parameters) == [
        "model", "labeled_x", "labeled_y", "test_x", "num_classes", "readouts", "feature_batch"]
    fields = {f.name for f in dataclasses.fields(evaluation.TrainingProblem)}
    assert not any("test" in name for name in fields)
    labels = evaluation.ScoringLabels(np.array([0, 1, 1]))
    assert labels.accuracy(np.array([0, 1, 0])) == pytest.approx(2 / 3) and labels.reads == 1
    assert not [name for name in vars(labels) if not name.startswith("_") and name != "reads"]


def test_shuffling_test_labels_changes_scores_but_not_predictions(tmp_path, monkeypatch):
    recorded = {False: [], True: []}
    original_accuracy = evaluation.ScoringLabels.accuracy
    original_prepare = evaluation.prepare_dataset
    poisoned = [False]

    def prepare(label, spec):
        data = original_prepare(label, spec)
        if poisoned[0]:
            shuffled = np.random.default_rng(0).permutation(data.y_test)
            data = dataclasses.replace(data, y_test=shuffled)
        return data

    def accuracy(self, predictions):
        recorded[poisoned[0]].append(np.array(predictions))
        return original_accuracy(self, predictions)

    monkeypatch.setattr(runner, "prepare_dataset", prepare)  # where run_study looks it up
    monkeypatch.setattr(evaluation.ScoringLabels, "accuracy", accuracy)
    study = tiny_study(seeds=1, methods=dict(learned=dict(method="update_rule", rule="hebbian"),
                                             raw_input=dict(method="raw_input"),
                                             supervised=dict(method="supervised")))
    clean = evaluation.run_study(study, tmp_path / "clean", progress=False)
    poisoned[0] = True
    dirty = evaluation.run_study(study, tmp_path / "dirty", progress=False)
    assert len(recorded[False]) == len(recorded[True]) == 2 * 3 * 2  # shots · methods · readouts
    for a, b in zip(recorded[False], recorded[True]):
        np.testing.assert_array_equal(a, b)
    assert [r["mean"] for r in clean["summary"]] != [r["mean"] for r in dirty["summary"]]


class _FlakyPlugin:
    """An eval method that can be told to fail at its n-th training run."""

    calls = 0
    fail_at = None
    terminate_at = None  # the training run at which the process gets SIGTERM

    @hookimpl
    def metaplastic_eval_methods(self):
        return {"flaky": Flaky, "mean_image": MeanImage}


@dataclasses.dataclass(frozen=True)
class Flaky(evaluation.EvalMethod):
    def train(self, problem, steps):
        _FlakyPlugin.calls += 1
        if _FlakyPlugin.calls == _FlakyPlugin.fail_at:
            raise KeyboardInterrupt
        if _FlakyPlugin.calls == _FlakyPlugin.terminate_at:
            os.kill(os.getpid(), signal.SIGTERM)  # the study's handler: stop after this cell
        projection = np.asarray(jax.random.normal(problem.init_key, (problem.unlabelled.shape[1], 5)))

        class Projected(evaluation.FeatureModel):
            def features(self, x):
                return np.maximum(x @ projection, 0.0)

        for step in steps:
            yield step, Projected()


@dataclasses.dataclass(frozen=True)
class MeanImage(evaluation.EvalMethod):
    """'First-layer weights' = the mean of the (permuted) unlabelled inputs."""

    def train(self, problem, steps):
        mean = problem.unlabelled.mean(axis=0)

        class Model(evaluation.FeatureModel):
            def features(self, x):
                return x

            def first_layer_weights(self):
                return np.stack([mean, -mean], axis=1)

        for step in steps:
            yield step, Model()


@pytest.fixture
def test_plugins(monkeypatch):
    monkeypatch.setattr(registry_module, "_REGISTRY", registry_module.Registry(extra_plugins=(_FlakyPlugin(),)))
    _FlakyPlugin.calls, _FlakyPlugin.fail_at, _FlakyPlugin.terminate_at = 0, None, None
    yield _FlakyPlugin


def test_interrupted_study_resumes_without_redoing_finished_cells(tmp_path, test_plugins):
    study = tiny_study(seeds=3, primary_method="flaky", steps=(1, 2),
                       methods=dict(flaky=dict(method="flaky"), raw_input=dict(method="raw_input")))
    uninterrupted = evaluation.run_study(study, tmp_path / "whole", progress=False)
    assert test_plugins.calls == 3
    test_plugins.calls, test_plugins.fail_at = 0, 2
    with pytest.raises(KeyboardInterrupt):
        evaluation.run_study(study, tmp_path / "split", progress=False)
    cells = tmp_path / "split" / "cells"
    assert len(list(cells.glob("*.json"))) == 4 + 4  # flaky seed 0 and raw_input seed 0: 2 steps × 2 shots
    assert not list(cells.glob(".tmp-*"))
    test_plugins.calls, test_plugins.fail_at = 0, None
    resumed = evaluation.run_study(study, tmp_path / "split", progress=False)
    assert test_plugins.calls == 2  # seeds 1 and 2 only
    assert resumed["summary"] == uninterrupted["summary"]
    test_plugins.calls = 0
    again = evaluation.run_study(study, tmp_path / "split", progress=False)
    assert test_plugins.calls == 0 and again["summary"] == uninterrupted["summary"]


def test_sigterm_stops_a_study_after_the_cell_and_the_progress_lines_say_where(tmp_path, test_plugins, capsys):
    study = tiny_study(seeds=3, primary_method="flaky", steps=(1, 2),
                       methods=dict(flaky=dict(method="flaky"), raw_input=dict(method="raw_input")))
    test_plugins.terminate_at = 2  # during seed 1's flaky run, after seed 0's 8 cells
    stopped = evaluation.run_study(study, tmp_path, progress="lines")
    out = capsys.readouterr().out
    assert stopped == {"stopped": "SIGTERM", "cells_done": 9, "cells_total": 24}
    assert "evaluate tiny: 24 of 24 cells to compute (0 cached in " in out
    assert "metaplastic: SIGTERM: stopping after cell 9 of 24, then keeping it" in out
    assert re.search(r"\] evaluate tiny: cell 1/24 \(4\.2%\), .* \| flaky \| digits_5_9 \| \(1, 16\) \| seed 0", out)
    assert not (tmp_path / "report.md").exists()
    assert len(list((tmp_path / "cells").glob("*.json"))) == 9
    test_plugins.terminate_at = None
    results = evaluation.run_study(study, tmp_path, progress="lines")
    out = capsys.readouterr().out
    assert len(results["cells"]) == 24 and "evaluate tiny: 15 of 24 cells to compute (9 cached in " in out
    assert "cell 24/24 (100.0%)" in out
    evaluation.run_study(study, tmp_path, progress="lines")
    assert "evaluate tiny: already complete: 24 of 24 cells" in capsys.readouterr().out


def test_shards_share_the_cell_cache_and_the_whole_run_reports_the_same(tmp_path, test_plugins):
    whole = evaluation.run_study(tiny_study(seeds=3, primary_method="flaky", steps=(1, 2),
                                            methods=dict(flaky=dict(method="flaky"),
                                                         raw_input=dict(method="raw_input"))),
                                 tmp_path / "whole", progress=False)
    test_plugins.calls = 0
    for shard in (dict(only_seeds=(0, 2)), dict(only_seeds=(1,), only_methods=("flaky",)),
                  dict(only_seeds=(1,), only_datasets=("digits_5_9",), only_methods=("raw_input",))):
        study = tiny_study(seeds=3, primary_method="flaky", steps=(1, 2), **shard,
                           methods=dict(flaky=dict(method="flaky"), raw_input=dict(method="raw_input")))
        result = evaluation.run_study(study, tmp_path / "sharded", progress=False)
        assert result["shard"] and not (tmp_path / "sharded" / "report.md").exists()
    assert test_plugins.calls == 3  # each seed of the rule trained once, in its shard
    assert len({r["seed"] for r in result["cells"]}) == 1 and {r["method"] for r in result["cells"]} == {"raw_input"}
    test_plugins.calls = 0
    merged = evaluation.run_study(tiny_study(seeds=3, primary_method="flaky", steps=(1, 2),
                                             methods=dict(flaky=dict(method="flaky"),
                                                          raw_input=dict(method="raw_input"))),
                                  tmp_path / "sharded", progress=False)
    assert test_plugins.calls == 0 and merged["summary"] == whole["summary"]
    assert (tmp_path / "sharded" / "report.md").exists()


@pytest.mark.parametrize("shard, message", [
    (dict(only_seeds=(3,)), "config.only_seeds: [3] not among the study's seed indices 0-2"),
    (dict(only_datasets=("mnist",)), "config.only_datasets: ['mnist'] not in config.datasets (digits_5_9)"),
    (dict(only_methods=("vae",)), "config.only_methods: ['vae'] not in config.methods"),
])
def test_a_shard_outside_the_study_is_one_line(shard, message):
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]").replace("(", r"\(")
                       .replace(")", r"\)")):
        tiny_study(seeds=3, **shard)


def write_tiny_reviews(folder: pathlib.Path) -> None:
    """A small text corpus in the `npz` source's layout, named like TFDS's IMDB reviews."""
    rng = np.random.default_rng(0)
    good, bad = ["great", "superb", "moving", "fun", "brilliant"], ["awful", "boring", "dull", "weak", "mess"]
    filler = ["film", "plot", "actor", "scene", "story", "music", "camera", "ending"]
    for split, count in (("train", 240), ("test", 120)):
        labels = rng.integers(2, size=count)
        texts = [" ".join(rng.choice(filler, 6).tolist() + rng.choice(good if y else bad, 4).tolist())
                 for y in labels]
        np.savez(folder / f"imdb_reviews_{split}.npz", x=np.asarray(texts), y=labels)


@pytest.fixture
def tiny_reviews(tmp_path, monkeypatch):
    from metaplastic.core import data as core_data
    from metaplastic.core import text as imdb_bow

    def clear():
        core_data.load_dataset.cache_clear()
        for cached in (imdb_bow.vocabulary, imdb_bow.bag_of_words, imdb_bow.word_counts):
            cached.cache_clear()

    for env, sub in (("METAPLASTIC_CACHE_DIR", "cache"), ("METAPLASTIC_NPZ_DIR", "npz")):
        (tmp_path / sub).mkdir()
        monkeypatch.setenv(env, str(tmp_path / sub))
    write_tiny_reviews(tmp_path / "npz")
    clear()
    yield tmp_path
    clear()


def test_text_study_runs_on_a_tiny_review_corpus(tiny_reviews):
    config = load_config_file(str(EXPERIMENTS / "eval" / "imdb.py") + ":quick")
    config.methods = {k: config.methods[k] for k in ("learned", "raw_input")}
    study = evaluation.resolve_study(config, [("seeds", "1"), ("shots", "(5,)"), ("main_shots", "5")])
    results = evaluation.run_study(study, tiny_reviews / "out", progress=False)
    assert results["datasets"]["imdb"] == "ok: 'imdb_bow'"
    raw = [r["mean"] for r in results["summary"] if r["method"] == "raw_input"]
    assert min(raw) > 0.9  # the words separate the classes, so the right labels reach the readout
    assert "steps.png" in (tiny_reviews / "out" / "report.md").read_text()


def test_filters_are_drawn_in_pixel_order(tmp_path, test_plugins):
    study = tiny_study(seeds=1, shots=(1,), main_shots=1, primary_method="mean_image",
                       methods=dict(mean_image=dict(method="mean_image")))
    results = evaluation.run_study(study, tmp_path, progress=False)
    stored = [json.loads(p.read_text())["filters"] for p in (tmp_path / "cells").glob("*.json")]
    weights = np.load(tmp_path / "cells" / stored[0])
    spec = evaluation.DatasetSpec(**study.datasets.digits_5_9.to_dict())
    data = evaluation.prepare_dataset("digits_5_9", spec)
    np.testing.assert_allclose(weights[:, 0], data.x_train.mean(axis=0), rtol=1e-6)
    np.testing.assert_allclose(weights[:, 1], -data.x_train.mean(axis=0), rtol=1e-6)
    assert spec.permute_inputs and results["pictures"]["First-layer filters"] == "filters.png"


def test_text_study_without_its_dataset_stops_with_one_line(tmp_path, capsys):
    code = cli.main(["evaluate", "--config", str(EXPERIMENTS / "eval" / "imdb.py") + ":quick",
                     "--workdir", str(tmp_path), "--no-progress",
                     "--config.datasets.imdb.dataset=no_such_corpus", "--config.datasets.imdb.alternatives=()"])
    err = capsys.readouterr().err
    assert code == 2 and "no_such_corpus" in err and "unavailable" in err
    assert len(err.strip().splitlines()) == 1


def test_evaluate_command_compares_a_trained_rule_with_every_baseline(tmp_path, trained, capsys):
    workdir, _, _ = trained
    code = cli.main(["evaluate", "--config", str(EXPERIMENTS / "eval" / "datasets.py") + ":quick",
                     "--workdir", str(tmp_path), "--no-progress", f"--config.rule_checkpoint={workdir}",
                     "--config.datasets.digits_0_4_train.max_test=40", "--config.shots=(2,)",
                     "--config.main_shots=2"])
    assert code == 0, capsys.readouterr().err
    results = json.loads((tmp_path / "results.json").read_text())
    methods = {"learned", "hebbian", "random_init", "raw_input", "supervised", "vae"}
    assert set(results["methods"]) == methods
    assert "meta-trained for 6 steps" in results["methods"]["learned"]
    assert "no learned parameters" in results["methods"]["hebbian"]
    rows = [r for r in results["summary"] if r["dataset"] == "digits_5_9"]
    assert {r["method"] for r in rows} == methods and all(r["n"] == 2 and r["se"] >= 0 for r in rows)
    assert {c["baseline"] for c in results["comparisons"]} == methods - {"learned"}
    report = (tmp_path / "report.md").read_text()
    for name in ("datasets.png", "filters.png", "± ", "Where learned loses", "raw_input"):
        assert name in report
    for name in ("datasets.png", "filters.png", "results.csv"):
        assert (tmp_path / name).stat().st_size > 0
    csv_lines = (tmp_path / "results.csv").read_text().splitlines()
    assert csv_lines[0].startswith("dataset,arch") and len(csv_lines) == 1 + len(results["summary"])


def test_filters_study_sweeps_meta_training_checkpoints(tmp_path, trained):
    workdir, _, _ = trained
    study = evaluation.load_study(str(EXPERIMENTS / "eval" / "filters.py") + ":quick",
                                  [f"--config.rule_checkpoint={workdir}"])
    results = evaluation.run_study(study, tmp_path, progress=False)
    assert [m for m in results["methods"] if m.startswith("learned@")] == [
        "learned@0", "learned@2", "learned@4", "learned@6"]
    assert results["primary"] == "learned@6"
    assert (tmp_path / "filters.png").stat().st_size > 0


@dataclasses.dataclass(frozen=True)
class Swept(MeanImage):
    """A method with checkpoints of its own, declared through `EvalMethod` alone (no `workdir`)."""

    at: int = -1

    def has_checkpoints(self):
        return self.at < 0

    def at_checkpoint_steps(self):
        yield from ((step, Swept(at=step)) for step in (0, 5))


class _SweptPlugin:
    @hookimpl
    def metaplastic_eval_methods(self):
        return {"swept": Swept, "mean_image": MeanImage}


def test_checkpoint_sweeps_go_through_the_eval_method_interface(monkeypatch):
    monkeypatch.setattr(registry_module, "_REGISTRY", registry_module.Registry(extra_plugins=(_SweptPlugin(),)))
    methods = dict(swept=dict(method="swept"), mean_image=dict(method="mean_image"))
    logs = []
    expanded = runner.expand_methods(tiny_study(primary_method="swept", checkpoint_sweep=True, methods=methods),
                                     logs.append)
    assert list(expanded) == ["swept@0", "swept@5", "mean_image"] and expanded["swept@5"] == Swept(at=5)
    assert not logs
    expanded = runner.expand_methods(tiny_study(primary_method="mean_image", checkpoint_sweep=True,
                                                methods=methods), logs.append)
    assert list(expanded) == ["mean_image", "swept"]
    assert len(logs) == 1 and "has no meta-training checkpoint" in logs[0]
    with pytest.raises(evaluation.EvaluationError, match="no meta-training checkpoints"):
        list(MeanImage().at_checkpoint_steps())


def test_architecture_and_time_pictures(tmp_path):
    study = tiny_study(architectures=((1, 16), (2, 16), (1, 8)), steps=(1, 3), shots=(2,), main_shots=2,
                       seeds=2, methods=dict(learned=dict(method="update_rule", rule="hebbian"),
                                             random_init=dict(method="random_init")))
    results = evaluation.run_study(study, tmp_path, progress=False)
    assert set(results["pictures"].values()) == {"steps.png", "depth.png", "width.png", "filters.png"}
    assert len(results["cells"]) == 2 * 3 * 2 * 2  # methods · archs · steps · seeds


def test_optional_missing_dataset_is_skipped_and_reported(tmp_path):
    lines = []
    study = tiny_study(seeds=1, shots=(1,), main_shots=1,
                       methods=dict(learned=dict(method="update_rule", rule="hebbian")),
                       datasets=dict(digits=dict(dataset="digits", classes=(5, 6), max_test=30),
                                     absent=dict(dataset="no_such_data")))
    results = evaluation.run_study(study, tmp_path, progress=False, log=lines.append)
    assert results["datasets"]["absent"].startswith("skipped") and "absent" in lines[0]
    assert "skipped" in (tmp_path / "report.md").read_text()


@pytest.mark.parametrize("study", ["datasets", "text"])
def test_release_variants_compare_the_shipped_rules_on_held_out_data_only(study):
    resolved = evaluation.resolve_study(load_config_file(str(EXPERIMENTS / "eval" / f"{study}.py") + ":release"))
    assert resolved.rule_checkpoint == "pretrained:genome-glyphs-v1" and resolved.seeds == 5
    assert resolved.methods["hebbian"]["rule"] == "hebbian"  # the recommended rule's hand-designed start
    assert resolved.methods["glyphs_v2"]["checkpoint"] == "pretrained:glyphs-v2"
    assert tuple(resolved.shots) == (10,) and resolved.main_shots == 10
    assert not any("train" in label for label in resolved.datasets)  # no training distribution in the table
