"""`ridge_cosdist`: the paper's meta-objective.

Features of batches A and B come from one forward pass (batch statistics see
both). A ridge readout with an unpenalised bias is fit in closed form on A;
its predictions on B are L2-normalised and compared with the targets
(the bias is unpenalised in the fit and in the loss):
loss = Σ‖ŷ_B − y_B‖²/n_B + λ‖w‖²/n_B. With unit-norm targets this is an affine
function of the cosine distance. Targets are centred and scaled so their mean
squared row norm is 1: with `target_centring="columns"` (default) by each
column's mean over A, with A's statistics for both batches; with `"global"` as
the reference does, by one scalar mean over all of a batch's targets, each batch
(A and B) with its own statistics.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from metaplastic.core.documented import documented
from metaplastic.core.interfaces import LabeledBatch, MetaObjective
from metaplastic.core.ops.ridge import ridge_fit, ridge_predict
from metaplastic.registries import hookimpl


CENTRINGS = ("columns", "global")


def _centre_global(y: jax.Array) -> jax.Array:
    """The reference's centring: minus one scalar mean, scaled to mean squared row norm 1."""
    y = y - jnp.mean(y)
    return y * jax.lax.rsqrt(jnp.mean(jnp.sum(jnp.square(y), axis=1)) + 1e-12)


@dataclasses.dataclass(frozen=True)
class RidgeCosDist(MetaObjective):
    """Closed-form ridge readout fit on batch A's features, scored on batch B by cosine distance.

    Public as `metaplastic.RidgeCosDist` (registered as `ridge_cosdist`); lower is better:

        from metaplastic.core.interfaces import LabeledBatch
        loss = metaplastic.RidgeCosDist().loss(features_fn, LabeledBatch(x_a, y_a), LabeledBatch(x_b, y_b))

    features_fn maps inputs [n, D] to features [n, F] and is called once on A and B together; y is
    one-hot labels [n, C] (plus any regression targets). Differentiable through features_fn.
    """

    ridge_lambda: float = documented(0.1, "ridge penalty λ of the readout fit (and of the loss)")
    center_y: bool = documented(True, "centre and scale the targets by batch A's statistics before the fit")
    normalise_predictions: bool = documented(
        True, "scale each prediction on batch B to unit norm (the cosine distance)")
    target_centring: str = documented("columns", "columns (A's per-column statistics) | global (the reference)")

    def __post_init__(self):
        if self.target_centring not in CENTRINGS:
            raise ValueError(f"meta_objective_config.target_centring: '{self.target_centring}' is not one of "
                             f"{', '.join(CENTRINGS)}")
        if self.ridge_lambda < 0:
            raise ValueError(f"meta_objective_config.ridge_lambda: must be >= 0, got {self.ridge_lambda}")

    def loss_name(self) -> str:
        return "cosine distance"

    def loss(self, features_fn, batch_a: LabeledBatch, batch_b: LabeledBatch) -> jax.Array:
        n_a = batch_a.x.shape[0]
        features = features_fn(jnp.concatenate([batch_a.x, batch_b.x], axis=0))
        u_a, u_b = features[:n_a], features[n_a:]
        y_a, y_b = batch_a.y, batch_b.y
        if self.center_y and self.target_centring == "global":
            y_a, y_b = _centre_global(y_a), _centre_global(y_b)
        elif self.center_y:
            mean = jnp.mean(y_a, axis=0, keepdims=True)
            scale = jnp.sqrt(jnp.mean(jnp.sum(jnp.square(y_a - mean), axis=1)) + 1e-12)
            y_a, y_b = (y_a - mean) / scale, (y_b - mean) / scale
        weights = ridge_fit(u_a, y_a, self.ridge_lambda)
        predictions = ridge_predict(weights, u_b)
        if self.normalise_predictions:
            predictions = predictions * jax.lax.rsqrt(jnp.sum(jnp.square(predictions), axis=1, keepdims=True) + 1e-12)
        n_b = batch_b.x.shape[0]
        return (jnp.sum(jnp.square(predictions - y_b)) + self.ridge_lambda * jnp.sum(jnp.square(weights[:-1]))) / n_b


@hookimpl
def metaplastic_meta_objectives():
    return {"ridge_cosdist": RidgeCosDist}
