"""Tests of the `metz2019` update rule: maths against NumPy references, invariances, locality,
shapes over architectures, and the meta-gradient against finite differences."""

from __future__ import annotations

import dataclasses
import functools
import inspect

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from helpers.arrays import as_float64

from metaplastic.core.interfaces import Architecture, InnerState, LabeledBatch
from metaplastic.plugins.update_rules.metz2019 import (TERM_NAMES, Metz2019Rule, conv1d, sym_gram_product)
from metaplastic.plugins.base_models.mlp_bn import MLPBatchNorm

RULE = Metz2019Rule(base_model=MLPBatchNorm())
THETA = RULE.init_theta(jax.random.PRNGKey(0))


def _state(rule, arch, seed=1):
    return rule.init_inner_state(jax.random.PRNGKey(seed), arch)


def _inputs(batch, dim, seed=2):
    return jax.random.uniform(jax.random.PRNGKey(seed), (batch, dim))


_COMPILED = {}
FAST_COMPILE = {"xla_backend_optimization_level": 0}  # these graphs compile ~2x faster at O0


def _compiled(name, fn, *args):
    """fn(*args) jitted at O0, compiled once per (name, argument shapes)."""
    leaves, tree = jax.tree.flatten(args)
    key = (name, tree, tuple((a.shape, str(a.dtype)) for a in leaves))
    if key not in _COMPILED:
        _COMPILED[key] = jax.jit(fn).lower(*args).compile(compiler_options=FAST_COMPILE)
    return _COMPILED[key](*args)


def _changes(rule, theta, state, x):
    return _compiled(("changes", rule), lambda t, s, x: rule.changes(t, s.params, s.rule_state["backward_w"], x),
                     theta, state, x)


def _max_diff(a, b):
    return max(float(np.max(np.abs(np.asarray(u) - np.asarray(v)))) for u, v in
               zip(jax.tree.leaves(a), jax.tree.leaves(b)))


def _assert_close(a, b, tol=2e-4):
    for u, v in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        u, v = np.asarray(u, np.float64), np.asarray(v, np.float64)
        np.testing.assert_allclose(u, v, rtol=0, atol=tol * max(1.0, np.max(np.abs(v))))


def _map_leaves(theta, fn):
    """Apply fn(path_keys, leaf) to every leaf of θ."""
    def visit(path, leaf):
        return fn(tuple(getattr(p, "key", None) for p in path), leaf)
    return jax.tree_util.tree_map_with_path(visit, theta)


# ------------------------------------------------------------------ registration and signature

def test_registered_and_hashable():
    from metaplastic.registries.registry import get_registry
    assert get_registry().get("update_rule", "metz2019") is Metz2019Rule
    assert dataclasses.fields(Metz2019Rule)[0].name == "base_model"
    a = Metz2019Rule(base_model=MLPBatchNorm(activation="swish"), inner_lr=1e-3, batch_net="mlp")
    b = Metz2019Rule(base_model=MLPBatchNorm(activation="swish"), inner_lr=1e-3, batch_net="mlp")
    assert a == b and hash(a) == hash(b) and a != RULE
    with pytest.raises(ValueError):
        Metz2019Rule(base_model=MLPBatchNorm(), batch_net="lstm")


def test_no_label_reaches_the_rule():
    assert list(inspect.signature(Metz2019Rule.inner_step).parameters) == ["self", "theta", "state", "x", "key"]
    for fn in (Metz2019Rule.changes, Metz2019Rule.unit_state, Metz2019Rule.top_delta,
               Metz2019Rule.weight_terms, Metz2019Rule.bias_change):
        names = [n.lower() for n in inspect.signature(fn).parameters]
        assert not any("label" in n or n in ("y", "targets") for n in names), (fn, names)


def test_theta_is_architecture_free_and_small():
    shapes = {tuple(leaf.shape) for leaf in jax.tree.leaves(THETA)}
    assert all(max(s, default=0) <= 192 for s in shapes)      # nothing sized by units or batch
    assert sum(leaf.size for leaf in jax.tree.leaves(THETA)) < 250_000
    np.testing.assert_allclose(THETA["forward"]["mix"]["w"], 0.1, rtol=1e-6)


# ------------------------------------------------------------------ maths against NumPy references

def _np_conv(a, kernel, axis, circular=False):
    """Independent 'SAME' cross-correlation: loop over taps on a padded copy."""
    a = np.moveaxis(np.asarray(a, np.float64), axis, 0)
    k = kernel.shape[0]
    r = k // 2
    n = a.shape[0]
    pad = [(r, k - 1 - r)] + [(0, 0)] * (a.ndim - 1)
    padded = np.pad(a, pad, mode="wrap" if circular else "constant")
    out = sum(padded[t:t + n] @ np.asarray(kernel[t], np.float64) for t in range(k))
    return np.moveaxis(out, 0, axis)


