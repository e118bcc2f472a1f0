"""``graph: backward``: the autograd graph of a scalar loss, drawn in the forward's boxes.

The forward is traced as usual, with autograd on (``TraceOptions.no_grad`` off, unfolded),
while a small ``TorchFunctionMode`` above the recorder notes, for every op's output, the
autograd node (``grad_fn``) that will differentiate it and the id the recorder gave the
tensor; identity ``saved_tensors_hooks`` keep the tensors each node saves as the very objects
the forward made. Then the loss (the sum of the float outputs, or a ``loss(output)``
function) is formed outside the recording and its graph walked from ``loss.grad_fn``
through ``next_functions``, exactly the nodes ``torch.autograd.graph`` has:

- each autograd node becomes an op node (``AddmmBackward0``) in the module call of the
  forward op whose output it differentiates; a node inside one forward op (the ``TBackward0``
  of ``F.linear``'s weight) goes where the gradient reaching it comes from; it is drawn in
  its forward op's colour family, else in that of the ATen op its name says it differentiates
  (``NativeLayerNormBackward0``: ``native_layer_norm``, a norm);
- each ``AccumulateGrad`` becomes an output node, ``grad weight``, in the module that owns
  the parameter (its qualified name in ``Node.params``);
- each edge carries a gradient, shaped as the tensor it differentiates
  (``Node._input_metadata``);
- each tensor a node saved for the backward is a source node (kind ``constant``, category
  ``saved``: ``show_constants: false`` hides them) in the module of the node that reads it,
  named after the op that made it (``saved relu``), with the memory the backward keeps for
  it as its ``activation_bytes`` (at its first source: a tensor two modules read is kept
  once).

FLOPs come from running the backward (on the meta device too) under a dispatch mode that
charges every ATen op to the autograd node running it (prehooks). A backward that fails there
(an op without a meta kernel) is still drawn; the error goes into
``graph.meta["backward_error"]``, which the caveats tell the reader. The graph is folded like a
forward one.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch.overrides import TorchFunctionMode
from torch.utils._python_dispatch import TorchDispatchMode

from model_trace.errors import TraceError
from model_trace.graph import STAT_NAMES, Edge, Graph, ModuleCall, Node, Stats, Tensor
from model_trace.tracing.api import trace_with_options
from model_trace.tracing.builder import REF_ATTRIBUTE
from model_trace.tracing.flops import op_cost
from model_trace.tracing.folding import fold_repeats
from model_trace.tracing.op_table import category_of
from model_trace.tracing.options import TraceOptions
from model_trace.tracing.routing import RoutingPolicy
from model_trace.tracing.structures import named_tensors

Loss = Callable[[Any], torch.Tensor]
_BACKWARD_SUFFIX = re.compile(r"Backwards?\d*$")
_WORD_START = re.compile(r"(?<=[a-z])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])")  # Native.Layer, 2D.With
_COPIES = frozenset({"Copy", "CopySlices"})  # x.copy_(y), and x[:, 0] += y on a view
_ADDRESS = re.compile(r"0x[0-9a-fA-F]+")


class _GradFns(TorchFunctionMode):
    """Above the recorder: each op output's ``grad_fn`` (and output number) and recorded id,
    and the id of every tensor object the forward made."""

    def __init__(self) -> None:
        super().__init__()
        self.made_by: dict[tuple[int, int], str] = {}  # (id(grad_fn), output_nr) -> tensor id
        self.objects: dict[int, str] = {}  # id(tensor) -> its latest tensor id
        self.kept: list[Any] = []  # the objects above, alive so their ids stay unique

    def __torch_function__(self, func: Any, types: Any, args: tuple[Any, ...] = (),
                           kwargs: dict[str, Any] | None = None) -> Any:
        out = func(*args, **(kwargs or {}))
        self.note(out)
        return out

    def note(self, value: Any) -> None:
        """Note the recorded tensors in ``value`` (an op's outputs, the model's inputs)."""
        for _, tensor in named_tensors(value, ""):
            ref = getattr(tensor, REF_ATTRIBUTE, None)
            if ref is None:
                continue
            self.objects[id(tensor)] = ref[1]
            self.kept.append(tensor)
            if tensor.grad_fn is not None:
                self.made_by.setdefault((id(tensor.grad_fn), tensor.output_nr), ref[1])
                self.kept.append(tensor.grad_fn)


def trace_backward(
    model: torch.nn.Module,
    *args: Any,
    loss: Loss | None = None,
    routing: str | Sequence[int] | RoutingPolicy | None = None,
    fold: bool = True,
    trace_depth: int = 0,
    aten: bool = False,
    **kwargs: Any,
) -> Graph:
    """The backward graph of ``loss(model(*args, **kwargs))`` (default: the sum of every
    float output), in the module calls of the forward (see the module's doc)."""
    options = TraceOptions(routing=routing, fold=False, trace_depth=trace_depth, aten=aten,
                           no_grad=False)
    watcher = _GradFns()
    captured: list[Any] = []

    def enter(_module: Any, inputs: Any, keywords: Any) -> None:
        watcher.note((inputs, keywords))
        watcher.__enter__()

    def leave(_module: Any, _args: Any, output: Any) -> None:
        watcher.__exit__(None, None, None)
        captured.append(output)

    hooks = [model.register_forward_pre_hook(enter, with_kwargs=True),
             model.register_forward_hook(leave, always_call=True)]
    saved = _Saved()
    try:
        with torch.enable_grad(), torch.autograd.graph.saved_tensors_hooks(saved.pack,
                                                                             saved.unpack):
            forward = trace_with_options(model, args, kwargs, options)
            scalar = _loss(captured[-1], loss)
    finally:
        for hook in hooks:
            hook.remove()
    builder = _Builder(forward, model, watcher, saved)
    builder.walk(scalar)
    builder.count_flops(scalar)
    graph = builder.graph()
    root = graph.modules[graph.root].stats
    graph.meta = {**{k: v for k, v in forward.meta.items() if k != "folded"},
                  "totals": {name: getattr(root, name) for name in STAT_NAMES},
                  "graph": "backward",
                  "loss": getattr(loss, "__qualname__", "loss") if loss else "sum of outputs",
                  "flops_without_formula": builder.missing,
                  "forward": {"nodes": len(forward.nodes), "modules": len(forward.modules)}}
    if builder.error:
        graph.meta["backward_error"] = builder.error
    return fold_repeats(graph) if fold else graph


class _Saved:
    """``saved_tensors_hooks`` that keep what autograd saves as the forward's own objects
    (autograd hands back a new object for a saved output), and note which were unpacked."""

    def __init__(self) -> None:
        self.tensors: list[torch.Tensor] = []
        self.unpacked: list[torch.Tensor] = []

    def pack(self, tensor: torch.Tensor) -> int:
        self.tensors.append(tensor)
        return len(self.tensors) - 1

    def unpack(self, handle: int) -> torch.Tensor:
        self.unpacked.append(self.tensors[handle])
        return self.tensors[handle]


def _loss(output: Any, loss: Loss | None) -> torch.Tensor:
    if loss is not None:
        value = loss(output)
        if not isinstance(value, torch.Tensor) or value.numel() != 1:
            raise TraceError(f"the loss function returned {type(value).__name__} "
                             f"{getattr(value, 'shape', '')}; it must return a scalar tensor")
    else:
        outputs = [t for _, t in named_tensors(output, "output")]
        if any(t.is_inference() for t in outputs):
            raise TraceError("the model's forward runs under torch.inference_mode(), which "
                             "records no autograd graph; draw the backward of a part that "
                             "does not (a block or a layer of it, as `model:`)")
        floats = [t for t in outputs if t.dtype.is_floating_point and t.requires_grad]
        if not floats:
            raise TraceError("no float output of the model depends on a parameter, so there "
                             "is no backward graph to draw; give a `loss:` function")
        value = floats[0].sum()
        for tensor in floats[1:]:
            value = value + tensor.sum()
    if value.grad_fn is None:
        raise TraceError("the loss does not depend on any parameter (no autograd graph); are "
                         "the parameters frozen (requires_grad=False)?")
    return value


class _Builder:
    """Walks the autograd graph of a loss into a ``Graph`` in the forward's module calls."""

    def __init__(self, forward: Graph, model: torch.nn.Module, watcher: _GradFns,
                 saved: _Saved) -> None:
        self.forward = forward
        self.watcher = watcher
        self.saved_by_autograd = saved
        self.params = {id(p): name for name, p in model.named_parameters()}
        self.first_call: dict[str, str] = {}
        for call in forward.walk_modules():
            self.first_call.setdefault(call.path, call.id)
        self.modules = {m.id: ModuleCall(m.id, m.path, m.cls, m.parent, [], m.call_index,
                                         m.extra_repr, m.source, Stats(m.stats.params, 0, 0,
                                                                       m.stats.activated_params),
                                         kind=m.kind, called=m.called)
                        for m in forward.walk_modules()}
        self.nodes: dict[str, Node] = {}
        self.tensors: dict[str, Tensor] = {}
        self.edges: list[Edge] = []
        self.ids: dict[int, str] = {}  # id(autograd node) -> its node id
        self.functions: dict[str, Any] = {}  # node id -> its autograd node (kept alive)
        self.saved: dict[tuple[Any, str], str] = {}  # (tensor, module) -> saved node id
        self.counted: set[Any] = set()  # tensors whose memory a saved node counts
        self.placed: set[str] = {forward.root}
        self.missing: dict[str, int] = {}
        self.error = ""  # why running the backward failed (its FLOPs are then partial)

    # -- the graph ------------------------------------------------------------------------
    def walk(self, loss: torch.Tensor) -> None:
        """Every autograd node from ``loss.grad_fn`` on (breadth first), once each, with the
        gradients between them."""
        seed = self._node("input", "loss", "io", self.forward.root)
        seed_tensor = self._tensor([], loss.dtype, loss.device, seed)
        order: list[tuple[Any, str, str]] = [(loss.grad_fn, self.forward.root, seed_tensor)]
        head = 0
        while head < len(order):
            fn, near, incoming = order[head]
            head += 1
            node_id = self.ids.get(id(fn))
            new = node_id is None
            if node_id is None:
                node_id = self._autograd_node(fn, near)
            self._link(incoming, node_id)
            if not new or fn.name().endswith("AccumulateGrad"):
                continue
            module = self.nodes[node_id].parent
            for target, input_nr in fn.next_functions:
                if target is not None:
                    shape, dtype = _gradient_into(target, input_nr)
                    order.append((target, module,
                                  self._tensor(shape, dtype, loss.device, node_id)))

    def graph(self) -> Graph:
        """The backward graph: the module calls that hold a node (stats summed), in
        pre-order, and the nodes, gradients and edges walked."""
        kept = {m: call for m, call in self.modules.items() if m in self.placed}
        for call in kept.values():  # saved tensors first: equal layers list equal children
            call.children.sort(key=lambda c: c not in self.nodes or
                               self.nodes[c].kind != "constant")
        for call in reversed(list(kept.values())):
            for child in call.children:
                part = kept[child].stats if child in kept else self.nodes[child].stats
                call.stats.flops += part.flops
                call.stats.activation_bytes += part.activation_bytes
        return Graph(root=self.forward.root, modules=kept, nodes=self.nodes,
                     tensors=self.tensors, edges=self.edges)

    def _autograd_node(self, fn: Any, near: str) -> str:
        """An op node for an autograd node (an output for ``AccumulateGrad``), placed in its
        forward op's module call, else in ``near`` (where its gradient comes from)."""
        name = fn.name()
        if name.endswith("AccumulateGrad"):
            param = self.params.get(id(fn.variable))
            owner = self.first_call.get(param.rpartition(".")[0], near) if param else near
            short = param.rpartition(".")[2] if param else "input"
            node_id = self._node("output", f"grad {short}", "io", owner)
            if param:  # the box says whose; equal layers keep equal names, and fold
                self.nodes[node_id].params.append(param)
        else:
            forward_node = self._forward_node(fn)
            module = forward_node.parent if forward_node is not None else near
            category = (forward_node.category if forward_node is not None else
                        category_of(forward_op_of(name)))
            node_id = self._node("op", name, category, module)
            if forward_node is not None:
                self.nodes[node_id].source = forward_node.source
            self._saved_inputs(fn, node_id)
        self.ids[id(fn)] = node_id
        self.functions[node_id] = fn
        return node_id

    def _forward_node(self, fn: Any) -> Node | None:
        for output in range(max(1, len(fn._input_metadata))):
            tensor_id = self.watcher.made_by.get((id(fn), output))
            if tensor_id is not None:
                producer = self.forward.tensors[tensor_id].producer
                if producer is not None:
                    return self.forward.nodes[producer]
        return None

    def _saved_inputs(self, fn: Any, node_id: str) -> None:
        """A source node for each tensor ``fn`` saved (once per tensor), linked to it."""
        hooks = self.saved_by_autograd
        for attribute in sorted(a for a in dir(fn) if a.startswith("_saved_")):
            hooks.unpacked = []
            try:
                getattr(fn, attribute)
            except RuntimeError:  # freed, or not available on this device
                continue
            for tensor in hooks.unpacked:  # the objects the forward made, not autograd's copies
                self._link(self._saved_tensor(tensor, attribute.removeprefix("_saved_"),
                                              node_id), node_id)

    def _saved_tensor(self, tensor: torch.Tensor, role: str, user: str) -> str:
        """The source node of a tensor ``user`` saved: one per tensor and module of a user
        (so a layer holds what its own backward reads, and equal layers fold), its memory
        counted at its first use only."""
        forward_id = self.watcher.objects.get(id(tensor))
        param = self.params.get(id(tensor))
        key: Any = forward_id or param or id(tensor)
        where = self.nodes[user].parent
        source = self.saved.get((key, where))
        if source is None:
            if forward_id is not None:  # named after the op (or input) that made it
                producer = self.forward.tensors[forward_id].producer
                role = self.forward.nodes[producer].name if producer is not None else role
            elif param is not None:
                role = param.rpartition(".")[2]
            source = self._node("constant", f"saved {role}", "saved", where)
            self._tensor(list(tensor.shape), tensor.dtype, tensor.device, source)
            if key not in self.counted:
                self.counted.add(key)
                self.nodes[source].stats.activation_bytes = (tensor.numel()
                                                             * tensor.element_size())
            self.saved[(key, where)] = source
            self.watcher.kept.append(tensor)
        return self.nodes[source].outputs[0]

    def _node(self, kind: str, name: str, category: str, parent: str) -> str:
        node_id = f"n{len(self.nodes)}"
        self.nodes[node_id] = Node(node_id, kind, name, category, parent)  # type: ignore[arg-type]
        self.modules[parent].children.append(node_id)
        self._place(parent)
        return node_id

    def _place(self, module_id: str) -> None:
        """Put a module call (and its ancestors) in its parent's children, at first use."""
        while module_id not in self.placed:
            self.placed.add(module_id)
            parent = self.modules[module_id].parent
            assert parent is not None
            self.modules[parent].children.append(module_id)
            module_id = parent

    def _tensor(self, shape: list[int], dtype: Any, device: Any, producer: str) -> str:
        tensor_id = f"t{len(self.tensors)}"
        self.tensors[tensor_id] = Tensor(tensor_id, list(shape),
                                         str(dtype).removeprefix("torch."),
                                         getattr(device, "type", str(device)), producer)
        self.nodes[producer].outputs.append(tensor_id)
        node = self.nodes[producer]
        if node.kind == "op":
            node.stats.activation_bytes += _bytes(shape, dtype)
        return tensor_id

    def _link(self, tensor_id: str, consumer: str) -> None:
        node = self.nodes[consumer]
        if tensor_id not in node.inputs:
            node.inputs.append(tensor_id)
            producer = self.tensors[tensor_id].producer
            assert producer is not None
            self.edges.append(Edge(producer, consumer, tensor_id))

    # -- FLOPs --------------------------------------------------------------------------
    def count_flops(self, loss: torch.Tensor) -> None:
        """Run the backward, charging each ATen op's FLOPs to the autograd node running it."""
        counter = _Charges()
        handles = [fn.register_prehook(counter.starter(node_id))
                   for node_id, fn in self.functions.items()]
        try:
            with counter:
                loss.backward(inputs=None)
        except (RuntimeError, NotImplementedError, TypeError) as error:
            self.error = _error_line(error)
        finally:
            for handle in handles:
                handle.remove()
        for node_id, flops in counter.flops.items():
            self.nodes[node_id].stats.flops = flops
        for node_id, names in counter.missing.items():
            self.nodes[node_id].uncounted_flops = sorted(names)
            for name in names:
                self.missing[name] = self.missing.get(name, 0) + 1


def forward_op_of(autograd_name: str) -> str:
    """The ATen op an autograd node differentiates, as the op table names ATen ops:
    ``NativeLayerNormBackward0`` -> ``native_layer_norm``, ``ToCopyBackward0`` -> ``to_copy``,
    ``MaxPool2DWithIndicesBackward0`` -> ``max_pool2d_with_indices``, ``TBackward0`` -> ``t``;
    ``CopyBackwards`` and ``CopySlices`` (a write into a tensor or a part of it) -> ``copy_``.
    A node of a custom ``autograd.Function`` gives its class's name in the same form."""
    base = _BACKWARD_SUFFIX.sub("", autograd_name.rpartition("::")[2])
    return "copy_" if base in _COPIES else _WORD_START.sub("_", base).lower()


def _gradient_into(target: Any, input_nr: int) -> tuple[list[int], Any]:
    """The shape and dtype of the gradient an autograd node receives as input ``input_nr``
    (the output of its forward op it differentiates; a leaf's own for ``AccumulateGrad``)."""
    if target.name().endswith("AccumulateGrad"):
        return list(target.variable.shape), target.variable.dtype
    metadata = target._input_metadata
    if input_nr < len(metadata):
        return list(metadata[input_nr].shape), metadata[input_nr].dtype
    return [], torch.float32


def _error_line(error: BaseException) -> str:
    """An error as the reader is told it: its type and first sentence (torch's go on with
    links and advice), memory addresses blanked (so the page is the same every build)."""
    sentence, stop, _ = str(error).strip().partition("\n")[0].partition(". ")
    return f"{type(error).__name__}: {_ADDRESS.sub('0x…', sentence + stop.strip())}"


def _bytes(shape: list[int], dtype: Any) -> int:
    size = dtype.itemsize if isinstance(dtype, torch.dtype) else 4
    return math.prod(shape) * size


class _Charges(TorchDispatchMode):
    """FLOPs (and ops without a formula) of the ATen ops each autograd node runs."""

    def __init__(self) -> None:
        super().__init__()
        self.current: str | None = None
        self.flops: dict[str, int] = {}
        self.missing: dict[str, set[str]] = {}

    def starter(self, node_id: str) -> Callable[..., None]:
        def start(*_: Any) -> None:
            self.current = node_id
        return start

    def __torch_dispatch__(self, func: Any, types: Any, args: tuple[Any, ...] = (),
                           kwargs: dict[str, Any] | None = None) -> Any:
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        if self.current is not None:
            flops, missing = op_cost(func, args, kwargs, out)
            self.flops[self.current] = self.flops.get(self.current, 0) + flops
            if missing:
                self.missing.setdefault(self.current, set()).update(missing)
        return out
