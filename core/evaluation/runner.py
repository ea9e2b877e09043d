"""Running a study: methods built and expanded, one training run per (dataset, arch, seed, method)
yielding its cells, each cell cached as it finishes; the features of base models and update rules."""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import io
import json
import os
import pathlib
import sys
from typing import Callable, Iterator

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from metaplastic.core import config as config_lib
from metaplastic.core.data import configure_data_sources
from metaplastic.core.evaluation.readouts import predict, readout_args
from metaplastic.core.evaluation.report import canonical, write_results
from metaplastic.core.evaluation.study import DatasetSpec
from metaplastic.core.evaluation.study_data import PreparedData, SeedSplit, prepare_dataset, seed_split
from metaplastic.core.interfaces import (Architecture, BaseModel, DatasetUnavailable, EvalMethod,
                                         EvaluationError, FeatureModel, Pytree, TrainingProblem,
                                         UpdateRule, unlabelled_batch)
from metaplastic.core.keys import StudyPurpose, study_key
from metaplastic.core.ops.files import write_atomic
from metaplastic.core.progress import Progress, StopSignals, progress_mode
from metaplastic.core.unroll import rule_features, run_inner_steps


# ================================================================ features of base models and rules

class BaseModelFeatures(FeatureModel):
    def __init__(self, model: BaseModel, params: Pytree):
        self.model, self.params = model, params

    def features(self, x):
        return np.asarray(_base_features(self.model, self.params, jnp.asarray(x)))

    def first_layer_weights(self):
        return first_layer_of(self.model, self.params)


class RuleFeatures(FeatureModel):
    def __init__(self, rule: UpdateRule, state):
        self.rule, self.state = rule, state

    def features(self, x):
        return np.asarray(rule_features(self.rule, self.state, jnp.asarray(x)))

    def first_layer_weights(self):
        return first_layer_of(self.rule.base_model, self.state.params)


def first_layer_of(model: BaseModel, params) -> np.ndarray | None:
    return np.asarray(model.first_layer_weights(params))


@functools.partial(jax.jit, static_argnames=("model",))
def _base_features(model, params, x):
    return model.features(params, x)


@functools.partial(jax.jit, static_argnames=("rule", "batch_size"))
def run_rule_steps(rule: UpdateRule, theta, state, pool, data_key, step_key, start, stop, batch_size: int):
    """Inner steps start..stop-1 of `rule` on batches drawn from `pool` (the same for every method)."""
    return run_inner_steps(rule, theta, state, lambda t: (unlabelled_batch(pool, data_key, t, batch_size),
                                                          jax.random.fold_in(step_key, t)), start, stop)


def rule_snapshots(rule: UpdateRule, theta, problem: TrainingProblem,
                   steps: tuple[int, ...]) -> Iterator[tuple[int, FeatureModel]]:
    """Run an update rule from a fresh φ_0, yielding features after each requested step count."""
    state = rule.init_inner_state(problem.init_key, problem.arch)
    pool = problem.pool
    done = 0
    for target in steps:
        state = run_rule_steps(rule, theta, state, pool, problem.data_key, problem.method_key,
                               done, target, problem.batch_size)
        done = target
        yield target, RuleFeatures(rule, state)


# ================================================================ cell cache

def cell_id(key: dict) -> str:
    return hashlib.sha256(json.dumps(canonical(key), sort_keys=True).encode()).hexdigest()[:20]


class CellStore:
    """One JSON file per finished cell (and an .npy of filters where kept)."""

    def __init__(self, directory: str | os.PathLike):
        self.directory = pathlib.Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)

    def get(self, key: dict) -> dict | None:
        """The stored result, or None to compute it (again): a missing cell, or one whose JSON (or
        filters file) is unreadable or truncated, which is said in one line on stderr."""
        path = self.directory / f"{cell_id(key)}.json"
        if not path.exists():
            return None
        try:
            record = json.loads(path.read_text())
            if not isinstance(record, dict) or not {"accuracy", "finite"} <= record.keys():
                raise ValueError("not a cell record")
            if record.get("filters"):
                self.filters(record["filters"])
        except (OSError, ValueError, EOFError) as error:  # JSONDecodeError, UnicodeDecodeError: ValueErrors
            why = " ".join(str(error).split())[:120] or type(error).__name__
            print(f"metaplastic evaluate: cell {path} is unreadable or truncated ({why}); computing it again",
                  file=sys.stderr)
            return None
        return record

    def put(self, key: dict, result: dict) -> None:
        record = {"key": canonical(key), **canonical(result)}
        write_atomic(self.directory / f"{cell_id(key)}.json", json.dumps(record, indent=1).encode())

    def put_filters(self, key: dict, weights: np.ndarray) -> str:
        name = f"{cell_id(key)}.filters.npy"
        buffer = io.BytesIO()
        np.save(buffer, weights.astype(np.float32))
        write_atomic(self.directory / name, buffer.getvalue())
        return name

    def filters(self, name: str) -> np.ndarray:
        return np.load(self.directory / name)