@pytest.mark.parametrize("k,axis,circular", [(3, 0, False), (5, 0, False), (3, 1, False), (3, 0, True)])
def test_conv1d_matches_reference(k, axis, circular):
    a = jax.random.normal(jax.random.PRNGKey(0), (9, 7, 4))
    kernel = jax.random.normal(jax.random.PRNGKey(1), (k, 4, 5))
    ours = conv1d(a, kernel, axis=axis, circular=circular)
    np.testing.assert_allclose(ours, _np_conv(a, kernel, axis, circular), atol=1e-5)
    if not circular:  # also against XLA's own convolution
        lhs = jnp.moveaxis(a, axis, 1)                           # [N, W, C]
        xla = jax.lax.conv_general_dilated(lhs, kernel, (1,), "SAME", dimension_numbers=("NWC", "WIO", "NWC"))
        np.testing.assert_allclose(ours, jnp.moveaxis(xla, 1, axis), atol=1e-5)


@pytest.mark.parametrize("low_rank", [True, False])
@pytest.mark.parametrize("psd", [True, False])
def test_sym_gram_product(low_rank, psd):
    rng = np.random.default_rng(0)
    m, a, c = rng.normal(size=(7, 9)), rng.normal(size=(5, 9)), rng.normal(size=(5, 9))
    if psd:
        s = 0.3 * a.T @ a
        ours = sym_gram_product(jnp.asarray(m), jnp.asarray(a), None, 0.3, False, low_rank)
    else:
        u = 0.3 * a.T @ c
        s = (u + u.T) / np.sqrt(2.0)
        np.fill_diagonal(s, 0.0)
        ours = sym_gram_product(jnp.asarray(m), jnp.asarray(a), jnp.asarray(c), 0.3, True, low_rank)
    np.testing.assert_allclose(ours, m @ s, rtol=1e-5, atol=1e-5)


def _np(tree):
    return jax.tree.map(lambda a: np.asarray(a, np.float64), tree)


def _np_layer_change(theta, w, upper_h, lower_h, upper_x, lower_x, k, eps=1.0):
    """weight_change_for_layer + merge_change_w of the reference, with explicit matrices."""
    readouts, mix = theta["forward"]["readouts"], theta["forward"]["mix"]
    bs = lower_x.shape[0]
    w_base = w / np.sqrt(np.mean(w ** 2, axis=0, keepdims=True) + 1e-6)
    terms = {"w_base": w_base, "large_decay": w_base ** 2 * np.sign(w_base)}
    ux0 = upper_x - upper_x.mean(0)
    uxs0 = ux0 / np.sqrt(np.mean(ux0 ** 2, 0) + 1e-6)
    u = uxs0.T @ uxs0 / bs / np.sqrt(upper_x.shape[1])
    cw = w_base @ u
    terms["decorr_x"] = cw / np.sqrt(np.mean(cw ** 2 + 1e-8))
    lx0 = lower_x - lower_x.mean(0)
    lxs0 = lx0 / np.sqrt(np.mean(lx0 ** 2, 0) + 1e-6)
    terms["hebb"] = -(lxs0.T @ uxs0) / bs

    def readout(p, h):  # [k, bs, units]
        return np.transpose(h @ p["w"] + p["b"], (2, 0, 1))

    def low_rank_readout(name, h1, h2, psd=False):
        r_t = readout(readouts[name]["top"], h1)
        r_b = r_t if psd else readout(readouts[name]["bottom"], h2)
        return np.mean(np.transpose(r_b, (0, 2, 1)) @ r_t, axis=0) / bs

    terms["0_order"] = low_rank_readout("weight_readout_0", upper_h, lower_h)
    terms["rbf"] = np.exp(-w_base ** 2) * low_rank_readout("weight_readout_rbf", upper_h, lower_h)
    terms["1_order"] = w_base * low_rank_readout("weight_readout_1", upper_h, lower_h)
    for kind in ("lin", "sqr"):
        for side, h in (("upper", upper_h), ("lower", lower_h)):
            for structure in ["symm"] + (["psd"] if kind == "lin" and side == "upper" else []):
                name = f"{kind}_{side}_{structure}"
                if structure == "symm":
                    u = low_rank_readout(name, h, h)
                    u = (u + u.T) / np.sqrt(2.0)
                    np.fill_diagonal(u, 0.0)
                else:
                    u = low_rank_readout(name, h, None, psd=True)
                u = u / np.sqrt(u.shape[0])
                w_l, sign = (w_base, 1.0) if kind == "lin" else (np.sqrt(1 + w_base ** 2) - 1, np.sign(w_base))
                terms[name] = (w_l @ u if side == "upper" else u @ w_l) * sign
    assert tuple(sorted(terms)) == TERM_NAMES

    def normalise(c):
        return c / np.sqrt(eps + np.mean(c ** 2, axis=0, keepdims=True))

    stack = np.stack([normalise(terms[name]) for name in sorted(terms)], axis=-1)
    change = (stack @ mix["w"] + mix["b"]) / len(terms)
    ip = max(np.mean(change * w_base), 0.0)
    change = (change - w_base * ip) / np.sqrt(len(terms))
    return normalise(change) - w_base / 7.0


