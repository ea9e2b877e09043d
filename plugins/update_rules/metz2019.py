"""`metz2019`: the learned unsupervised update rule of Metz et al. (ICLR 2019).

One inner step, top layer down to the input pixels (levels L..0):
  1. top-down signal d from the top activations (`top_delta`);
  2. per-unit hidden state h [B, units, H] from (x, z, position code, d, weight
     statistics, bias) by networks that run along the batch axis (`unit_state`);
  3. δ = d·σ(z) + Linear(h); the level below receives d = δ Vᵀ, normalised per
     (example, unit) vector over its channels;
  4. each W gets the learned mix of twelve candidate terms (`weight_change`),
     then anti-shrink projection, renormalisation and the fixed −w/7 pull; V gets
     the same change (identical updates), b a shifted, normalised readout;
  5. every parameter moves as p ← p·(1 − inner_lr) − inner_lr·Δp.

With prior="hebbian" the rule starts *at* the hand-designed competitive rule (`hebbian`) and learns
what it adds (a residual, as learned optimisers with a nominal term do):
  W ← unit_columns(W + η_p(t)·(g_c·competitive + g_s·sanger) − η_l(t)·ΔW_learned),  b ← b − η_l(t)·Δb,
with the directions of `core.ops.plasticity`, ΔW_learned the mix of the twelve terms (each column
RMS-normalised, the sum scaled to unit column norm per unit of mix weight; no −w/7 pull, since
unit-norm columns already fix |W|), and step sizes η(t) = min(max_step, exp(log η + Σ_j c_j tanh(t/τ_j)))
that may learn to anneal. θ₀: g = (1, 0), η_p = prior_learning_rate, temperature = prior_temperature,
every mix weight, the schedule and the bias readout zero, so the rule *is* `hebbian` (tested); the
readout networks keep their random initialisation, so their gradient is not zero once a mix weight
moves. The *genome* (`genome_mask`) is what acts without the networks: θ["genome"], the mix weights
of the four HAND_TERMS and the mix's offset, the bias readout's offset. nets=False skips the networks
(exactly the same rule while the other mix weights are zero: the genome stage, ~10× cheaper).

It is long because the rule is one unit (its prior included): its sub-networks share one θ layout,
the batch-statistics layers and the matmul-form convolutions, and none of it is used by another
component (what would be shared belongs in core/).
Labels never reach the rule; the input permutation per task is done by the task
family. θ does not depend on the architecture: every sub-network is shared by
all units of all layers, and all cross-unit operations are width-agnostic
(default top_mixing="mean"; top_mixing="dense" ties θ to a top width).
At θ's initialisation the learned part of ΔW is small next to the fixed −w/7
pull (`learned_share`: ~1.5 % at the reference's mix_init 0.1; it grows in
proportion to mix_init while small).

Invariances (tested):
  * batch_net="conv" (reference, 1-D convolutions over neighbouring examples,
    zero padding): reversing the order of the examples gives exactly the update
    obtained with every batch-axis kernel flipped; other reorderings change the
    update. With batch_padding="circular", cyclic shifts leave it unchanged.
  * batch_net="mlp" (the paper's description: per-unit networks that see each
    example and the batch mean): exactly invariant to any reordering.
  * Units: the position code and the convolutions over neighbouring units make
    the update depend on unit order. Reversing the order of the units of every
    level gives exactly the update obtained with the unit-axis kernels flipped
    and the sine channel negated (sin(4π − t) = −sin t). Without position code
    and unit convolutions (and with top_mixing="mean"), any relabelling of units
    permutes the update.
  * Locality: the readout terms (0th order, rbf, 1st order, Hebbian) of ΔW_ij
    depend only on the pre-synaptic unit i and the post-synaptic unit j. The
    lateral terms (decorrelation, lin/sqr) mix units through unit×unit matrices;
    the per-column renormalisations see unit j's whole incoming column; the
    anti-shrink projection and the decorrelation RMS are layer-wide scalars.

Deviations from the reference code (and why):
  * Top-down net (top_mixing="mean", default): the reference's two "lateral"
    blocks (units become channels; a kernel-3 convolution over the batch mixes
    all top units densely; BN with per-unit offsets) tie θ to one top width.
    They are replaced by width-agnostic blocks: each unit's own signal plus the
    mean over all units, each through a batch-axis layer, summed → BN → ReLU.
    top_mixing="dense" is the reference's form for the fixed top width
    `top_width`; on any other top width the rule raises a ValueError.
  * Convolution biases directly followed by BN are omitted (BN removes them).
  * Products with the unit×unit matrices of the lateral terms use their low-rank
    form, (w Aᵀ) C instead of w (Aᵀ C), when that is cheaper (chosen from static
    shapes; same maths); this makes the cost O(N²·B) rather than O(N³).
  * batch_net="mlp", batch_padding="circular", position_code=False,
    unit_conv=False, identical_updates=False, remat and mix_init ≠ 0.1 are
    options, not reference.
Not deviations (checked against the released code; results are the same):
  * BN in the update nets normalises with current batch statistics. So does the
    reference: its top-down net calls Sonnet's BatchNorm with is_training=False,
    but the default test_local_stats=True still uses local batch statistics
    (and compute_h uses is_training=True).
  * V has no bias: the reference creates backward biases but never reads or
    updates them.
  * No random subset of units (compute_perc): the reference's compute_perc is
    always 1.0 (the default, never passed), i.e. all units. The rule is
    deterministic and ignores its key.
"""

