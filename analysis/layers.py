"""What a network is made of, found rather than assumed: its layers in forward order, and every stage of one input.

Pages never assume the names conv1/conv2/fc1: they ask `discover(model)` for
  * `convs`: the Conv2d layers in the order a forward pass runs them (kernels view, activations,
    Grad-CAM's layer list, top-activating examples, activation maximisation),
  * `final`: the last Linear layer (its output is the class scores, up to the run's output convention),
  * the embedding: what the final layer reads (`embedding_of`: the penultimate representation),
  * `activation_of`: the non-linearity that runs right after a conv/linear layer (units are scored after it),
  * `hook_methods`: whether every non-linearity is its own module, used once (Captum's DeepLift, Guided
    Backprop, Deconvolution and Guided Grad-CAM need it; see model.external.modularize),
  * `chain`: whether the network is one chain of layers (no residual addition or concatenation), so that
    receptive fields add up layer after layer.
Layers are found with forward hooks during one pass of a zero image through a private eval-mode copy,
so registration order in `__init__` does not matter; merges are found in a torch.fx trace.

`stages(model, x)` records every layer's output for one input (the walk-through), and `conv_at` computes
one unit of any Conv2d by hand from the input that layer actually received (padding, stride, dilation).
"""
from __future__ import annotations

import copy
import operator
import threading
import weakref
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.fx as fx
import torch.nn as nn
import torch.nn.functional as F

INPUT_SHAPE = (1, 28, 28)
NONLINEAR = (nn.ReLU, nn.LeakyReLU, nn.ELU, nn.GELU, nn.SiLU, nn.Sigmoid, nn.Tanh, nn.Softplus, nn.PReLU)
# not drawn as stages: they do not change values (eval mode) or only reshape
HIDDEN = (nn.Identity, nn.Dropout, nn.Dropout2d, nn.Flatten, nn.Unflatten)
_MERGES = {operator.add, operator.iadd, operator.mul, torch.add, torch.cat, torch.stack, torch.mul,
           torch.ops.aten.add.Tensor, torch.ops.aten.cat.default, torch.ops.aten.mul.Tensor}


@dataclass(frozen=True)
class Layer:
    """One leaf module as a forward pass ran it."""
    name: str                     # its path in the model, e.g. "conv1" or "net.conv1"
    kind: str                     # its class name, e.g. "Conv2d"
    in_shape: tuple[int, ...]     # its first input's shape, batch dimension dropped
    out_shape: tuple[int, ...]    # its output's shape, batch dimension dropped

    @property
    def short(self) -> str:
        """The name without the wrapper's "net." prefix (what the user's own code calls it)."""
        return self.name.removeprefix("net.")


@dataclass(frozen=True)
class Layers:
    order: tuple[Layer, ...]              # every leaf module, in the order the forward pass ran it (first run)
    convs: tuple[str, ...]                # Conv2d layers in forward order
    linears: tuple[str, ...]              # Linear layers in forward order
    final: str | None                     # the last Linear layer
    activation_of: dict[str, str] = field(default_factory=dict)   # conv/linear -> the non-linearity right after it
    chain: bool = True                    # no residual addition or concatenation between layers
    hook_methods: bool = True             # every non-linearity is a module used once
    note: str = ""                        # why hook_methods is False

    def get(self, name: str) -> Layer:
        for layer in self.order:
            if layer.name == name:
                return layer
        raise ValueError(f"no layer {name!r}; layers are {[layer.name for layer in self.order]}")

    @property
    def unit_layers(self) -> tuple[str, ...]:
        """Layers whose units can be ranked and maximised: every conv, and every linear but the final one."""
        return self.convs + tuple(n for n in self.linears if n != self.final)


def _leaves(model: nn.Module) -> dict[str, nn.Module]:
    return {n: m for n, m in model.named_modules() if n and not list(m.children())}


