"""Models defined outside digit-lens: a user's class file, a TorchScript archive or a torch.export archive.

A run whose network is not one of model.net's variants keeps a `source` section in config.json
(`ModelSource`) and a copy of what defines the network in `<run>/source/`; `runs.load_model` rebuilds
it from there with `build_model` and loads each epoch's weights (a plain state_dict, in
checkpoints/epoch_NNN.safetensors, with the names the user's own class expects).

Every consumer feeds images in [0, 1] and reads logits. `Wrapped` makes any model fit that:
    (B,1,28,28) in [0,1] -> (x - mean) / std -> the user's network -> logits
where the input normalisation and what the last layer returns (logits, log-probabilities or
probabilities) are the run's recorded conventions. Log-probabilities are valid logits as they are
(softmax(log p) = p); probabilities become log(p).

Captum's DeepLift, Guided Backprop, Deconvolution and Guided Grad-CAM attach hooks to non-linearity
*modules*: a model that calls F.relu, torch.tanh, F.max_pool2d, ... is invisible to them and gets a
silently wrong map. `modularize` traces the network with torch.fx and replaces each such call by a
module of its own (and a module used twice by two copies), drops a final (log_)softmax so the graph
returns logits, and turns the aten conv2d/linear calls of a torch.export graph back into Conv2d/Linear
modules over the same parameters. The import checks the rewritten model gives the original's outputs
on real images; a model that cannot be traced keeps its original form and `hook_methods` is False.

A class file is the user's own Python code: importing it runs it, exactly as their script would.
Only the command line imports code (model.import_checkpoint, model.train); the web UI never does.
"""
from __future__ import annotations

import copy
import hashlib
import importlib.util
import json
import sys
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import torch
import torch.fx as fx
import torch.nn as nn
import torch.nn.functional as F

KINDS = ("class", "torchscript", "export")
OUTPUTS = ("logits", "log_probs", "probs")
SOURCE_DIR = "source"
NUM_CLASSES = 10


class ModelError(Exception):
    """The model cannot be loaded, built or used; the message says why and what to do."""


@dataclass
class ModelSource:
    """config.json's "source" section: how to rebuild a network that is not one of model.net's variants."""
    kind: str = "class"                 # "class" (Python file + class name), "torchscript", "export" (.pt2)
    file: str = ""                      # the copy inside the run folder, relative to it: source/<name>
    sha256: str = ""                    # of that copy, checked before it is imported
    class_name: str | None = None       # kind "class": the nn.Module subclass to build
    kwargs: dict = field(default_factory=dict)   # kind "class": keyword arguments of its constructor
    input_norm: list[float] | None = None        # [mean, std] the model expects its input normalised with
    outputs: str = "logits"             # what the network's last layer returns: logits / log_probs / probs
    hook_methods: bool = True           # every non-linearity is its own module (after `modularize`)
    note: str = ""                      # why hook_methods is False, or what modularize changed

    @classmethod
    def from_dict(cls, d: dict) -> "ModelSource":
        known = {f.name for f in fields(cls)}
        src = cls(**{k: v for k, v in d.items() if k in known})
        if src.kind not in KINDS:
            raise ValueError(f"source.kind must be one of {KINDS}, got {src.kind!r}")
        if src.outputs not in OUTPUTS:
            raise ValueError(f"source.outputs must be one of {OUTPUTS}, got {src.outputs!r}")
        return src

    def to_dict(self) -> dict:
        return asdict(self)

    def describe(self) -> str:
        """One line for pages and tables, e.g. "Net from pe_net.py (log_probs, input (x-0.1307)/0.3081)"."""
        what = {"class": f"{self.class_name} from {Path(self.file).name}",
                "torchscript": f"TorchScript {Path(self.file).name}", "export": f"torch.export {Path(self.file).name}"}
        extra = [self.outputs] + ([f"input (x−{self.input_norm[0]:g})/{self.input_norm[1]:g}"]
                                  if self.input_norm else [])
        return f"{what[self.kind]} ({', '.join(extra)})"