def _np_bias_change(theta, upper_h):
    p = theta["bias_readout"]
    change = np.mean((upper_h @ p["w"] + p["b"])[..., 0], axis=0)
    change = change + max(-np.mean(change), 0.0)
    return change / np.sqrt(0.5 + np.mean(change ** 2))


@pytest.mark.parametrize("n_lower,n_upper,batch", [(40, 6, 4), (6, 40, 4), (12, 10, 32)])
def test_layer_change_matches_reference(n_lower, n_upper, batch):
    rng = np.random.default_rng(n_lower)
    hs = RULE.compute_h_size
    w = rng.normal(size=(n_lower, n_upper)) * 0.01
    upper_h, lower_h = rng.normal(size=(batch, n_upper, hs)), rng.normal(size=(batch, n_lower, hs))
    upper_x, lower_x = np.maximum(rng.normal(size=(batch, n_upper)), 0), rng.uniform(size=(batch, n_lower))
    theta = _map_leaves(THETA, lambda path, a: a + 0.05 * jax.random.normal(jax.random.PRNGKey(len(path)), a.shape))
    args = [jnp.asarray(v, jnp.float32) for v in (w, upper_h, lower_h, upper_x, lower_x)]
    ref = _np_layer_change(_np(theta), w, upper_h, lower_h, upper_x, lower_x, RULE.num_grad_channels)
    for sequential in (False, True):  # direct sum, and the loop used for wide layers
        ours = jax.jit(RULE.weight_change, static_argnames="sequential")(theta["forward"], *args,
                                                                        sequential=sequential)
        _assert_close(ours, ref, 1e-4)
    bias_change = jax.jit(RULE.bias_change)
    _assert_close(bias_change(theta, args[1]), _np_bias_change(_np(theta), upper_h), 1e-5)
    shifted = dict(theta, bias_readout=dict(theta["bias_readout"], b=theta["bias_readout"]["b"] - 5.0))
    negative = bias_change(shifted, args[1])    # negative mean is shifted to zero
    assert abs(float(jnp.mean(negative))) < 1e-5
    _assert_close(negative, _np_bias_change(_np(shifted), upper_h), 1e-5)


def _np_bn(a, offset, eps=1e-3):
    mean = a.mean(axis=(0, 1), keepdims=True)
    var = ((a - mean) ** 2).mean(axis=(0, 1), keepdims=True)
    return (a - mean) / np.sqrt(var + eps) + offset


def _np_stats(w, axis):
    return [np.abs(w).mean(axis), np.sqrt((w ** 2).mean(axis) + 1e-6), w.mean(axis), np.sqrt(w.var(axis) + 1e-8)]


def _np_changes(theta, params, backward, x):
    """The whole learned update, written from the notes with loops and NumPy."""
    relu = lambda v: np.maximum(v, 0)
    layers = [params[f"layer_{i}"] for i in range(len(params))]
    xs, zs = [x], [x]
    for layer in layers:
        z = xs[-1] @ layer["w"]
        z = (z - z.mean(0)) / np.sqrt(z.var(0) + 1e-6) + layer["b"]
        zs.append(z)
        xs.append(relu(z))
    t = theta["top_delta"]
    a = relu(_np_bn(_np_conv(xs[-1][..., None], t["conv_in"]["kernel"], 0), t["offset_in"]))
    for i in range(2):
        p = t[f"lateral_{i}"]
        own = _np_conv(a, p["self"]["kernel"], 0)
        pooled = _np_conv(a.mean(1, keepdims=True), p["pooled"]["kernel"], 0)
        a = relu(_np_bn(own + pooled, p["offset"]))
    for i in range(2):
        a = relu(_np_bn(_np_conv(a, t[f"conv_{i}"]["layer"]["kernel"], 0), t[f"conv_{i}"]["offset"]))
    d = _np_conv(a, t["out"]["layer"]["kernel"], 0) + t["out"]["bias"]

    u_theta = theta["unit_state"]
    hs = {}
    depth = len(layers)
    for level in range(depth, -1, -1):
        b, n = xs[level].shape
        angle = np.linspace(0, 4 * np.pi, n)
        feat = np.concatenate([xs[level][..., None], zs[level][..., None],
                               np.broadcast_to(np.sin(angle)[None, :, None], (b, n, 1)),
                               np.broadcast_to(np.cos(angle)[None, :, None], (b, n, 1)), d], axis=-1)
        feat = _np_bn(feat, u_theta["offset_in"])
        stats_in = _np_stats(layers[level - 1]["w"], 0) if level > 0 else []
        stats_out = _np_stats(layers[level]["w"], 1) if level < depth else []
        stats = stats_in + stats_out
        if level in (0, depth):
            stats = stats * 2
        stats = np.stack(stats, -1)
        stats = stats / np.sqrt(np.mean(stats ** 2) + 1e-6)
        bias = layers[level - 1]["b"] if level > 0 else np.zeros(n)
        act = np.concatenate([np.broadcast_to(stats, (b, n, 8)), np.broadcast_to(bias[None, :, None], (b, n, 1)),
                              feat], axis=-1)
        for i in range(2):
            act = relu(_np_bn(_np_conv(act, u_theta[f"conv_{i}"]["layer"]["kernel"], 0),
                              u_theta[f"conv_{i}"]["offset"]))
            p = u_theta[f"unit_{i}"]
            net = relu(_np_bn(_np_conv(act, p["conv_a"], 1), p["offset_a"]))
            act = act + relu(_np_bn(_np_conv(net, p["conv_b"], 1), p["offset_b"]))
        hs[level] = act
        if level > 0:
            delta = d / (1 + np.exp(-zs[level]))[..., None] + act @ theta["to_delta"]["w"] + theta["to_delta"]["b"]
            d = np.einsum("buc,nu->bnc", delta, backward[level - 1])
            d = d / np.sqrt(1e-6 + np.mean(d ** 2, axis=-1, keepdims=True))
    dw = [_np_layer_change(theta, layers[j]["w"], hs[j + 1], hs[j], xs[j + 1], xs[j], 4) for j in range(depth)]
    db = [_np_bias_change(theta, hs[j + 1]) for j in range(depth)]
    return dw, db


