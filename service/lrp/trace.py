"""torch.fx front door: trace an `nn.Module` into the LRP graph IR through the op table, refusing any node
without a rule. Which calls are which op is the op table's (service.lrp.ops); this module only walks the graph."""

from __future__ import annotations

import operator
from typing import Any

import torch
import torch.fx
import torch.nn.functional as F
from torch import nn
from torch.fx.operator_schemas import normalize_function

from service.lrp import graph as ir
from service.lrp.errors import ModelPreparationError, UnsupportedLayerError
from service.lrp.ops import OPS, OpDef, Site, UnsupportedCallError
from service.lrp.ops.spec import Reader
from service.lrp.ops.structure import BATCH, IDENTITY_FUNCTIONS, IDENTITY_METHODS, IDENTITY_MODULES

Found = tuple[OpDef, Reader]
_MODULES: dict[type[nn.Module], Found] = {kind: (op, read) for op in OPS.values() for kind, read in op.modules.items()}
_FUNCTIONS: dict[Any, Found] = {fn: (op, read) for op in OPS.values() for fn, read in op.functions.items()}
_METHODS: dict[str, Found] = {name: (op, read) for op in OPS.values() for name, read in op.methods.items()}

# A final softmax/sigmoid is stripped so that the logit is explained (the model's output activation).
_SOFTMAX_FUNCTIONS: dict[Any, str] = {
    F.softmax: "softmax", torch.softmax: "softmax", F.log_softmax: "log_softmax", torch.log_softmax: "log_softmax"}
_SOFTMAX_MODULES: dict[type[nn.Module], str] = {nn.Softmax: "softmax", nn.LogSoftmax: "log_softmax"}
_SOFTMAX = "softmax"  # a provisional node, kept only when it is the model's last operation
_SHAPE = ("shape", "batch-source")  # a traced `x.shape`, of which only [0] may be read


def _by_class(table: dict[type[nn.Module], Any], module: nn.Module) -> Any:
    """The entry of the module's class or of its nearest base class in `table` (None when there is none)."""
    return next((table[kind] for kind in type(module).__mro__ if kind in table), None)


