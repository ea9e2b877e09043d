"""A learned rule on the user's own Flax model: `apply_rule(rule, module, params, unlabelled_data)`.

    import metaplastic
    rule = metaplastic.load_rule("pretrained:glyphs-v2")
    params = metaplastic.apply_rule(rule, my_mlp, params, unlabelled, steps=100)    # same tree, new kernels
    features = my_mlp.apply({"params": params}, unlabelled)

`FlaxModuleAdapter` presents a `flax.linen` MLP as a `BaseModel`. It finds the model's `nn.Dense` layers
and their activations by running the module once with a method interceptor (`nn.intercept_methods`)
that records every submodule call's input and output in call order. For Dense layer i:

  * post_i = the input of Dense i+1 (for the last Dense: the module's return value);
  * pre_i  = the tensor that enters the last nonlinear step between Dense i and post_i, found on the
    probe batch: the Dense output (Dense → activation, or Dense → activation → LayerNorm), or the output
    of the last normalisation module after it (Dense → LayerNorm/BatchNorm → activation, the `mlp_bn`
    order). A nonlinear step is anything between two recorded tensors that is not the identity (a jnp
    function such as `nn.relu`), or a module other than a normalisation/Dropout whose output differs from
    its input (e.g. `nn.PReLU`). Normalisation written inline as jnp code is not a module and is not seen:
    pre is then the Dense output, before it.
  * layers(params)[i] = {"w": Dense kernel, "b": Dense bias (zeros if use_bias=False; changes to it are
    then dropped)}. Normalisation scales and offsets, other collections (batch_stats) and every other
    parameter are read, never written. Mutable collections are discarded after each call, so running
    averages of BatchNorm are not updated.

Refused, with one line naming the layer: a parameterised layer other than Dense (Conv, Embed, ...:
any parameter of 2 or more dimensions outside a Dense kernel), a Dense called twice, a Dense on inputs
that are not [batch, features], a first Dense that does not read the model's input itself (the rules use
the input as its presynaptic activity), a Dense that does not read the previous Dense's width, two Dense
with no activation between them, a last Dense with no activation after it, and a model with no Dense.
Not detected: skip connections and concatenations that keep the widths.

The rule starts from the given weights (φ = the user's params). Its own state is built as for a fresh
model of the same architecture (metz2019: backward weights V drawn with the RMS of the user's kernels);
a rule's re-normalisation at initialisation (hebbian: unit-norm columns) is not applied to the given
weights, but rules that renormalise columns after each step (hebbian, simple_local) do so from step 1.
Flax NNX modules are not supported (convert with `nnx.bridge` to linen, or pass a linen module).
"""

from __future__ import annotations

import dataclasses
import itertools
import os
from collections.abc import Mapping
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from flax.core import unfreeze

from metaplastic.core.errors import one_line
from metaplastic.core.interfaces import Architecture, BaseModel, LayerActivation, Pytree

NORMALISATIONS = (nn.LayerNorm, nn.BatchNorm, nn.GroupNorm, nn.RMSNorm, nn.InstanceNorm, nn.Dropout)
PROBE_ROWS = 64


@dataclasses.dataclass
class _Call:
    path: tuple[str, ...]
    module: nn.Module
    enter: int
    input: Any = None
    output: Any = None
    exit: int = -1

    @property
    def name(self) -> str:
        return "/".join(self.path)


def _run(module, variables, x, kwargs) -> tuple[Any, list[_Call]]:
    """module.apply(variables, x, **kwargs) and every submodule __call__ in call order."""
    calls, counter = [], itertools.count()

    def interceptor(next_fun, args, kw, context):
        if context.method_name != "__call__":
            return next_fun(*args, **kw)
        call = _Call(tuple(context.module.path), context.module, next(counter), args[0] if args else None)
        calls.append(call)
        call.output = next_fun(*args, **kw)
        call.exit = next(counter)
        return call.output

    mutable = [name for name in variables if name != "params"]
    with nn.intercept_methods(interceptor):
        out = module.apply(variables, x, mutable=mutable or False, **kwargs)
    return (out[0] if mutable else out), calls


def _shape(value):
    return tuple(value.shape) if hasattr(value, "shape") else None


def _same(a, b) -> bool:
    return _shape(a) == _shape(b) and np.array_equal(np.asarray(a), np.asarray(b))


def _get(tree, path):
    for key in path:
        tree = tree[key]
    return tree


