"""Learned rules shipped with the package: every folder beside this module holding
`rule.json` + `theta.npz` is registered as `pretrained:<folder name>`.

The one module of this kind whose names are not its file name: it registers one name per
shipped folder, so shipping a rule is adding a folder."""

from __future__ import annotations

import functools
import json
import pathlib

from metaplastic.registries import hookimpl

SHIPPED = pathlib.Path(__file__).parent


def _loader(directory: pathlib.Path):
    def load():
        from metaplastic.core.rules import load_rule

        return load_rule(directory)

    load.__doc__ = _summary(directory)  # what `metaplastic plugins` shows for it
    return load


def _summary(directory: pathlib.Path) -> str:
    """'`simple_local` rule on `mlp_bn`, 2532 meta-training steps.', read off rule.json."""
    try:
        description = json.loads((directory / "rule.json").read_text())
    except (OSError, ValueError):
        return "A shipped rule (its rule.json cannot be read)."
    steps = description.get("meta_training_steps")
    spent = f", {steps} meta-training steps" if steps is not None else ""
    return f"`{description.get('update_rule', '?')}` rule on `{description.get('base_model', '?')}`{spent}."


@functools.cache
def shipped_rules() -> dict[str, pathlib.Path]:
    if not SHIPPED.is_dir():
        return {}
    return {path.name: path for path in sorted(SHIPPED.iterdir()) if (path / "rule.json").exists()}


@hookimpl
def metaplastic_pretrained_rules():
    return {name: _loader(path) for name, path in shipped_rules().items()}
