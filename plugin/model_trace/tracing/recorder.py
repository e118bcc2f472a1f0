"""The recorder: module calls from global forward hooks, ops from a ``TorchFunctionMode``.

Nothing in torch is patched. Every op call goes through ``Recorder.__torch_function__``, which
runs it (under the meta-trace rules of ``concrete`` when tracing on the meta device), then adds
a ``Node``, its output ``Tensor``s and the ``Edge``s from the producers of its inputs.

Tensor identity: each recorded tensor object carries its id in an attribute (with this trace's
token, so a tensor left over from another trace is not mistaken for one of this trace). An op
that writes into a tensor in place gives it a new id, produced by that op, so later readers
link to the write. Parameters, buffers and tensors made outside the forward are looked up by
object identity among the model's parameters and buffers.

This is the hot path of a trace (a quarter of a million op calls for DeepSeek-V3 671B): the
per-op work is a cached ``OpInfo`` lookup, a short scan of the arguments, one ``Node`` and
cached source locations.
"""

from __future__ import annotations

import contextlib
import inspect
import sys
import types
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch.overrides import TorchFunctionMode, resolve_name
from torch.utils._python_dispatch import TorchDispatchMode

from model_trace.graph import Edge, ModuleCall, Node, SourceLocation, Tensor
from model_trace.op_categories import category_of
from model_trace.tracing.concrete import (
    DEVICE_OPS,
    FACTORY_OPS,
    INDEXING_OPS,
    ROUTING_OPS,
    ConcreteValues,
    MetaResults,
    call_signature,
    metadata,
)
from model_trace.tracing.flops import FLOP_FUNCTIONS, FlopCounter, linear_flops, op_flops
from model_trace.tracing.options import TraceOptions
from model_trace.tracing.source import SourceIndex

REF_ATTRIBUTE = "_model_trace_ref"

# Queries that return no tensor: run them without recording anything.
_PASSTHROUGH = frozenset({
    "size", "dim", "numel", "stride", "is_contiguous", "data_ptr", "element_size",
    "is_floating_point", "is_complex", "get_device", "nelement", "ndimension", "__len__",
    "__bool__", "__format__", "__repr__", "__hash__", "__set__", "tolist", "item", "__int__",
    "__float__", "__index__", "__reduce_ex__", "__deepcopy__", "storage_offset",
    "untyped_storage", "is_pinned", "is_set_to", "requires_grad_", "retain_grad",
    "register_hook", "__array__", "numpy", "__contains__", "is_nonzero", "equal",
    "has_names", "is_shared", "is_signed", "dim_order", "__dlpack__", "__dlpack_device__",
    "__setstate__", "__getstate__", "__sizeof__", "__dir__", "__iter__", "__eq_ne_metadata",
})
_PASSTHROUGH_PROPERTIES = frozenset({
    "shape", "dtype", "device", "is_meta", "is_cuda", "is_cpu", "ndim", "requires_grad",
    "layout", "grad", "grad_fn", "is_leaf", "names", "itemsize", "nbytes", "is_sparse",
    "is_quantized", "is_nested", "output_nr", "_base", "_version", "is_mkldnn", "is_xpu",
    "is_mps", "_cdata", "is_inference", "_grad_fn", "_backward_hooks", "is_complex",
    "is_floating_point", "__dict__", "__class__",
})
# Ops whose outputs share the input's memory: they allocate no activation bytes.
_VIEWS = frozenset({
    "view", "view_as", "reshape", "reshape_as", "flatten", "unflatten", "transpose", "permute",
    "expand", "expand_as", "squeeze", "unsqueeze", "split", "split_with_sizes", "chunk",
    "tensor_split", "unbind", "narrow", "select", "t", "T", "mT", "H", "mH", "movedim",
    "moveaxis", "swapaxes", "swapdims", "diagonal", "as_strided", "view_as_real",
    "view_as_complex", "real", "imag", "detach", "alias", "unfold", "data", "conj",
    "resolve_conj", "resolve_neg", "view_as_real_copy",
})
_COLLECTIVES = frozenset({
    "all_reduce", "all_gather", "all_gather_into_tensor", "reduce_scatter",
    "reduce_scatter_tensor", "broadcast", "all_to_all", "all_to_all_single", "reduce",
    "gather", "scatter", "send", "recv", "isend", "irecv", "barrier",
})


