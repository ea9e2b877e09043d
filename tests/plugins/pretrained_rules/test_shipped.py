"""The shipped rules (`pretrained:NAME`): five lines on unseen data, provenance, format fields, model
cards and the steps they advise."""

import json
import pathlib

import jax
import numpy as np
import pytest
from sklearn.datasets import load_digits
from sklearn.linear_model import LogisticRegression

import metaplastic
from metaplastic.core.digest import pytree_digest
from metaplastic.core.rule_files import FORMAT_VERSION
from metaplastic.plugins.eval_methods.update_rule import theta_digest
from metaplastic.plugins.pretrained_rules.shipped import SHIPPED, shipped_rules
from metaplastic.registries import get_registry


@pytest.mark.parametrize("name", ["glyphs-v1", "glyphs-v2", "genome-glyphs-v1", "genome-glyphs-wide-v1"])
def test_shipped_rule_in_five_lines_on_unseen_data(name):
    unlabelled = load_digits().images[:1000] / 16.0  # sklearn digits: never seen in meta-training
    rule = metaplastic.load_rule(f"pretrained:{name}")
    model = rule.fit(unlabelled, widths=(96, 48, 32), steps=50, batch_size=100)
    features = model.features(unlabelled)

    assert features.shape == (1000, 32) and np.isfinite(features).all()
    assert features.std(axis=0).min() > 0  # no dead or constant unit after training
    labels = load_digits().target[:1000]
    readout = LogisticRegression(max_iter=500).fit(features[:500], labels[:500])
    assert readout.score(features[500:], labels[500:]) > 0.5  # chance is 0.1


def test_shipped_rules_are_registered_with_provenance():
    names = get_registry().names("pretrained_rule")
    assert {"glyphs-v1", "glyphs-v2", "metz2019-glyphs-v1", "genome-glyphs-v1", "genome-glyphs-wide-v1"} <= set(names)
    assert set(shipped_rules()) <= set(names)
    v1, v2 = (metaplastic.load_rule(f"pretrained:glyphs-v{i}") for i in (1, 2))
    assert 0 < v1.description["meta_training_steps"] < v2.description["meta_training_steps"]
    with pytest.raises(Exception, match="unknown pretrained_rule 'glyphs-v0'"):
        metaplastic.load_rule("pretrained:glyphs-v0")
    with pytest.raises(ValueError, match="'/nonexistent/rule': does not exist"):
        metaplastic.load_rule("/nonexistent/rule")


@pytest.mark.parametrize("name", sorted(shipped_rules()))
def test_shipped_rules_carry_format_fields_and_a_model_card(name):
    folder = pathlib.Path(SHIPPED) / name
    description = json.loads((folder / "rule.json").read_text())
    assert description["format_version"] == FORMAT_VERSION and description["input_spec"]["pixels"] == "[0, 1]"
    theta = metaplastic.load_rule(f"pretrained:{name}").theta  # loading checks the digest itself
    assert description["theta_sha256"] == pytree_digest(theta)
    # an evaluation cell of the rule names its θ by the same digest
    assert theta_digest(theta) == description["theta_sha256"][:16]
    card = (folder / "MODEL_CARD.md").read_text()
    assert f"{description['meta_training_steps']:,}" in card and "Fashion-MNIST" in card


@pytest.mark.parametrize("name", sorted(shipped_rules()))
def test_shipped_rules_recommend_the_steps_their_model_cards_advise(name):
    rule = metaplastic.load_rule(f"pretrained:{name}")
    card = (pathlib.Path(SHIPPED) / name / "MODEL_CARD.md").read_text()
    assert f"**Recommended steps.** {rule.recommended_steps:,} " in card
    shown = repr(rule)
    assert "\n" not in shown and len(shown) < 160
    size = sum(np.size(leaf) for leaf in jax.tree.leaves(rule.theta))
    for part in (f"pretrained:{name}", rule.description["update_rule"], f"{size:,}",
                 f"recommended steps {rule.recommended_steps}"):
        assert part in shown, (part, shown)