ARCH = Architecture(24, (16, 8))


def test_whole_update_matches_reference():
    state, x = _state(RULE, ARCH), _inputs(32, 24)
    theta = _map_leaves(THETA, lambda path, a: a + 0.05 * jax.random.normal(jax.random.PRNGKey(len(path)), a.shape))
    dw, db, dv = _changes(RULE, theta, state, x)
    ref_dw, ref_db = _np_changes(_np(theta), _np(state.params), _np(state.rule_state["backward_w"]),
                                 np.asarray(x, np.float64))
    _assert_close(dw, ref_dw, 2e-3)
    _assert_close(db, ref_db, 2e-3)
    _assert_close(dv, dw, 0)


def test_inner_step_applies_moving_average():
    rule = Metz2019Rule(base_model=MLPBatchNorm(), inner_lr=1e-3)
    state = _state(rule, Architecture(10, (6, 4)))
    x = _inputs(16, 10)
    new, (dw, db, dv) = _compiled(
        "step", lambda t, s, x: (rule.inner_step(t, s, x, jax.random.PRNGKey(0)),
                                 rule.changes(t, s.params, s.rule_state["backward_w"], x)), THETA, state, x)
    lr = 1e-3
    for i, layer in enumerate(MLPBatchNorm().layers(state.params)):
        new_layer = new.params[f"layer_{i}"]
        _assert_close(new_layer["w"], layer["w"] * (1 - lr) - lr * dw[i], 1e-6)
        _assert_close(new_layer["b"], layer["b"] * (1 - lr) - lr * db[i], 1e-6)
        v = state.rule_state["backward_w"][i]
        _assert_close(new.rule_state["backward_w"][i], v * (1 - lr) - lr * dw[i], 1e-6)
    assert int(new.step) == 1


# ------------------------------------------------------------------ shapes over architectures

def _run(rule, theta, state, xs):
    def run(theta, state, xs):
        def step(s, x):
            return rule.inner_step(theta, s, x, jax.random.PRNGKey(0)), None
        return jax.lax.scan(step, state, xs)[0]
    return _compiled(("run", rule), run, theta, state, xs)


@pytest.mark.parametrize("input_dim,widths,batch,activation,batch_net", [
    (20, (8,), 256, "step", "mlp"),
    (64, (300, 40, 12), 16, "leaky_relu", "conv"),
    (16, (24, 8, 16, 8, 12, 10), 64, "swish", "conv"),
])
def test_shapes_and_finiteness_over_architectures(input_dim, widths, batch, activation, batch_net):
    rule = Metz2019Rule(base_model=MLPBatchNorm(activation=activation), batch_net=batch_net)
    arch = Architecture(input_dim, widths)
    state = _state(rule, arch)
    steps = 100
    xs = jax.random.uniform(jax.random.PRNGKey(3), (steps, batch, input_dim))
    theta = THETA if batch_net == "conv" else rule.init_theta(jax.random.PRNGKey(0))
    final = _run(rule, theta, state, xs)              # one θ for every architecture
    assert jax.tree.structure(final) == jax.tree.structure(state)
    for a, b in zip(jax.tree.leaves(final), jax.tree.leaves(state)):
        assert a.shape == b.shape and a.dtype == b.dtype
        assert bool(jnp.all(jnp.isfinite(a)))
    assert int(final.step) == steps
    for i in range(len(widths)):
        moved = final.params[f"layer_{i}"]["w"] - state.params[f"layer_{i}"]["w"]
        assert float(jnp.max(jnp.abs(moved))) > 1e-3
    features = rule.features(final, xs[0])
    assert features.shape == (batch, widths[-1]) and bool(jnp.all(jnp.isfinite(features)))


# ------------------------------------------------------------------ example order

def _flip_batch_kernels(theta):
    return _map_leaves(theta, lambda path, a: a[::-1] if "kernel" in path else a)


