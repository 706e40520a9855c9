"""torch.fx front door: trace an `nn.Module` into the LRP graph IR, refusing any node without a rule."""

from __future__ import annotations

import operator
from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.fx
import torch.nn.functional as F
from torch import nn
from torch.fx.operator_schemas import normalize_function

from service.lrp import graph as ir
from service.lrp.errors import ModelPreparationError, UnsupportedLayerError

_BATCH = object()  # marks a traced `x.size(0)` / `x.shape[0]`: the batch dimension in a view/reshape


def _pair(value: Any, dims: int) -> list[int]:
    """An int or a sequence as a list of `dims` ints."""
    if isinstance(value, int):
        return [value] * dims
    values = [int(v) for v in value]
    return values * dims if len(values) == 1 else values


def _activation_from_module(module: nn.Module) -> dict[str, Any] | None:
    """IR attrs of an elementwise activation module, or None when the module is not one."""
    kind = type(module)
    simple = {
        nn.ReLU: "relu", nn.ReLU6: "relu6", nn.GELU: "gelu", nn.SiLU: "silu", nn.Tanh: "tanh",
        nn.Sigmoid: "sigmoid", nn.SELU: "selu", nn.Mish: "mish", nn.Hardswish: "hardswish",
        nn.Hardsigmoid: "hardsigmoid",
    }
    if kind in simple:
        attrs: dict[str, Any] = {"fn": simple[kind]}
        if isinstance(module, nn.GELU):
            attrs["approximate"] = module.approximate
        return attrs
    if isinstance(module, nn.LeakyReLU):
        return {"fn": "leaky_relu", "negative_slope": float(module.negative_slope)}
    if isinstance(module, nn.ELU):
        return {"fn": "elu", "alpha": float(module.alpha)}
    if isinstance(module, nn.CELU):
        return {"fn": "celu", "alpha": float(module.alpha)}
    if isinstance(module, nn.Softplus):
        return {"fn": "softplus", "beta": float(module.beta), "threshold": float(module.threshold)}
    if isinstance(module, nn.Hardtanh) and kind is nn.Hardtanh:
        return {"fn": "hardtanh", "min_val": float(module.min_val), "max_val": float(module.max_val)}
    return None


_ACTIVATION_FUNCTIONS: dict[Any, str] = {
    F.relu: "relu", torch.relu: "relu", F.relu6: "relu6", F.gelu: "gelu", F.silu: "silu",
    torch.tanh: "tanh", F.tanh: "tanh", torch.sigmoid: "sigmoid", F.sigmoid: "sigmoid",
    F.leaky_relu: "leaky_relu", F.elu: "elu", F.softplus: "softplus", F.selu: "selu", F.mish: "mish",
    F.hardswish: "hardswish", F.hardsigmoid: "hardsigmoid",
}
_ACTIVATION_METHODS = {"relu": "relu", "sigmoid": "sigmoid", "tanh": "tanh"}
_ACTIVATION_KWARGS = {
    "leaky_relu": ("negative_slope",), "elu": ("alpha",), "softplus": ("beta", "threshold"),
    "gelu": ("approximate",),
}
_SOFTMAX_FUNCTIONS: dict[Any, str] = {
    F.softmax: "softmax", torch.softmax: "softmax", F.log_softmax: "log_softmax",
    torch.log_softmax: "log_softmax",
}
_IDENTITY_MODULES = (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.AlphaDropout, nn.Identity)
_IDENTITY_FUNCTIONS = (F.dropout, F.dropout1d, F.dropout2d, torch.dropout)
_ADD_FUNCTIONS = (operator.add, operator.iadd, torch.add)


