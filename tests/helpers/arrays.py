"""Array helpers for numerical checks."""


def as_float64(tree):
    """Every float32 leaf as float64 (call inside `jax.enable_x64(True)`): gradient checks in float64."""
    import jax
    import jax.numpy as jnp
    return jax.tree.map(lambda a: a.astype(jnp.float64) if a.dtype == jnp.float32 else a, tree)
