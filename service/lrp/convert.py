"""Convert a graph captured by torch.export into the LRP graph IR through the op table, refusing every op without a
rule by name and by the module it came from.

Sizes that follow the explained input's batch (d0) and, for token ids, its length (d1) are stored as expressions, so
that a reshape that mixes samples, a cat or a reduction along the batch is refused. What carries relevance: the
explained input and what is computed from it, except integer or bool values other than the token ids themselves
(comparisons, counts, masks: no relevance can flow through them). Computations that carry none (position ids, masks,
a slice of a parameter, anything computed from an extra input) become constants or `computed` nodes.
"""

from __future__ import annotations

import operator
from collections.abc import Sequence
from typing import Any

import sympy
import torch
import torch.fx
from torch.export import ExportedProgram
from torch.export.graph_signature import InputKind, OutputKind
from torch.fx.experimental.symbolic_shapes import free_unbacked_symbols

from service.lrp import calls, dims
from service.lrp import graph as ir
from service.lrp.exceptions import ModelPreparationError, UnsupportedLayerError
from service.lrp.fuse import fuse_activations
from service.lrp.ops import (
    CONSTANT,
    IDENTITY_CALLS,
    OPS,
    OpDef,
    Read,
    Ref,
    Site,
    UnsupportedCallError,
)
from service.lrp.ops.aten_call import COMPUTED, COMPUTED_TARGETS, call_reader
from service.lrp.ops.spec import Reader

_READERS: dict[Any, tuple[OpDef, Reader]] = {call: (op, read) for op in OPS.values() for call, read in op.aten.items()}
_SKIPPED = {torch.ops.aten._assert_scalar.default, torch.ops.aten.sym_constrain_range_for_size.default,
            torch.ops.aten._assert_tensor_metadata.default}
_LOG_SOFTMAX = {torch.ops.aten.log_softmax.int, torch.ops.aten._log_softmax.default}
TOKENS_HINT = ("An integer input is taken as token ids, of any batch size and length (the model should start with an "
               "embedding).")
_FINAL = "_final"  # a provisional op: a log_softmax, kept only when it is the model's last operation
IN_PLACE_ON_VIEW = "on a view of another tensor"  # the refusal of an in-place call that would change a tensor it views