class _Converter:
    """Walks one fx graph and emits IR nodes; collects every unsupported node before raising."""

    def __init__(self, module: nn.Module, fx_graph: torch.fx.Graph) -> None:
        self.modules = dict(module.named_modules())
        self.fx_graph = fx_graph
        self.nodes: list[ir.Node] = []
        self.alias: dict[str, Any] = {}  # fx node name -> IR node name, or _BATCH
        self.unsupported: list[tuple[str, str]] = []
        self.output_name = ""
        self.output_activation = "logits"
        self.module_params: dict[str, dict[str, torch.Tensor]] = {}  # one detached set per module

    def params_of(self, path: str, module: nn.Module, *names: str) -> dict[str, torch.Tensor]:
        """The module's tensors, detached once so that a module called twice shares them."""
        if path not in self.module_params:
            self.module_params[path] = _params(module, *names)
        return self.module_params[path]

    # -- helpers ---------------------------------------------------------------------------------------
    def ref(self, arg: Any) -> Any:
        """The IR name (or batch marker) an fx argument refers to; constants pass through unchanged."""
        if isinstance(arg, torch.fx.Node):
            return self.alias[arg.name]
        if isinstance(arg, list | tuple):
            return type(arg)(self.ref(a) for a in arg)
        return arg

    def tensor_ref(self, fx_node: torch.fx.Node, arg: Any) -> str:
        """The IR name of a tensor argument; anything else is an unsupported use."""
        value = self.ref(arg)
        if not isinstance(value, str):
            raise _UnsupportedNodeError(f"{fx_node.op} {fx_node.target!s} with a non-tensor operand")
        return value

    def emit(self, fx_node: torch.fx.Node, op: str, inputs: Sequence[str], attrs: dict[str, Any] | None = None,
             params: dict[str, torch.Tensor] | None = None, module: str = "") -> None:
        """Add an IR node named like the fx node."""
        self.nodes.append(ir.Node(fx_node.name, op, tuple(inputs), attrs or {}, params or {}, module))
        self.alias[fx_node.name] = fx_node.name

    def kwargs_of(self, fx_node: torch.fx.Node) -> dict[str, Any]:
        """The call's arguments by parameter name (fx's schema normalisation)."""
        pair = normalize_function(fx_node.target, fx_node.args, fx_node.kwargs,  # type: ignore[arg-type]
                                  normalize_to_only_use_kwargs=True)
        if pair is None:
            raise _UnsupportedNodeError(f"call_function {fx_node.target!s} (its arguments could not be read)")
        return dict(pair.kwargs)

    # -- per fx opcode ---------------------------------------------------------------------------------
    def run(self) -> ir.Graph:
        placeholders = [n for n in self.fx_graph.nodes if n.op == "placeholder"]
        if len(placeholders) != 1:
            raise ModelPreparationError(
                f"the model's forward takes {len(placeholders)} inputs; LRP explains models with exactly one")
        for fx_node in self.fx_graph.nodes:
            try:
                self.convert(fx_node)
            except _UnsupportedNodeError as problem:
                self.unsupported.append((fx_node.name, str(problem)))
                self.alias[fx_node.name] = fx_node.name  # keep going to report every problem at once
        self.strip_output_activation()
        if self.unsupported:
            raise UnsupportedLayerError(self.unsupported)
        return ir.Graph(tuple(self.nodes), self.output_name, self.output_activation)

    def convert(self, fx_node: torch.fx.Node) -> None:
        if fx_node.op == "placeholder":
            self.emit(fx_node, ir.INPUT, ())
        elif fx_node.op == "call_module":
            self.convert_module(fx_node, self.modules[str(fx_node.target)])
        elif fx_node.op == "call_function":
            self.convert_function(fx_node)
        elif fx_node.op == "call_method":
            self.convert_method(fx_node)
        elif fx_node.op == "output":
            result = fx_node.args[0]
            if not isinstance(result, torch.fx.Node) or not isinstance(self.ref(result), str):
                raise _UnsupportedNodeError("output that is not a single tensor")
            self.output_name = self.ref(result)
        else:  # get_attr: a parameter or buffer used directly in forward
            raise _UnsupportedNodeError(f"{fx_node.op} {fx_node.target!s} (tensors used outside a supported layer)")

    def convert_module(self, fx_node: torch.fx.Node, module: nn.Module) -> None:
        path = str(fx_node.target)
        (arg,) = fx_node.args[:1]
        source = self.tensor_ref(fx_node, arg)
        if isinstance(module, _IDENTITY_MODULES):
            self.alias[fx_node.name] = source
            return
        activation = _activation_from_module(module)
        if activation is not None:
            self.emit(fx_node, ir.ACTIVATION, [source], activation, module=path)
        elif isinstance(module, nn.Linear):
            self.emit(fx_node, ir.LINEAR, [source], {}, self.params_of(path, module, "weight", "bias"), path)
        elif isinstance(module, nn.Conv1d | nn.Conv2d):
            params = self.params_of(path, module, "weight", "bias")
            self.emit(fx_node, _conv_op(module), [source], _conv_attrs(module), params, path)
        elif isinstance(module, nn.BatchNorm1d | nn.BatchNorm2d):
            if module.running_mean is None or module.running_var is None:
                raise _UnsupportedNodeError(f"{_kind(module)} without running statistics (track_running_stats=False)")
            params = self.params_of(path, module, "weight", "bias", "running_mean", "running_var")
            self.emit(fx_node, ir.BATCHNORM, [source], {"eps": float(module.eps)}, params, path)
        elif isinstance(module, nn.MaxPool1d | nn.MaxPool2d):
            dims = 1 if isinstance(module, nn.MaxPool1d) else 2
            if module.return_indices:
                raise _UnsupportedNodeError(f"{_kind(module)} with return_indices=True")
            attrs = _pool_attrs(dims, module.kernel_size, module.stride, module.padding, module.dilation,
                                module.ceil_mode)
            self.emit(fx_node, ir.MAXPOOL1D if dims == 1 else ir.MAXPOOL2D, [source], attrs, module=path)
        elif isinstance(module, nn.AvgPool1d | nn.AvgPool2d):
            dims = 1 if isinstance(module, nn.AvgPool1d) else 2
            if getattr(module, "divisor_override", None) is not None:
                raise _UnsupportedNodeError(f"{_kind(module)} with divisor_override")
            attrs = _avgpool_attrs(dims, module.kernel_size, module.stride, module.padding, module.ceil_mode,
                                   module.count_include_pad)
            self.emit(fx_node, ir.AVGPOOL1D if dims == 1 else ir.AVGPOOL2D, [source], attrs, module=path)
        elif isinstance(module, nn.AdaptiveAvgPool1d | nn.AdaptiveAvgPool2d):
            dims = 1 if isinstance(module, nn.AdaptiveAvgPool1d) else 2
            size = module.output_size
            output_size = [size] * dims if isinstance(size, int | None) else list(size)
            op = ir.ADAPTIVE_AVGPOOL1D if dims == 1 else ir.ADAPTIVE_AVGPOOL2D
            self.emit(fx_node, op, [source], {"output_size": output_size}, module=path)
        elif isinstance(module, nn.Flatten):
            self.emit_flatten(fx_node, source, module.start_dim, module.end_dim, path)
        elif isinstance(module, nn.Softmax | nn.LogSoftmax):
            kind = "softmax" if isinstance(module, nn.Softmax) else "log_softmax"
            self.emit_softmax(fx_node, source, kind, module.dim)
        else:
            raise _UnsupportedNodeError(f"call_module {path}: {_kind(module)}")

    def convert_function(self, fx_node: torch.fx.Node) -> None:
        target = fx_node.target
        if target in _ADD_FUNCTIONS:
            left, right = fx_node.args[:2]
            if fx_node.kwargs.get("alpha", 1) != 1:
                raise _UnsupportedNodeError("torch.add with alpha != 1")
            self.emit(fx_node, ir.ADD, [self.tensor_ref(fx_node, left), self.tensor_ref(fx_node, right)])
        elif target is torch.cat or target is torch.concat:
            kwargs = self.kwargs_of(fx_node)
            tensors = [self.tensor_ref(fx_node, t) for t in kwargs["tensors"]]
            self.emit_cat(fx_node, tensors, int(kwargs.get("dim", 0)))
        elif target is torch.flatten:
            kwargs = self.kwargs_of(fx_node)
            self.emit_flatten(fx_node, self.tensor_ref(fx_node, kwargs["input"]), kwargs.get("start_dim", 0),
                              kwargs.get("end_dim", -1))
        elif target in _IDENTITY_FUNCTIONS:
            self.alias[fx_node.name] = self.tensor_ref(fx_node, fx_node.args[0])
        elif target in _ACTIVATION_FUNCTIONS:
            fn = _ACTIVATION_FUNCTIONS[target]
            kwargs = self.kwargs_of(fx_node)
            attrs = {"fn": fn, **{k: kwargs[k] for k in _ACTIVATION_KWARGS.get(fn, ()) if k in kwargs}}
            self.emit(fx_node, ir.ACTIVATION, [self.tensor_ref(fx_node, kwargs["input"])], attrs)
        elif target in _SOFTMAX_FUNCTIONS:
            kwargs = self.kwargs_of(fx_node)
            self.emit_softmax(fx_node, self.tensor_ref(fx_node, kwargs["input"]), _SOFTMAX_FUNCTIONS[target],
                              kwargs.get("dim"))
        elif target in _POOL_FUNCTIONS:
            self.emit_functional_pool(fx_node)
        elif target is operator.getitem and self.ref(fx_node.args[0]) == ("shape", _BATCH_SOURCE):
            if fx_node.args[1] != 0:
                raise _UnsupportedNodeError("indexing a shape at a dimension other than 0")
            self.alias[fx_node.name] = _BATCH
        elif target is getattr and fx_node.args[1] == "shape":
            self.alias[fx_node.name] = ("shape", _BATCH_SOURCE)
        else:
            raise _UnsupportedNodeError(f"call_function {getattr(target, '__name__', target)!s}")

    def convert_method(self, fx_node: torch.fx.Node) -> None:
        method = str(fx_node.target)
        source = self.tensor_ref(fx_node, fx_node.args[0])
        rest = [self.ref(a) for a in fx_node.args[1:]]
        if method == "size":
            if rest != [0] and fx_node.kwargs.get("dim") != 0:
                raise _UnsupportedNodeError("x.size() other than x.size(0) (only the batch size may be read)")
            self.alias[fx_node.name] = _BATCH
        elif method in ("view", "reshape"):
            shape = rest[0] if len(rest) == 1 and isinstance(rest[0], list | tuple) else rest
            self.emit_reshape(fx_node, source, list(shape))
        elif method == "flatten":
            start = rest[0] if rest else fx_node.kwargs.get("start_dim", 0)
            end = rest[1] if len(rest) > 1 else fx_node.kwargs.get("end_dim", -1)
            self.emit_flatten(fx_node, source, int(start), int(end))  # type: ignore[arg-type]
        elif method in ("contiguous", "clone"):
            self.alias[fx_node.name] = source
        elif method in _ACTIVATION_METHODS:
            self.emit(fx_node, ir.ACTIVATION, [source], {"fn": _ACTIVATION_METHODS[method]})
        elif method in ("softmax", "log_softmax"):
            dim = rest[0] if rest else fx_node.kwargs.get("dim")
            self.emit_softmax(fx_node, source, method, dim)
        elif method in ("add", "add_", "__add__"):
            self.emit(fx_node, ir.ADD, [source, self.tensor_ref(fx_node, fx_node.args[1])])
        else:
            raise _UnsupportedNodeError(f"call_method {method}")

    # -- emitters shared by modules, functions and methods --------------------------------------------
    def emit_flatten(self, fx_node: torch.fx.Node, source: str, start: int, end: int, module: str = "") -> None:
        if start == 0:
            raise _UnsupportedNodeError("flatten over the batch dimension (use start_dim=1)")
        self.emit(fx_node, ir.FLATTEN, [source], {"start_dim": int(start), "end_dim": int(end)}, module=module)

    def emit_reshape(self, fx_node: torch.fx.Node, source: str, shape: list[Any]) -> None:
        if not shape or not (shape[0] is _BATCH or shape[0] == -1) or any(not isinstance(s, int) for s in shape[1:]):
            raise _UnsupportedNodeError(
                "view/reshape whose first dimension is not the batch (write x.view(x.size(0), ...))")
        if shape[0] == -1 and -1 in shape[1:]:
            raise _UnsupportedNodeError("view/reshape with two unknown (-1) dimensions")
        self.emit(fx_node, ir.RESHAPE, [source], {"shape": [int(s) for s in shape[1:]]})

    def emit_cat(self, fx_node: torch.fx.Node, tensors: list[str], dim: int) -> None:
        if dim == 0:
            raise _UnsupportedNodeError("torch.cat along the batch dimension")
        self.emit(fx_node, ir.CAT, tensors, {"dim": dim})

    def emit_softmax(self, fx_node: torch.fx.Node, source: str, kind: str, dim: Any) -> None:
        self.alias[fx_node.name] = fx_node.name
        self.nodes.append(ir.Node(fx_node.name, "softmax", (source,), {"kind": kind, "dim": dim}))

    def emit_functional_pool(self, fx_node: torch.fx.Node) -> None:
        op = _POOL_FUNCTIONS[fx_node.target]  # type: ignore[index]
        kwargs = self.kwargs_of(fx_node)
        source = self.tensor_ref(fx_node, kwargs["input"])
        dims = 1 if op.endswith("1d") else 2
        if op in (ir.MAXPOOL1D, ir.MAXPOOL2D):
            if kwargs.get("return_indices"):
                raise _UnsupportedNodeError("max pooling with return_indices=True")
            attrs = _pool_attrs(dims, kwargs["kernel_size"], kwargs.get("stride"), kwargs.get("padding", 0),
                                kwargs.get("dilation", 1), kwargs.get("ceil_mode", False))
        elif op in (ir.AVGPOOL1D, ir.AVGPOOL2D):
            if kwargs.get("divisor_override") is not None:
                raise _UnsupportedNodeError("average pooling with divisor_override")
            attrs = _avgpool_attrs(dims, kwargs["kernel_size"], kwargs.get("stride"), kwargs.get("padding", 0),
                                   kwargs.get("ceil_mode", False), kwargs.get("count_include_pad", True))
        else:
            size = kwargs["output_size"]
            attrs = {"output_size": [size] * dims if isinstance(size, int | None) else list(size)}
        self.emit(fx_node, op, [source], attrs)

    def strip_output_activation(self) -> None:
        """Drop a final softmax/sigmoid so that the logit is explained; any other softmax is unsupported."""
        final = next((n for n in self.nodes if n.name == self.output_name), None)
        if final is not None and final.op == "softmax" and final.attrs["dim"] in (1, -1):
            self.output_activation = final.attrs["kind"]
        elif final is not None and final.op == ir.ACTIVATION and final.attrs["fn"] == "sigmoid":
            self.output_activation = "sigmoid"
        else:
            final = None
        if final is not None:
            self.nodes.remove(final)
            self.output_name = final.inputs[0]
            if any(final.name in n.inputs for n in self.nodes):
                raise ModelPreparationError(f"the final activation '{final.name}' is also used inside the model")
        for node in self.nodes:
            if node.op == "softmax":
                self.unsupported.append((node.name, f"{node.attrs['kind']} that is not the model's last operation"))


