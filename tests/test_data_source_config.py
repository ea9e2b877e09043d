"""Data sources take config fields like every other kind: `config.data_sources.<source>.<field>`, in training
configs and studies, filled from the source's defaults and checked in one line; what was built from a
dataset is built again when the settings change; configs that name no source resolve as before."""

from __future__ import annotations

import dataclasses
import types

import ml_collections
import numpy as np
import pytest

from metaplastic.core import config as config_lib
from metaplastic.core.data import configure_data_sources, load_dataset
from metaplastic.core.evaluation import load_study
from metaplastic.core.interfaces import Dataset, DatasetUnavailable, DataSource
from metaplastic.registries import hookimpl
from metaplastic.registries import registry as registry_module

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


@pytest.fixture(autouse=True)
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


def test_a_training_run_reads_its_data_through_the_configured_source_and_rereads_on_a_change():
    first = config_lib.build_components(training("--config.data_sources.flat.level=0.25")).family
    assert first._arrays("flat")[0].max() == pytest.approx(0.25)
    second = config_lib.build_components(training("--config.data_sources.flat.level=0.75")).family
    assert second._arrays("flat")[0].max() == pytest.approx(0.75)  # not the 0.25 arrays cached above
    default = config_lib.build_components(training()).family
    assert default._arrays("flat")[0].max() == pytest.approx(0.5)


def test_a_section_is_filled_from_the_sources_defaults_and_only_when_named():
    assert "data_sources" not in training()  # configs and workdirs without it resolve as before
    assert "data_sources" not in load_study("experiments/eval/time.py:quick")
    base = config_lib.load_config_file(TINY)
    base.data_sources = ml_collections.ConfigDict({"flat": {}})
    assert config_lib.resolve(base).data_sources.to_dict() == {"flat": {"level": 0.5}}
    study = load_study("experiments/eval/time.py:quick", ["--config.data_sources.flat.level=0.2"])
    assert study.data_sources.to_dict() == {"flat": {"level": 0.2}}


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


def test_a_value_the_source_refuses_stops_before_any_work_in_one_line():
    with pytest.raises(config_lib.ConfigError) as error:
        config_lib.build_components(training("--config.data_sources.flat.level=2.0"))
    assert str(error.value) == "config.data_sources.flat: level must be in (0, 1], got 2.0"


def test_a_study_dataset_added_on_the_command_line_is_required_and_takes_fields():
    study = load_study("experiments/eval/time.py:quick",
                       ["--config.datasets.mine.dataset=flat", "--config.datasets.mine.max_test=7"])
    assert study.datasets.mine.dataset == "flat" and study.datasets.mine.required
    assert study.datasets.mine.max_test == 7 and "digits_5_9" in study.datasets
    with pytest.raises(config_lib.ConfigError, match=r"config.datasets.digits_59: not a dataset of this study "
                                                     r".*did you mean 'config.datasets.digits_5_9'\?"):
        load_study("experiments/eval/time.py:quick", ["--config.datasets.digits_59.max_test=5"])