def _set(tree: dict, path, value) -> dict:
    """A copy of nested dict `tree` with tree[path] = value (only the dicts on the path are copied)."""
    if not path:
        return value
    out = dict(tree)
    out[path[0]] = _set(tree[path[0]], path[1:], value)
    return out


@dataclasses.dataclass(frozen=True)
class FlaxModuleAdapter(BaseModel):
    """A `flax.linen` MLP as a BaseModel; its params are the module's full variables dict.

    Built with `FlaxModuleAdapter.of(module, variables, x)`; hashable (jit static argument).
    Tensors are addressed as (index of the submodule call in call order, "in" or "out"); index -1
    is the module's return value.
    """

    module: nn.Module
    input_shape: tuple[int, ...]                  # one example as the module reads it
    dense_paths: tuple[tuple[str, ...], ...]      # each Dense's path in the params tree, call order
    has_bias: tuple[bool, ...]
    pre: tuple[tuple[int, str], ...]
    post: tuple[tuple[int, str], ...]
    call_kwargs: tuple[tuple[str, Any], ...] = ()
    weight_std: float = 0.01                      # RMS of the given kernels: `init_weight_std`

    # ---------------------------------------------------------------- construction

    @classmethod
    def of(cls, module: nn.Module, variables: Mapping, x, call_kwargs: Mapping | None = None) -> "FlaxModuleAdapter":
        """Inspect `module` on a probe batch x [B, ...] with `variables` (its full variables dict)."""
        kwargs = dict(call_kwargs or {})
        model = type(module).__name__
        try:
            hash((module, tuple(sorted(kwargs.items()))))
        except TypeError:
            raise ValueError(f"module {model}: its fields and module_kwargs must be hashable (tuples, not "
                             "lists) so that compiled steps can be cached") from None
        x = jnp.asarray(x)
        try:
            out, calls = _run(module, variables, x, kwargs)
        except Exception as error:  # whatever the module raises, the user's params or inputs are at fault
            raise ValueError(f"module {model}: does not run with the given params on inputs of shape "
                             f"{tuple(x.shape[1:])} per example ({one_line(error)})") from error
        by_path = {call.path: call for call in calls}
        dense = [call for call in calls if isinstance(call.module, nn.Dense)]
        dense_paths = {call.path for call in dense}

        for path, leaf in jax.tree_util.tree_flatten_with_path(variables["params"])[0]:
            keys = tuple(str(getattr(k, "key", k)) for k in path)
            if np.ndim(leaf) >= 2 and not (keys[:-1] in dense_paths and keys[-1] == "kernel"):
                owner = by_path.get(keys[:-1])
                kind = type(owner.module).__name__ if owner else model
                name = "/".join(keys[:-1]) or model
                raise ValueError(f"layer '{name}' is a {kind}; update rules drive Dense layers only")
        if not dense:
            raise ValueError(f"module {model} has no Dense layer; update rules drive Dense layers only")
        for call in dense:
            count = sum(c.path == call.path for c in dense)
            if count > 1:
                raise ValueError(f"layer '{call.name}' is called {count} times (shared weights); "
                                 "update rules drive each Dense layer once")
            if len(_shape(call.input)) != 2:
                raise ValueError(f"layer '{call.name}' reads inputs of shape {_shape(call.input)}; update rules "
                                 "drive Dense layers on [batch, features] inputs")
        flat = x.reshape(x.shape[0], -1)
        if not _same(dense[0].input, flat):
            raise ValueError(f"layer '{dense[0].name}' (the first Dense) does not read the model's input "
                             f"[batch, {flat.shape[1]}] unchanged; update rules use the input as its "
                             "presynaptic activity")
        index = {id(call): i for i, call in enumerate(calls)}
        pre, post = [], []
        for i, call in enumerate(dense):
            units = call.module.features
            if i + 1 < len(dense):
                nxt = dense[i + 1]
                if _shape(nxt.input)[1] != units:
                    raise ValueError(f"layer '{nxt.name}' reads {_shape(nxt.input)[1]} features but '{call.name}' "
                                     f"has {units} units; each Dense must read the previous Dense's post-activation")
                post_ref, post_value, stop = (index[id(nxt)], "in"), nxt.input, nxt.enter
                what = f"layers {call.name} → {nxt.name} have no activation between them"
            else:
                if _shape(out) != (x.shape[0], units):
                    raise ValueError(f"module {model} returns {_shape(out) or type(out).__name__}, not the "
                                     f"post-activation [batch, {units}] of its last Dense '{call.name}'")
                post_ref, post_value, stop = (-1, "out"), out, calls[0].exit + 1
                what = (f"layer '{call.name}' (the last Dense) has no activation after it; apply the rule to the "
                        "module without its output layer (the top post-activation is the representation)")
            ref = _pre_of(call, calls, index, post_value, stop, (x.shape[0], units))
            if ref is None:
                raise ValueError(what)
            pre.append(ref)
            post.append(post_ref)
        kernels = [_get(variables["params"], c.path)["kernel"] for c in dense]
        rms = float(np.mean([np.sqrt(np.mean(np.square(np.asarray(k, np.float32)))) for k in kernels]))
        return cls(module=module, input_shape=tuple(x.shape[1:]), dense_paths=tuple(c.path for c in dense),
                   has_bias=tuple(bool(c.module.use_bias) for c in dense), pre=tuple(pre), post=tuple(post),
                   call_kwargs=tuple(sorted(kwargs.items())), weight_std=rms or 0.01)

    # ---------------------------------------------------------------- BaseModel

    def architecture_of(self, params) -> Architecture:
        kernels = [layer["w"] for layer in self.layers(params)]
        return Architecture(int(kernels[0].shape[0]), tuple(int(k.shape[1]) for k in kernels))

    def init_weight_std(self) -> float:
        return self.weight_std

    def init(self, key, arch: Architecture):
        variables = unfreeze(self.module.init({"params": key, "dropout": key},
                                              jnp.zeros((2, *self.input_shape), jnp.float32),
                                              **dict(self.call_kwargs)))
        built = self.architecture_of(variables)
        if built != arch:
            raise ValueError(f"architecture: the module {type(self.module).__name__} is fixed at input "
                             f"{built.input_dim}, widths {built.widths}; asked for {arch.input_dim}, {arch.widths}")
        return variables

    def apply(self, params, x) -> list[LayerActivation]:
        x = x.reshape((x.shape[0], *self.input_shape))
        out, calls = _run(self.module, params, x, dict(self.call_kwargs))
        tensor = lambda ref: out if ref[0] == -1 else (calls[ref[0]].input if ref[1] == "in"
                                                        else calls[ref[0]].output)
        return [LayerActivation(tensor(p), tensor(q)) for p, q in zip(self.pre, self.post)]

    def layers(self, params) -> list[dict]:
        out = []
        for path in self.dense_paths:
            dense = _get(params["params"], path)
            kernel = dense["kernel"]
            out.append({"w": kernel, "b": dense["bias"] if "bias" in dense else jnp.zeros(kernel.shape[1:], kernel.dtype)})
        return out

    def from_layers(self, params, layers) -> dict:
        collection = params["params"]
        for path, bias, layer in zip(self.dense_paths, self.has_bias, layers):
            old = _get(collection, path)
            collection = _set(collection, path + ("kernel",), jnp.asarray(layer["w"], old["kernel"].dtype))
            if bias:
                collection = _set(collection, path + ("bias",), jnp.asarray(layer["b"], old["bias"].dtype))
        return {**params, "params": collection}


