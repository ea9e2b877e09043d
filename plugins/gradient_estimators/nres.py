"""`nres`: Noise-Reuse Evolution Strategies (Li, Harrison, Sohl-Dickstein, Smith & Metz, NeurIPS 2023).

Like `pes`, every antithetic pair keeps its own two inner states for the whole
horizon, but the perturbation is drawn once, when the task's horizon starts
(`init_state`), and reused by every truncation: the positive state has only
ever been trained with θ+ε, the negative one with θ−ε, the same ε throughout.
Each truncation's estimate weights its own loss difference by that ε:

    g = mean_{t,p} ε_tp · clip(L⁺_tp − L⁻_tp) / (2σ²),

with L± the meta-loss averaged over this truncation's K steps only. Summed
over a horizon's truncations this is antithetic ES of the whole unroll's loss
with one ε per pair, so it is unbiased for the gradient of the (Gaussian-
smoothed) full-horizon loss, as PES is; no accumulator is needed, since the
one ε already accounts for everything that shaped the pair's states.

Why it has lower variance than PES: the loss difference is linear in the
perturbations to first order in σ (exactly, for a loss quadratic in θ). Write
g_sτ for the gradient of truncation τ's loss through the unroll of truncation
s ≤ τ, G_τ = Σ_{s≤τ} g_sτ (the full-unroll gradient of that loss) and d for the
dimension of θ. NRES's estimate at truncation τ is then ε εᵀ G_τ / σ², with

    Var_NRES = (d + 1) ‖G_τ‖²,

one random direction however many truncations came before. PES's is
ξ_τ (Σ_{s≤τ} ε_sᵀ g_sτ) / σ² with ξ_τ = Σ_{s≤τ} ε_s, τ independent draws:

    Var_PES = τ d Σ_{s≤τ} ‖g_sτ‖² + ‖G_τ‖²  ≥  Var_NRES   (Cauchy–Schwarz),

equal at the first truncation and when every truncation influences the loss
alike, and growing with τ as ξ accumulates noise. At an equal cost: both unroll
1 + 2·pairs members per task per truncation. (The claim is about each
truncation's estimate, the one every θ update uses. Summed over a whole horizon
NRES is full-unroll ES with one ε, which can vary more than PES's horizon sum
of many draws: about 1.2–1.4× on tests/helpers/linear_problem.py's linear problem.)

State (all pytrees, so checkpoints hold them; T leads every per-task array, so a
per-task reset can replace row t of every leaf with a fresh `init_state`'s):
  inner               [T, ...]         the unperturbed θ's trajectory (meta_loss, logging)
  extra.positive      [T, pairs, ...]  states trained with θ + ε since the horizon began
  extra.negative      [T, pairs, ...]  states trained with θ − ε since the horizon began
  extra.perturbation  θ-shaped leaves [T, pairs, ...]: ε, fixed for the horizon
`init_state(key)` takes θ's start states from `key` (the same ones every
estimator gets from that key) and ε from `fold_in(key, 1)`. The unroll key of
`estimate` only drives the unroll; the trainer's `init_state` at each horizon
draws the next ε.

Guards: loss differences are clipped to ±max_loss_diff. A pair whose loss or
carried states turn non-finite contributes zero (counted in
`es_nonfinite_pairs`) and both its states restart from θ's current state,
keeping its ε. Keeping ε, rather than drawing a fresh one, leaves ε a function
of the horizon's init key alone: `estimate` needs no randomness of its own, ε
never changes within a horizon (so a resumed or per-task-reset state is the same
wherever it was saved), and the restarted pair is a plain truncated-ES pair
(biased like `truncated_es`, but finite) for the rest of the horizon. If ε itself
made the unroll blow up, the pair keeps being dropped until the horizon ends,
and the diagnostics show it every truncation instead of hiding it behind a
fresh draw.
"""

from __future__ import annotations

import dataclasses
import functools

import flax.struct
import jax
import jax.numpy as jnp

from metaplastic.core.documented import documented
from metaplastic.core.estimation import (advance, es_combine, fresh_state, pair_loss_gap, per_pair,
                                         sample_perturbations, select_pairs, split_keys, unroll_carried_pairs,
                                         validate_es_fields)
from metaplastic.core.interfaces import GradientEstimator, InnerState, Pytree
from metaplastic.core.unroll import TruncatedUnroll
from metaplastic.registries import hookimpl


@flax.struct.dataclass
class NRESPairs:
    positive: InnerState  # [T, pairs, ...]
    negative: InnerState  # [T, pairs, ...]
    perturbation: Pytree  # θ-shaped leaves [T, pairs, ...]: ε, drawn at the horizon's start


@functools.partial(jax.jit, static_argnames=("estimator",))
def _nres_step(estimator: "NRES", theta, inner, pairs: NRESPairs, data, key):
    num_tasks, num_pairs = data.unlabelled.shape[0], estimator.num_pairs
    _, task_keys = split_keys(key, num_tasks)  # the unroll keys the sibling estimators use
    eps = pairs.perturbation
    run = unroll_carried_pairs(estimator.unroll, theta, eps, inner, pairs.positive, pairs.negative, data, task_keys)
    grad, metrics = es_combine(eps, run.loss_pos, run.loss_neg, run.usable, estimator.std, estimator.max_loss_diff)
    restart = per_pair(run.inner, num_pairs)
    next_pairs = NRESPairs(positive=select_pairs(run.usable, run.positive, restart),
                           negative=select_pairs(run.usable, run.negative, restart),
                           perturbation=eps)
    metrics.update(meta_loss=jnp.mean(run.losses), meta_loss_last=jnp.mean(run.losses[:, -1]),
                   nres_pair_loss_gap=pair_loss_gap(run))
    next_inner = run.inner
    return grad, next_inner, next_pairs, metrics


@dataclasses.dataclass(frozen=True)
class NRES(GradientEstimator):
    unroll: TruncatedUnroll = documented(doc="supplied by the engine (the truncated unroll of config.schedule)")
    std: float = documented(0.01, "perturbation standard deviation σ")
    num_pairs: int = documented(4, "antithetic pairs per task, each with one ε and two inner states per horizon")
    max_loss_diff: float = documented(1.0, "|L⁺ − L⁻| is clipped to this")

    def __post_init__(self):
        validate_es_fields(self.std, self.num_pairs, self.max_loss_diff)

    def init_state(self, theta, key, arch, num_tasks, horizon):
        state = fresh_state(self.unroll, key, arch, num_tasks, horizon)
        start = per_pair(state.inner, self.num_pairs)
        eps = sample_perturbations(theta, jax.random.fold_in(key, 1), self.std, num_tasks, self.num_pairs)
        return state.replace(extra=NRESPairs(positive=start, negative=start, perturbation=eps))

    def estimate(self, theta, state, data, key):
        if not isinstance(state.extra, NRESPairs):
            raise ValueError("nres: estimator state has no NRES pairs; it was not made by NRES.init_state")
        grad, inner, pairs, metrics = _nres_step(self, theta, state.inner, state.extra, data, key)
        return grad, advance(state, inner, data.unlabelled.shape[1], extra=pairs), metrics


@hookimpl
def metaplastic_gradient_estimators():
    return {"nres": NRES}