class _Converter:
    """Walks one fx graph and emits IR nodes; collects every unsupported node before raising."""

    def __init__(self, module: nn.Module, fx_graph: torch.fx.Graph) -> None:
        self.modules = dict(module.named_modules())
        self.fx_graph = fx_graph
        self.nodes: list[ir.Node] = []
        self.alias: dict[str, Any] = {}  # fx node name -> IR node name, BATCH or _SHAPE
        self.unsupported: list[tuple[str, str]] = []
        self.output_name = ""
        self.module_params: dict[str, dict[str, torch.Tensor]] = {}  # one detached set per module

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
            raise UnsupportedCallError(f"{fx_node.op} {fx_node.target!s} with a non-tensor operand")
        return value

    def run(self) -> ir.Graph:
        placeholders = [n for n in self.fx_graph.nodes if n.op == "placeholder"]
        if len(placeholders) != 1:
            raise ModelPreparationError(
                f"the model's forward takes {len(placeholders)} inputs; LRP explains models with exactly one")
        for fx_node in self.fx_graph.nodes:
            try:
                self.convert(fx_node)
            except UnsupportedCallError as problem:
                self.unsupported.append((fx_node.name, str(problem)))
                self.alias[fx_node.name] = fx_node.name  # keep going to report every problem at once
        activation = self.strip_output_activation()
        if self.unsupported:
            raise UnsupportedLayerError(self.unsupported)
        return ir.Graph(tuple(self.nodes), self.output_name, activation)

    def convert(self, fx_node: torch.fx.Node) -> None:
        if fx_node.op == "placeholder":
            self.emit(fx_node, ir.INPUT, [], {})
        elif fx_node.op == "output":
            result = fx_node.args[0]
            if not isinstance(result, torch.fx.Node) or not isinstance(self.ref(result), str):
                raise UnsupportedCallError("output that is not a single tensor")
            self.output_name = self.ref(result)
        elif fx_node.op == "call_module":
            self.convert_module(fx_node, self.modules[str(fx_node.target)])
        elif fx_node.op == "call_function":
            self.convert_function(fx_node)
        elif fx_node.op == "call_method":
            self.convert_method(fx_node)
        else:  # get_attr: a parameter or buffer used directly in forward
            raise UnsupportedCallError(f"{fx_node.op} {fx_node.target!s} (tensors used outside a supported layer)")

    def convert_module(self, fx_node: torch.fx.Node, module: nn.Module) -> None:
        path = str(fx_node.target)
        source = self.tensor_ref(fx_node, fx_node.args[0])
        if isinstance(module, IDENTITY_MODULES):
            self.alias[fx_node.name] = source
        elif (softmax := _by_class(_SOFTMAX_MODULES, module)) is not None:
            self.emit_softmax(fx_node, source, softmax, getattr(module, "dim", None))
        elif (found := _by_class(_MODULES, module)) is not None:
            op, read = found
            if path not in self.module_params:
                self.module_params[path] = _params(module, *op.params, *op.optional_params)
            inputs, attrs = read(Site(module, (source,), {}))
            self.emit(fx_node, op.name, inputs, attrs, self.module_params[path], path)
        else:
            kind = type(module)
            raise UnsupportedCallError(f"call_module {path}: {kind.__module__}.{kind.__qualname__}")

    def convert_function(self, fx_node: torch.fx.Node) -> None:
        target = fx_node.target
        if target is getattr and fx_node.args[1] == "shape":
            self.alias[fx_node.name] = _SHAPE
        elif target is operator.getitem and self.ref(fx_node.args[0]) == _SHAPE:
            if fx_node.args[1] != 0:
                raise UnsupportedCallError("indexing a shape at a dimension other than 0")
            self.alias[fx_node.name] = BATCH
        elif target in IDENTITY_FUNCTIONS:
            self.alias[fx_node.name] = self.tensor_ref(fx_node, fx_node.args[0])
        elif target in _SOFTMAX_FUNCTIONS:
            site = self.site(fx_node)
            source = self.tensor_ref(fx_node, site.arg(0, "input"))
            self.emit_softmax(fx_node, source, _SOFTMAX_FUNCTIONS[target], site.arg(1, "dim"))
        elif target in _FUNCTIONS:
            op, read = _FUNCTIONS[target]
            self.emit(fx_node, op.name, *read(self.site(fx_node)))
        else:
            raise UnsupportedCallError(f"call_function {getattr(target, '__name__', target)!s}")

    def convert_method(self, fx_node: torch.fx.Node) -> None:
        method = str(fx_node.target)
        source = self.tensor_ref(fx_node, fx_node.args[0])
        rest = [self.ref(a) for a in fx_node.args[1:]]
        if method == "size":
            if rest != [0] and fx_node.kwargs.get("dim") != 0:
                raise UnsupportedCallError("x.size() other than x.size(0) (only the batch size may be read)")
            self.alias[fx_node.name] = BATCH
        elif method in IDENTITY_METHODS:
            self.alias[fx_node.name] = source
        elif method in ("softmax", "log_softmax"):
            self.emit_softmax(fx_node, source, method, rest[0] if rest else fx_node.kwargs.get("dim"))
        elif method in _METHODS:
            op, read = _METHODS[method]
            kwargs = {k: self.ref(v) for k, v in fx_node.kwargs.items()}
            self.emit(fx_node, op.name, *read(Site(None, (source, *rest), kwargs)))
        else:
            raise UnsupportedCallError(f"call_method {method}")

    def site(self, fx_node: torch.fx.Node) -> Site:
        """A function call's arguments, by parameter name where fx can match the call to the signature."""
        try:
            pair = normalize_function(fx_node.target, fx_node.args, fx_node.kwargs,  # type: ignore[arg-type]
                                      normalize_to_only_use_kwargs=True)
        except (TypeError, ValueError, RuntimeError):
            pair = None
        kwargs = dict(pair.kwargs) if pair is not None else dict(fx_node.kwargs)
        return Site(None, tuple(self.ref(a) for a in fx_node.args), {k: self.ref(v) for k, v in kwargs.items()})

    def emit(self, fx_node: torch.fx.Node, op: str, inputs: list[Any], attrs: dict[str, Any],
             params: dict[str, torch.Tensor] | None = None, module: str = "") -> None:
        """Add an IR node named like the fx node; every input must be a tensor."""
        names = tuple(value if isinstance(value, str) else self.tensor_ref(fx_node, value) for value in inputs)
        self.nodes.append(ir.Node(fx_node.name, op, names, attrs, params or {}, module))
        self.alias[fx_node.name] = fx_node.name

    def emit_softmax(self, fx_node: torch.fx.Node, source: str, kind: str, dim: Any) -> None:
        self.emit(fx_node, _SOFTMAX, [source], {"kind": kind, "dim": dim})

    def strip_output_activation(self) -> str:
        """Drop a final softmax/sigmoid so that the logit is explained (returning its name); any other softmax is
        unsupported."""
        final = next((n for n in self.nodes if n.name == self.output_name), None)
        activation = "logits"
        if final is not None and final.op == _SOFTMAX and final.attrs["dim"] in (1, -1):
            activation = final.attrs["kind"]
        elif final is not None and final.op == "activation" and final.attrs["fn"] == "sigmoid":
            activation = "sigmoid"
        if final is not None and activation != "logits":
            self.nodes.remove(final)
            self.output_name = final.inputs[0]
            if any(final.name in n.inputs for n in self.nodes):
                raise ModelPreparationError(f"the final activation '{final.name}' is also used inside the model")
        for node in self.nodes:
            if node.op == _SOFTMAX:
                self.unsupported.append((node.name, f"{node.attrs['kind']} that is not the model's last operation"))
        return activation


def _params(module: nn.Module, *names: str) -> dict[str, torch.Tensor]:
    """The module's named tensors that are present, detached (the graph copies them later)."""
    found = {}
    for name in names:
        value = getattr(module, name, None)
        if isinstance(value, torch.Tensor):
            found[name] = value.detach()
    return found


def graph_from_module(module: nn.Module) -> ir.Graph:
    """Trace `module` with torch.fx and convert it; raise UnsupportedLayerError naming every bad node."""
    try:
        traced = torch.fx.symbolic_trace(module)
    except Exception as error:  # fx raises many types; all mean "cannot trace"
        raise ModelPreparationError(
            f"torch.fx could not trace {type(module).__name__}: {error}. Models whose forward branches on "
            "tensor values cannot be traced; move that logic out of forward.") from error
    return _Converter(module, traced.graph).run()
