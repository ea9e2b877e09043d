"""metaplastic: meta-learning unsupervised update rules in Flax/JAX.

    import metaplastic
    rule = metaplastic.load_rule("pretrained:genome-glyphs-v1")
    features = rule.fit(unlabelled, widths=(256, 32)).features(unlabelled)   # steps: rule.recommended_steps

The public API, imported from here (each with its own docstring):

    load_rule(source=RECOMMENDED)            a shipped rule, a rule folder or a train workdir -> LearnedRule
    LearnedRule                              what load_rule returns: .fit, .run, .recommended_steps
    apply_rule(rule, module, params, x)      train the Dense layers of your own flax.linen MLP with a rule
    save_rule(directory, rule, theta=None)   a LearnedRule (or a run's config with θ) as a rule folder
    RidgeCosDist                             the meta-objective (`ridge_cosdist`): few-shot ridge readout
    run_study(study, workdir, overrides)     an evaluation study, as `metaplastic evaluate` runs it

Everything else is in `metaplastic.core` (the engine), `metaplastic.plugins` (components by kind) and
`metaplastic.registries`. `import metaplastic` imports no JAX until one of these is used.
"""

from __future__ import annotations

import importlib
import os

__version__ = "0.1.0"

# name -> (module, attribute): imported on first use, so that `import metaplastic` and the command line stay light
_PUBLIC = {
    "load_rule": ("metaplastic.core.rules", "load_rule"),
    "LearnedRule": ("metaplastic.core.rules", "LearnedRule"),
    "save_rule": ("metaplastic.core.rules", "save_rule"),
    "apply_rule": ("metaplastic.core.flax_models", "apply_rule"),
    "RidgeCosDist": ("metaplastic.plugins.meta_objectives.ridge_cosdist", "RidgeCosDist"),
}

__all__ = ["LearnedRule", "RidgeCosDist", "__version__", "apply_rule", "load_rule", "run_study", "save_rule"]


def __getattr__(name: str):
    if name not in _PUBLIC:
        raise AttributeError(f"module 'metaplastic' has no attribute '{name}'")
    module, attribute = _PUBLIC[name]
    value = getattr(importlib.import_module(module), attribute)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


def run_study(study, workdir: str | os.PathLike, overrides: dict | None = None, *, progress: bool = True) -> dict:
    """Run an evaluation study, as `metaplastic evaluate --config STUDY --workdir WORKDIR` does.

        metaplastic.run_study("experiments/eval/datasets.py:quick", "runs/eval",
                              {"rule_checkpoint": "pretrained:genome-glyphs-v1", "seeds": 2})

    study: a study config file, `path/to/study.py[:variant]` (the shipped experiments/eval/ files are
        found from any directory), or its ConfigDict.
    overrides: {dotted field: value}, as `--config.FIELD=VALUE` on the command line; values are given
        as Python values ((100, 1000), True) or as the command line's text.
    Every method is trained on held-out data for each step count and read out with few labels; the
    results go to `workdir` (results.json, results.csv, report.md, pictures) with every cell cached,
    so a second call resumes. Returns the results dict written to results.json.
    """
    import pathlib

    import metaplastic.experiments
    from metaplastic.core import config as config_lib
    from metaplastic.core import evaluation

    if isinstance(study, (str, os.PathLike)):
        study = config_lib.load_config_file(str(study), pathlib.Path(metaplastic.experiments.__file__).parent)
    pairs = [(field, value if isinstance(value, str) else repr(value)) for field, value in (overrides or {}).items()]
    return evaluation.run_study(evaluation.resolve_study(study, pairs), workdir, progress=progress)