@dataclass(frozen=True)
class OpInfo:
    """What the recorder needs to know about a function, computed once per function."""

    name: str
    category: str
    passthrough: bool = False
    python: bool = False  # a torch Python function the trace can descend into
    flops: str = ""  # "linear", "custom" (formula on the op's args) or "dispatch"
    view: bool = False
    mutates: str = ""  # "self" (in place), "collective" (writes its first argument)
    indexing: bool = False
    cacheable: bool = False  # a pure op whose meta outputs may be cached (see concrete)
    in_place: bool = False  # writes into its first argument: may be cached as "returns self"

    @classmethod
    def of(cls, func: Callable[..., Any]) -> OpInfo:
        name, prop = op_name(func)
        if prop:
            return cls(name, "shape", passthrough=name in _PASSTHROUGH_PROPERTIES, view=True)
        if name in _PASSTHROUGH:
            return cls(name, "other", passthrough=True)
        module = getattr(func, "__module__", "") or ""
        collective = module.startswith("torch.distributed") and name in _COLLECTIVES
        python = (isinstance(func, types.FunctionType) and module.startswith("torch")
                  and module != "torch._tensor" and not collective)
        if name == "linear":
            flops = "linear"
        elif isinstance(func, torch._ops.OpOverload | torch._ops.OpOverloadPacket):
            flops = "custom"
        elif name in FLOP_FUNCTIONS:
            flops = "dispatch"
        else:
            flops = ""
        mutates = ""
        if collective:
            mutates = "collective"
        elif name == "setitem" or (name.endswith("_") and not name.startswith("_")):
            mutates = "self"
        category = "collective" if collective else category_of(name)
        view = name in _VIEWS
        cacheable = not (view or mutates or name in ROUTING_OPS or name in FACTORY_OPS
                         or name in DEVICE_OPS)
        in_place = mutates == "self" and name not in INDEXING_OPS
        return cls(name, category, python=python, flops=flops, view=view, mutates=mutates,
                   indexing=name in INDEXING_OPS, cacheable=cacheable, in_place=in_place)


def op_name(func: Callable[..., Any]) -> tuple[str, bool]:
    """The short name of an op (``linear``, ``add_`` for ``__iadd__``) and whether it is a
    property getter (``x.T``)."""
    if isinstance(func, torch._ops.OpOverloadPacket):  # torch.ops.ns.op called directly
        return func._qualified_op_name.split("::")[-1], False
    if isinstance(func, torch._ops.OpOverload):
        return func.name().split("::")[-1].split(".")[0], False
    qualified = resolve_name(func) or getattr(func, "__name__", None) or repr(func)
    parts = qualified.split(".")
    if parts[-1] == "__get__" and len(parts) > 1:
        return parts[-2], True
    short = parts[-1]
    if short.startswith("__i") and short.endswith("__") and short not in ("__index__",
                                                                         "__int__",
                                                                         "__iter__"):
        return short[3:-2] + "_", False
    if short.startswith("__") and short.endswith("__") and short not in _PASSTHROUGH:
        return short.strip("_"), False
    return short, False


def tensors_in(args: tuple[Any, ...], kwargs: dict[str, Any]) -> list[torch.Tensor]:
    """The tensors among an op's arguments (two levels into lists and tuples)."""
    found: list[torch.Tensor] = []
    for group in (args, kwargs.values()) if kwargs else (args,):
        for value in group:
            if isinstance(value, torch.Tensor):
                found.append(value)
            elif isinstance(value, list | tuple):
                for inner in value:
                    if isinstance(inner, torch.Tensor):
                        found.append(inner)
                    elif isinstance(inner, list | tuple):
                        found.extend(t for t in inner if isinstance(t, torch.Tensor))
    return found


def tensors_out(result: Any) -> list[torch.Tensor]:
    """The tensors an op returned."""
    if isinstance(result, torch.Tensor):
        return [result]
    if isinstance(result, list | tuple):
        return tensors_in(tuple(result), {})
    if isinstance(result, dict):
        return tensors_in(tuple(result.values()), {})
    return []


def _format_slice(value: slice) -> str:
    parts = ["" if v is None else str(v) for v in (value.start, value.stop, value.step)]
    return ":".join(parts[:2] if value.step is None else parts)


def _format_sequence(value: list[Any] | tuple[Any, ...]) -> str | None:
    if len(value) > 8:
        return None
    items = [format_value(v) for v in value]
    if any(i is None for i in items):
        return None
    inner = ", ".join(items)  # type: ignore[arg-type]
    return f"[{inner}]" if isinstance(value, list) else f"({inner})"