from __future__ import annotations

import dataclasses
import functools
import math

import jax
import jax.numpy as jnp
import numpy as np

from metaplastic.core.documented import documented
from metaplastic.core.interfaces import Architecture, BaseModel, InnerState, UpdateRule
from metaplastic.core.ops import normalise
from metaplastic.core.ops.plasticity import competitive_update, sanger_update, unit_columns
from metaplastic.registries import hookimpl

# Sorted like the reference's dict keys, which fixes the order of the mix weights.
TERM_NAMES = ("0_order", "1_order", "decorr_x", "hebb", "large_decay", "lin_lower_symm",
              "lin_upper_psd", "lin_upper_symm", "rbf", "sqr_lower_symm", "sqr_upper_symm", "w_base")
READOUT_NAMES = ("weight_readout_0", "weight_readout_rbf", "weight_readout_1", "lin_upper_symm",
                 "lin_upper_psd", "lin_lower_symm", "sqr_upper_symm", "sqr_lower_symm")
NUM_UNIT_FEATURES = 4      # x, z, sin, cos
NUM_WEIGHT_STATS = 8       # 4 over incoming + 4 over outgoing weights
SIN_CHANNEL = 2            # index of the sine code among the unit features
SEQUENTIAL_TERMS_ABOVE = 1 << 22  # weight matrices larger than this sum their 12 terms in a loop
PULL_DIVISOR = 7.0         # ΔW −= w_base / 7 keeps receptive fields from collapsing
TOP_MIXINGS = ("mean", "dense")
PRIORS = ("none", "hebbian")
HAND_TERMS = ("decorr_x", "hebb", "large_decay", "w_base")  # the terms that need no network
PRIOR_TERMS = ("competitive", "sanger")  # prior="hebbian": the hand-designed rule's directions
TIME_SCALES = (10.0, 100.0, 1000.0, 10000.0)  # inner steps: the step-size schedule's tanh(t/τ) features


# ------------------------------------------------------------------ small pure helpers

def _truncated_normal(key, shape, std):
    return std * jax.random.truncated_normal(key, -2.0, 2.0, shape, jnp.float32)


def _linear_init(key, fan_in, fan_out):
    return {"w": _truncated_normal(key, (fan_in, fan_out), 1.0 / math.sqrt(fan_in)),
            "b": jnp.zeros((fan_out,), jnp.float32)}


def _linear(p, a):
    return a @ p["w"] + p["b"]


def conv1d(a, kernel, axis, circular=False):
    """'SAME' 1-D cross-correlation along `axis` (0 or 1) of a [X, Y, C_in] with kernel [k, C_in, C_out].

    Written as one matmul over the k shifted copies stacked on the channel axis.
    XLA:CPU runs its own convolutions 4–40× slower inside loops (the inner-step
    scan), and their gradients worst of all; a matmul stays fast everywhere.
    """
    k, c_in, c_out = kernel.shape
    r = k // 2
    n = a.shape[axis]
    if circular:
        a = jnp.take(a, jnp.arange(-r, n + k - 1 - r) % n, axis=axis)
    else:
        padding = [(0, 0)] * a.ndim
        padding[axis] = (r, k - 1 - r)
        a = jnp.pad(a, padding)
    shifted = [jax.lax.slice_in_dim(a, j, j + n, axis=axis) for j in range(k)]
    return jnp.concatenate(shifted, axis=-1) @ kernel.reshape(k * c_in, c_out)


def weight_stats(w, axis):
    """[l1, l2, mean, std] of w over `axis`: one value per unit of the other axis."""
    mean = jnp.mean(w, axis=axis)
    var = jnp.mean(jnp.square(w - jnp.expand_dims(mean, axis)), axis=axis)
    return [jnp.mean(jnp.abs(w), axis=axis), jnp.sqrt(jnp.mean(jnp.square(w), axis=axis) + 1e-6),
            mean, jnp.sqrt(var + 1e-8)]


def position_code(units, dtype):
    angle = jnp.linspace(0.0, 4.0 * jnp.pi, units, dtype=dtype)
    return jnp.sin(angle), jnp.cos(angle)


