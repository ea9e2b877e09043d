"""The report and pictures people read: no '± 0.000', the seed count stated, readable dataset names,
chance level on accuracy plots, integer ticks, one legend outside the panels, pictures that fit
1,600 px with text of at least 9 pt, and grayscale filter tiles on a symmetric scale."""

from __future__ import annotations

import re
import types

import matplotlib
import ml_collections
import numpy as np
import pytest
from matplotlib.collections import LineCollection
from PIL import Image

from metaplastic.core import evaluation
from metaplastic.core.evaluation import pictures, report
from metaplastic.core.evaluation.study import DatasetSpec

matplotlib.use("Agg")

METHODS = ("learned", "hebbian", "raw_input")


def study(seeds: int, datasets=None, **fields) -> ml_collections.ConfigDict:
    config = ml_collections.ConfigDict(dict(
        name="synthetic", seeds=seeds, rule="simple_local",
        methods=dict(learned=dict(method="update_rule"), hebbian=dict(method="update_rule", rule="hebbian"),
                     raw_input=dict(method="raw_input")),
        datasets=datasets or dict(digits_5_9=dict(dataset="digits", classes=(5, 6, 7, 8, 9))),
        steps=(10,), shots=(5,), main_shots=5))
    for key, value in fields.items():
        config[key] = value
    return evaluation.resolve_study(config)


def records(seeds, accuracy, datasets=("digits_5_9",), steps=(10,), shots=(5,), methods=METHODS):
    """One record per (dataset, seed, method, steps, shots); accuracy(dataset, seed, method, steps, shots)."""
    return [{"method": m, "dataset": d, "arch": "2x64", "depth": 2, "width": 64, "seed": s, "steps": t,
             "shots": k, "finite": True, "filters": None,
             "accuracy": {"ridge": accuracy(d, s, m, t, k), "logistic": accuracy(d, s, m, t, k) - 0.05}}
            for d in datasets for s in range(seeds) for m in methods for t in steps for k in shots]


def markdown(config, recs) -> str:
    readouts = tuple(config.readouts)
    summary = report.summarise(recs, readouts)
    comparisons = report.compare(recs, "learned", readouts)
    results = {"summary": summary, "comparisons": comparisons, "primary": "learned",
               "methods": {m: f"method {m}" for m in METHODS},
               "datasets": {label: "ok: 'digits'" for label in config.datasets}, "pictures": {}}
    return report.report_markdown(config, results)


# ---------------------------------------------------------------- report.md

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


# ---------------------------------------------------------------- readable names

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


def test_readable_names_from_a_study_config_entry():
    config = study(2, datasets=dict(digits_5_9=dict(dataset="digits", classes=(5, 6, 7, 8, 9)),
                                    fashion_14=dict(dataset="fashion_mnist", image_size=14)))
    assert pictures.readable_dataset_name("digits_5_9", config.datasets.digits_5_9) == "digits 5–9"
    assert pictures.readable_dataset_name("fashion_14", config.datasets.fashion_14) == "Fashion-MNIST 14×14"


# ---------------------------------------------------------------- pictures

DATASETS = {"digits_5_9": (DatasetSpec("digits", classes=(5, 6, 7, 8, 9)),
                           types.SimpleNamespace(dataset="digits", num_classes=5, image_shape=(8, 8))),
            "mnist_28": (DatasetSpec("mnist", alternatives=("mnist_5k",), image_size=28),
                         types.SimpleNamespace(dataset="mnist", num_classes=10, image_shape=(28, 28)))}


def summary_rows(datasets=tuple(DATASETS), methods=METHODS, steps=(10,), shots=(5,), seeds=3):
    def accuracy(d, s, m, t, k):
        return 0.3 + 0.01 * s + 0.03 * (methods.index(m) % 5) + 0.05 * np.log10(t + 1) + 0.01 * k

    recs = records(seeds, accuracy, datasets=datasets, steps=steps, shots=shots, methods=methods)
    return report.summarise(recs, ("ridge", "logistic"))


def drawn(fig):
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig).draw()
    return fig


def visible_axes(fig):
    return [ax for ax in fig.axes if ax.get_visible()]


def chance_levels(ax) -> set[float]:
    levels = {round(float(line.get_ydata()[0]), 6) for line in ax.get_lines()
              if len(set(map(float, line.get_ydata()))) == 1 and line.get_linestyle() == "--"}
    for collection in ax.collections:
        if isinstance(collection, LineCollection) and collection.get_linestyle()[0][1]:  # dashed
            levels |= {round(float(seg[0][1]), 6) for seg in collection.get_segments()
                       if seg[0][1] == seg[1][1]}
    return levels


def test_datasets_bars_show_chance_per_dataset_and_readable_names():
    fig = drawn(pictures.datasets_figure(summary_rows(), list(METHODS), DATASETS, ("ridge", "logistic"),
                                         5, 10, "2x64"))
    for ax in visible_axes(fig):
        assert chance_levels(ax) == {0.2, 0.1}  # 1/5 for digits 5–9, 1/10 for MNIST
        labels = [t.get_text() for t in ax.get_xticklabels()]
        assert labels == ["digits 5–9", "MNIST 28×28"]
        assert ax.get_legend() is None


