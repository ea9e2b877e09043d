"""metaplastic: meta-learning unsupervised update rules in Flax/JAX.

    rule = metaplastic.load_rule("pretrained:glyphs-v2")
    features = rule.fit(unlabelled, widths=(256, 32), steps=1000).features(unlabelled)
"""

__version__ = "0.1.0"


def load_rule(source):
    """A shipped rule (`pretrained:NAME`), a saved rule directory, or a meta-training workdir."""
    from metaplastic.core.rules import load_rule as _load

    return _load(source)