# ================================================================ the study runner

def build_method(label: str, entry: ml_collections.ConfigDict, study) -> EvalMethod:
    from metaplastic.registries import get_registry

    factory = get_registry().get("eval_method", entry.method)
    kwargs = {k: (tuple(v) if isinstance(v, list) else v) for k, v in entry.to_dict().items() if k != "method"}
    try:
        return factory(**kwargs).resolve(study)
    except (TypeError, ValueError) as error:
        raise EvaluationError(f"config.methods.{label} ('{entry.method}'): {error}") from None


def expand_methods(config, log: Callable[[str], None] = print) -> dict[str, EvalMethod]:
    methods = {label: build_method(label, entry, config) for label, entry in config.methods.items()}
    primary = methods[config.primary_method]
    sweep = config.checkpoint_sweep and primary.has_checkpoints()
    if config.checkpoint_sweep and not sweep:
        log(f"metaplastic evaluate: config.checkpoint_sweep: primary method '{config.primary_method}' "
            "has no meta-training checkpoint (set config.rule_checkpoint); evaluating it alone")
    if sweep:
        swept = {f"{config.primary_method}@{step}": method
                 for step, method in primary.at_checkpoint_steps()}
        methods = {**swept, **{k: v for k, v in methods.items() if k != config.primary_method}}
    else:  # the primary method first, then the baselines
        methods = {config.primary_method: methods[config.primary_method],
                   **{k: v for k, v in methods.items() if k != config.primary_method}}
    return methods


def _architecture(config, input_dim: int, arch) -> Architecture:
    depth, width = arch
    return Architecture(input_dim, (int(width),) * int(depth) + (int(config.top_width),))


def run_study(config: ml_collections.ConfigDict, workdir: str | os.PathLike, progress: bool | str = True,
              log: Callable[[str], None] = print) -> dict:
    """Compute (or reuse) every cell, then write results.json, results.csv, report.md and pictures.

    `progress`: as `MetaTrainer.run`'s (`core.progress`). SIGTERM or Ctrl-C stops it after the current
    cell: it returns {"stopped": the signal's name, "cells_done", "cells_total"} and writes no report."""
    workdir = pathlib.Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    store = CellStore(workdir / "cells")
    configure_data_sources(config.get(config_lib.DATA_SOURCES))
    base_model = config_lib.build(config, "base_model")
    methods = expand_methods(config, log)
    readouts = {name: readout_args(config, name) for name in config.readouts}
    steps = tuple(sorted(set(int(s) for s in config.steps)))

    datasets, status = {}, {}
    for label, entry in config.datasets.items():
        spec = DatasetSpec(**{k: (tuple(v) if isinstance(v, list) else v) for k, v in entry.to_dict().items()})
        try:
            datasets[label] = (spec, prepare_dataset(label, spec))
            status[label] = f"ok: '{datasets[label][1].dataset}'"
        except DatasetUnavailable as why:
            if spec.required:
                raise EvaluationError(f"required dataset unavailable: {why}") from None
            status[label] = f"skipped: {why}"
            log(f"metaplastic evaluate: skipping dataset '{label}': {why}")
    if not datasets:
        raise EvaluationError(f"study '{config.name}': none of its datasets is available here "
                              f"({'; '.join(f'{k}: {v}' for k, v in status.items())})")

    common = {"seed": config.seed, "base_model": config.base_model,
              "base_model_config": config.base_model_config.to_dict(), "top_width": config.top_width,
              "batch_size": config.batch_size, "feature_batch": config.feature_batch}
    if config.get(config_lib.DATA_SOURCES):  # only when set: the cells of studies without them keep their keys
        common["data_sources"] = config[config_lib.DATA_SOURCES].to_dict()
    units = [(d, a, s, m) for d in datasets for a in config.architectures
             for s in range(config.seeds) for m in methods if in_shard(config, d, s, m)]
    total = len(units) * len(steps) * len(config.shots)
    planned = []  # per unit: its architecture, its cells' keys, and the cells already computed
    for dataset_label, arch_spec, seed, method_label in units:
        spec, data = datasets[dataset_label]
        method = methods[method_label]
        arch = _architecture(config, data.x_train.shape[1], arch_spec)
        keys = {}
        for n_steps in steps:
            for shots in config.shots:
                keys[n_steps, shots] = {
                    **common, "method": method_label, "method_settings": method.identity(),
                    "dataset": dataclasses.asdict(spec), "dataset_used": data.dataset,
                    "arch": list(arch.widths), "input_dim": arch.input_dim, "seed_index": seed,
                    "steps": n_steps, "shots": shots, "readouts": readouts}
        planned.append((arch, keys, {k: store.get(key) for k, key in keys.items()}))
    cached = sum(result is not None for _, _, done in planned for result in done.values())
    reporter = Progress(f"evaluate {config.name}", total, cached, unit="cell", mode=progress_mode(progress))
    if cached >= total:
        reporter.notice(f"already complete: {total} of {total} cells (in {store.directory}); writing the report")
    else:
        reporter.notice(f"{total - cached} of {total} cells to compute ({cached} cached in {store.directory})")
    stop = StopSignals(reporter, then="keeping it", quit_note=lambda: (
        f"the cells computed so far are kept in {store.directory}: the same command resumes"))
    records = []
    try:
        for (dataset_label, arch_spec, seed, method_label), (arch, keys, done) in zip(units, planned):
            if stop.requested:
                break
            spec, data = datasets[dataset_label]
            method = methods[method_label]
            pending = [k for k, result in done.items() if result is None]
            if pending:
                split = seed_split(config, spec, data, seed)
                for cell, result in _compute_unit(config, method, base_model, arch, data, split, seed,
                                                  pending, readouts, keys, store):
                    done[cell] = result
                    reporter.update(note=f"{method_label} | {dataset_label} | {arch_spec} | seed {seed}")
                    if stop.requested:
                        break
            if stop.requested and any(result is None for result in done.values()):  # stopped within the unit
                break
            for (n_steps, shots), result in done.items():
                records.append({"method": method_label, "dataset": dataset_label,
                                "arch": f"{arch_spec[0]}x{arch_spec[1]}", "depth": arch_spec[0],
                                "width": arch_spec[1], "seed": seed, "steps": n_steps, "shots": shots,
                                "accuracy": result["accuracy"], "finite": result["finite"],
                                "filters": result.get("filters")})
    finally:
        reporter.close()
        stop.restore()
    if stop.signalled and reporter.done < total:  # stopped early: the cells so far are kept, no report
        return {"stopped": stop.signal, "cells_done": reporter.done, "cells_total": total}
    if is_shard(config):
        return {"shard": True, "cells": records, "datasets": status}
    return write_results(config, workdir, records, methods, datasets, status, store)