def test_step_curves_have_chance_and_decade_ticks():
    rows = summary_rows(steps=(1, 3, 10, 30, 100, 300, 1000, 3000), shots=(10,))
    fig = drawn(pictures.curves_figure(rows, list(METHODS), DATASETS, ("ridge", "logistic"), "steps",
                                       {"shots": 10, "arch": "2x64"}))
    for ax in visible_axes(fig):
        assert ax.get_xscale() == "log"
        assert [t.get_text() for t in ax.get_xticklabels()] == ["1", "10", "100", "1000"]
        assert not any(t.get_text() for t in ax.get_xticklabels(minor=True))
        assert len(chance_levels(ax)) == 1 and chance_levels(ax) <= {0.2, 0.1}
        assert ax.get_legend() is None


@pytest.mark.parametrize("shots", [(1, 5), (1, 2, 5, 10, 50), (2, 3)])
def test_shot_curves_have_integer_ticks(shots):
    rows = summary_rows(shots=shots)
    fig = drawn(pictures.curves_figure(rows, list(METHODS), DATASETS, ("ridge", "logistic"), "shots",
                                       {"steps": 10, "arch": "2x64"}))
    for ax in visible_axes(fig):
        labels = [t.get_text() for t in ax.get_xticklabels()]
        assert labels == [str(k) for k in shots]
        assert all(float(x).is_integer() for x in ax.get_xticks())
        assert not any(t.get_text() for t in ax.get_xticklabels(minor=True))  # no '2×10⁰'
        assert chance_levels(ax)


def test_step_axis_with_zero_steps_is_symlog_with_integer_labels():
    rows = summary_rows(steps=(0, 1, 10, 100))
    fig = drawn(pictures.curves_figure(rows, list(METHODS), DATASETS, ("ridge",), "steps",
                                       {"shots": 5, "arch": "2x64"}))
    ax = visible_axes(fig)[0]
    assert ax.get_xscale() == "symlog"
    assert [t.get_text() for t in ax.get_xticklabels()] == ["0", "1", "10", "100"]


def overlaps(a, b) -> bool:
    return a.x0 < b.x1 and b.x0 < a.x1 and a.y0 < b.y1 and b.y0 < a.y1


def check_layout(fig):
    """At most 1,600 px wide, one legend outside every panel, all text at least 9 pt."""
    width_px = fig.get_figwidth() * pictures.DPI
    assert width_px <= pictures.MAX_WIDTH_PX
    renderer = fig.canvas.get_renderer()
    if visible_axes(fig) and fig.legends:
        assert len(fig.legends) == 1 and all(ax.get_legend() is None for ax in fig.axes)
        legend = fig.legends[0].get_window_extent(renderer)
        for ax in visible_axes(fig):
            assert not overlaps(legend, ax.get_window_extent(renderer))
    for text in fig.findobj(matplotlib.text.Text):
        if text.get_text().strip() and text.get_visible():
            assert text.get_fontsize() >= pictures.MIN_FONT_PT, (text.get_text(), text.get_fontsize())


def test_many_datasets_and_methods_wrap_within_the_width_limit():
    names = [f"mnist_{k}" for k in (7, 14, 21, 28)] + ["digits_5_9", "digits_0_4_train", "fashion_14",
                                                        "fashion_28"]
    datasets = {n: (DatasetSpec("digits" if n.startswith("digits") else "mnist"),
                    types.SimpleNamespace(dataset="mnist", num_classes=10, image_shape=(28, 28)))
                for n in names}
    methods = tuple(f"learned@{k}" for k in range(0, 1000, 100)) + ("hebbian", "raw_input")
    rows = summary_rows(datasets=names, methods=methods, steps=(1, 10, 100))
    with matplotlib.rc_context(pictures.STYLE):
        for fig in (pictures.datasets_figure(rows, list(methods), datasets, ("ridge", "logistic"), 5, 100,
                                             "2x64"),
                    pictures.curves_figure(rows, list(methods), datasets, ("ridge", "logistic"), "steps",
                                           {"shots": 5, "arch": "2x64"})):
            check_layout(drawn(fig))


def test_filter_tiles_are_grayscale_symmetric_and_labelled():
    rng = np.random.default_rng(0)
    rows = [(m, rng.normal(size=(28 * 28, 20)) + 0.3) for m in ("learned@0", "learned@250", "hebbian")]
    fig = drawn(pictures.filters_figure(rows, (28, 28), "First-layer filters: MNIST 28×28"))
    images = [im for ax in fig.axes for im in ax.get_images()]
    assert len(images) == 3 * 16
    for image in images:
        low, high = image.get_clim()
        assert image.get_cmap().name == "gray" and low == pytest.approx(-high)
        assert high == pytest.approx(np.abs(image.get_array()).max(), rel=1e-6)
    for ax in fig.axes:  # square tiles stay square
        box = ax.get_window_extent()
        assert box.width == pytest.approx(box.height, rel=0.02)
    texts = [t.get_text() for t in fig.texts]
    assert "learned\nmeta-step 250" in texts and "hebbian" in texts
    check_layout(fig)