_FORMATTERS: dict[type, Callable[[Any], str | None]] = {
    int: repr, float: repr, bool: repr, str: repr, type(None): repr,
    torch.dtype: lambda v: str(v).removeprefix("torch."),
    torch.device: lambda v: v.type,
    slice: _format_slice,
    type(Ellipsis): lambda _: "...",
    list: _format_sequence, tuple: _format_sequence, torch.Size: _format_sequence,
}


def format_value(value: Any) -> str | None:
    """A short text for a non-tensor argument, or None to leave it out."""
    formatter = _FORMATTERS.get(type(value))
    if formatter is not None:
        return formatter(value)
    if isinstance(value, torch.Tensor):
        return "T"
    return None


def format_args(name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, str]:
    """The non-tensor arguments of an op call, as short texts (``index`` for getitem)."""
    formatted: dict[str, str] = {}
    if name in ("getitem", "setitem") and len(args) > 1:
        index = args[1] if isinstance(args[1], tuple) else (args[1],)
        parts = [format_value(v) for v in index]
        formatted["index"] = "[" + ", ".join(p if p is not None else "?" for p in parts) + "]"
        return formatted
    formatters = _FORMATTERS
    for i, value in enumerate(args):
        formatter = formatters.get(type(value))
        if formatter is not None:
            text = formatter(value)
            if text is not None and text not in ("[]", "()"):
                formatted[f"arg{i}"] = text
    for key, value in kwargs.items():
        formatter = formatters.get(type(value))
        if formatter is not None:
            text = formatter(value)
            if text is not None:
                formatted[key] = text
    return formatted


def function_body(func: types.FunctionType) -> types.FunctionType:
    """A private copy of a torch Python function that skips its ``has_torch_function`` entry
    check, so the tracer can run its body with the mode active and see its inner ops. The
    copy has its own globals; torch itself is not changed."""
    names = dict(func.__globals__)
    for check in ("has_torch_function", "has_torch_function_unary",
                  "has_torch_function_variadic"):
        if check in names:
            names[check] = _never
    body = types.FunctionType(func.__code__, names, func.__name__, func.__defaults__,
                              func.__closure__)
    body.__kwdefaults__ = func.__kwdefaults__
    return body