def test_reversing_the_batch_equals_flipping_batch_kernels():
    state, x = _state(RULE, ARCH), _inputs(32, 24)
    reversed_batch = _changes(RULE, THETA, state, x[::-1])
    flipped = _changes(RULE, _flip_batch_kernels(THETA), state, x)
    _assert_close(reversed_batch, flipped)
    assert _max_diff(reversed_batch, _changes(RULE, THETA, state, x)) > 1e-2  # the flip matters


def test_batch_order_matters_with_zero_padding():
    state, x = _state(RULE, ARCH), _inputs(32, 24)
    assert _max_diff(_changes(RULE, THETA, state, jnp.roll(x, 5, axis=0)), _changes(RULE, THETA, state, x)) > 1e-2


def test_cyclic_shift_invariance_with_circular_padding():
    rule = Metz2019Rule(base_model=MLPBatchNorm(), batch_padding="circular")
    state, x = _state(rule, ARCH), _inputs(32, 24)
    _assert_close(_changes(rule, THETA, state, jnp.roll(x, 5, axis=0)), _changes(rule, THETA, state, x))


def test_mlp_batch_net_is_permutation_invariant():
    rule = Metz2019Rule(base_model=MLPBatchNorm(), batch_net="mlp")
    theta = rule.init_theta(jax.random.PRNGKey(0))
    state, x = _state(rule, ARCH), _inputs(32, 24)
    perm = np.random.default_rng(0).permutation(32)
    _assert_close(_changes(rule, theta, state, x[perm]), _changes(rule, theta, state, x))


# ------------------------------------------------------------------ unit order

def _relabel(state, x, perms):
    """Relabel the units of every level: perms[0] for the inputs, perms[l] for layer l."""
    layers, backward = MLPBatchNorm().layers(state.params), state.rule_state["backward_w"]
    new_layers, new_backward = [], []
    for i, layer in enumerate(layers):
        p_in, p_out = perms[i], perms[i + 1]
        new_layers.append({"w": layer["w"][p_in][:, p_out], "b": layer["b"][p_out]})
        new_backward.append(backward[i][p_in][:, p_out])
    return (InnerState(MLPBatchNorm().from_layers(state.params, new_layers), {"backward_w": tuple(new_backward)}, state.step),
            x[:, perms[0]])


def _relabel_changes(changes, perms):
    dw, db, dv = changes
    return ([w[perms[i]][:, perms[i + 1]] for i, w in enumerate(dw)],
            [b[perms[i + 1]] for i, b in enumerate(db)],
            [v[perms[i]][:, perms[i + 1]] for i, v in enumerate(dv)])


def test_relabelling_units_without_position_code_permutes_the_update():
    rule = Metz2019Rule(base_model=MLPBatchNorm(), position_code=False, unit_conv=False)
    theta = rule.init_theta(jax.random.PRNGKey(0))
    state, x = _state(rule, ARCH), _inputs(32, 24)
    rng = np.random.default_rng(1)
    perms = [rng.permutation(n) for n in (24, 16, 8)]
    _assert_close(_changes(rule, theta, *_relabel(state, x, perms)),
                  _relabel_changes(_changes(rule, theta, state, x), perms))


def test_relabelling_units_with_position_code_changes_the_update():
    state, x = _state(RULE, ARCH), _inputs(32, 24)
    rng = np.random.default_rng(1)
    perms = [rng.permutation(n) for n in (24, 16, 8)]
    relabelled = _changes(RULE, THETA, *_relabel(state, x, perms))
    assert _max_diff(relabelled, _relabel_changes(_changes(RULE, THETA, state, x), perms)) > 1e-2


def test_reversing_units_equals_flipping_unit_kernels_and_sine():
    state, x = _state(RULE, ARCH), _inputs(32, 24)
    perms = [np.arange(n)[::-1] for n in (24, 16, 8)]

    def mirror(path, a):
        if path[-1] in ("conv_a", "conv_b"):
            return a[::-1]
        if path[-2:] == ("unit_state", "offset_in"):
            return a.at[2].multiply(-1)
        if path[-4:] == ("unit_state", "conv_0", "layer", "kernel"):
            return a.at[:, 9 + 2].multiply(-1)    # after 8 weight stats and the bias
        return a

    relabelled = _changes(RULE, THETA, *_relabel(state, x, perms))
    _assert_close(relabelled, _relabel_changes(_changes(RULE, _map_leaves(THETA, mirror), state, x), perms), 5e-4)


# ------------------------------------------------------------------ locality of the weight terms

LOCAL_TERMS = ("w_base", "large_decay", "hebb", "0_order", "rbf", "1_order")
UPPER_LATERAL = ("decorr_x", "lin_upper_symm", "lin_upper_psd", "sqr_upper_symm")
LOWER_LATERAL = ("lin_lower_symm", "sqr_lower_symm")