def sha256_of(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


# ----------------------------------------------------------------------------- loading the definition

def load_class(path: Path, class_name: str) -> type[nn.Module]:
    """Import a Python file and return its nn.Module subclass `class_name` (ModelError with the cause)."""
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"{path}: no such model file")
    digest = sha256_of(path)[:16]
    mod_name = f"digit_lens_user_model_{digest}"
    module = sys.modules.get(mod_name)
    if module is None:
        spec = importlib.util.spec_from_file_location(mod_name, path)
        if spec is None or spec.loader is None:
            raise ModelError(f"{path}: not an importable Python file")
        module = importlib.util.module_from_spec(spec)
        try:
            spec.loader.exec_module(module)
        except Exception as e:  # the user's code: any error at all
            raise ModelError(f"{path}: importing it raised {type(e).__name__}: {str(e)[:300]}") from e
        sys.modules[mod_name] = module
    cls = getattr(module, class_name, None)
    if not (isinstance(cls, type) and issubclass(cls, nn.Module)):
        found = sorted(n for n, v in vars(module).items()
                       if isinstance(v, type) and issubclass(v, nn.Module) and v.__module__ == mod_name)
        raise ModelError(f"{path}: no nn.Module class named {class_name!r} (classes found: {found or 'none'})")
    return cls


def instantiate(cls: type[nn.Module], kwargs: dict, path: Path | str = "") -> nn.Module:
    try:
        return cls(**kwargs)
    except Exception as e:
        raise ModelError(f"{path}: {cls.__name__}(**{json.dumps(kwargs)}) raised {type(e).__name__}: {str(e)[:300]}") from e


def load_archive(path: Path, kind: str) -> nn.Module:
    """A TorchScript or torch.export archive as an nn.Module (TorchScript converted to an export graph)."""
    path = Path(path)
    try:
        if kind == "export":
            return torch.export.load(str(path)).module()
        scripted = torch.jit.load(str(path), map_location="cpu")
    except Exception as e:
        raise ModelError(f"{path}: not a readable {'torch.export (.pt2)' if kind == 'export' else 'TorchScript'} "
                         f"archive ({type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else ''})") from e
    # TorchScript modules take no hooks and cannot be traced by torch.fx: convert to an export graph
    from torch._export.converter import TS2EPConverter
    try:
        return TS2EPConverter(scripted, (torch.zeros(2, 1, 28, 28),)).convert().module()
    except Exception as e:
        raise ModelError(f"{path}: the TorchScript archive could not be converted for analysis "
                         f"({type(e).__name__}: {str(e)[:200]}); save the model with torch.export.save instead") from e


def archive_kind(path: Path) -> str | None:
    """"export" for a torch.export archive, "torchscript" for a TorchScript one, None otherwise (by content)."""
    import zipfile
    try:
        with zipfile.ZipFile(path) as z:
            names = z.namelist()
    except (zipfile.BadZipFile, OSError):
        return None
    if any(n.endswith("serialized_exported_program.json") or "/models/" in n and n.endswith(".json") for n in names):
        return "export"
    if any(n.endswith("constants.pkl") or n.endswith("/code/__torch__.py") or "/code/" in n for n in names):
        return "torchscript"
    return None


# ----------------------------------------------------------------------------- one module per non-linearity

def _aten(name: str) -> list:
    op = getattr(torch.ops.aten, name, None)
    return [] if op is None else [op, *(getattr(op, o) for o in op.overloads())]


# call -> (module factory from the call's args/kwargs): each is an equivalent module
_ELEMENTWISE = {
    nn.ReLU: [F.relu, torch.relu, *_aten("relu")],
    nn.Tanh: [torch.tanh, F.tanh, *_aten("tanh")],
    nn.Sigmoid: [torch.sigmoid, F.sigmoid, *_aten("sigmoid")],
    nn.GELU: [F.gelu, *_aten("gelu")],
    nn.SiLU: [F.silu, *_aten("silu")],
    nn.ELU: [F.elu, *_aten("elu")],
}
_SOFTMAX = [F.log_softmax, F.softmax, torch.log_softmax, torch.softmax, *_aten("log_softmax"),
            *_aten("_log_softmax"), *_aten("softmax"), *_aten("_softmax")]
_NONLINEAR_MODULES = (nn.ReLU, nn.Tanh, nn.Sigmoid, nn.GELU, nn.SiLU, nn.ELU, nn.LeakyReLU, nn.MaxPool2d,
                      nn.Softmax, nn.LogSoftmax)


def _arg(node: fx.Node, i: int, name: str, default):
    if len(node.args) > i:
        return node.args[i]
    return node.kwargs.get(name, default)


