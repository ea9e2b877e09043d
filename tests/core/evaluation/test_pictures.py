"""The pictures people read: chance level on accuracy plots, integer ticks, one legend outside the
panels, pictures that fit 1,600 px with text of at least 9 pt, grayscale filter tiles on a symmetric scale."""

from __future__ import annotations

import types

import matplotlib
import numpy as np
import pytest
from matplotlib.collections import LineCollection
from PIL import Image

from metaplastic.core.evaluation import pictures, report
from metaplastic.core.evaluation.study import DatasetSpec

from helpers.report import METHODS, records, study


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
    assert fig.axes[0].get_ylabel() == "meta-loss"
    named = pictures.meta_training_curve_figure(rows, "a run", loss_name="cosine distance")
    assert named.axes[0].get_ylabel() == "meta-loss (cosine distance)"


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
