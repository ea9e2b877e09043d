"""The report people read: no '± 0.000', the seed count stated, no wins or losses from too few seeds,
readable dataset names, paths relative to its folder."""

from __future__ import annotations

import re

import matplotlib
import numpy as np
import pytest

from metaplastic.core.evaluation import pictures, report
from metaplastic.core.evaluation.study import DatasetSpec

from helpers.report import METHODS, records, study


matplotlib.use("Agg")


def markdown(config, recs) -> str:
    readouts = tuple(config.readouts)
    summary = report.summarise(recs, readouts)
    comparisons = report.compare(recs, "learned", readouts)
    results = {"summary": summary, "comparisons": comparisons, "primary": "learned",
               "methods": {m: f"method {m}" for m in METHODS},
               "datasets": {label: "ok: 'digits'" for label in config.datasets}, "pictures": {}}
    return report.report_markdown(config, results)


def test_one_seed_prints_no_standard_error_and_says_so():
    text = markdown(study(1), records(1, lambda d, s, m, t, k: {"learned": 0.8, "hebbian": 0.7,
                                                                 "raw_input": 0.9}[m]))
    assert "± 0.000" not in text and "± nan" not in text
    tables = [line for line in text.splitlines() if line.startswith("|")]
    assert tables and not any("±" in line for line in tables)
    assert "one seed, so no standard error" in text
    assert "n = 1 seed per comparison" in text
    assert "| hebbian | 1 | 0 | 0 | 0 | 2 |" in text  # baseline | seeds (n) | wins | ties | loses | too few
    assert "Not judged: too few seeds (n = 1; a verdict needs at least 5)." in text


def test_identical_values_over_seeds_never_print_plus_minus_zero():
    seeds = report.MIN_SEEDS_FOR_VERDICT
    text = markdown(study(seeds), records(seeds, lambda d, s, m, t, k: {"learned": 0.8, "hebbian": 0.7,
                                                                         "raw_input": 0.9}[m]))
    assert "± 0.000" not in text
    assert "0.800 ± <0.001" in text  # the results tables
    assert f"n = {seeds} seeds per comparison" in text
    assert f"| raw_input | {seeds} | 0 | 0 | 2 |" in text
    assert "(difference -0.100 ± <0.001)" in text


@pytest.mark.parametrize("seeds", [2, report.MIN_SEEDS_FOR_VERDICT - 1])
def test_too_few_seeds_declare_no_wins_or_losses(seeds):
    """Learned is 0.1 above hebbian and 0.1 below raw_input on every seed: with enough seeds a win and
    a loss, below the minimum neither."""
    text = markdown(study(seeds), records(seeds, lambda d, s, m, t, k: {"learned": 0.8, "hebbian": 0.7,
                                                                         "raw_input": 0.9}[m] + 0.01 * s))
    verdicts = {c["verdict"] for c in report.compare(records(seeds, lambda d, s, m, t, k: 0.5), "learned",
                                                     ("ridge",))}
    assert verdicts == {report.TOO_FEW}
    assert f"too few seeds for a verdict in every comparison (it needs at least {report.MIN_SEEDS_FOR_VERDICT})" \
        in text
    assert f"| hebbian | {seeds} | 0 | 0 | 0 | 2 |" in text and f"| raw_input | {seeds} | 0 | 0 | 0 | 2 |" in text
    assert "Not judged: too few seeds" in text and "- to **raw_input**" not in text


def test_report_writes_paths_relative_to_its_folder(tmp_path):
    (tmp_path / "runs" / "run_a").mkdir(parents=True)
    report_dir = tmp_path / "runs" / "run_a_eval"
    report_dir.mkdir()
    text = (f"- **learned**: update rule 'simple_local', θ meta-trained for 6 steps ({tmp_path}/runs/run_a)\n"
            f"ends a sentence: {tmp_path}/runs/run_a.\nmissing: {tmp_path}/nowhere; system: /usr/bin; 1/classes\n")
    assert report.relative_paths(text, report_dir) == (
        "- **learned**: update rule 'simple_local', θ meta-trained for 6 steps (../run_a)\n"
        f"ends a sentence: ../run_a.\nmissing: {tmp_path}/nowhere; system: /usr/bin; 1/classes\n")