class _UnsupportedNodeError(Exception):
    """Internal: one fx node cannot be converted; the text says what it is."""


_BATCH_SOURCE = "batch-source"
_POOL_FUNCTIONS: dict[Callable[..., Any], str] = {
    F.max_pool1d: ir.MAXPOOL1D, F.max_pool2d: ir.MAXPOOL2D, torch.max_pool1d: ir.MAXPOOL1D,
    torch.max_pool2d: ir.MAXPOOL2D, F.avg_pool1d: ir.AVGPOOL1D, F.avg_pool2d: ir.AVGPOOL2D,
    F.adaptive_avg_pool1d: ir.ADAPTIVE_AVGPOOL1D, F.adaptive_avg_pool2d: ir.ADAPTIVE_AVGPOOL2D,
}


def _kind(module: nn.Module) -> str:
    return f"{type(module).__module__}.{type(module).__qualname__}"


def _params(module: nn.Module, *names: str) -> dict[str, torch.Tensor]:
    """The module's named tensors that are present, detached (the graph copies them later)."""
    found = {}
    for name in names:
        value = getattr(module, name, None)
        if isinstance(value, torch.Tensor):
            found[name] = value.detach()
    return found


def _conv_op(module: nn.Conv1d | nn.Conv2d) -> str:
    return ir.CONV1D if isinstance(module, nn.Conv1d) else ir.CONV2D


