"""Compact snapshots of a meta-training run: θ, the optimiser state, the step and the config, in one
.npz file of a few MB, so a run can continue on a clean machine (or a GPU for a few minutes).

Inner states are not kept: a run started from a snapshot draws a fresh task group at the
snapshot's step (its key scheme is the same), so it continues the run, not bit for bit the
uninterrupted one. `MetaTrainer` starts from one with `config.init_snapshot=PATH` when its
workdir has no checkpoint yet.
"""

from __future__ import annotations

import io
import json
import pathlib

import flax.serialization
import jax
import numpy as np

from metaplastic.core.errors import UserError
from metaplastic.core.ops.files import NpzError, read_npz, write_atomic
from metaplastic.core.renamed_fields import current_config

FORMAT_VERSION = 1


class SnapshotError(UserError, ValueError):
    """A snapshot that cannot be read, or does not fit this config; or a workdir with nothing to snapshot."""


def _flatten(prefix: str, tree) -> dict[str, np.ndarray]:
    state = flax.serialization.to_state_dict(jax.device_get(tree))
    leaves = jax.tree_util.tree_flatten_with_path(state)[0]
    return {f"{prefix}{jax.tree_util.keystr(path)}": np.asarray(leaf) for path, leaf in leaves}


def _unflatten(prefix: str, arrays: dict[str, np.ndarray], template, where: str, hint: str = ""):
    state = flax.serialization.to_state_dict(template)
    leaves, treedef = jax.tree_util.tree_flatten_with_path(state)
    restored = []
    for path, leaf in leaves:
        name = f"{prefix}{jax.tree_util.keystr(path)}"
        if name not in arrays or arrays[name].shape != np.shape(leaf):
            found = "is missing" if name not in arrays else f"has shape {arrays[name].shape}"
            raise SnapshotError(f"{where}: {name} {found}, this config needs shape {np.shape(leaf)}{hint}")
        restored.append(np.asarray(arrays[name], np.asarray(leaf).dtype))
    return flax.serialization.from_state_dict(template, jax.tree_util.tree_unflatten(treedef, restored))


def save_snapshot(path: str | pathlib.Path, theta, opt_state, step: int, skipped: int, config: dict,
                  extra: dict | None = None) -> None:
    """Write the snapshot atomically (a crash leaves the previous file)."""
    meta = {"format_version": FORMAT_VERSION, "step": int(step), "skipped": int(skipped), "config": config,
            **(extra or {})}
    arrays = {**_flatten("theta", theta), **_flatten("opt_state", opt_state),
              "meta": np.asarray(json.dumps(meta, default=str))}
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    write_atomic(pathlib.Path(path), buffer.getvalue())


def read_meta(path: str | pathlib.Path) -> dict:
    with np.load(path, allow_pickle=False) as stored:
        return json.loads(str(stored["meta"]))


def load_snapshot(path: str | pathlib.Path, theta_template, opt_state_template, config: dict | None = None):
    """(θ, optimiser state, meta) with the structure of the templates; one-line SnapshotError otherwise.

    `config` (the run's config as a dict): a snapshot of another update rule is refused by name, and
    one of other sizes names the fields that differ."""
    path = pathlib.Path(path)
    where = f"snapshot '{path}'"
    try:
        arrays = read_npz(path)
    except NpzError as error:
        raise SnapshotError(f"{where}: {error.reason}") from None
    if "meta" not in arrays:
        raise SnapshotError(f"{where}: not a metaplastic snapshot (no meta; `metaplastic snapshot` writes one)")
    try:
        meta = json.loads(str(arrays.pop("meta")))
    except ValueError:
        raise SnapshotError(f"{where}: not a metaplastic snapshot (its meta is not JSON)") from None
    if not isinstance(meta, dict) or meta.get("format_version") != FORMAT_VERSION:
        version = meta.get("format_version") if isinstance(meta, dict) else None
        raise SnapshotError(f"{where}: format version {version} (this metaplastic reads {FORMAT_VERSION})")
    if isinstance(meta.get("config"), dict):
        meta["config"] = current_config(meta["config"], where=f"{where}: ")
    hint = ""
    if config is not None:
        theirs = meta.get("config") if isinstance(meta.get("config"), dict) else {}
        if theirs.get("update_rule") not in (None, config.get("update_rule")):
            raise SnapshotError(f"{where}: a snapshot of a '{theirs['update_rule']}' run; this config trains "
                                f"config.update_rule='{config.get('update_rule')}'")
        changed = [f"{section}.{key}={theirs[section][key]!r} (here {config[section].get(key)!r})"
                   for section in ("update_rule_config", "base_model_config")
                   if isinstance(theirs.get(section), dict) and isinstance(config.get(section), dict)
                   for key in sorted(theirs[section]) if theirs[section][key] != config[section].get(key)]
        hint = f" (the snapshot's run had {', '.join(changed)})" if changed else ""
    theta = _unflatten("theta", arrays, theta_template, where, hint)
    opt_state = _unflatten("opt_state", arrays, opt_state_template, where, hint)
    return theta, opt_state, meta


def export_snapshot(workdir: str | pathlib.Path, path: str | pathlib.Path) -> dict:
    """The newest intact checkpoint of a `metaplastic train` workdir as a snapshot file; returns its meta."""
    from metaplastic.core.checkpoint import Checkpointer

    workdir = pathlib.Path(workdir)
    if not (workdir / "checkpoints").is_dir() or not (workdir / "config.json").is_file():
        raise SnapshotError(f"workdir '{workdir}': no checkpoints/ or config.json (not a `metaplastic train` "
                            "workdir)")
    checkpointer = Checkpointer(workdir / "checkpoints")
    try:
        found = checkpointer.restore_newest_intact(None)
    finally:
        checkpointer.close()
    if found is None:
        raise SnapshotError(f"workdir '{workdir}': no checkpoint saved yet")
    step, meta, state = found
    save_snapshot(path, state["theta"], state["opt_state"], step, meta["skipped"],
                  json.loads((workdir / "config.json").read_text()),
                  {"elapsed_seconds": meta.get("elapsed_seconds", 0.0)})
    return read_meta(path)