def _module_for(node: fx.Node, gm: fx.GraphModule) -> nn.Module | None:
    """An nn.Module equivalent to a call_function node, or None when the call is not one we replace."""
    t = node.target
    for cls, calls in _ELEMENTWISE.items():
        if t in calls:
            return cls()
    if t in (F.leaky_relu, *_aten("leaky_relu")):
        return nn.LeakyReLU(float(_arg(node, 1, "negative_slope", 0.01)))
    if t in (F.max_pool2d, *_aten("max_pool2d")):
        if _arg(node, 6 if t is F.max_pool2d else 99, "return_indices", False):
            return None
        k = _arg(node, 1, "kernel_size", None)
        s = _arg(node, 2, "stride", None)
        return nn.MaxPool2d(k, stride=s if s not in (None, [], ()) else None, padding=_arg(node, 3, "padding", 0),
                            dilation=_arg(node, 4, "dilation", 1), ceil_mode=bool(_arg(node, 5, "ceil_mode", False)))
    if t in (F.avg_pool2d, *_aten("avg_pool2d")):
        s = _arg(node, 2, "stride", None)
        return nn.AvgPool2d(_arg(node, 1, "kernel_size", None), stride=s if s not in (None, [], ()) else None,
                            padding=_arg(node, 3, "padding", 0), ceil_mode=bool(_arg(node, 4, "ceil_mode", False)),
                            count_include_pad=bool(_arg(node, 5, "count_include_pad", True)))
    if t in (F.adaptive_avg_pool2d, *_aten("adaptive_avg_pool2d")):
        return nn.AdaptiveAvgPool2d(_arg(node, 1, "output_size", None))
    if t in (F.dropout, *_aten("dropout")):
        return nn.Dropout(float(_arg(node, 1, "p", 0.5)))
    return None


def _conv_or_linear(node: fx.Node, gm: fx.GraphModule) -> tuple[str, nn.Module] | None:
    """A Conv2d/Linear over the same parameters for an F.conv2d / aten.conv2d / F.linear / aten.linear call
    whose weight is a parameter of the graph module; (owner path, module) or None."""
    t = node.target
    is_conv, is_linear = t in (F.conv2d, *_aten("conv2d")), t in (F.linear, *_aten("linear"))
    if not (is_conv or is_linear):
        return None
    w, b = _arg(node, 1, "weight", None), _arg(node, 2, "bias", None)
    if not (isinstance(w, fx.Node) and w.op == "get_attr" and w.target.endswith("weight")):
        return None
    if b is not None and not (isinstance(b, fx.Node) and b.op == "get_attr"):
        return None
    weight, bias = _tensor_at(gm, w.target), _tensor_at(gm, b.target) if b is not None else None
    if weight is None or (b is not None and bias is None):
        return None
    owner = w.target.rsplit(".", 1)[0] if "." in w.target else w.target + "_module"
    if is_linear:
        m = nn.Linear(weight.shape[1], weight.shape[0], bias=bias is not None)
    else:
        stride, padding = _arg(node, 3, "stride", 1), _arg(node, 4, "padding", 0)
        dilation, groups = _arg(node, 5, "dilation", 1), _arg(node, 6, "groups", 1)
        m = nn.Conv2d(weight.shape[1] * groups, weight.shape[0], tuple(weight.shape[2:]), stride=stride,
                      padding=padding, dilation=dilation, groups=groups, bias=bias is not None)
    m.weight = weight if isinstance(weight, nn.Parameter) else nn.Parameter(weight, requires_grad=False)
    if bias is not None:
        m.bias = bias if isinstance(bias, nn.Parameter) else nn.Parameter(bias, requires_grad=False)
    return owner, m


def _tensor_at(gm: nn.Module, path: str) -> torch.Tensor | None:
    """The parameter or buffer at a dotted path of a module, or None."""
    try:
        t = gm.get_submodule(path.rpartition(".")[0]) if "." in path else gm
        t = getattr(t, path.rpartition(".")[2])
    except AttributeError:
        return None
    return t if torch.is_tensor(t) else None


def _unique_name(gm: nn.Module, base: str) -> str:
    names = dict(gm.named_modules())
    base = base.replace(".", "_")
    name, n = base, 1
    while name in names or hasattr(gm, name):
        n += 1
        name = f"{base}_{n}"
    return name


def _set_module(gm: fx.GraphModule, path: str, module: nn.Module) -> None:
    parent, _, leaf = path.rpartition(".")
    setattr(gm.get_submodule(parent) if parent else gm, leaf, module)