def test_weight_terms_are_local_except_documented_lateral_terms():
    rng = np.random.default_rng(0)
    n_lower, n_upper, batch, hs = 12, 10, 16, RULE.compute_h_size
    args = [jnp.asarray(v, jnp.float32) for v in (
        rng.normal(size=(n_lower, n_upper)), rng.normal(size=(batch, n_upper, hs)),
        rng.normal(size=(batch, n_lower, hs)), rng.uniform(size=(batch, n_upper)), rng.uniform(size=(batch, n_lower)))]
    terms = jax.jit(RULE.weight_terms)
    base, _ = terms(THETA["forward"]["readouts"], *args)
    w, upper_h, lower_h, upper_x, lower_x = args
    i, j = 3, 7
    lower_moved, _ = terms(THETA["forward"]["readouts"], w, upper_h, lower_h.at[:, i].add(1.0), upper_x,
                           lower_x.at[:, i].add(rng.uniform(size=batch)))
    upper_moved, _ = terms(THETA["forward"]["readouts"], w, upper_h.at[:, j].add(1.0), lower_h,
                           upper_x.at[:, j].add(rng.uniform(size=batch)), lower_x)
    for name in TERM_NAMES:
        dl = np.abs(np.asarray(lower_moved[name] - base[name])) > 1e-6
        du = np.abs(np.asarray(upper_moved[name] - base[name])) > 1e-6
        if name in LOCAL_TERMS:
            assert not np.delete(dl, i, axis=0).any() and not np.delete(du, j, axis=1).any(), name
            if name not in ("w_base", "large_decay"):
                assert dl[i].all() and du[:, j].all(), name
        elif name in UPPER_LATERAL:
            assert not dl.any() and np.delete(du, j, axis=1).any(), name
        else:
            assert name in LOWER_LATERAL
            assert not du.any() and np.delete(dl, i, axis=0).any(), name


# ------------------------------------------------------------------ meta-gradient

def _ridge_meta_loss(features_fn, batch_a, batch_b):
    try:
        from metaplastic.plugins.meta_objectives.ridge_cosdist import RidgeCosDist
    except ImportError:  # the plain ridge/cosine readout of the notes
        u_a, u_b = features_fn(batch_a.x), features_fn(batch_b.x)
        design = jnp.concatenate([u_a, jnp.ones_like(u_a[:, :1])], 1)
        w = jnp.linalg.solve(design.T @ design + 0.1 * jnp.eye(design.shape[1]), design.T @ batch_a.y)
        pred = jnp.concatenate([u_b, jnp.ones_like(u_b[:, :1])], 1) @ w
        pred = pred / jnp.linalg.norm(pred, axis=1, keepdims=True)
        return jnp.mean(jnp.sum((pred - batch_b.y) ** 2, 1))
    return RidgeCosDist().loss(features_fn, batch_a, batch_b)


def test_meta_gradient_matches_finite_differences():
    with jax.enable_x64(True):
        rule = Metz2019Rule(base_model=MLPBatchNorm(), inner_lr=1e-2)
        theta = as_float64(rule.init_theta(jax.random.PRNGKey(0)))
        arch = Architecture(12, (10, 6))
        state = as_float64(_state(rule, arch))
        keys = jax.random.split(jax.random.PRNGKey(5), 4)
        xs = jax.random.uniform(keys[0], (5, 16, 12), jnp.float64)
        labels = lambda k: jax.nn.one_hot(jax.random.randint(k, (20,), 0, 3), 3, dtype=jnp.float64)
        batch_a = LabeledBatch(jax.random.uniform(keys[1], (20, 12), jnp.float64), labels(keys[2]))
        batch_b = LabeledBatch(jax.random.uniform(keys[3], (20, 12), jnp.float64), labels(keys[1]))

        def meta_loss(theta):
            def step(s, x):
                return rule.inner_step(theta, s, x, None), None
            final = jax.lax.scan(step, state, xs)[0]
            return _ridge_meta_loss(functools.partial(rule.features, final), batch_a, batch_b)

        value_and_grad = jax.jit(jax.value_and_grad(meta_loss)).lower(theta).compile(compiler_options=FAST_COMPILE)
        loss, grad = value_and_grad(theta)
        assert np.isfinite(float(loss))
        leaves, tree = jax.tree.flatten(theta)
        keys = jax.random.split(jax.random.PRNGKey(9), len(leaves))
        direction = jax.tree.unflatten(tree, [jax.random.normal(k, a.shape, a.dtype) for k, a in zip(keys, leaves)])
        only_mix = jax.tree.map(jnp.zeros_like, direction)
        only_mix["forward"]["mix"] = direction["forward"]["mix"]
        for v in (direction, only_mix):
            norm = float(jnp.sqrt(sum(jnp.vdot(d, d) for d in jax.tree.leaves(v))))
            v = jax.tree.map(lambda d: d / norm, v)
            eps = 1e-7  # the update nets are piecewise linear (ReLU): keep steps below their kinks
            plus = value_and_grad(jax.tree.map(lambda t, d: t + eps * d, theta, v))[0]
            minus = value_and_grad(jax.tree.map(lambda t, d: t - eps * d, theta, v))[0]
            fd = float(plus - minus) / (2 * eps)
            analytic = float(sum(jnp.vdot(g, d) for g, d in zip(jax.tree.leaves(grad), jax.tree.leaves(v))))
            assert abs(analytic) > 1e-5
            assert abs(analytic - fd) <= 1e-4 * abs(analytic), (analytic, fd)