def _conv_attrs(module: nn.Conv1d | nn.Conv2d) -> dict[str, Any]:
    dims = 1 if isinstance(module, nn.Conv1d) else 2
    if module.padding_mode != "zeros":
        raise _UnsupportedNodeError(f"{_kind(module)} with padding_mode='{module.padding_mode}' (only 'zeros')")
    dilation = _pair(module.dilation, dims)
    padding: Any = module.padding
    if padding == "valid":
        padding = 0
    elif padding == "same":
        kernel = _pair(module.kernel_size, dims)
        total = [d * (k - 1) for d, k in zip(dilation, kernel, strict=True)]
        if any(t % 2 for t in total):
            raise _UnsupportedNodeError(f"{_kind(module)} with asymmetric padding='same' (even kernel)")
        padding = [t // 2 for t in total]
    return {"stride": _pair(module.stride, dims), "padding": _pair(padding, dims), "dilation": dilation,
            "groups": int(module.groups)}


def _pool_attrs(dims: int, kernel: Any, stride: Any, padding: Any, dilation: Any, ceil_mode: bool) -> dict[str, Any]:
    kernel_size = _pair(kernel, dims)
    return {"kernel_size": kernel_size, "stride": _pair(stride if stride else kernel, dims),
            "padding": _pair(padding, dims), "dilation": _pair(dilation, dims), "ceil_mode": bool(ceil_mode)}


def _avgpool_attrs(dims: int, kernel: Any, stride: Any, padding: Any, ceil_mode: bool,
                   count_include_pad: bool) -> dict[str, Any]:
    return {"kernel_size": _pair(kernel, dims), "stride": _pair(stride if stride else kernel, dims),
            "padding": _pair(padding, dims), "ceil_mode": bool(ceil_mode),
            "count_include_pad": bool(count_include_pad)}


def graph_from_module(module: nn.Module) -> ir.Graph:
    """Trace `module` with torch.fx and convert it; raise UnsupportedLayerError naming every bad node."""
    try:
        traced = torch.fx.symbolic_trace(module)
    except Exception as error:  # fx raises many types; all mean "cannot trace"
        raise ModelPreparationError(
            f"torch.fx could not trace {type(module).__name__}: {error}. Models whose forward branches on "
            "tensor values cannot be traced; move that logic out of forward.") from error
    return _Converter(module, traced.graph).run()