def modularize(model: nn.Module) -> tuple[nn.Module, bool, str]:
    """Rewrite a model so every non-linearity, conv and linear layer is a module of its own, used once.

    Returns:
        (module, stripped_softmax, note). `stripped_softmax` says a final (log_)softmax was removed, so the
        module returns logits. Raises ModelError when torch.fx cannot trace the model.
    """
    try:
        gm = model if isinstance(model, fx.GraphModule) else fx.symbolic_trace(model)
    except Exception as e:
        raise ModelError(f"torch.fx could not trace the model ({type(e).__name__}: {str(e).splitlines()[0][:200]})") from e
    changed: list[str] = []
    used: dict[str, int] = {}
    for node in list(gm.graph.nodes):
        if node.op == "call_module" and node.target == "_guards_fn":   # torch.export's input-shape asserts
            gm.graph.erase_node(node)
            changed.append("torch.export's shape guard removed (checked on other batch sizes at import)")
            continue
        if node.op == "call_module":
            sub = gm.get_submodule(node.target)
            if isinstance(sub, _NONLINEAR_MODULES):
                if getattr(sub, "inplace", False):
                    sub.inplace = False
                used[node.target] = used.get(node.target, 0) + 1
                if used[node.target] > 1:                 # a module called twice: give this call its own copy
                    name = _unique_name(gm, node.target)
                    _set_module(gm, name, copy.deepcopy(sub))
                    changed.append(f"a second use of {node.target} got its own copy {name}")
                    node.target = name
            continue
        if node.op != "call_function":
            continue
        conv = _conv_or_linear(node, gm)
        if conv is not None:
            owner, m = conv
            try:
                existing = gm.get_submodule(owner)
            except AttributeError:
                existing = None
            name = owner if existing is not None and not isinstance(existing, (nn.Conv2d, nn.Linear)) \
                and not list(existing.children()) else _unique_name(gm, owner)
            _set_module(gm, name, m)
            changed.append(f"{getattr(node.target, '__name__', node.target)} -> {type(m).__name__} module {name}")
            with gm.graph.inserting_before(node):
                new = gm.graph.call_module(name, (node.args[0],))
            node.replace_all_uses_with(new)
            gm.graph.erase_node(node)
            continue
        module = _module_for(node, gm)
        if module is None:
            continue
        name = _unique_name(gm, node.name)
        gm.add_submodule(name, module)
        with gm.graph.inserting_before(node):
            new = gm.graph.call_module(name, (node.args[0],))
        node.replace_all_uses_with(new)
        gm.graph.erase_node(node)
        changed.append(f"{getattr(node.target, '__name__', node.target)} -> {type(module).__name__} module {name}")
    stripped = _strip_final_softmax(gm)
    gm.graph.eliminate_dead_code()
    gm.graph.lint()
    # a fresh GraphModule: only the modules the graph uses, and none of torch.export's input-check hooks
    gm = fx.GraphModule(gm, gm.graph, class_name=type(model).__name__).eval()
    note = "; ".join(dict.fromkeys(changed)) or "already one module per non-linearity"
    return gm, stripped, note + ("; final softmax dropped (the graph returns logits)" if stripped else "")


def _strip_final_softmax(gm: fx.GraphModule) -> bool:
    """Drop a (log_)softmax that produces the graph's single output, so the graph returns logits."""
    out = next(n for n in gm.graph.nodes if n.op == "output")
    ret = out.args[0]
    if isinstance(ret, (tuple, list)) and len(ret) == 1:
        ret = ret[0]
    if not isinstance(ret, fx.Node):
        return False
    is_softmax = (ret.op == "call_function" and ret.target in _SOFTMAX) or (
        ret.op == "call_module" and isinstance(gm.get_submodule(ret.target), (nn.Softmax, nn.LogSoftmax)))
    if not is_softmax:
        return False
    ret.replace_all_uses_with(ret.args[0])
    gm.graph.erase_node(ret)
    return True


# ----------------------------------------------------------------------------- the wrapper every consumer sees

class Wrapped(nn.Module):
    """(B,1,28,28) in [0,1] -> the network's input convention -> the network -> logits (B,10)."""

    def __init__(self, net: nn.Module, input_norm: list[float] | None = None, outputs: str = "logits"):
        super().__init__()
        self.net = net
        mean, std = input_norm if input_norm else (0.0, 1.0)
        self.register_buffer("mean", torch.tensor(float(mean)), persistent=False)
        self.register_buffer("std", torch.tensor(float(std)), persistent=False)
        self.outputs = outputs

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.net((x - self.mean) / self.std)            # (B,10): logits, log-probabilities or probabilities
        if self.outputs == "probs":
            return torch.log(z.clamp_min(1e-12))           # log p: logits up to a per-row constant
        return z                                            # logits, or log p (softmax(log p) = p)

    def train(self, mode: bool = True) -> "Wrapped":
        """nn.Module.train, except that a torch.export module (a .pt2 or converted TorchScript network kept
        as it is because the rewrite was not possible) refuses train()/eval(): its graph fixed the mode when
        it was exported, so it is left as it is."""
        self.training = mode
        for child in self.children():
            try:
                child.train(mode)
            except NotImplementedError:
                pass
        return self


