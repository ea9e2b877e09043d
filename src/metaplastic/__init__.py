"""metaplastic: meta-learning unsupervised update rules in Flax/JAX.

    rule = metaplastic.load_rule("pretrained:genome-glyphs-v1")
    features = rule.fit(unlabelled, widths=(256, 32), steps=1000).features(unlabelled)
"""

__version__ = "0.1.0"


def load_rule(source):
    """A shipped rule (`pretrained:NAME`), a saved rule directory, or a meta-training workdir."""
    from metaplastic.core.rules import load_rule as _load

    return _load(source)


def apply_rule(rule, module, params, unlabelled_data, steps=1000, batch_size=128, seed=0, *, module_kwargs=None):
    """Train the Dense layers of your flax.linen MLP with a learned rule; returns params of the same tree."""
    from metaplastic.core.flax_models import apply_rule as _apply

    return _apply(rule, module, params, unlabelled_data, steps=steps, batch_size=batch_size, seed=seed,
                  module_kwargs=module_kwargs)