def sym_gram_product(m, a, c, scale, zero_diagonal, low_rank=None):
    """m @ S for the symmetric unit×unit matrix S built from readouts a, c [r, n].

    S = scale·aᵀa if c is None (PSD form), else scale·(aᵀc + cᵀa)/√2, optionally with
    its diagonal set to zero. `low_rank` None picks the cheaper of forming S or
    multiplying by the factors (static shapes, same result).
    """
    p, n = m.shape
    r = a.shape[0]
    if c is None:
        if low_rank is None:
            low_rank = n * (r + p) >= 2 * p * r
        if low_rank:
            return scale * ((m @ a.T) @ a)
        return m @ (scale * (a.T @ a))
    if low_rank is None:
        low_rank = n * (r + p) >= 4 * p * r
    if low_rank:
        mac = m @ jnp.concatenate([a, c], axis=0).T                      # [p, 2r]
        out = (scale / math.sqrt(2.0)) * (mac[:, :r] @ c + mac[:, r:] @ a)
        if zero_diagonal:
            out = out - m * (scale * math.sqrt(2.0) * jnp.sum(a * c, axis=0))
        return out
    u = a.T @ c
    s = (scale / math.sqrt(2.0)) * (u + u.T)
    if zero_diagonal:
        s = s * (1.0 - jnp.eye(n, dtype=s.dtype))
    return m @ s


def _after(x, y):
    """x, made to depend on y (one scalar of it) so that XLA computes y first."""
    token = jax.lax.stop_gradient(jnp.ravel(y)[0])
    return x + jnp.zeros((), x.dtype) * token.astype(x.dtype)


def readout_factors(p, h):
    """Linear readout of h [B, U, H] to k channels, as factors [k·B, U]."""
    r = _linear(p, h)                                   # [B, U, k]
    return jnp.transpose(r, (2, 0, 1)).reshape(-1, r.shape[1])


# ------------------------------------------------------------------ the rule

