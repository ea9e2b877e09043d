"""A study's config: its fields and their defaults, datasets, defaults filled in, validation, overrides."""

from __future__ import annotations

import dataclasses
import difflib
from typing import Any

import ml_collections

from metaplastic.core import config as config_lib
from metaplastic.core.documented import documented
from metaplastic.core.evaluation.readouts import READOUTS
from metaplastic.core.renamed_fields import current_config, current_overrides


@dataclasses.dataclass(frozen=True)
class StudyFields:
    """A study's top-level fields, their defaults and docs (`metaplastic config` prints them)."""

    name: str = documented("study", "the study's name, in its report's title")
    description: str = documented("", "one sentence under the report's title")
    seed: int = documented(0, "every random draw of the study derives from it and the seed index")
    seeds: int = documented(10, "repetitions: permutation, data order, initialisation, label draw")
    rule: str = documented("simple_local", "the learned rule when no checkpoint is given (untrained θ)")
    rule_checkpoint: str = documented("", 'a `metaplastic train` workdir; its latest θ is "the learned rule"')
    primary_method: str = documented("learned", "compared with every other method in the report")
    base_model: str = documented("mlp_bn", "a registered base_model (`metaplastic plugins` lists them)")
    architectures: tuple = documented(((2, 64),), "(hidden layers below the representation layer, their width)")
    top_width: int = documented(32, "representation size")
    batch_size: int = documented(64, "unlabelled examples per unsupervised step")
    steps: tuple = documented((1000,), "unsupervised steps (snapshots of one run per seed)")
    shots: tuple = documented((10,), "labelled examples per class")
    readouts: tuple = documented(("ridge", "logistic"), "readouts fit on the labelled features: ridge | logistic")
    ridge_lambda: float = documented(0.1, "as the meta-objective")
    logistic_c: float = documented(1.0, "inverse regularisation strength of the logistic readout")
    feature_batch: int = documented(4096, "examples per feature pass (batch statistics)")
    checkpoint_sweep: bool = documented(False, "also evaluate the primary rule at every saved meta-training step")
    num_filters: int = documented(32, "first-layer units kept for the filter pictures (seed 0)")
    filters_dataset: str = documented("", 'dataset whose filters are drawn ("" = the first image dataset)')
    main_shots: int = documented(10, "shots shown in the pictures over datasets / steps / architectures")
    # a shard of the study; shards share the workdir's cell cache, and a run without them then writes
    # the report from the cache
    only_seeds: tuple = documented((), "a shard: only these seed indices (empty = all)")
    only_datasets: tuple = documented((), "a shard: only these dataset labels (empty = all)")
    only_methods: tuple = documented((), "a shard: only these method labels (empty = all)")


STUDY_DEFAULTS = {field.name: field.default for field in dataclasses.fields(StudyFields)}
STUDY_SECTIONS = ("methods", "datasets", "base_model_config")
# optional: {source: {field: value}} of data sources that need settings (`core.config.fill_data_sources`)
OPTIONAL_SECTIONS = (config_lib.DATA_SOURCES,)


@dataclasses.dataclass(frozen=True)
class DatasetSpec:
    """One evaluation dataset: which data, which classes, what size."""

    dataset: str = documented(doc="a dataset name (`metaplastic plugins` lists the sources)")
    alternatives: tuple[str, ...] = documented((), "tried in order when `dataset` is unavailable")
    classes: tuple[int, ...] = documented((), "() = all; labels become 0..C-1 in this order")
    image_size: int = documented(0, "0 = native")
    train_split: str = documented("train", "unlabelled data and the labelled examples")
    test_split: str = documented("test", "scoring only")
    max_test: int = documented(2000, "test examples per seed (a random subset); 0 = all")
    max_unlabelled: int = documented(0, "0 = the whole train split")
    permute_inputs: bool = documented(True, "each seed permutes the input features with its own fixed permutation")
    required: bool = documented(False, "a required dataset that is missing is an error")


def _dataset_defaults() -> dict[str, Any]:
    return {f.name: f.default for f in dataclasses.fields(DatasetSpec) if f.name != "dataset"}


def _refuse_override(field: str) -> str | None:
    if field.startswith("methods.") and field.rsplit(".", 1)[-1] == "method":
        return "a method's kind cannot be overridden; add a new entry in the config file"
    return None


