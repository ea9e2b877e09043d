import jax
import numpy as np
import pytest
from sklearn.datasets import load_digits
from sklearn.linear_model import LogisticRegression

import metaplastic
from metaplastic.core import config as config_lib
from metaplastic.core.rules import load_rule, save_rule
from metaplastic.core.trainer import MetaTrainer
from metaplastic.registries import get_registry


@pytest.mark.parametrize("name", ["glyphs-v1", "glyphs-v2"])
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
    assert {"glyphs-v1", "glyphs-v2"} <= set(names)
    v1, v2 = (metaplastic.load_rule(f"pretrained:glyphs-v{i}") for i in (1, 2))
    assert 0 < v1.description["meta_training_steps"] < v2.description["meta_training_steps"]
    with pytest.raises(Exception, match="unknown pretrained_rule 'glyphs-v0'"):
        metaplastic.load_rule("pretrained:glyphs-v0")
    with pytest.raises(ValueError, match="not a pretrained name"):
        metaplastic.load_rule("/nonexistent/rule")


def test_save_load_round_trip_from_workdir(tmp_path):
    config = config_lib.resolve(config_lib.load_config_file("experiments/train/quickstart.py:tiny"))
    trainer = MetaTrainer(config, tmp_path / "run")
    trainer.run(progress=False)
    from_workdir = load_rule(tmp_path / "run")
    save_rule(tmp_path / "saved", config.to_dict(), from_workdir.theta)
    from_folder = load_rule(tmp_path / "saved")
    for a, b, c in zip(jax.tree.leaves(trainer.theta), jax.tree.leaves(from_workdir.theta),
                       jax.tree.leaves(from_folder.theta), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
        np.testing.assert_array_equal(np.asarray(a), np.asarray(c))
    x = np.random.default_rng(0).uniform(size=(64, 8, 8))
    one = from_folder.fit(x, widths=(16, 8), steps=3, batch_size=16, seed=4).features(x)
    two = from_workdir.fit(x, widths=(16, 8), steps=3, batch_size=16, seed=4).features(x)
    np.testing.assert_array_equal(one, two)
    with pytest.raises(ValueError, match="fewer than batch_size"):
        from_folder.fit(x[:4], widths=(16, 8), steps=1, batch_size=16)