@dataclasses.dataclass(frozen=True)
class Metz2019Rule(UpdateRule):
    base_model: BaseModel = documented(doc="supplied by the engine (config.base_model)")
    inner_lr: float = documented(1e-4, "every parameter moves as p ← p·(1 − inner_lr) − inner_lr·Δp")
    batch_net: str = documented("conv", "\"conv\" (reference) or \"mlp\" (paper's description)")
    batch_padding: str = documented("zeros", '"zeros" (reference) or "circular" (batch_net="conv")')
    top_delta_size: int = documented(64, "channels of the top-down network")
    top_delta_layers: int = documented(2, "batch-axis layers of the top-down network after its lateral blocks")
    compute_h_size: int = documented(64, "channels of the per-unit hidden state h")
    compute_h_layers: int = documented(1, "batch-axis layers (beyond the first) that compute h")
    delta_dim: int = documented(32, "channels of the top-down signal d passed to each level")
    num_grad_channels: int = documented(
        4, "readout channels per side of a weight (pre- and post-synaptic factors)")
    normalise_epsilon: float = documented(1.0, "epsilon of the RMS normalisations of the weight-change terms")
    bn_epsilon: float = documented(1e-3, "epsilon of the batch normalisations inside the update networks")
    position_code: bool = documented(True, "give each unit a sine/cosine code of its position in its layer")
    unit_conv: bool = documented(True, "lateral convolutions over neighbouring units")
    identical_updates: bool = documented(True, "V gets W's change; else its own readouts and mix")
    remat: bool = documented(False, "recompute each level's unit state in the backward pass")
    top_mixing: str = documented("mean", 'top-down lateral blocks: "mean" (width-agnostic) or "dense" (reference)')
    top_width: int = documented(32, 'top layer width θ is built for (top_mixing="dense" only)')
    mix_init: float = documented(0.1, "initial value of every mix weight (reference: 0.1)")
    hand_written_gradients: bool = documented(
        False,
        "normalisations' backward passes from core.ops.normalise: same maths, −22 % gradient memory and −8 % "
        "time without remat, +15 % time with remat (docs/performance.md); reverse mode only (no jax.jvp)")
    prior: str = documented("none", '"hebbian": start at the hand-designed competitive rule (module docstring)')
    prior_learning_rate: float = documented(
        0.1, "prior=\"hebbian\": the prior's step at θ₀ (hebbian's learning_rate)")
    prior_temperature: float = documented(
        0.3, "prior=\"hebbian\": softmax temperature at θ₀ (hebbian's temperature)")
    max_step: float = documented(1.0, 'prior="hebbian": cap on the scheduled step sizes')
    nets: bool = documented(
        True,
        "False: skip the per-unit networks (their terms count as zero; the genome stage, exact while the learned "
        "terms' mix weights are zero)")

    def __post_init__(self):
        if self.batch_net not in ("conv", "mlp"):
            raise ValueError(f"update_rule_config.batch_net: '{self.batch_net}' (known: conv, mlp)")
        if self.batch_padding not in ("zeros", "circular"):
            raise ValueError(f"update_rule_config.batch_padding: '{self.batch_padding}' "
                             "(known: zeros, circular)")
        if self.top_mixing not in TOP_MIXINGS:
            raise ValueError(f"update_rule_config.top_mixing: '{self.top_mixing}' (known: {', '.join(TOP_MIXINGS)})")
        if self.prior not in PRIORS:
            raise ValueError(f"update_rule_config.prior: '{self.prior}' (known: {', '.join(PRIORS)})")
        if not self.nets and self.prior == "none":
            raise ValueError("update_rule_config.nets=False needs prior='hebbian' (without a prior the rule is "
                             "its networks)")
        for name in ("prior_learning_rate", "prior_temperature", "max_step"):
            if not getattr(self, name) > 0:
                raise ValueError(f"update_rule_config.{name}: must be > 0, got {getattr(self, name)}")

    def check_top_width(self, width):
        """With top_mixing="dense", θ fits one top width only: raise a one-line error otherwise."""
        if self.top_mixing == "dense" and width != self.top_width:
            raise ValueError(f"update_rule_config.top_width is {self.top_width} but the top layer is {width} units "
                             "wide (top_mixing='dense' ties θ to the top width)")

    # ---------------------------------------------------------------- normalisations

    def _bn(self, a, offset, relu=False):
        """Batch norm over examples and units (current statistics) + offset, then ReLU if asked."""
        fn = normalise.batch_norm if self.hand_written_gradients else normalise.batch_norm_plain
        return fn(a, offset, self.bn_epsilon, relu)

    def _rms(self, t, axis, eps):
        """t / √(eps + mean of t² over axis): columns of a weight change, vectors of a signal."""
        fn = normalise.rms_normalise if self.hand_written_gradients else normalise.rms_normalise_plain
        return fn(t, axis, eps)

    # ---------------------------------------------------------------- θ

    def _batch_layer_init(self, key, c_in, c_out, kernel_size):
        if self.batch_net == "conv":
            return {"kernel": _truncated_normal(key, (kernel_size, c_in, c_out),
                                                1.0 / math.sqrt(kernel_size * c_in))}
        k1, k2 = jax.random.split(key)
        std = 1.0 / math.sqrt(2 * c_in)
        return {"self": _truncated_normal(k1, (c_in, c_out), std),
                "pool": _truncated_normal(k2, (c_in, c_out), std)}

    def _batch_layer(self, p, a):
        """Layer along the batch axis of a [B, U, C]: a convolution, or each example plus the batch mean."""
        if self.batch_net == "conv":
            return conv1d(a, p["kernel"], axis=0, circular=self.batch_padding == "circular")
        return a @ p["self"] + jnp.mean(a, axis=0, keepdims=True) @ p["pool"]

    def _unit_block_init(self, key, channels):
        k1, k2 = jax.random.split(key)
        std = 1.0 / math.sqrt(3 * channels)
        zeros = jnp.zeros((channels,), jnp.float32)
        return {"conv_a": _truncated_normal(k1, (3, channels, channels), std), "offset_a": zeros,
                "conv_b": _truncated_normal(k2, (3, channels, channels), std), "offset_b": zeros}

    def _readouts_init(self, key, hidden):
        names = [(n, side) for n in READOUT_NAMES for side in ("top", "bottom")
                 if not (n == "lin_upper_psd" and side == "bottom")]
        keys = jax.random.split(key, len(names))
        out = {n: {} for n in READOUT_NAMES}
        for (n, side), k in zip(names, keys):
            out[n][side] = _linear_init(k, hidden, self.num_grad_channels)
        return {"readouts": out,
                "mix": {"w": jnp.full((len(TERM_NAMES),), self.mix_init, jnp.float32),
                        "b": jnp.zeros((), jnp.float32)}}

    def init_theta(self, key):
        keys = iter(jax.random.split(key, 32))
        s, dd, hs = self.top_delta_size, self.delta_dim, self.compute_h_size
        zeros = lambda n: jnp.zeros((n,), jnp.float32)
        top = {"conv_in": self._batch_layer_init(next(keys), 1, s, 5), "offset_in": zeros(s)}
        for i in range(2):
            if self.top_mixing == "dense":  # top units are the channels; per-unit offsets
                n = self.top_width
                top[f"lateral_{i}"] = {"layer": self._batch_layer_init(next(keys), n, n, 3), "offset": zeros(n)}
            else:
                top[f"lateral_{i}"] = {"self": self._batch_layer_init(next(keys), s, s, 3),
                                       "pooled": self._batch_layer_init(next(keys), s, s, 3),
                                       "offset": zeros(s)}
        for i in range(self.top_delta_layers):
            top[f"conv_{i}"] = {"layer": self._batch_layer_init(next(keys), s, s, 3), "offset": zeros(s)}
        top["out"] = {"layer": self._batch_layer_init(next(keys), s, dd, 3), "bias": zeros(dd)}

        n_feat = NUM_UNIT_FEATURES + dd
        h = {"offset_in": zeros(n_feat)}
        c_in = NUM_WEIGHT_STATS + 1 + n_feat
        for i in range(self.compute_h_layers + 1):
            h[f"conv_{i}"] = {"layer": self._batch_layer_init(next(keys), c_in, hs, 3), "offset": zeros(hs)}
            if self.unit_conv:
                h[f"unit_{i}"] = self._unit_block_init(next(keys), hs)
            c_in = hs

        theta = {"top_delta": top, "unit_state": h,
                 "to_delta": _linear_init(next(keys), hs, dd),
                 "bias_readout": _linear_init(next(keys), hs, 1),
                 "forward": self._readouts_init(next(keys), hs)}
        if not self.identical_updates:
            theta["backward"] = self._readouts_init(next(keys), hs)
        if self.prior != "none":  # θ₀ is the hand-designed rule: every learned part contributes zero
            theta["bias_readout"] = jax.tree.map(jnp.zeros_like, theta["bias_readout"])
            for side in ("forward", "backward"):
                if side in theta:
                    theta[side]["mix"] = jax.tree.map(jnp.zeros_like, theta[side]["mix"])
            times = jnp.zeros((len(TIME_SCALES),), jnp.float32)
            theta["genome"] = {
                "prior_mix": jnp.asarray([1.0, 0.0], jnp.float32),         # competitive, sanger
                "log_temperature": jnp.log(jnp.float32(self.prior_temperature)),
                "log_prior_step": jnp.log(jnp.float32(self.prior_learning_rate)),
                "prior_step_time": times,
                "log_learned_step": jnp.log(jnp.float32(self.prior_learning_rate)),
                "learned_step_time": times,
            }
        return theta

    def genome_mask(self, theta):
        """The scalars that act without the networks: the prior's genome, the hand-designed terms' and
        the bias of the ΔW mix, the bias readout's offset (prior="none": every mix weight instead)."""
        mask = jax.tree.map(lambda leaf: np.zeros(np.shape(leaf), bool), theta)
        hand = np.asarray([name in HAND_TERMS or self.prior == "none" for name in TERM_NAMES])
        for side in ("forward", "backward"):
            if side in theta:
                mask[side]["mix"] = {"w": hand.copy(), "b": np.ones((), bool)}
        mask["bias_readout"]["b"] = np.ones(np.shape(theta["bias_readout"]["b"]), bool)
        if "genome" in theta:
            mask["genome"] = jax.tree.map(lambda leaf: np.ones(np.shape(leaf), bool), theta["genome"])
        return mask

    # ---------------------------------------------------------------- φ

    def init_inner_state(self, key, arch: Architecture) -> InnerState:
        self.check_top_width(arch.widths[-1])
        params = self.base_model.init(key, arch)  # the key every method starts its network from
        std = self.base_model.init_weight_std()
        dims = (arch.input_dim,) + tuple(arch.widths)
        keys = jax.random.split(jax.random.fold_in(key, 1), len(arch.widths))
        backward = tuple(_truncated_normal(k, (n_in, n_out), std)
                         for k, n_in, n_out in zip(keys, dims[:-1], dims[1:]))
        if self.prior != "none":  # as the hand-designed rule: unit-norm columns (a BN layer ignores the scale)
            layers = [{"w": unit_columns(layer["w"]), "b": layer["b"]} for layer in self.base_model.layers(params)]
            params = self.base_model.from_layers(params, layers)
            backward = tuple(unit_columns(v) for v in backward)
        return InnerState(params=params, rule_state={"backward_w": backward},
                          step=jnp.zeros((), jnp.int32))

    # ---------------------------------------------------------------- update networks

    def top_delta(self, theta, x_top):
        """Top-down signal [B, U, delta_dim] from the top post-activations [B, U]."""
        self.check_top_width(x_top.shape[1])
        a = x_top[..., None]
        a = self._bn(self._batch_layer(theta["conv_in"], a), theta["offset_in"], relu=True)
        for i in range(2):
            p = theta[f"lateral_{i}"]
            if self.top_mixing == "dense":  # units as channels [B, C, U]: every unit feeds every unit
                a = jnp.swapaxes(a, 1, 2)
                a = jnp.swapaxes(self._bn(self._batch_layer(p["layer"], a), p["offset"], relu=True), 1, 2)
            else:  # width-agnostic: own signal + mean over units
                pooled = self._batch_layer(p["pooled"], jnp.mean(a, axis=1, keepdims=True))
                a = self._bn(self._batch_layer(p["self"], a) + pooled, p["offset"], relu=True)
        for i in range(self.top_delta_layers):
            p = theta[f"conv_{i}"]
            a = self._bn(self._batch_layer(p["layer"], a), p["offset"], relu=True)
        return self._batch_layer(theta["out"]["layer"], a) + theta["out"]["bias"]

    def _unit_block(self, p, a):
        """Residual lateral block: two convolutions over neighbouring units."""
        net = self._bn(conv1d(a, p["conv_a"], axis=1), p["offset_a"], relu=True)
        net = self._bn(conv1d(net, p["conv_b"], axis=1), p["offset_b"], relu=True)
        return a + net

    def unit_state(self, theta, x, z, d, bias, w_in, w_out):
        """Hidden state h [B, U, H] of the U units of one level.

        x, z [B, U]; d [B, U, delta_dim]; bias [U]; w_in [n_below, U] (None at the
        input level), w_out [U, n_above] (None at the top).
        """
        b, u = x.shape
        if self.position_code:
            sin, cos = position_code(u, x.dtype)
        else:
            sin = cos = jnp.zeros((u,), x.dtype)
        code = jnp.broadcast_to(jnp.stack([sin, cos], axis=-1), (b, u, 2))
        feat = jnp.concatenate([x[..., None], z[..., None], code, d], axis=-1)
        feat = self._bn(feat, theta["offset_in"])

        stats_in = weight_stats(w_in, 0) if w_in is not None else []
        stats_out = weight_stats(w_out, 1) if w_out is not None else []
        stats = stats_in + stats_out
        if w_in is None or w_out is None:  # edge level: duplicate the available set
            stats = stats + stats
        stats = jnp.stack(stats, axis=-1)                                   # [U, 8]
        stats = stats * jax.lax.rsqrt(jnp.mean(jnp.square(stats)) + 1e-6)
        static = jnp.concatenate([stats, bias[:, None]], axis=-1)           # [U, 9]
        a = jnp.concatenate([jnp.broadcast_to(static, (b, u, static.shape[-1])), feat], axis=-1)

        for i in range(self.compute_h_layers + 1):
            p = theta[f"conv_{i}"]
            a = self._bn(self._batch_layer(p["layer"], a), p["offset"], relu=True)
            if self.unit_conv:
                a = self._unit_block(theta[f"unit_{i}"], a)
        return a

    # ---------------------------------------------------------------- weight and bias changes

    def term_functions(self, readouts, upper_h, lower_h, upper_x, lower_x):
        """{name: f(w_base) -> candidate change [n_lower, n_upper]} for one layer.

        Everything small (readout factors, standardised activations) is computed
        here; each f does only its own work on the n_lower × n_upper matrices.
        """
        batch, n_lower = lower_x.shape
        n_upper = upper_x.shape[1]
        scale = 1.0 / (self.num_grad_channels * batch)

        def standardise(v):
            v = v - jnp.mean(v, axis=0, keepdims=True)
            return v * jax.lax.rsqrt(jnp.mean(jnp.square(v), axis=0, keepdims=True) + 1e-6)

        def readout_product(name, weighting):
            p = readouts[name]
            r_lower, r_upper = readout_factors(p["bottom"], lower_h), readout_factors(p["top"], upper_h)
            return lambda w_base: weighting(w_base) * ((r_lower.T @ r_upper) * scale)

        def lateral(kind, side):
            h, n = (upper_h, n_upper) if side == "upper" else (lower_h, n_lower)
            p = readouts[f"{kind}_{side}_symm"]
            a, c = readout_factors(p["top"], h), readout_factors(p["bottom"], h)

            def term(w_base):
                m = w_base if kind == "lin" else jnp.sqrt(1.0 + jnp.square(w_base)) - 1.0
                if side == "upper":
                    cw = sym_gram_product(m, a, c, scale / math.sqrt(n), True)
                else:
                    cw = sym_gram_product(m.T, a, c, scale / math.sqrt(n), True).T
                return cw if kind == "lin" else cw * jnp.sign(w_base)
            return term

        psd = readout_factors(readouts["lin_upper_psd"]["top"], upper_h)
        one = lambda w_base: 1.0
        return {
            **self.hand_term_functions(upper_x, lower_x),
            "0_order": readout_product("weight_readout_0", one),
            "1_order": readout_product("weight_readout_1", lambda w_base: w_base),
            "lin_lower_symm": lateral("lin", "lower"),
            "lin_upper_psd": lambda w_base: sym_gram_product(w_base, psd, None, scale / math.sqrt(n_upper), False),
            "lin_upper_symm": lateral("lin", "upper"),
            "rbf": readout_product("weight_readout_rbf", lambda w_base: jnp.exp(-jnp.square(w_base))),
            "sqr_lower_symm": lateral("sqr", "lower"),
            "sqr_upper_symm": lateral("sqr", "upper"),
        }

    @staticmethod
    def hand_term_functions(upper_x, lower_x):
        """{name: f(w_base)} of the four terms that need no network (HAND_TERMS)."""
        batch, n_upper = upper_x.shape

        def standardise(v):
            v = v - jnp.mean(v, axis=0, keepdims=True)
            return v * jax.lax.rsqrt(jnp.mean(jnp.square(v), axis=0, keepdims=True) + 1e-6)

        ux, lx = standardise(upper_x), standardise(lower_x)

        def decorrelation(w_base):
            cw = sym_gram_product(w_base, ux, None, 1.0 / (batch * math.sqrt(n_upper)), False)
            return cw * jax.lax.rsqrt(jnp.mean(jnp.square(cw) + 1e-8))

        return {"decorr_x": decorrelation,
                "hebb": lambda w_base: -(lx.T @ ux) / batch,
                "large_decay": lambda w_base: jnp.square(w_base) * jnp.sign(w_base),
                "w_base": lambda w_base: w_base}

    @staticmethod
    def normalised_weights(w):
        """w_base: each column of w divided by its RMS over the lower axis."""
        return w * jax.lax.rsqrt(jnp.mean(jnp.square(w), axis=0, keepdims=True) + 1e-6)

    def weight_terms(self, readouts, w, upper_h, lower_h, upper_x, lower_x):
        """The twelve candidate changes [n_lower, n_upper] for W (or V) of one layer, and w_base."""
        w_base = self.normalised_weights(w)
        fns = self.term_functions(readouts, upper_h, lower_h, upper_x, lower_x)
        return {name: fn(w_base) for name, fn in fns.items()}, w_base

    def weight_change(self, readout_theta, w, upper_h, lower_h, upper_x, lower_x, sequential=None):
        """Learned mix of the normalised terms, anti-shrink projection, renormalisation, −w/7.

        `sequential` (None: chosen from w's static size) accumulates the terms in a
        loop, so only one term's n_lower × n_upper buffers are alive at a time (wide
        layers); otherwise they are summed directly, which differentiates ~2× faster.
        """
        eps = self.normalise_epsilon
        mix = readout_theta["mix"]
        fns = self.term_functions(readout_theta["readouts"], upper_h, lower_h, upper_x, lower_x)
        w_base = self.normalised_weights(w)
        term = lambda fn, wb: self._rms(fn(wb), 0, eps)
        if sequential is None:
            sequential = w.size > SEQUENTIAL_TERMS_ABOVE
        change = jnp.broadcast_to(mix["b"], w.shape).astype(w.dtype)
        if sequential:
            branches = [functools.partial(term, fns[name]) for name in TERM_NAMES]
            change = jax.lax.fori_loop(
                0, len(TERM_NAMES), lambda i, c: c + mix["w"][i] * jax.lax.switch(i, branches, w_base), change)
        else:
            for i, name in enumerate(TERM_NAMES):
                change = change + mix["w"][i] * term(fns[name], w_base)
        if self.prior != "none":  # a residual on the prior: unit column norm per unit of mix weight
            return change * jax.lax.rsqrt(jnp.asarray(w.shape[0], change.dtype))
        n = len(TERM_NAMES)
        change = change / n
        shrink = jax.nn.relu(jnp.mean(change * w_base))
        change = (change - w_base * shrink) / math.sqrt(n)
        return self._rms(change, 0, eps) - w_base / PULL_DIVISOR

    def bias_change(self, theta, upper_h):
        return self._normalised_bias_change(jnp.mean(_linear(theta["bias_readout"], upper_h)[..., 0], axis=0))

    @staticmethod
    def _normalised_bias_change(change):
        change = change - jnp.minimum(jnp.mean(change), 0.0)  # shift a negative mean to zero
        return change * jax.lax.rsqrt(0.5 + jnp.mean(jnp.square(change)))

    def learned_share(self, theta, state: InnerState, x):
        """RMS(learned part of ΔW) / RMS(fixed −w_base/7 part), averaged over layers (a 0-d array).

        At the reference initialisation (mix_init 0.1) it is ~0.015. The −w/7 pull it compares with grows
        |W| under batch normalisation and changes no feature, so this says little about the rule's speed:
        `relative_change` (ΔW against |W|) does.
        """
        def finish(w, b, v, dw, db, dv):
            pull = self.normalised_weights(w) / PULL_DIVISOR
            rms = lambda t: jnp.sqrt(jnp.mean(jnp.square(t)))
            return (rms(dw + pull) / rms(pull),)

        results = self._sweep(theta, state.params, state.rule_state["backward_w"], x, finish)
        return jnp.mean(jnp.stack([share for share, in results]))

    # ---------------------------------------------------------------- the step

    def _sweep(self, theta, params, backward_w, x, finish):
        """Top-down pass; finish(layer, w, b, v, Δw, Δb, Δv) runs as soon as a layer's changes exist.

        Each layer's result is tied to the signal passed down, so a layer's
        temporaries are freed before the next one starts (memory of wide nets).
        """
        layers = self.base_model.layers(params)
        activations = self.base_model.apply(params, x)
        xs = [x] + [act.post for act in activations]
        zs = [x] + [act.pre for act in activations]
        ws = [layer["w"] for layer in layers]
        biases = [layer["b"] for layer in layers]
        depth = len(layers)
        unit_state = jax.checkpoint(self.unit_state) if self.remat else self.unit_state

        d = self.top_delta(theta["top_delta"], xs[depth])
        results = [None] * depth
        h_above = None
        for level in range(depth, -1, -1):
            if level > 0:  # W below this level is read only from here on (sequences wide layers)
                ws[level - 1] = _after(ws[level - 1], d)
            w_in = ws[level - 1] if level > 0 else None
            w_out = ws[level] if level < depth else None
            bias = biases[level - 1] if level > 0 else jnp.zeros((x.shape[1],), x.dtype)
            h = unit_state(theta["unit_state"], xs[level], zs[level], d, bias, w_in, w_out)
            if level > 0:
                delta = d * jax.nn.sigmoid(zs[level])[..., None] + _linear(theta["to_delta"], h)
                d = self._rms(jnp.einsum("buc,nu->bnc", delta, backward_w[level - 1]), -1, 1e-6)
            if level < depth:  # the layer from this level to the one above
                w, v = ws[level], backward_w[level]
                args = (h_above, h, xs[level + 1], xs[level])
                dw = self.weight_change(theta["forward"], w, *args)
                db = self.bias_change(theta, h_above)
                dv = dw if self.identical_updates else self.weight_change(theta["backward"], v, *args)
                results[level] = finish(w, biases[level], v, dw, db, dv)
                d = _after(d, results[level][0])
            h_above = h
        return results

    def changes(self, theta, params, backward_w, x):
        """(ΔW per layer, Δb per layer, ΔV per layer) for the batch x [B, D]; p ← p(1−lr) − lr·Δp."""
        results = self._sweep(theta, params, backward_w, x, lambda w, b, v, dw, db, dv: (dw, db, dv))
        return tuple(list(r) for r in zip(*results))

    # ---------------------------------------------------------------- the prior (prior="hebbian")

    @staticmethod
    def step_size(log_step, time_weights, step, cap):
        """min(cap, exp(log_step + Σ_j c_j tanh(t/τ_j))): a learned, capped step-size schedule."""
        t = jnp.asarray(step, jnp.float32)
        features = jnp.tanh(t / jnp.asarray(TIME_SCALES, jnp.float32))
        return jnp.minimum(cap, jnp.exp(log_step + jnp.sum(time_weights * features)))

    def _hand_changes(self, theta, layers, xs):
        """(ΔW, Δb, ΔV) per layer without the networks: only HAND_TERMS and the mix's and bias readout's
        offsets (what `changes` gives when the learned terms' mix weights are zero)."""
        eps = self.normalise_epsilon

        def change_for(side, w, lower_x, upper_x):
            mix = theta[side]["mix"]
            fns = self.hand_term_functions(upper_x, lower_x)
            w_base = self.normalised_weights(w)
            change = jnp.broadcast_to(mix["b"], w.shape).astype(w.dtype)
            for i, name in enumerate(TERM_NAMES):
                if name in fns:
                    change = change + mix["w"][i] * self._rms(fns[name](w_base), 0, eps)
            return change * jax.lax.rsqrt(jnp.asarray(w.shape[0], change.dtype))

        dws, dbs, dvs = [], [], []
        for level, layer in enumerate(layers):
            dws.append(change_for("forward", layer["w"], xs[level], xs[level + 1]))
            units = layer["b"].shape[0]
            dbs.append(self._normalised_bias_change(jnp.broadcast_to(theta["bias_readout"]["b"][0], (units,))))
            dvs.append(dws[-1])
        return dws, dbs, dvs

    def _prior_inner_step(self, theta, state: InnerState, x) -> InnerState:
        """W ← unit_columns(W + η_p(t)·Σ_k g_k·prior_k − η_l(t)·ΔW_learned); b ← b − η_l(t)·Δb."""
        genome = theta["genome"]
        prior_step = self.step_size(genome["log_prior_step"], genome["prior_step_time"], state.step, self.max_step)
        learned_step = self.step_size(genome["log_learned_step"], genome["learned_step_time"], state.step,
                                      self.max_step)
        temperature = jnp.exp(genome["log_temperature"])
        params, backward_w = state.params, state.rule_state["backward_w"]
        layers = self.base_model.layers(params)
        activations = self.base_model.apply(params, x)
        xs = [x] + [act.post for act in activations]
        if self.nets:
            dws, dbs, dvs = self.changes(theta, params, backward_w, x)
        else:
            dws, dbs, dvs = self._hand_changes(theta, layers, xs)
        weights = genome["prior_mix"]
        new_layers, new_backward = [], []
        for level, (layer, act) in enumerate(zip(layers, activations)):
            prior = (weights[0] * competitive_update(xs[level], act.pre, temperature)
                     + weights[1] * sanger_update(layer["w"], xs[level]))
            step = prior_step * prior
            new_layers.append({"w": unit_columns(layer["w"] + step - learned_step * dws[level]),
                               "b": layer["b"] - learned_step * dbs[level]})
            new_backward.append(unit_columns(backward_w[level] + step - learned_step * dvs[level]))
        return InnerState(params=self.base_model.from_layers(params, new_layers),
                          rule_state={"backward_w": tuple(new_backward)}, step=state.step + 1)

    def relative_change(self, theta, state: InnerState, x):
        """RMS(ΔW) / RMS(W) of one inner step, averaged over layers (a 0-d array): how fast the rule turns
        the weights. It is what sets the rule's speed under batch normalisation (the scale of W is not)."""
        moved = self.inner_step(theta, state, x, None)
        rms = lambda t: jnp.sqrt(jnp.mean(jnp.square(t)))
        ratios = [rms(new["w"] - old["w"]) / rms(old["w"]) for new, old in
                  zip(self.base_model.layers(moved.params), self.base_model.layers(state.params))]
        return jnp.mean(jnp.stack(ratios))

    def inner_step(self, theta, state: InnerState, x, key) -> InnerState:
        del key  # deterministic rule
        if self.prior != "none":
            return self._prior_inner_step(theta, state, x)
        lr = self.inner_lr

        def finish(w, b, v, dw, db, dv):
            move = lambda p, change: p * (1.0 - lr) - change * lr
            return move(w, dw), move(b, db), move(v, dv)

        results = self._sweep(theta, state.params, state.rule_state["backward_w"], x, finish)
        layers = [{"w": w, "b": b} for w, b, _ in results]
        return InnerState(params=self.base_model.from_layers(state.params, layers),
                          rule_state={"backward_w": tuple(v for _, _, v in results)}, step=state.step + 1)


@hookimpl
def metaplastic_update_rules():
    return {"metz2019": Metz2019Rule}