def _eval_copy(model: nn.Module) -> nn.Module:
    """New module objects in eval mode that share the model's weight tensors: hooks put on them are private,
    so a model shared between threads (Streamlit's cache) is never hooked."""
    import itertools
    memo = {id(t): t for t in itertools.chain(model.parameters(), model.buffers())}
    work = copy.deepcopy(model, memo)
    try:
        work.eval()
    except NotImplementedError:
        pass
    return work


def _record(model: nn.Module, x: torch.Tensor) -> tuple[list[tuple[str, nn.Module, torch.Tensor, torch.Tensor]], torch.Tensor]:
    """Run x through model, recording (name, module, input, output) for every leaf call in order."""
    calls: list = []
    hooks = []
    for name, m in _leaves(model).items():
        def hook(mod, inputs, output, name=name):
            first = inputs[0] if inputs and torch.is_tensor(inputs[0]) else None
            calls.append((name, mod, first, output))
        hooks.append(m.register_forward_hook(hook))
    try:
        with torch.no_grad():
            out = model(x)
    finally:
        for h in hooks:
            h.remove()
    return calls, out


def _has_merge(model: nn.Module) -> bool | None:
    """Whether a torch.fx trace shows two computed tensors combined (residual add, concat); None if untraceable."""
    try:
        graph = model.graph if isinstance(model, fx.GraphModule) else fx.symbolic_trace(model).graph
    except Exception:
        return None
    for node in graph.nodes:
        if node.op in ("call_function", "call_method") and (node.target in _MERGES or node.target in ("add", "add_", "cat")):
            computed = [a for a in node.all_input_nodes if a.op not in ("get_attr",)]
            if len(computed) >= 2:
                return True
        if node.op == "call_module":                 # a GraphModule nested inside (model.external.Wrapped)
            sub = model.get_submodule(node.target) if isinstance(model, nn.Module) else None
            if isinstance(sub, fx.GraphModule) and _has_merge(sub):
                return True
    return False


def _functional_nonlinearities(model: nn.Module) -> list[str]:
    """Calls to non-linear functions (F.relu, torch.tanh, F.max_pool2d, ...) a hook cannot see, from an fx trace."""
    from model.external import _module_for  # one list of what counts as a non-linear call
    try:
        gm = model if isinstance(model, fx.GraphModule) else fx.symbolic_trace(model)
    except Exception as e:
        return [f"untraceable ({type(e).__name__})"]
    found = []
    for node in gm.graph.nodes:
        if node.op == "call_function" and not isinstance(_module_for(node, gm),
                                                         (type(None), nn.Dropout, nn.AvgPool2d, nn.AdaptiveAvgPool2d)):
            found.append(getattr(node.target, "__name__", str(node.target)))
        if node.op == "call_module" and isinstance(gm.get_submodule(node.target), fx.GraphModule):
            found += _functional_nonlinearities(gm.get_submodule(node.target))
    return found