def test_hand_written_gradients_give_the_autodiff_meta_gradient():
    """core.ops.normalise's backward passes change the cost of the meta-gradient, not its value."""
    # float64: in float32 the two orders of operations round differently and the unrolled
    # steps amplify that to a few per cent in some entries
    arch = Architecture(12, (10, 6))
    grads = []
    with jax.enable_x64(True):
        xs = jax.random.uniform(jax.random.PRNGKey(4), (3, 16, 12), jnp.float64)
        for hand_written in (True, False):
            rule = Metz2019Rule(base_model=MLPBatchNorm(), inner_lr=1e-2, hand_written_gradients=hand_written)
            state = as_float64(_state(rule, arch))

            def loss(theta):
                final = jax.lax.scan(lambda s, x: (rule.inner_step(theta, s, x, None), None), state, xs)[0]
                return jnp.sum(jnp.square(rule.features(final, xs[0])))

            grads.append(jax.jit(jax.grad(loss))(as_float64(rule.init_theta(jax.random.PRNGKey(0)))))
    for got, want in zip(jax.tree.leaves(grads[0]), jax.tree.leaves(grads[1])):
        got, want = np.asarray(got), np.asarray(want)
        assert want.dtype == np.float64
        np.testing.assert_allclose(got, want, rtol=1e-7, atol=1e-9 * np.max(np.abs(want)) + 1e-12)


# ------------------------------------------------------------------ top-down mixing: mean or dense (reference)

DENSE = Metz2019Rule(base_model=MLPBatchNorm(), top_mixing="dense")


def test_theta_shapes_depend_on_top_mixing():
    shapes = lambda theta: jax.tree.map(lambda a: a.shape, theta["top_delta"])
    mean, s = shapes(THETA), RULE.top_delta_size
    dense = shapes(DENSE.init_theta(jax.random.PRNGKey(0)))
    narrow = shapes(dataclasses.replace(DENSE, top_width=8).init_theta(jax.random.PRNGKey(0)))
    for i in range(2):
        assert mean[f"lateral_{i}"] == {"self": {"kernel": (3, s, s)}, "pooled": {"kernel": (3, s, s)},
                                        "offset": (s,)}
        assert dense[f"lateral_{i}"] == {"layer": {"kernel": (3, 32, 32)}, "offset": (32,)}
        assert narrow[f"lateral_{i}"] == {"layer": {"kernel": (3, 8, 8)}, "offset": (8,)}
    assert {k: v for k, v in dense.items() if not k.startswith("lateral")} == \
        {k: v for k, v in mean.items() if not k.startswith("lateral")}
    with pytest.raises(ValueError, match="top_mixing"):
        Metz2019Rule(base_model=MLPBatchNorm(), top_mixing="attention")


def _np_top_delta_dense(t, z):
    """compute_top_delta of the reference, in its own [units, batch, channels] layout."""
    relu = lambda v: np.maximum(v, 0)
    act = z.T[..., None]                                                  # [U, B, 1]
    act = relu(_np_bn(_np_conv(act, t["conv_in"]["kernel"], 1), t["offset_in"]))
    act = np.transpose(act, (2, 1, 0))                                    # [C, B, U]: units are channels
    for i in range(2):
        act = relu(_np_bn(_np_conv(act, t[f"lateral_{i}"]["layer"]["kernel"], 1), t[f"lateral_{i}"]["offset"]))
    act = np.transpose(act, (2, 1, 0))
    for i in range(2):
        act = relu(_np_bn(_np_conv(act, t[f"conv_{i}"]["layer"]["kernel"], 1), t[f"conv_{i}"]["offset"]))
    act = _np_conv(act, t["out"]["layer"]["kernel"], 1) + t["out"]["bias"]
    return np.transpose(act, (1, 0, 2))                                   # [B, U, delta_dim]


def test_dense_top_delta_matches_reference():
    rule = dataclasses.replace(DENSE, top_width=8)
    theta = _map_leaves(rule.init_theta(jax.random.PRNGKey(0)),
                        lambda path, a: a + 0.05 * jax.random.normal(jax.random.PRNGKey(len(path)), a.shape))
    x_top = jax.nn.relu(jax.random.normal(jax.random.PRNGKey(4), (16, 8)))
    ours = jax.jit(rule.top_delta)(theta["top_delta"], x_top)
    _assert_close(ours, _np_top_delta_dense(_np(theta["top_delta"]), np.asarray(x_top, np.float64)), 2e-4)


def _unit_influence(rule, theta, x_top):
    """M[i, j] = Σ over examples, channels of |∂ signal of unit i / ∂ activations of unit j| (random direction)."""
    units = x_top.shape[1]
    rule = dataclasses.replace(rule, hand_written_gradients=False)  # forward mode needs JAX's own derivatives
    direction = jax.random.normal(jax.random.PRNGKey(3), (x_top.shape[0], 1))
    tangents = direction * jnp.eye(units)[:, None, :]                     # [j, B, U]
    jvp = lambda t: jax.jvp(lambda a: rule.top_delta(theta["top_delta"], a), (x_top,), (t,))[1]
    moved = jax.jit(jax.vmap(jvp))(tangents)                              # [j, B, U, delta_dim]
    return np.asarray(jnp.sum(jnp.abs(moved), axis=(1, 3))).T