class FakeStore:
    def __init__(self, weights):
        self.weights = weights

    def filters(self, name):
        return self.weights[name]


def test_make_pictures_keeps_names_and_fits_1600_px(tmp_path):
    rng = np.random.default_rng(1)
    config = study(3, datasets=dict(digits_5_9=dict(dataset="digits", classes=(5, 6, 7, 8, 9)),
                                    mnist_28=dict(dataset="mnist", image_size=28)),
                   steps=(1, 10, 100), shots=(1, 5), main_shots=5, filters_dataset="mnist_28")
    recs = records(3, lambda d, s, m, t, k: 0.5 + 0.02 * s + 0.01 * k, datasets=tuple(DATASETS),
                   steps=(1, 10, 100), shots=(1, 5))
    weights = {}
    for r in recs:
        if r["seed"] == 0 and r["dataset"] == "mnist_28":
            name = f"{r['method']}-{r['steps']}-{r['shots']}.npy"
            weights[name] = rng.normal(size=(28 * 28, 32))
            r["filters"] = name
    summary = report.summarise(recs, tuple(config.readouts))
    made = pictures.make_pictures(config, tmp_path, summary, recs, {m: None for m in METHODS}, DATASETS,
                                  FakeStore(weights))
    assert made == {"Accuracy over datasets": "datasets.png", "Accuracy over unsupervised steps": "steps.png",
                    "Accuracy over labelled examples per class": "shots.png",
                    "First-layer filters": "filters.png"}
    assert report.make_pictures is pictures.make_pictures
    for name in made.values():
        width, height = Image.open(tmp_path / name).size
        assert 400 <= width <= pictures.MAX_WIDTH_PX and height <= 2000, (name, width, height)
    with matplotlib.rc_context(pictures.STYLE):
        for _, _, fig in pictures.build_figures(config, summary, recs, {m: None for m in METHODS}, DATASETS,
                                                FakeStore(weights)):
            check_layout(drawn(fig))


def test_meta_training_curve_shows_each_step_and_the_running_mean():
    rng = np.random.default_rng(0)
    losses = 1.0 + rng.normal(size=120)
    rows = [{"step": str(i + 1), "meta_loss": str(v)} for i, v in enumerate(losses)] + [{"step": "121", "meta_loss": ""}]
    fig = pictures.meta_training_curve_figure(rows, "a run", window=50)
    raw, mean = fig.axes[0].get_lines()
    np.testing.assert_allclose(raw.get_ydata(), losses)
    expected = [losses[i - 49:i + 1].mean() for i in range(49, 120)]  # independent of np.convolve
    np.testing.assert_allclose(mean.get_xdata(), np.arange(50, 121))
    np.testing.assert_allclose(mean.get_ydata(), expected, rtol=1e-12)
    assert len(fig.legends) == 1 and fig.get_figwidth() * pictures.DPI <= pictures.MAX_WIDTH_PX


class FakeRule:
    """Stands in for a loaded update rule: what `method_names` reads is its identity()."""

    def __init__(self, **settings):
        self.settings = settings

    def identity(self):
        return self.settings


def test_legends_name_the_rule_and_where_its_theta_came_from_not_the_column():
    methods = {"learned": FakeRule(rule="simple_local", checkpoint="pretrained:glyphs-v2"),
               "hebbian": FakeRule(rule="hebbian", checkpoint=""), "raw_input": None}
    assert pictures.method_names(methods) == {
        "learned": "simple_local (glyphs-v2)", "hebbian": "hebbian", "raw_input": "raw_input"}
    swept = {"learned@250": FakeRule(rule="metz2019", checkpoint="/data/runs/run_a", checkpoint_step=250),
             "best": FakeRule(rule="metz2019", checkpoint="/data/runs/run_a/best"),
             "twin_a": FakeRule(rule="hebbian"), "twin_b": FakeRule(rule="hebbian")}
    assert pictures.method_names(swept) == {
        "learned@250": "metz2019 (run_a, meta-step 250)", "best": "metz2019 (run_a/best)",
        "twin_a": "hebbian [twin_a]", "twin_b": "hebbian [twin_b]"}
    config = study(3, datasets=dict(digits_5_9=dict(dataset="digits", classes=(5, 6, 7, 8, 9)),
                                    mnist_28=dict(dataset="mnist", image_size=28)), steps=(1, 10))
    recs = records(3, lambda d, s, m, t, k: 0.5 + 0.01 * s, datasets=tuple(DATASETS), steps=(1, 10))
    summary = report.summarise(recs, tuple(config.readouts))
    figures = pictures.build_figures(config, summary, recs, methods, DATASETS, FakeStore({}))
    assert [name for _, name, _ in figures] == ["datasets.png", "steps.png"]
    for _, _, fig in figures:
        labels = [text.get_text() for text in fig.legends[0].get_texts()]
        assert labels[:3] == ["simple_local (glyphs-v2)", "hebbian", "raw_input"], labels