def test_tiny_standard_errors_round_up_not_to_zero():
    assert report._fmt(0.5, 0.0004) == "0.500 ± <0.001"
    assert report._fmt(0.5, 0.0) == "0.500 ± <0.001"
    assert report._fmt(0.5, float("nan")) == "0.500"
    assert report._fmt(0.5, 0.0123) == "0.500 ± 0.012"


def test_seed_count_is_stated_with_several_seeds():
    rng = np.random.default_rng(0)
    noise = {(s, m): rng.normal(0, 0.02) for s in range(5) for m in METHODS}
    text = markdown(study(5), records(5, lambda d, s, m, t, k: 0.7 + noise[s, m]))
    assert "mean ± standard error over 5 seeds" in text
    assert "n = 5 seeds per comparison" in text
    assert re.search(r"^\| baseline \| seeds \(n\) \| wins \| ties \| loses \|$", text, re.M)
    assert re.search(r"^\| hebbian \| 5 \| \d \| \d \| \d \|$", text, re.M)
    assert "± 0.000" not in text


def test_report_lists_datasets_with_readable_names():
    text = markdown(study(2), records(2, lambda d, s, m, t, k: 0.5 + 0.1 * s))
    assert "- **digits_5_9** — digits 5–9: ok: 'digits'" in text


@pytest.mark.parametrize("label, spec, used, name", [
    ("digits_5_9", DatasetSpec("digits", classes=(5, 6, 7, 8, 9)), None, "digits 5–9"),
    ("digits_0_4_train", DatasetSpec("digits", classes=(0, 1, 2, 3, 4)), None, "digits 0–4 (train)"),
    ("fashion_14", DatasetSpec("fashion_mnist", image_size=14), None, "Fashion-MNIST 14×14"),
    ("fashion_28", DatasetSpec("fashion_mnist", image_size=28), "fashion_mnist", "Fashion-MNIST 28×28"),
    ("mnist_28", DatasetSpec("mnist", alternatives=("mnist_5k",), image_size=28), None, "MNIST 28×28"),
    ("mnist_28", DatasetSpec("mnist", alternatives=("mnist_5k",)), "mnist", "MNIST 28×28"),  # native size
    ("mnist_14", DatasetSpec("mnist", alternatives=("mnist_5k",), image_size=14), "mnist_5k",
     "MNIST 14×14 (5k subset)"),
    ("imdb", DatasetSpec("imdb_bow", alternatives=("imdb",)), None, "IMDB reviews"),
    ("digits_5_9", None, None, "digits 5–9"),  # the key alone
    ("fashion_14", None, None, "Fashion-MNIST 14×14"),
    ("mnist_28", None, None, "MNIST 28×28"),
    ("anything", {"dataset": "digits", "description": "sklearn digits, held out"}, None,
     "sklearn digits, held out"),
])
def test_readable_dataset_names(label, spec, used, name):
    assert pictures.readable_dataset_name(label, spec, used) == name


def test_readable_names_come_from_the_data_sources(monkeypatch):
    # core holds no dataset names: a source's display_name (here a stand-in for every source) is the base
    monkeypatch.setattr(pictures, "dataset_display_name", lambda name: "Zed set (a sample)" if name == "zed" else None)
    assert pictures.readable_dataset_name("zed_14", DatasetSpec("zed", image_size=14), "zed") == "Zed set 14×14 (a sample)"
    assert pictures.readable_dataset_name("zed_14", None) == "Zed set 14×14"
    assert pictures.readable_dataset_name("mnist_28", DatasetSpec("mnist"), "mnist") == "mnist 28×28"


def test_readable_names_from_a_study_config_entry():
    config = study(2, datasets=dict(digits_5_9=dict(dataset="digits", classes=(5, 6, 7, 8, 9)),
                                    fashion_14=dict(dataset="fashion_mnist", image_size=14)))
    assert pictures.readable_dataset_name("digits_5_9", config.datasets.digits_5_9) == "digits 5–9"
    assert pictures.readable_dataset_name("fashion_14", config.datasets.fashion_14) == "Fashion-MNIST 14×14"