def _pre_of(dense: _Call, calls: list[_Call], index, post_value, stop: int, shape) -> tuple[int, str] | None:
    """Reference of the tensor entering the last nonlinear step from `dense`'s output to `post_value`."""
    between = [c for c in calls if c.path and c.enter > dense.exit and c.exit < stop
               and _shape(c.input) == shape and _shape(c.output) == shape]
    leaves = [c for c in between if not any(o is not c and c.enter < o.enter and o.exit < c.exit for o in between)]
    ref, value, last = (index[id(dense)], "out"), dense.output, None
    for call in leaves:
        if not _same(call.input, value):  # a function between the two recorded tensors
            last = ref
        here = (index[id(call)], "in")
        if not isinstance(call.module, NORMALISATIONS) and not _same(call.output, call.input):
            last = here  # an activation module
        ref, value = (index[id(call)], "out"), call.output
    if not _same(post_value, value):
        last = ref
    return last


# ---------------------------------------------------------------- apply_rule

def _variables(params) -> tuple[dict, bool]:
    """(full variables as plain dicts, whether `params` was the full variables dict)."""
    if not isinstance(params, Mapping):
        raise ValueError(f"params: expected the module's params (a dict) or its variables dict, "
                         f"got {type(params).__name__}")
    tree = unfreeze(params)
    full = "params" in tree and isinstance(tree["params"], Mapping)
    return (tree if full else {"params": tree}), full


