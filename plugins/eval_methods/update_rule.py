"""`update_rule` evaluation method: run any registered update rule, learned or not, on held-out data.

θ comes from a `metaplastic train` workdir (`checkpoint`, latest step unless
`checkpoint_step` says otherwise; step 0 = the trainer's initial θ) or, without
a checkpoint, from the rule's `init_theta` (reported as untrained). An entry
with neither `rule` nor `checkpoint` takes the study's `rule_checkpoint`, else
the study's `rule`. The rule always runs on the study's base model, so every
method shares one architecture.
"""

from __future__ import annotations

import ast
import dataclasses
import pathlib
from typing import Any

import jax

from metaplastic.core import config as config_lib
from metaplastic.core.documented import documented
from metaplastic.core.evaluation import rule_snapshots
from metaplastic.core.interfaces import EvalMethod, EvaluationError
from metaplastic.core.checkpoint import checkpoint_steps, load_rule_from_workdir, workdir_config
from metaplastic.core.digest import pytree_digest
from metaplastic.core.renamed_fields import current_fields
from metaplastic.core.rules import PRETRAINED_PREFIX, load_rule
from metaplastic.registries import get_registry, hookimpl


def _options(options: tuple[str, ...], where: str) -> dict[str, Any]:
    parsed = {}
    for option in options:
        name, sep, text = option.partition("=")
        if not sep:
            raise EvaluationError(f"{where}: rule_options entries are 'field=value', got '{option}'")
        try:
            parsed[name.strip()] = ast.literal_eval(text.strip())
        except (ValueError, SyntaxError):
            parsed[name.strip()] = text.strip()
    return parsed


def theta_digest(theta) -> str:
    """θ's `pytree_digest`, shortened: part of a cell's settings, so a cell is recomputed when θ changes
    (and a rule folder's cells show the start of its rule.json `theta_sha256`)."""
    return pytree_digest(jax.device_get(theta))[:16]


def _config_fields(rule) -> dict[str, Any]:
    if not dataclasses.is_dataclass(rule):
        return {}
    return {f.name: getattr(rule, f.name) for f in dataclasses.fields(rule)
            if config_lib._is_config_value(getattr(rule, f.name))}


@dataclasses.dataclass(frozen=True)
class UpdateRuleMethod(EvalMethod):
    rule: str = documented("", "a registered update rule; \"\" = the study's rule / rule_checkpoint")
    checkpoint: str = documented("", "a `metaplastic train` workdir")
    checkpoint_step: int = documented(-1, "-1 = latest saved; 0 = the trainer's initial θ")
    theta_seed: int = documented(0, "without a checkpoint: θ = init_theta(PRNGKey(theta_seed))")
    rule_options: tuple[str, ...] = documented((), "'field=value' settings of a rule built without a checkpoint")

    def resolve(self, study) -> "LoadedRule":
        rule, checkpoint = self.rule, self.checkpoint
        if not rule and not checkpoint:
            checkpoint = study.rule_checkpoint
            rule = "" if checkpoint else study.rule
        base_model = config_lib.build(study, "base_model")
        if checkpoint:
            return self._from_checkpoint(rule, checkpoint, base_model, study)
        factory = get_registry().get("update_rule", rule)
        try:
            options = current_fields("update_rule_config", rule, _options(self.rule_options, f"rule '{rule}'"),
                                     where="rule_options: ", warn=True)
            built = factory(base_model=base_model, **options)
        except (TypeError, ValueError) as error:
            raise EvaluationError(f"update rule '{rule}': {error}") from None
        theta = built.init_theta(jax.random.PRNGKey(self.theta_seed))
        learned = bool(jax.tree.leaves(theta))
        text = (f"update rule '{rule}' with untrained θ (init_theta, seed {self.theta_seed})" if learned
                else f"update rule '{rule}' (hand-designed: no learned parameters)")
        settings = {"rule": rule, "rule_config": _config_fields(built), "checkpoint": "",
                    "theta": theta_digest(theta)}
        return LoadedRule(built, theta, settings, text)

    def train(self, problem, steps):
        raise EvaluationError("update_rule method: call resolve(study) first (it loads θ)")

    def _from_checkpoint(self, rule_name, checkpoint, base_model, study) -> "LoadedRule":
        if checkpoint.startswith(PRETRAINED_PREFIX) or (pathlib.Path(checkpoint) / "rule.json").exists():
            learned = load_rule(checkpoint)  # a shipped or saved rule: its own base model
            settings = {"rule": learned.description["update_rule"], "rule_config": _config_fields(learned.rule),
                        "checkpoint": checkpoint, "theta": theta_digest(learned.theta)}
            text = (f"update rule '{settings['rule']}' from {checkpoint} "
                    f"({learned.description.get('meta_training_steps', learned.description.get('step', '?'))} "
                    "meta-training steps)")
            return LoadedRule(learned.rule, learned.theta, settings, text)
        workdir = pathlib.Path(checkpoint).expanduser().absolute()
        saved = workdir_config(workdir)
        if rule_name and rule_name != saved.update_rule:
            raise EvaluationError(f"rule '{rule_name}' differs from the checkpoint's update_rule "
                                  f"'{saved.update_rule}' ({workdir})")
        steps = checkpoint_steps(workdir)
        step = self.checkpoint_step if self.checkpoint_step >= 0 else (steps[-1] if steps else None)
        if step is None:
            raise EvaluationError(f"rule checkpoint '{workdir}': no saved steps")
        rule, theta = load_rule_from_workdir(workdir, step, base_model=base_model)
        text = f"update rule '{saved.update_rule}', θ meta-trained for {step} steps ({workdir})"
        if saved.get("base_model") != study.base_model or dict(saved.get("base_model_config", {})) != \
                study.base_model_config.to_dict():
            text += (f"; meta-trained on base model '{saved.get('base_model')}' "
                     f"{dict(saved.get('base_model_config', {}))}, evaluated on '{study.base_model}' "
                     f"{study.base_model_config.to_dict()}")
        settings = {"rule": saved.update_rule, "rule_config": _config_fields(rule),
                    "checkpoint": str(workdir), "checkpoint_step": step, "theta": theta_digest(theta)}
        return LoadedRule(rule, theta, settings, text, workdir=workdir, base_model=base_model)


@dataclasses.dataclass(frozen=True, eq=False)
class LoadedRule(EvalMethod):
    """An update rule with its θ, ready to run."""

    rule: Any
    theta: Any
    settings: dict
    text: str
    workdir: pathlib.Path | None = None
    base_model: Any = None

    def identity(self):
        return self.settings

    def describe(self):
        return self.text

    def train(self, problem, steps):
        yield from rule_snapshots(self.rule, self.theta, problem, steps)

    def has_checkpoints(self):
        return self.workdir is not None

    def at_checkpoint_steps(self):
        """(meta-training step, this rule with θ from that step) for step 0 and every saved step."""
        if self.workdir is None:
            raise EvaluationError("config.checkpoint_sweep needs a rule checkpoint "
                                  "(set config.rule_checkpoint)")
        for step in [0] + checkpoint_steps(self.workdir):
            rule, theta = load_rule_from_workdir(self.workdir, step, base_model=self.base_model)
            settings = {**self.settings, "checkpoint_step": step, "theta": theta_digest(theta)}
            text = (f"update rule '{settings['rule']}', θ after {step} meta-training steps "
                    f"({self.workdir})")
            yield step, LoadedRule(rule, theta, settings, text, self.workdir, self.base_model)


@hookimpl
def metaplastic_eval_methods():
    return {"update_rule": UpdateRuleMethod}