def is_shard(config) -> bool:
    return bool(config.only_seeds or config.only_datasets or config.only_methods)


def in_shard(config, dataset: str, seed: int, method: str) -> bool:
    """Whether a (dataset, seed, method) unit is this run's (`config.only_*`; a method swept over
    checkpoints, `learned@STEP`, is selected by its label before the @)."""
    return ((not config.only_seeds or seed in tuple(config.only_seeds))
            and (not config.only_datasets or dataset in tuple(config.only_datasets))
            and (not config.only_methods or method.split("@")[0] in tuple(config.only_methods)))


def _compute_unit(config, method: EvalMethod, base_model, arch, data: PreparedData, split: SeedSplit,
                  seed: int, pending, readouts, keys, store: CellStore):
    """Train `method` for one (dataset, arch, seed) and evaluate its pending cells as they come."""
    seed_key = functools.partial(study_key, config.seed, seed)
    problem = TrainingProblem(arch=arch, base_model=base_model, unlabelled=split.unlabelled,
                              batch_size=config.batch_size, data_key=seed_key(StudyPurpose.DATA_ORDER),
                              init_key=seed_key(StudyPurpose.MODEL_INIT), method_key=seed_key(StudyPurpose.METHOD),
                              num_classes=data.num_classes)
    shots_groups = ([(s,) for s in config.shots] if method.uses_labels else [tuple(config.shots)])
    for group in shots_groups:
        wanted = [k for k in pending if k[1] in group]
        if not wanted:
            continue
        run_problem = problem
        if method.uses_labels:
            index = split.few_shot[group[0]]
            run_problem = dataclasses.replace(problem, labeled_x=split.unlabelled[index],
                                              labeled_y=data.y_train[index])
        max_steps = max(k[0] for k in wanted)
        wanted_steps = tuple(sorted({k[0] for k in wanted}))
        for n_steps, model in method.train(run_problem, wanted_steps):
            filters_name = None
            weights = model.first_layer_weights()
            if seed == 0 and weights is not None and data.image_shape is not None:
                unpermuted = np.empty_like(weights)
                unpermuted[split.permutation] = weights  # row j belongs to pixel permutation[j]
                filters_name = store.put_filters(keys[n_steps, group[0]],
                                                 unpermuted[:, : config.num_filters])
            for shots in group:
                if (n_steps, shots) not in wanted:
                    continue
                index = split.few_shot[shots]
                predictions, finite = predict(model, split.unlabelled[index], data.y_train[index],
                                              split.test_x, data.num_classes, readouts,
                                              config.feature_batch)
                accuracy = {name: split.test_labels.accuracy(p) for name, p in predictions.items()}
                result = {"accuracy": accuracy, "finite": finite, "filters": filters_name}
                store.put(keys[n_steps, shots], result)
                yield (n_steps, shots), result
            if n_steps >= max_steps:
                break