def test_dense_top_mixing_mixes_all_units():
    x_top = jax.random.uniform(jax.random.PRNGKey(1), (32, 32))
    off = ~np.eye(32, dtype=bool)
    ratios = {}
    for rule, theta in ((RULE, THETA), (DENSE, DENSE.init_theta(jax.random.PRNGKey(0)))):
        m = _unit_influence(rule, theta, x_top)
        ratios[rule.top_mixing] = np.mean(m[off]) / np.mean(np.diag(m))
        if rule.top_mixing == "dense":
            assert np.mean(m[off] > 1e-2 * np.mean(np.diag(m))) > 0.9   # most i ≠ j
    # dense: another unit weighs about as much as the unit itself; mean: only through the 1/U mean
    assert ratios["dense"] > 0.3 and ratios["dense"] > 5 * ratios["mean"], ratios


def test_dense_top_mixing_rejects_other_top_widths():
    for call in (lambda: DENSE.init_inner_state(jax.random.PRNGKey(0), ARCH),
                 lambda: DENSE.inner_step(DENSE.init_theta(jax.random.PRNGKey(0)), _state(RULE, ARCH),
                                          _inputs(8, 24), None)):
        with pytest.raises(ValueError) as err:
            call()
        message = str(err.value)
        assert "update_rule_config.top_width" in message and "32" in message and " 8 " in message
        assert "\n" not in message


def test_dense_inner_steps_are_finite():
    arch = Architecture(16, (24, 32))
    state = _state(DENSE, arch)
    theta = DENSE.init_theta(jax.random.PRNGKey(0))
    xs = jax.random.uniform(jax.random.PRNGKey(3), (5, 32, 16))
    final = _run(DENSE, theta, state, xs)
    assert int(final.step) == 5
    for a, b in zip(jax.tree.leaves(final), jax.tree.leaves(state)):
        assert a.shape == b.shape and bool(jnp.all(jnp.isfinite(a)))
    assert _max_diff(final.params, state.params) > 0


# ------------------------------------------------------------------ initial mix weights and the learned share

def test_mix_init_sets_every_mix_weight():
    rule = Metz2019Rule(base_model=MLPBatchNorm(), mix_init=1.0, identical_updates=False)
    theta = rule.init_theta(jax.random.PRNGKey(0))
    for prefix in ("forward", "backward"):
        np.testing.assert_array_equal(theta[prefix]["mix"]["w"], np.ones(len(TERM_NAMES)))
        assert float(theta[prefix]["mix"]["b"]) == 0.0
    # nothing but the mix weights changes
    leaves = lambda t: jax.tree.leaves({k: v for k, v in t.items() if k not in ("forward", "backward")})
    default = Metz2019Rule(base_model=MLPBatchNorm(), identical_updates=False).init_theta(jax.random.PRNGKey(0))
    assert _max_diff(leaves(theta), leaves(default)) == 0


def _learned_share(rule, theta, state, x):
    return float(_compiled(("share", rule), rule.learned_share, theta, state, x))


def test_learned_share_at_init_and_with_larger_mix_init():
    state, x = _state(RULE, ARCH), _inputs(32, 24)
    default = _learned_share(RULE, THETA, state, x)
    assert 0.005 < default < 0.05, default
    strong = Metz2019Rule(base_model=MLPBatchNorm(), mix_init=1.0)
    larger = _learned_share(strong, strong.init_theta(jax.random.PRNGKey(0)), state, x)
    assert larger >= 3 * default, (default, larger)
    # the share is what it says: RMS(ΔW + w_base/7) / RMS(w_base/7), here per layer
    dw, _, _ = _changes(RULE, THETA, state, x)
    shares = []
    for w, change in zip([layer["w"] for layer in MLPBatchNorm().layers(state.params)], dw):
        pull = np.asarray(RULE.normalised_weights(w), np.float64) / 7.0
        shares.append(np.sqrt(np.mean((np.asarray(change, np.float64) + pull) ** 2)) / np.sqrt(np.mean(pull ** 2)))
    np.testing.assert_allclose(default, np.mean(shares), rtol=1e-3)


def test_large_mix_init_stays_finite_for_50_steps():
    rule = Metz2019Rule(base_model=MLPBatchNorm(), mix_init=1.0)
    arch = Architecture(16, (32, 32))
    state = _state(rule, arch)
    xs = jax.random.uniform(jax.random.PRNGKey(3), (50, 32, 16))
    final = _run(rule, rule.init_theta(jax.random.PRNGKey(0)), state, xs)
    assert int(final.step) == 50
    assert all(bool(jnp.all(jnp.isfinite(a))) for a in jax.tree.leaves(final))
