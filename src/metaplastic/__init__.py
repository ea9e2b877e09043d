"""metaplastic: meta-learning unsupervised update rules in Flax/JAX."""

__version__ = "0.1.0"