def argument_names(function: Callable[..., Any]) -> list[str]:
    """Names of a function's positional parameters, ``self`` left out."""
    try:
        parameters = inspect.signature(function).parameters.values()
    except (TypeError, ValueError):
        return []
    names = [p.name for p in parameters
             if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    return names[1:] if names[:1] == ["self"] else names


def _never(*_: Any, **__: Any) -> bool:
    return False


class _AtenRecorder(TorchDispatchMode):
    """With ``aten=True``: records the ATen ops under each torch-level op as nodes."""

    def __init__(self, recorder: Recorder) -> None:
        super().__init__()
        self.recorder = recorder
        self.active = False

    def __torch_dispatch__(self, func: Any, types: Any, args: tuple[Any, ...] = (),
                           kwargs: dict[str, Any] | None = None) -> Any:
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        if self.active:
            self.active = False
            try:
                self.recorder.record_aten(func, args, kwargs, out)
            finally:
                self.active = True
        return out


class Recorder(TorchFunctionMode):
    """Collects modules, nodes, tensors and edges while the model runs."""

    def __init__(self, root: torch.nn.Module | None, root_name: str, options: TraceOptions,
                 values: ConcreteValues | None) -> None:
        super().__init__()
        self.options = options
        self.values = values  # None: real tensors, no meta rules
        self.modules: dict[str, ModuleCall] = {}
        self.nodes: dict[str, Node] = {}
        self.tensors: dict[str, Tensor] = {}
        self.edges: list[Edge] = []
        self.call_modules: dict[str, Any] = {}  # module object of each ModuleCall
        self.sources = SourceIndex()
        self._token = object()
        self._infos: dict[Any, OpInfo] = {}
        self._dtypes: dict[torch.dtype, str] = {}
        self._bodies: dict[Any, types.FunctionType] = {}
        self._root_module = root
        self._root_entered = False
        self._paths: dict[int, str] | None = None
        self._external_paths: set[str] = set()
        self._calls_per_path: dict[str, int] = {}
        self._latest_call: dict[str, str] = {}
        self._param_names: dict[int, str] | None = None
        self._buffer_names: dict[int, str] = {}
        self._fixed_tensors: dict[int, str] = {}  # parameters/buffers drawn as nodes
        self._params_read: set[int] = set()
        self._argument_names: dict[type, list[str]] = {}
        self.input_names: dict[str, dict[str, str]] = {}  # module call -> tensor id -> name
        self.root = self._new_module(root_name, "", None, root)
        self._stack: list[str] = [self.root]
        self._stack_objects: list[Any] = [root]
        self._function_depth = 0
        self._opaque_node: str | None = None
        self._opaque_module: Any = None
        self._opaque_depth = 0
        self.opaque_paths: set[str] = set()  # modules drawn as one op node (module_depth)
        self._flop_counter = FlopCounter()
        self._dispatch_flops: dict[tuple[Any, ...], int] = {}  # see _counted
        self._flops = 0
        self._aten: _AtenRecorder | None = _AtenRecorder(self) if options.aten else None
        # cached meta outputs skip the kernel: only without autograd, and not for ATen recording
        self._results = values.results if (values is not None and options.no_grad
                                           and not options.aten) else None
        self.current_op: str | None = None
        self.failed_at: tuple[str, str, SourceLocation | None] | None = None

    # -- module hierarchy ---------------------------------------------------------------
    def _new_module(self, cls: str, path: str, parent: str | None, module: Any,
                    kind: str = "module") -> str:
        module_id = f"m{len(self.modules)}"
        call_index = self._calls_per_path.get(path, 0) if kind == "module" else 0
        if kind == "module":
            self._calls_per_path[path] = call_index + 1
            self._latest_call[path] = module_id
        self.modules[module_id] = ModuleCall(
            id=module_id, path=path, cls=cls, parent=parent, call_index=call_index,
            kind=kind,  # type: ignore[arg-type]
        )
        self.call_modules[module_id] = module
        if parent is not None:
            self.modules[parent].children.append(module_id)
        return module_id

    def _index_model(self) -> None:
        """Paths of modules and names of parameters and buffers, by object id (one walk)."""
        self._paths, self._param_names = {}, {}
        if self._root_module is None:
            return
        stack: list[tuple[str, torch.nn.Module]] = [("", self._root_module)]
        while stack:
            path, module = stack.pop()
            if id(module) in self._paths:
                continue
            self._paths[id(module)] = path
            prefix = path + "." if path else ""
            for name, param in module._parameters.items():
                if param is not None:
                    self._param_names.setdefault(id(param), prefix + name)
            for name, buffer in module._buffers.items():
                if buffer is not None:
                    self._buffer_names.setdefault(id(buffer), prefix + name)
            stack.extend((prefix + name, child)
                         for name, child in reversed(module._modules.items())
                         if child is not None)

    def _path_of(self, module: torch.nn.Module) -> str:
        if self._paths is None:
            self._index_model()
        path = self._paths.get(id(module))  # type: ignore[union-attr]
        if path is None:  # a module outside the root's tree: named after its class
            path = type(module).__name__
            index = 1
            while path in self._external_paths:
                index += 1
                path = f"{type(module).__name__}#{index}"
            self._external_paths.add(path)
            for name, sub in module.named_modules(remove_duplicate=False):
                self._paths.setdefault(id(sub), f"{path}.{name}" if name else path)  # type: ignore[union-attr]
        return path

    def enter_module(self, module: torch.nn.Module, args: tuple[Any, ...]) -> None:
        if self._opaque_depth:
            self._opaque_depth += 1
            return
        if module is self._root_module and not self._root_entered:
            self._root_entered = True
            self._describe(self.root, module)
            self._record_inputs(self.root, module, args)
            return
        path = self._path_of(module)
        depth = len(self._stack)
        limit = self.options.module_depth
        if limit is not None and depth > limit:
            self._enter_opaque(module, path, args)
            return
        module_id = self._new_module(type(module).__name__, path, self._stack[-1], module)
        self._describe(module_id, module)
        self._record_inputs(module_id, module, args)
        self._stack.append(module_id)
        self._stack_objects.append(module)

    def exit_module(self, module: torch.nn.Module, args: tuple[Any, ...],
                    kwargs: dict[str, Any], output: Any = None) -> None:
        if self._opaque_depth:
            self._opaque_depth -= 1
            if self._opaque_depth == 0:
                self._exit_opaque(kwargs, output)
            return
        objects = self._stack_objects
        for index in range(len(objects) - 1, -1, -1):
            if objects[index] is module:
                break
        else:
            return
        call = self.modules[self._stack[index]]
        if kwargs:
            names = self.input_names.setdefault(call.id, {})
            for key, value in kwargs.items():
                for tensor_id in self._refs(tensors_in((value,), {})):
                    if tensor_id not in call.inputs:
                        call.inputs.append(tensor_id)
                        names[tensor_id] = key
        if output is not None:
            call.outputs = self._refs(tensors_out(output))
        if index == 0:
            return  # the root: it stays on the stack
        del self._stack[index:]
        del objects[index:]

    def _record_inputs(self, module_id: str, module: torch.nn.Module,
                       args: tuple[Any, ...]) -> None:
        names = self._argument_names.get(type(module))
        if names is None:
            names = self._argument_names[type(module)] = argument_names(type(module).forward)
        refs: list[str] = []
        named: dict[str, str] = {}
        for position, value in enumerate(args):
            for tensor_id in self._refs(tensors_in((value,), {})):
                if tensor_id not in refs:
                    refs.append(tensor_id)
                    named[tensor_id] = names[position] if position < len(names) else \
                        f"arg{position}"
        self.modules[module_id].inputs = refs
        if named:
            self.input_names[module_id] = named

    def _describe(self, module_id: str, module: torch.nn.Module) -> None:
        call = self.modules[module_id]
        try:
            call.extra_repr = module.extra_repr()
        except Exception:  # a broken extra_repr must not break the trace
            call.extra_repr = ""
        call.source = self.sources.class_span(type(module))

    def _enter_opaque(self, module: torch.nn.Module, path: str, args: tuple[Any, ...]) -> None:
        self.opaque_paths.add(path)
        cls = type(module).__name__
        node_id = self._add_node("op", cls, "module", self._stack[-1])
        node = self.nodes[node_id]
        node.args = {"path": path}
        node.source = self.sources.call_site(sys._getframe(1))
        self._connect(node, tensors_in(args, {}))
        self._opaque_node, self._opaque_module, self._opaque_depth = node_id, module, 1

    def _exit_opaque(self, kwargs: dict[str, Any], output: Any) -> None:
        node = self.nodes[self._opaque_node]  # type: ignore[index]
        if kwargs:
            self._connect(node, tensors_in((), kwargs))
        for value in tensors_out(output):
            node.outputs.append(self._register(value, node.id))
        self._opaque_node = self._opaque_module = None

    # -- tensors ------------------------------------------------------------------------
    def _register(self, value: torch.Tensor, producer: str | None) -> str:
        tensor_id = f"t{len(self.tensors)}"
        dtype = self._dtypes.get(value.dtype)
        if dtype is None:
            dtype = self._dtypes[value.dtype] = str(value.dtype).removeprefix("torch.")
        self.tensors[tensor_id] = Tensor(tensor_id, list(value.shape), dtype,
                                         "meta" if value.is_meta else value.device.type,
                                         producer)
        try:
            setattr(value, REF_ATTRIBUTE, (self._token, tensor_id))
        except (AttributeError, RuntimeError):  # a tensor type without attributes
            self._fixed_tensors[id(value)] = tensor_id
        return tensor_id

    def register_source(self, value: torch.Tensor, kind: str, name: str) -> str:
        """A source node (an input, say) producing ``value``, in the current group."""
        node_id = self._add_node(kind, name, "io", self._stack[-1])
        tensor_id = self._register(value, node_id)
        self.nodes[node_id].outputs.append(tensor_id)
        return tensor_id

    def release(self) -> None:
        """Let go of what was recorded, which the graph owns now. A lazy import inside torch
        during the trace (its meta kernels import ``torch._dynamo`` on first use) leaves a
        reference cycle through the frames that ran it, ours included, which keeps this
        recorder alive until the next garbage collection: without this, the unfolded graph
        (millions of objects for 671B) would stay with it, and that collection would scan it
        all."""
        self.modules, self.nodes, self.tensors, self.edges = {}, {}, {}, []
        self.call_modules, self.input_names = {}, {}
        self._fixed_tensors, self._params_read, self._results = {}, set(), None
        if self.values is not None:
            self.values.results = MetaResults()

    def forget(self, value: torch.Tensor) -> None:
        """Drop the id attribute from a tensor handed back to the caller."""
        ref = getattr(value, REF_ATTRIBUTE, None)
        if ref is not None and ref[0] is self._token:
            with contextlib.suppress(AttributeError):
                delattr(value, REF_ATTRIBUTE)

    def ref(self, value: torch.Tensor) -> str | None:
        """The id of a recorded tensor, or None (parameters, unknown tensors)."""
        found = getattr(value, REF_ATTRIBUTE, None)
        if found is not None and found[0] is self._token:
            return found[1]
        return self._fixed_tensors.get(id(value))

    def _refs(self, values: list[torch.Tensor]) -> list[str]:
        refs: list[str] = []
        for value in values:
            tensor_id = self.ref(value)
            if tensor_id is not None and tensor_id not in refs:
                refs.append(tensor_id)
        return refs

    def _parameter_name(self, value: torch.Tensor) -> str | None:
        if self._param_names is None:
            self._index_model()
        return self._param_names.get(id(value))  # type: ignore[union-attr]

    def _unknown_tensor(self, value: torch.Tensor, node: Node) -> str | None:
        """A tensor with no producer: a parameter (listed on the node, or drawn as a node),
        a buffer or a constant (drawn as a source node at its first use)."""
        name = self._parameter_name(value)
        if name is not None:
            node.params.append(name)
            if id(value) not in self._params_read:  # an op's parameters: those it reads first
                self._params_read.add(id(value))
                node.stats.params += value.numel()
                node.stats.activated_params = node.stats.params
            if self.options.parameters != "nodes":
                return None
            kind = "parameter"
        else:
            buffer_name = self._buffer_names.get(id(value))
            # tensors reached through a live module (buffers, cached tensors) are keyed by id;
            # anything else (a tensor made outside the forward) carries the attribute
            kind, name = ("buffer", buffer_name) if buffer_name is not None else ("constant",
                                                                                  "constant")
        owner = name.rpartition(".")[0] if kind != "constant" else None
        parent = self._latest_call.get(owner, self._stack[-1]) if owner is not None \
            else self._stack[-1]
        source_id = self._add_node(kind, name.rpartition(".")[2] if kind != "constant" else name,
                                   "io", parent)
        tensor_id = self._register(value, source_id)
        if kind != "constant":
            self._fixed_tensors[id(value)] = tensor_id
        self.nodes[source_id].outputs.append(tensor_id)
        return tensor_id

    # -- nodes --------------------------------------------------------------------------
    def _add_node(self, kind: str, name: str, category: str, parent: str) -> str:
        node_id = f"n{len(self.nodes)}"
        self.nodes[node_id] = Node(node_id, kind, name, category, parent)  # type: ignore[arg-type]
        self.modules[parent].children.append(node_id)
        return node_id

    def _connect(self, node: Node, values: list[torch.Tensor]) -> None:
        inputs, tensors, edges, token = node.inputs, self.tensors, self.edges, self._token
        for value in values:
            found = getattr(value, REF_ATTRIBUTE, None)  # self.ref(value), inlined: every op
            if found is not None and found[0] is token:
                tensor_id = found[1]
            else:
                tensor_id = self._fixed_tensors.get(id(value))
                if tensor_id is None:
                    tensor_id = self._unknown_tensor(value, node)
                    if tensor_id is None:
                        continue
            if tensor_id in inputs:
                continue
            inputs.append(tensor_id)
            producer = tensors[tensor_id].producer
            if producer is not None:
                edges.append(Edge(producer, node.id, tensor_id))

    # -- ops ----------------------------------------------------------------------------
    def __torch_function__(self, func: Callable[..., Any], types: Any,
                           args: tuple[Any, ...] = (), kwargs: dict[str, Any] | None = None
                           ) -> Any:
        if kwargs is None:
            kwargs = {}
        info = self._infos.get(func)
        if info is None:
            info = self._infos[func] = OpInfo.of(func)
        if info.passthrough:
            try:
                return func(*args, **kwargs)
            except Exception:  # .item() of a meta tensor, say: name it, not the op before
                if self.failed_at is None:
                    self.failed_at = (self._stack[-1], info.name,
                                      self.sources.call_site(sys._getframe(1)))
                raise
        if info.python and self._function_depth < self.options.trace_depth:
            return self._descend(info, func, args, kwargs)
        tensors = tensors_in(args, kwargs)
        self.current_op = info.name
        aten = self._aten is not None and not self._opaque_depth
        group = self._open_group(info.name, "function") if aten else None
        try:
            result = self._execute(info, func, args, kwargs, tensors)
        except Exception:
            if self.failed_at is None:
                self.failed_at = (self._stack[-1], info.name,
                                  self.sources.call_site(sys._getframe(1)))
            raise
        finally:
            if group is not None:
                self._close_group(group)
        if group is not None:
            self._finish_aten_group(group, info, args, kwargs, tensors, result)
        elif self._opaque_depth:
            self._record_opaque(info, args, tensors, result)
        else:
            self._record(info, args, kwargs, tensors, result, sys._getframe(1))
        return result

    def _execute(self, info: OpInfo, func: Any, args: tuple[Any, ...], kwargs: dict[str, Any],
                 tensors: list[torch.Tensor]) -> Any:
        self._flops = 0
        if self.values is not None:
            return self.values.run(info.name, func, args, kwargs, tensors, self._call)
        return self._call(func, args, kwargs)

    def _call(self, func: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        """Run the op, counting its FLOPs (added up if the meta rules call it twice)."""
        info = self._infos.get(func)
        kind = info.flops if info is not None else ""
        if self._aten is not None and not self._opaque_depth:
            self._aten.active = True
            try:
                return func(*args, **kwargs)
            finally:
                self._aten.active = False
        key = None
        results = self._results
        if results is not None and info is not None and info.cacheable:
            key = results.key(func, args, kwargs)
            if key is not None:
                hit = results.get(key)
                if hit is not None:
                    self._flops += hit[1]
                    return hit[0]
        in_place_key = None
        if results is not None and info is not None and info.in_place:
            # y[idx] += ...: 15,000 meta add_ in a 671B trace, each returning its target as is
            in_place_key = results.key_in_place(func, args, kwargs)
            if in_place_key is not None:
                known = results.in_place.get(in_place_key)
                if known is not None:
                    results.hits += 1
                    self._flops += known
                    return args[0]
                before = metadata(args[0])
        flops = 0
        if kind == "dispatch":
            result, flops = self._counted(func, args, kwargs)
        else:
            result = func(*args, **kwargs)
            if kind == "linear":
                x = args[0] if args else kwargs["input"]
                weight = args[1] if len(args) > 1 else kwargs["weight"]
                flops = linear_flops(x.shape, weight.shape)
            elif kind == "custom":
                flops = op_flops(func, args, kwargs, result)
        self._flops += flops
        if key is not None:
            results.put(key, result, flops, tensors_in(args, kwargs))  # type: ignore[union-attr]
        elif in_place_key is not None and result is args[0] and metadata(result) == before:
            results.in_place[in_place_key] = flops  # type: ignore[union-attr]
        return result

    def _counted(self, func: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
                 ) -> tuple[Any, int]:
        """Run an op whose FLOPs torch counts per ATen op, and its FLOPs. Counting runs every
        ATen op inside through a Python dispatch mode (twelve attention layers: 350 round
        trips), and the count depends on shapes only, so each call signature is counted
        once and later calls run at full speed."""
        described = call_signature(func, args, kwargs)
        known = self._dispatch_flops.get(described[0]) if described is not None else None
        if known is not None:
            return func(*args, **kwargs), known
        counter = self._flop_counter
        counter.flops = 0
        with counter:
            result = func(*args, **kwargs)
        if described is not None:
            self._dispatch_flops[described[0]] = counter.flops
        return result, counter.flops

    def _record(self, info: OpInfo, args: tuple[Any, ...], kwargs: dict[str, Any],
                tensors: list[torch.Tensor], result: Any, frame: Any) -> None:
        outputs = tensors_out(result)
        mutated: list[torch.Tensor] = []
        if info.mutates == "self" and args and isinstance(args[0], torch.Tensor):
            mutated.append(args[0])
        elif info.mutates == "collective" and args:
            mutated.extend(tensors_out(args[0]))
        if kwargs and kwargs.get("out") is not None:
            mutated.extend(tensors_out(kwargs["out"]))
        fresh: list[torch.Tensor] = []
        same: list[torch.Tensor] = []
        for value in outputs:  # loops, not any(): this runs for every op
            for written in mutated:
                if value is written:
                    break
            else:
                for read in tensors:
                    if value is read:
                        same.append(value)
                        break
                else:
                    fresh.append(value)
        if not fresh and not mutated:
            return  # a query, or an op that returned its input unchanged (x.float() of float)
        nodes, parent = self.nodes, self._stack[-1]
        node_id = f"n{len(nodes)}"
        node = nodes[node_id] = Node(node_id, "op", info.name, info.category, parent,
                                     args=format_args(info.name, args, kwargs),
                                     source=self.sources.call_site(frame,
                                                                   self._function_depth > 0))
        self.modules[parent].children.append(node_id)
        self._connect(node, tensors)
        outputs_ids = node.outputs
        size = 0
        for value in fresh:
            outputs_ids.append(self._register(value, node_id))
            if not info.view:
                size += value.numel() * value.element_size()
        for value in mutated:
            outputs_ids.append(self._register(value, node.id))
            base = value._base
            if base is not None and self.ref(base) is not None:
                outputs_ids.append(self._register(base, node.id))
        for value in same:
            tensor_id = self.ref(value)
            if tensor_id is not None and tensor_id not in outputs_ids:
                outputs_ids.append(tensor_id)
        node.stats.flops = self._flops
        node.stats.activation_bytes = size

    def _record_opaque(self, info: OpInfo, args: tuple[Any, ...], tensors: list[torch.Tensor],
                       result: Any) -> None:
        """Inside a module drawn as one node: add up its cost; writes into outside tensors
        become new versions produced by that node."""
        node = self.nodes[self._opaque_node]  # type: ignore[index]
        node.stats.flops += self._flops
        if not info.view:
            node.stats.activation_bytes += sum(
                v.numel() * v.element_size() for v in tensors_out(result)
                if not any(v is t for t in tensors))
        if info.mutates:
            targets = [args[0]] if info.mutates == "self" else tensors_out(args[0])
            for value in targets:
                if isinstance(value, torch.Tensor) and self.ref(value) is not None:
                    node.outputs.append(self._register(value, node.id))

    # -- groups: torch functions traced into, ATen drill-down ---------------------------
    def _open_group(self, name: str, kind: str) -> str:
        parent = self.modules[self._stack[-1]]
        group = self._new_module(name, parent.path, parent.id, None, kind)
        self._stack.append(group)
        self._stack_objects.append(None)
        return group

    def _close_group(self, group: str) -> None:
        index = self._stack.index(group)
        del self._stack[index:]
        del self._stack_objects[index:]

    def _descend(self, info: OpInfo, func: Any, args: tuple[Any, ...],
                 kwargs: dict[str, Any]) -> Any:
        body = self._bodies.get(func)
        if body is None:
            body = self._bodies[func] = function_body(func)
        group = self._open_group(info.name, "function")
        self.modules[group].source = self.sources.class_span(func)
        self._function_depth += 1
        try:
            with self:
                result = body(*args, **kwargs)
        finally:
            self._function_depth -= 1
            self._close_group(group)
        call = self.modules[group]
        call.inputs = self._refs(tensors_in(args, kwargs))
        call.outputs = self._refs(tensors_out(result))
        if not call.children:
            self._drop_empty_group(group)
        return result

    def _drop_empty_group(self, group: str) -> None:
        call = self.modules.pop(group)
        self.modules[call.parent].children.remove(group)  # type: ignore[index]
        del self.call_modules[group]

    def _finish_aten_group(self, group: str, info: OpInfo, args: tuple[Any, ...],
                           kwargs: dict[str, Any], tensors: list[torch.Tensor],
                           result: Any) -> None:
        call = self.modules[group]
        if not call.children:
            self._drop_empty_group(group)
            self._record(info, args, kwargs, tensors, result, sys._getframe(2))
            return
        last = self.nodes.get(call.children[-1])
        for value in tensors_out(result):  # values the meta rules replaced
            if self.ref(value) is None and last is not None:
                last.outputs.append(self._register(value, last.id))
        call.inputs = self._refs(tensors)
        call.outputs = self._refs(tensors_out(result))

    def record_aten(self, func: Any, args: tuple[Any, ...], kwargs: dict[str, Any],
                    out: Any) -> None:
        name = str(func.overloadpacket).split(".")[-1] if hasattr(func, "overloadpacket") \
            else str(func)
        namespace = func.namespace if hasattr(func, "namespace") else "aten"
        tensors = tensors_in(args, kwargs)
        outputs = tensors_out(out)
        node = self.nodes[self._add_node("op", f"{namespace}::{name}", category_of(name),
                                         self._stack[-1])]
        self._connect(node, tensors)
        node.args = format_args(name, args, kwargs)
        size = 0
        view = getattr(func, "is_view", False)  # aliases its input: no new memory
        for value in outputs:
            node.outputs.append(self._register(value, node.id))
            if not view and not any(value is t for t in tensors):
                size += value.numel() * value.element_size()
        node.stats.flops = op_flops(func, args, kwargs, out)
        node.stats.activation_bytes = size