def detect_outputs(out: torch.Tensor) -> str:
    """What a batch of outputs (B,10) looks like: "probs" (rows in [0,1] summing to 1), "log_probs"
    (exp of the rows sums to 1), else "logits"."""
    out = out.detach().double()
    if ((out >= 0) & (out <= 1)).all() and torch.allclose(out.sum(1), torch.ones(len(out), dtype=out.dtype), atol=1e-3):
        return "probs"
    if (out <= 1e-6).all() and torch.allclose(out.exp().sum(1), torch.ones(len(out), dtype=out.dtype), atol=1e-3):
        return "log_probs"
    return "logits"


def check_outputs(out, where: str = "the model") -> None:
    """ModelError unless the output is a tensor (B,10)."""
    if not torch.is_tensor(out):
        raise ModelError(f"{where} returns a {type(out).__name__}, not a tensor of class scores")
    if out.dim() != 2 or out.shape[1] != NUM_CLASSES:
        raise ModelError(f"{where} returns shape {tuple(out.shape)} for a batch of {len(out) if out.dim() else 1} "
                         f"images; digit-lens needs (batch, {NUM_CLASSES}) class scores for the ten digits")


def state_dict_problems(model: nn.Module, state: dict[str, torch.Tensor]) -> list[str]:
    """Every way `state` does not fit `model`: missing and unexpected tensors, and shape mismatches by name."""
    want = model.state_dict()
    problems = [f"{k}: file {tuple(v.shape)}, model {tuple(want[k].shape)}" for k, v in state.items()
                if k in want and tuple(v.shape) != tuple(want[k].shape)]
    missing = [k for k in want if k not in state]
    extra = [k for k in state if k not in want]
    if missing:
        problems.append(f"missing from the file: {', '.join(missing[:8])}{' ...' if len(missing) > 8 else ''}")
    if extra:
        problems.append(f"not in the model: {', '.join(extra[:8])}{' ...' if len(extra) > 8 else ''}")
    return problems


def load_weights(net: nn.Module, state: dict[str, torch.Tensor], where: str) -> None:
    """Load a state_dict strictly; ModelError naming each tensor that does not fit."""
    problems = state_dict_problems(net, state)
    if problems:
        raise ModelError(f"{where}: the weights do not fit the model: " + "; ".join(problems))
    net.load_state_dict(state)


def bare_network(source: ModelSource, run_dir: Path) -> nn.Module:
    """The user's network as defined by the run's copy (weights as initialised or as in the archive)."""
    path = Path(run_dir) / source.file
    if not path.is_file():
        raise ModelError(f"{path}: the run's copy of the model definition is missing")
    if source.sha256 and sha256_of(path) != source.sha256:
        raise ModelError(f"{path}: SHA-256 differs from the one recorded in config.json (the file was changed)")
    if source.kind == "class":
        return instantiate(load_class(path, source.class_name or ""), source.kwargs, path)
    return load_archive(path, source.kind)


def build_model(source: ModelSource, run_dir: Path, state: dict[str, torch.Tensor] | None = None) -> Wrapped:
    """The run's network with `state` loaded, rewritten one module per non-linearity when it can be, wrapped."""
    net = bare_network(source, run_dir)
    if state is not None:
        load_weights(net, state, str(Path(run_dir) / source.file))
    set_eval(net)
    outputs = source.outputs
    if source.hook_methods:
        try:
            net, stripped, _ = modularize(net)
            outputs = "logits" if stripped else outputs
        except ModelError:
            pass                                # recorded at import: hook_methods would be False
    return Wrapped(net, source.input_norm, outputs).eval()


def set_eval(net: nn.Module) -> nn.Module:
    """net.eval(), where the module allows it (a torch.export module refuses: modularize makes one that does)."""
    try:
        net.eval()
    except NotImplementedError:
        pass
    return net


def same_outputs(a: nn.Module, b: nn.Module, x: torch.Tensor, atol: float = 1e-4) -> float:
    """The largest difference between the log-softmax of two models' outputs on x (0 = the same predictions)."""
    with torch.no_grad():
        return float((torch.log_softmax(a(x), 1) - torch.log_softmax(b(x), 1)).abs().max())