class Converter:
    """Walks one exported graph and emits IR nodes; collects every unsupported call before raising."""

    def __init__(self, program: ExportedProgram, model: str, extra: Sequence[str] = ()) -> None:
        self.program = program
        self.model = model
        self.refs: dict[str, Any] = {}
        self.nodes: list[ir.Node] = []
        self.emitted: set[str] = set()
        self.ranks: dict[str, int] = {}  # IR node name -> the number of dimensions of its output
        self.call_names = {node.name for node in program.graph.nodes}
        self.unsupported: list[tuple[str, str]] = []
        self.symbols: dict[Any, str] = {}
        self.constants: dict[str, torch.Tensor] = {}
        state = {**program.state_dict, **program.constants}
        user_inputs: list[str] = []
        for spec in program.graph_signature.input_specs:
            if spec.kind == InputKind.USER_INPUT:
                user_inputs.append(spec.arg.name)
            elif spec.target is not None:
                self.constants[spec.arg.name] = state[spec.target].detach()
        if len(user_inputs) != 1 + len(extra):
            raise ModelPreparationError(
                f"the model's forward takes {len(user_inputs)} tensor inputs; LRP explains one, and the others must "
                f"be given by name as extra inputs (given: {list(extra) or 'none'})")
        self.explained = user_inputs[0]
        self.extra = dict(zip(user_inputs[1:], extra, strict=True))  # placeholder -> the forward's argument name

    # -- values ------------------------------------------------------------------------------------------
    def size(self, value: Any, data_dependent: bool = False) -> Any:
        """An int, or {"expr": ...} for a size that follows the input's; with `data_dependent`, dims.DATA_DEPENDENT
        for one that follows the input's values (the rows a boolean mask selects), which no attribute may hold."""
        if isinstance(value, int):
            return value
        expr = value.node.expr
        if expr.is_number:
            return int(expr)
        unknown = expr.free_symbols - set(self.symbols)
        if unknown and data_dependent and free_unbacked_symbols(expr):
            return dims.DATA_DEPENDENT
        if unknown:
            raise UnsupportedCallError(f"a size ({expr}) that does not follow the input's shape")
        return {dims.EXPR: str(expr.xreplace({s: _symbol(name) for s, name in self.symbols.items()}))}

    def shape(self, node: torch.fx.Node) -> tuple[Any, ...]:
        """A call's output shape; a size that follows the input's values is dims.DATA_DEPENDENT."""
        val = node.meta.get("val")
        return tuple(self.size(s, data_dependent=True) for s in val.shape) if isinstance(val, torch.Tensor) else ()

    def shape_or_none(self, node: torch.fx.Node) -> tuple[Any, ...]:
        """The shape, or () when it does not follow the input (only to keep reading past an unsupported call)."""
        try:
            return self.shape(node)
        except UnsupportedCallError:
            return ()

    def value(self, arg: Any) -> Any:
        """A call argument: a Ref for a tensor, a size for a symbolic int, lists element-wise."""
        if isinstance(arg, torch.fx.Node):
            return self.refs[arg.name]
        if isinstance(arg, list | tuple):
            return [self.value(a) for a in arg]
        return arg

    def site(self, node: torch.fx.Node) -> Site:
        schema = node.target._schema  # type: ignore[union-attr]
        args: dict[str, Any] = {}
        for position, argument in enumerate(schema.arguments):
            if position < len(node.args):
                args[argument.name] = self.value(node.args[position])
            elif argument.name in node.kwargs:
                args[argument.name] = self.value(node.kwargs[argument.name])
            elif argument.has_default_value():
                args[argument.name] = argument.default_value
        val = node.meta.get("val")
        dtype = str(val.dtype).removeprefix("torch.") if isinstance(val, torch.Tensor) else ""
        return Site(str(node.target), args, self.shape(node), calls.module_of(node), dtype)

    # -- the walk ----------------------------------------------------------------------------------------
    def run(self) -> ir.Graph:
        output = ""
        needed = calls.needed(self.program.graph)
        for node in self.program.graph.nodes:
            if node.name not in needed:
                continue
            try:
                if node.op == "output":
                    output = self.output(node)
                else:
                    self.convert(node)
            except UnsupportedCallError as problem:
                self.unsupported.append((node.name, f"{problem} {calls.where(node)}"))
                self.refs[node.name] = Ref(node.name, self.shape_or_none(node), True)  # report every problem at once
                self.emitted.add(node.name)
        output, activation = self.strip_output_activation(output)
        if self.unsupported:
            raise UnsupportedLayerError(self.unsupported)
        classes = {calls.module_of(node): calls.module_class(node) for node in self.program.graph.nodes}
        return ir.Graph(tuple(fuse_activations(self.nodes, classes)), output, activation)

    def convert(self, node: torch.fx.Node) -> None:
        if node.op == "placeholder":
            self.placeholder(node)
        elif node.op == "call_function":
            self.call(node)
        else:
            raise UnsupportedCallError(f"{node.op} {node.target!s}")

    def placeholder(self, node: torch.fx.Node) -> None:
        if node.name in self.constants:
            value = self.constants[node.name]
            self.refs[node.name] = Ref(node.name, tuple(value.shape), False, value)
            return
        val = node.meta["val"]
        explained = node.name == self.explained
        self.bind_symbols(val, explained)
        dtype = str(val.dtype).removeprefix("torch.")
        attrs: dict[str, Any] = {} if val.is_floating_point() else {"dtype": dtype}
        if explained and "dtype" in attrs and val.dim() >= 2:
            longest = self.longest(val.shape[1])
            attrs.update({} if longest is None else {"max_tokens": longest})
        elif not explained:
            attrs.update({"argument": self.extra[node.name], "shape": list(self.shape(node)), "dtype": dtype})
        self.add_node(ir.Node(node.name, ir.INPUT, (), attrs))
        self.refs[node.name] = Ref(node.name, self.shape(node), explained, discrete=not val.is_floating_point())

    def bind_symbols(self, val: torch.Tensor, explained: bool) -> None:
        """Name the explained input's symbolic sizes d0 (batch) and d1 (tokens); an extra input's first dimensions are
        the same (an attention mask is [batch, tokens]). A fixed batch or length means a forward that wrote it."""
        tokens = not val.is_floating_point() and val.dim() >= 2
        for index, size in enumerate(val.shape[:2 if tokens else 1]):
            if isinstance(size, torch.SymInt) and size.node.expr.is_symbol:
                self.symbols.setdefault(size.node.expr, f"d{index}")
            elif explained:
                what = "batch size" if index == 0 else "number of tokens"
                raise ModelPreparationError(
                    f"{self.model} works for one {what} only: its forward writes the {what} as a constant (in a view "
                    f"or reshape, use x.size({index}) or -1 instead)." + (f" {TOKENS_HINT}" if index else ""))

    def longest(self, tokens: Any) -> int | None:
        """The most tokens the model takes (a position table's length), None when it takes any number."""
        found = self.program.range_constraints.get(tokens.node.expr)
        upper = getattr(found, "upper", None)
        return int(upper) if isinstance(upper, sympy.Integer) else None  # torch's int_oo for no limit

    def call(self, node: torch.fx.Node) -> None:
        target = node.target
        val = node.meta.get("val")
        if target in _SKIPPED:
            return
        if target is operator.getitem:
            items = self.value(node.args[0])
            self.refs[node.name] = items if isinstance(items, Ref) else items[node.args[1]]  # a Ref: unsupported
            return
        if not isinstance(val, torch.Tensor | list | tuple):  # a size: sym_size, or arithmetic on sizes
            self.refs[node.name] = self.size(val)
            return
        if not isinstance(target, torch._ops.OpOverload):
            raise UnsupportedCallError(f"call of {getattr(target, '__name__', target)}")
        site = self.site(node)
        refs = [r for r in calls.flatten(list(site.args.values())) if isinstance(r, Ref)]
        if not calls.carries(target, refs, val):
            self.constant_call(node, site, refs)
        elif target in IDENTITY_CALLS:
            self.refs[node.name] = IDENTITY_CALLS[target](site)
        elif target in _LOG_SOFTMAX:
            self.emit(node, _FINAL, Read([site.tensor("self")], {"kind": "log_softmax"}))
        elif target in _READERS:
            op, read = _READERS[target]
            if target._schema.is_mutable:
                self.check_in_place(node)
            found = read(site)
            if calls.masks_the_batch(node, lambda size: self.size(size, data_dependent=True)):
                found = Read(found.inputs, {**found.attrs, "mask_over_batch": True}, found.params, found.op)
            if isinstance(val, list | tuple):  # split, chunk, unbind: one node per piece
                self.refs[node.name] = [self.emit_item(node, found.op or op.name, found, i, v, True)
                                        for i, v in enumerate(val)]
            else:
                self.emit(node, found.op or op.name, found)
        else:
            raise UnsupportedCallError(f"{target} has no LRP rule")

    def check_in_place(self, node: torch.fx.Node) -> None:
        """An in-place op on a view would change the tensor it views, which the graph would not see."""
        source = node.args[0]
        if isinstance(source, torch.fx.Node) and calls.is_view(source):
            raise UnsupportedCallError(f"in-place {node.target} {IN_PLACE_ON_VIEW}")

    def constant_call(self, node: torch.fx.Node, site: Site, refs: list[Ref]) -> None:
        """A call that depends on no explained input: computed now when it can be, else at run time.

        Computed now, an in-place call runs in place on the tensors computed so far, so that one on a view (a slice
        of a table filled row by row, as BEiT's relative position index) changes the tensor it views, as in the
        model; never on a parameter or buffer, or a view of one. Replayed at run time, it runs out of place (later
        uses read the call's result) and may not change a view."""
        target = node.target
        assert isinstance(target, torch._ops.OpOverload)
        mutable = target._schema.is_mutable
        if mutable:
            mutated = site.args.get(target._schema.arguments[0].name)
            if isinstance(mutated, Ref) and (mutated.name in self.constants or self.views_a_parameter(mutated)):
                raise UnsupportedCallError(f"in-place {target} on a parameter or buffer (is the model in training "
                                           "mode? call model.eval() before explaining)")
        static = not dims.has_exprs(list(site.args.values())) and not dims.has_exprs(list(site.out_shape))
        if static and all(r.value is not None for r in refs):
            with torch.no_grad():
                args, kwargs = calls.concrete(list(node.args), self.refs), calls.concrete(dict(node.kwargs), self.refs)
                result = target(*args, **kwargs)
            self.refs[node.name] = calls.as_refs(node.name, result)
            return
        if mutable:
            self.check_in_place(node)
            target = calls.out_of_place(target)
            site = Site(str(target), site.args, site.out_shape, site.module, site.out_dtype)
        name = str(target).removeprefix("aten.")
        if name not in COMPUTED_TARGETS:
            raise UnsupportedCallError(f"{target} on constants whose size follows the input")
        read = call_reader(site)
        if isinstance(node.meta.get("val"), list | tuple):
            self.refs[node.name] = [self.emit_item(node, COMPUTED.name, read, i, v, False)
                                    for i, v in enumerate(node.meta["val"])]
            return
        self.emit(node, COMPUTED.name, read, live=False)

    def views_a_parameter(self, ref: Ref) -> bool:
        """Whether a constant tensor shares memory with a parameter or buffer of the model."""
        if ref.value is None:
            return False
        pointer = ref.value.untyped_storage().data_ptr()
        return any(c.untyped_storage().data_ptr() == pointer for c in self.constants.values() if c.numel())

    def emit_item(self, node: torch.fx.Node, op: str, read: Read, item: int, val: torch.Tensor, live: bool) -> Ref:
        """The node of one piece of a call that returns several tensors (a split)."""
        name = self.fresh(f"{node.name}_{item}")
        self.add_node(ir.Node(name, op, self.inputs(read), {**read.attrs, "item": item}, {}, calls.module_of(node)))
        shape = tuple(self.size(s) for s in val.shape)
        self.ranks[name] = len(shape)
        return Ref(name, shape, live, discrete=not val.is_floating_point())

    def inputs(self, read: Read) -> tuple[str, ...]:
        for ref in read.inputs:
            if ref.name not in self.emitted:
                assert ref.value is not None, "every computed tensor is emitted when it is made"
                kept = ref.value if ref.name in self.constants else ref.value.clone()  # later in-place calls
                self.add_node(ir.Node(ref.name, CONSTANT.name, (), {}, {"value": kept}))
        return tuple(ref.name for ref in read.inputs)

    def add_node(self, node: ir.Node) -> None:
        self.nodes.append(node)
        self.emitted.add(node.name)

    def emit(self, node: torch.fx.Node, op: str, read: Read, live: bool = True) -> None:
        """Add the IR node of a call, named after its module ("features_0", then "features_0_1") or the call."""
        if dims.holds_data_dependent(read.attrs):
            raise UnsupportedCallError("a size that depends on the input's values (a boolean mask's count) in "
                                       f"{str(node.target).removeprefix('aten.')}")
        module = calls.module_of(node)
        name = self.fresh(module.replace(".", "_") if module else node.name)
        self.add_node(ir.Node(name, op, self.inputs(read), read.attrs, read.params, module))
        val = node.meta.get("val")
        discrete = isinstance(val, torch.Tensor) and not val.is_floating_point()
        self.refs[node.name] = Ref(name, self.shape(node), live, discrete=discrete)
        self.ranks[name] = len(self.refs[node.name].shape)

    def fresh(self, base: str) -> str:
        """`base`, or `base_1`, `base_2`, ... when taken (by a node or by a call of the captured graph)."""
        name, count = base, 0
        while name in self.emitted or (name != base and name in self.call_names):
            count += 1
            name = f"{base}_{count}"
        return name

    def output(self, node: torch.fx.Node) -> str:
        specs = self.program.graph_signature.output_specs
        first = next(i for i, spec in enumerate(specs) if spec.kind == OutputKind.USER_OUTPUT)
        ref = self.value(node.args[0][first])  # type: ignore[index]
        if not isinstance(ref, Ref) or not ref.live:
            raise UnsupportedCallError("an output that is not a tensor computed from the input")
        if ref.shape and ref.shape[0] != {dims.EXPR: "d0"}:
            raise UnsupportedCallError(
                f"an output whose first dimension is {ref.shape[0]}, not the batch: a reshape mixes samples "
                "(write x.view(x.size(0), ...) to keep the batch first)")
        self.inputs(Read([ref]))
        return ref.name

    def strip_output_activation(self, output: str) -> tuple[str, str]:
        """Drop a final softmax, log_softmax or sigmoid over the classes so that the logit is explained."""
        final = next((n for n in self.nodes if n.name == output), None)
        activation = "logits"
        if final is not None and final.op in ("softmax", _FINAL):
            last = self.ranks[final.name] - 1
            if final.op == _FINAL or final.attrs["dim"] == last:
                activation = final.attrs.get("kind", "softmax")
        elif final is not None and final.op == "activation" and final.attrs["fn"] == "sigmoid":
            activation = "sigmoid"
        if final is not None and activation != "logits":
            if any(final.name in n.inputs for n in self.nodes):
                raise ModelPreparationError(f"the final activation '{final.name}' is also used inside the model")
            self.nodes.remove(final)
            output = final.inputs[0]
        for node in self.nodes:
            if node.op == _FINAL:
                self.unsupported.append((node.name, "log_softmax that is not the model's last operation"))
        return output, activation


def _symbol(name: str) -> Any:
    return sympy.Symbol(name, integer=True)