def apply_rule(rule, module: nn.Module, params: Pytree, unlabelled_data, steps: int | None = None,
               batch_size: int = 128, seed: int = 0, *, module_kwargs: Mapping | None = None) -> Pytree:
    """Train the Dense layers of your `flax.linen` MLP with a learned rule on unlabelled data; returns
    new params, the same tree with only Dense kernels and biases changed.

        rule = metaplastic.load_rule("pretrained:genome-glyphs-v1")
        params = metaplastic.apply_rule(rule, my_mlp, params, unlabelled)   # steps: rule.recommended_steps
        features = my_mlp.apply({"params": params}, unlabelled)

    rule: a `LearnedRule` or anything `load_rule` takes ("pretrained:glyphs-v2", a folder, a workdir).
    module: an MLP of `nn.Dense` layers with an activation after each, the last included: the rule
        trains a representation, so put an activation (relu, as in meta-training) on top of the last
        Dense and apply the rule to the model without its output/classifier layer. A normalisation
        before each activation (BatchNorm or LayerNorm, then relu) is closest to the batch-normalised
        layers the shipped rules were meta-trained on. Convolutions, shared Dense layers and two Dense
        layers with no activation between them are refused in one line naming the layer.
    params: the module's "params" collection, or its full variables dict; the same kind of tree comes
        back, same structure and dtypes. A model with other collections (BatchNorm's `batch_stats`)
        needs the full `variables` (`module.init(...)` as a whole); those are read, never updated.
    unlabelled_data: [N, ...], each example as the module reads it, its first Dense reading the input
        flattened to [N, D]. Pixels as floats in [0, 1], like the rules' meta-training data
        (`input_spec` in rule.json; other ranges get a warning), or integers 0-255 (scaled by 1/255).
    steps: inner steps (one unlabelled batch each); default `rule.recommended_steps`, the advice of the
        rule's model card recorded in its rule.json (100 for glyphs-v2, 1,000 for genome-glyphs-v1),
        else 1,000. Rules trained on short horizons degrade when run much longer.
    batch_size: examples per inner step (at most N); seed: the batches drawn and the rule's own state.
    module_kwargs: extra keyword arguments of the module's __call__ (e.g. {"train": False}).
    """
    from metaplastic.core.rules import LearnedRule, load_rule, prepare_data

    learned = load_rule(rule) if isinstance(rule, (str, os.PathLike)) else rule
    if not isinstance(learned, LearnedRule):
        raise ValueError(f"rule: expected a LearnedRule or a name for load_rule, got {type(rule).__name__}")
    if not isinstance(module, nn.Module):
        raise ValueError(f"module: expected a flax.linen Module, got {type(module).__name__}"
                         + (" (Flax NNX modules are not supported)" if "nnx" in type(module).__module__ else ""))
    data = prepare_data(unlabelled_data, flatten=False, input_spec=learned.description.get("input_spec"))
    variables, full = _variables(params)
    adapter = FlaxModuleAdapter.of(module, variables, data[:PROBE_ROWS], module_kwargs)
    on_module = learned.rule.with_base_model(adapter)
    state = on_module.init_inner_state(jax.random.PRNGKey(seed), adapter.architecture_of(variables))
    given = jax.tree.map(jnp.asarray, variables)
    if jax.tree.structure(state.params) != jax.tree.structure(given):
        missing = sorted(set(state.params) - set(given))
        raise ValueError("params: " + (f"the module also needs collection(s) {', '.join(missing)}; pass its full "
                                       "variables dict" if missing else "their tree differs from the module's own"))
    state = state.replace(params=given)
    state = LearnedRule(on_module, learned.theta, learned.description).run(
        data.reshape(len(data), -1), steps=steps, batch_size=batch_size, seed=seed, state=state)
    new = {path: layer for path, layer in zip(adapter.dense_paths, adapter.layers(state.params))}

    def updated(path, leaf):
        keys = tuple(str(getattr(k, "key", k)) for k in path)
        if full:
            if keys[0] != "params":
                return leaf
            keys = keys[1:]
        if keys[:-1] in new and keys[-1] in ("kernel", "bias"):
            value = new[keys[:-1]]["w" if keys[-1] == "kernel" else "b"]
            return jnp.asarray(value, jnp.asarray(leaf).dtype)
        return leaf

    return jax.tree_util.tree_map_with_path(updated, params)