def resolve_study(config: ml_collections.ConfigDict,
                  overrides: list[tuple[str, str]] = ()) -> ml_collections.ConfigDict:
    """Fill defaults (study fields, method and dataset fields), validate, lock, apply overrides."""
    from metaplastic.registries import ComponentError, get_registry

    config = ml_collections.ConfigDict(current_config(config.to_dict(), warn=True))
    config.unlock()
    for key in config.keys():
        if key not in STUDY_DEFAULTS and key not in STUDY_SECTIONS + OPTIONAL_SECTIONS:
            config_lib.unknown_field(ml_collections.ConfigDict(
                {**STUDY_DEFAULTS, **{s: {} for s in STUDY_SECTIONS + OPTIONAL_SECTIONS}}), key)
    for key, value in STUDY_DEFAULTS.items():
        if key not in config:
            config[key] = value
    for section in STUDY_SECTIONS:
        if section not in config:
            config[section] = ml_collections.ConfigDict()
    remaining = []
    for field, text in overrides:  # another base model decides which base_model_config fields exist
        if field == "base_model":
            if text != config.base_model:
                config.base_model_config = ml_collections.ConfigDict()
            config.base_model = text
        else:
            remaining.append((field, text))
    overrides = current_overrides(config, remaining)
    try:
        defaults = config_lib.component_defaults("base_model", config.base_model)
    except ComponentError as error:
        raise config_lib.ConfigError(f"config.base_model: {error}") from None
    config.base_model_config = config_lib.merge_section("base_model_config", defaults,
                                                        config.base_model_config)
    if not config.methods:
        raise config_lib.ConfigError("config.methods: empty")
    registry = get_registry()
    for label, entry in config.methods.items():
        if "method" not in entry:
            raise config_lib.ConfigError(f"config.methods.{label}.method: missing (registered: "
                                         f"{', '.join(registry.names('eval_method'))})")
        try:
            defaults = config_lib.component_defaults("eval_method", entry.method)
        except ComponentError as error:
            raise config_lib.ConfigError(f"config.methods.{label}.method: {error}") from None
        fields = {k: v for k, v in entry.items() if k != "method"}
        merged = config_lib.merge_section(f"methods.{label}", defaults, ml_collections.ConfigDict(fields))
        merged.method = entry.method
        config.methods[label] = merged
    _add_datasets(config, overrides)
    config_lib.fill_data_sources(config, overrides)
    if not config.datasets:
        raise config_lib.ConfigError("config.datasets: empty")
    for label, entry in config.datasets.items():
        if "dataset" not in entry:
            raise config_lib.ConfigError(f"config.datasets.{label}.dataset: missing")
        merged = config_lib.merge_section(f"datasets.{label}", _dataset_defaults(), ml_collections.ConfigDict(
            {k: v for k, v in entry.items() if k != "dataset"}))
        merged.dataset = entry.dataset
        config.datasets[label] = merged
    config.lock()
    config_lib.apply_overrides(config, overrides, refuse=_refuse_override)
    _validate(config)
    return config


def _add_datasets(config, overrides) -> None:
    """Datasets the command line adds: `--config.datasets.<label>.dataset=NAME` makes a new entry
    `<label>` (required: an unknown or missing dataset stops the study in one line; its other fields
    can be set the same way). A label that is not the study's and is given no dataset is a one-line
    error with the closest label."""
    added = {}
    for field, text in overrides:
        parts = field.split(".")
        if len(parts) == 3 and parts[0] == "datasets" and parts[1] not in config.datasets:
            added.setdefault(parts[1], {})[parts[2]] = text
    for label, fields in added.items():
        if "dataset" not in fields:
            close = difflib.get_close_matches(label, list(config.datasets), n=1)
            hint = f"; did you mean 'config.datasets.{close[0]}'?" if close else ""
            raise config_lib.ConfigError(
                f"config.datasets.{label}: not a dataset of this study ({', '.join(config.datasets) or 'none'}); "
                f"add one with --config.datasets.{label}.dataset=NAME{hint}")
        config.datasets[label] = ml_collections.ConfigDict(dict(dataset=fields["dataset"], required=True))


def _validate(config) -> None:
    def bad(field, why):
        raise config_lib.ConfigError(f"config.{field}: {why}")

    if config.seeds < 1:
        bad("seeds", f"must be >= 1, got {config.seeds}")
    if not config.steps or min(config.steps) < 0:
        bad("steps", f"need non-negative step counts, got {config.steps}")
    if not config.shots or min(config.shots) < 1:
        bad("shots", f"need positive shots, got {config.shots}")
    unknown = [r for r in config.readouts if r not in READOUTS]
    if not config.readouts or unknown:
        bad("readouts", f"unknown {unknown or 'none given'} (known: {', '.join(READOUTS)})")
    for arch in config.architectures:
        if len(arch) != 2 or arch[0] < 0 or arch[1] < 1:
            bad("architectures", f"each entry is (hidden layers >= 0, width >= 1), got {arch}")
    if config.top_width < 1 or config.batch_size < 2:
        bad("top_width/batch_size", f"got {config.top_width}/{config.batch_size}")
    if config.primary_method not in config.methods:
        bad("primary_method", f"'{config.primary_method}' is not in config.methods "
                              f"({', '.join(config.methods)})")
    wrong_seeds = [s for s in config.only_seeds if not 0 <= int(s) < config.seeds]
    if wrong_seeds:
        bad("only_seeds", f"{wrong_seeds} not among the study's seed indices 0-{config.seeds - 1}")
    for field, section in (("only_datasets", "datasets"), ("only_methods", "methods")):
        unknown = [label for label in config[field] if label not in config[section]]
        if unknown:
            bad(field, f"{unknown} not in config.{section} ({', '.join(config[section])})")


def load_study(spec: str, overrides: list[str] = (), shipped=None) -> ml_collections.ConfigDict:
    """`experiments/eval/x.py[:variant]` plus ['--config.a=1', ...] -> a resolved study config."""
    return resolve_study(config_lib.load_config_file(spec, shipped), config_lib.parse_overrides(list(overrides)))