def discover(model: nn.Module, input_shape: tuple[int, ...] = INPUT_SHAPE) -> Layers:
    """The layers of a model that takes (B, *input_shape) images, found in one forward pass of a zero image."""
    work = _eval_copy(model)
    calls, _ = _record(work, torch.zeros((2,) + tuple(input_shape)))
    order, seen, uses = [], set(), {}
    for name, mod, inp, out in calls:
        uses[name] = uses.get(name, 0) + 1
        if name in seen or not torch.is_tensor(out):
            continue
        seen.add(name)
        order.append(Layer(name, type(mod).__name__, tuple(inp.shape[1:]) if inp is not None else (),
                           tuple(out.shape[1:])))
    kinds = {n: m for n, m in _leaves(work).items()}
    convs = tuple(layer.name for layer in order if isinstance(kinds[layer.name], nn.Conv2d))
    linears = tuple(layer.name for layer in order if isinstance(kinds[layer.name], nn.Linear))
    activation_of = {}
    for i, (name, _, _, out) in enumerate(calls):
        if name not in convs + linears or name in activation_of:
            continue
        current = out                                    # follow this output through BatchNorm / Dropout / Identity
        for nxt, mod, inp, nxt_out in calls[i + 1:]:
            if inp is not current:
                continue                                 # another branch; a functional add ends the trail
            if isinstance(mod, NONLINEAR):
                activation_of[name] = nxt
                break
            if not isinstance(mod, HIDDEN + (nn.BatchNorm2d, nn.BatchNorm1d)):
                break
            current = nxt_out
    reused = [n for n, k in uses.items() if k > 1 and isinstance(kinds[n], NONLINEAR + (nn.MaxPool2d,))]
    functional = _functional_nonlinearities(work)
    untraceable = [f for f in functional if f.startswith("untraceable")]
    problems = ([f"module {n} is used {uses[n]} times" for n in reused] +
                ([f"torch.fx cannot trace the model ({untraceable[0][len('untraceable '):].strip('()')}), so "
                  "calls to non-linear functions cannot be found or rewritten"] if untraceable else
                 [f"the forward calls {', '.join(sorted(set(functional)))} as functions"] if functional else []))
    problems = [p for p in problems if p]
    merge = _has_merge(work)
    return Layers(tuple(order), convs, linears, linears[-1] if linears else None, activation_of,
                  chain=merge is False, hook_methods=not problems,
                  note="; ".join(problems) + ("" if not problems else
                                              ": DeepLift, Guided Backprop and Deconvolution hook modules and would "
                                              "miss those non-linearities"))


_LAYERS: "weakref.WeakKeyDictionary[nn.Module, Layers]" = weakref.WeakKeyDictionary()
_LAYERS_LOCK = threading.Lock()


def layers_of(model: nn.Module) -> Layers:
    """`discover(model)`, run once per model object (one forward pass) and remembered.

    Keyed by the object (weakly): a model whose modules are replaced after its first analysis keeps
    the layers found then.
    """
    with _LAYERS_LOCK:
        found = _LAYERS.get(model)
        if found is None:
            found = _LAYERS[model] = discover(model)
    return found


def known_layers(model: nn.Module) -> Layers | None:
    """The layers `layers_of` found for this model object already, or None (never runs a forward pass)."""
    with _LAYERS_LOCK:
        return _LAYERS.get(model)


def remember_layers(model: nn.Module, layers: Layers) -> None:
    """Tell `layers_of` the layers of a model built to match another one (a deep copy, or the same model
    rebuilt from a pickle in a worker process), so that it does not trace the model again."""
    with _LAYERS_LOCK:
        _LAYERS[model] = layers


# ----------------------------------------------------------------------------- one input, every stage

def stages(model: nn.Module, x: torch.Tensor) -> dict[str, torch.Tensor]:
    """Every layer's output for one image, batch dimension dropped, in forward order.

    Args:
        x: (1,1,28,28) in [0,1].
    Returns:
        {"input": (1,28,28), <layer>: its output for each leaf module that changes values (Identity,
        Dropout and Flatten left out; a module run twice appears as "<name>#2"), "logits": (10,),
        "softmax": (10,)}. "logits" is exactly model(x)[0].
    """
    work = _eval_copy(model)
    calls, out = _record(work, x)
    result = {"input": x[0].detach()}
    for name, mod, _, output in calls:
        if isinstance(mod, HIDDEN) or not torch.is_tensor(output):
            continue
        key, n = name, 1
        while key in result:
            n += 1
            key = f"{name}#{n}"
        result[key] = output[0].detach()
    result["logits"] = out[0].detach()
    result["softmax"] = torch.softmax(out[0].detach(), dim=0)
    return result


def layer_input_output(model: nn.Module, x: torch.Tensor, layer: str) -> tuple[torch.Tensor, torch.Tensor]:
    """The input a layer received and the output it gave for a batch x (first call of the layer)."""
    work = _eval_copy(model)
    module = dict(work.named_modules()).get(layer)
    if module is None:
        raise ValueError(f"no layer {layer!r} in the model")
    got: list = []

    def hook(m, inputs, output):
        if not got:
            got.append((inputs[0].detach(), output.detach()))
    h = module.register_forward_hook(hook)
    try:
        with torch.no_grad():
            work(x)
    finally:
        h.remove()
    if not got:
        raise ValueError(f"layer {layer!r} did not run in a forward pass")
    return got[0]


def conv_window(seen: np.ndarray, conv: nn.Conv2d, channel: int, row: int, col: int) -> dict:
    """The multiply-and-sum behind one output unit of a Conv2d, from the input it received.

    Args:
        seen: the layer's input for one image, (C_in, H, W).
        conv: the layer (any kernel size, stride, dilation, zero or "same"/"valid" padding, groups).
        channel, row, col: the output unit.
    Returns:
        {"window": (C,kh,kw) the input values under the kernel (padding zeros included), "kernel": (C,kh,kw),
         "products": (C,kh,kw), "sum": float, "bias": float, "output": float}; float64. C is the input
        channels of the kernel's group.
    """
    if conv.padding_mode != "zeros":
        raise ValueError(f"by-hand view covers zero padding, not {conv.padding_mode!r}")
    x = np.asarray(seen, dtype=np.float64)
    kh, kw = conv.kernel_size
    sh, sw = conv.stride
    dh, dw = conv.dilation
    if isinstance(conv.padding, str):
        ph = pw = 0 if conv.padding == "valid" else None
        if ph is None:
            ph, pw = (dh * (kh - 1)) // 2, (dw * (kw - 1)) // 2
    else:
        ph, pw = conv.padding
    out_h = (x.shape[1] + 2 * ph - dh * (kh - 1) - 1) // sh + 1
    out_w = (x.shape[2] + 2 * pw - dw * (kw - 1) - 1) // sw + 1
    if not (0 <= row < out_h and 0 <= col < out_w):
        raise ValueError(f"(row, col) = ({row}, {col}) outside the {out_h}x{out_w} output")
    per_group = conv.in_channels // conv.groups
    group = channel // (conv.out_channels // conv.groups)
    padded = np.pad(x[group * per_group:(group + 1) * per_group], ((0, 0), (ph, ph + kh), (pw, pw + kw)))
    r0, c0 = row * sh, col * sw
    window = padded[:, r0:r0 + dh * (kh - 1) + 1:dh, c0:c0 + dw * (kw - 1) + 1:dw]
    kernel = conv.weight.detach().double()[channel].numpy()
    products = window * kernel
    total = float(products.sum())
    bias = float(conv.bias.detach()[channel]) if conv.bias is not None else 0.0
    return {"window": window, "kernel": kernel, "products": products, "sum": total, "bias": bias,
            "output": total + bias}


def conv_at(model: nn.Module, x: torch.Tensor, layer: str, channel: int, row: int, col: int) -> dict:
    """One unit of a Conv2d layer computed by hand: `conv_window` on the input the layer received for x.

    Returns `conv_window`'s dict plus "seen": that input (C_in,H,W) float64; "output" equals the layer's
    output at (channel, row, col).
    """
    conv = dict(model.named_modules()).get(layer)
    if not isinstance(conv, nn.Conv2d):
        raise ValueError(f"{layer!r} is not a Conv2d layer of the model")
    seen, _ = layer_input_output(model, x, layer)
    seen = seen[0].double().numpy()
    return {**conv_window(seen, conv, channel, row, col), "seen": seen}


def embedding_of(model: nn.Module, x: torch.Tensor, layers: Layers | None = None) -> torch.Tensor:
    """The penultimate representation of a batch: what the final Linear layer reads, (B, features)."""
    layers = layers or layers_of(model)
    if layers.final is None:
        raise ValueError("the model has no Linear layer: no penultimate representation to show")
    seen, _ = layer_input_output(model, x, layers.final)
    return seen.flatten(1)
