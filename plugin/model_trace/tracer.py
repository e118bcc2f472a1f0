"""Record one forward pass as a ``Graph``: module calls from global forward hooks, ops from a
``TorchFunctionMode``. Nothing in torch is patched; hooks and the mode are removed on exit, even
when the forward raises.
"""

from __future__ import annotations

import inspect
import linecache
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch.overrides import TorchFunctionMode, resolve_name
from torch.utils._pytree import tree_flatten

from model_trace.errors import TraceError
from model_trace.graph import (
    Edge,
    Graph,
    ModuleCall,
    Node,
    SourceLocation,
    SourceSpan,
    Stats,
    Tensor,
)
from model_trace.op_categories import category_of

_TORCH_DIR = os.path.dirname(torch.__file__)
_TORCH_MODULES_DIR = os.path.join(_TORCH_DIR, "nn", "modules")
_OWN_DIR = os.path.dirname(__file__)

# Tensor methods that only read metadata; they return no tensor and draw nothing.
_METADATA_NAMES = frozenset(
    {"size", "dim", "numel", "stride", "is_contiguous", "data_ptr", "element_size",
     "is_floating_point", "is_complex", "get_device", "nelement", "ndimension", "__len__",
     "__bool__", "__format__", "__repr__", "__hash__", "__get__", "__set__"}
)


class _Recorder(TorchFunctionMode):
    """Collects modules, nodes, tensors and edges while the model runs."""

    def __init__(self, root: torch.nn.Module | None, root_name: str) -> None:
        super().__init__()
        self.modules: dict[str, ModuleCall] = {}
        self.nodes: dict[str, Node] = {}
        self.tensors: dict[str, Tensor] = {}
        self.edges: list[Edge] = []
        self._tensor_ids: dict[int, str] = {}
        self._alive: list[torch.Tensor] = []  # keeps id() of recorded tensors unique
        self._root_module = root
        self._paths: dict[int, str] = (
            {id(m): name for name, m in root.named_modules(remove_duplicate=False)}
            if root is not None
            else {}
        )
        self._calls_per_path: dict[str, int] = {}
        self._param_owner: dict[int, str] = {}
        self.root = self._new_module(root_name, "", None)
        self._stack: list[str] = [self.root]
        self._root_entered = False
        self._span_cache: dict[type, SourceSpan | None] = {}
        self.current_op: str | None = None
        self.failed_in: str | None = None

    # -- module hierarchy -------------------------------------------------------------
    def _new_module(self, cls: str, path: str, parent: str | None) -> str:
        module_id = f"m{len(self.modules)}"
        call_index = self._calls_per_path.get(path, 0)
        self._calls_per_path[path] = call_index + 1
        self.modules[module_id] = ModuleCall(
            id=module_id, path=path, cls=cls, parent=parent, call_index=call_index
        )
        if parent is not None:
            self.modules[parent].children.append(module_id)
        return module_id

    def enter_module(self, module: torch.nn.Module, *_: Any) -> None:
        if module is self._root_module and not self._root_entered:
            self._root_entered = True
            self._describe(self.root, module)
            return
        path = self._paths.get(id(module), type(module).__name__)
        module_id = self._new_module(type(module).__name__, path, self._stack[-1])
        self._describe(module_id, module)
        self._stack.append(module_id)

    def exit_module(self, module: torch.nn.Module, *_: Any) -> None:
        if module is self._root_module and len(self._stack) == 1:
            return
        if len(self._stack) > 1:
            self._stack.pop()

    def _describe(self, module_id: str, module: torch.nn.Module) -> None:
        call = self.modules[module_id]
        call.extra_repr = module.extra_repr()
        call.source = self._class_span(type(module))
        own = sum(p.numel() for p in module.parameters(recurse=False))
        call.stats.params = own if call.call_index == 0 else 0

    def _class_span(self, cls: type) -> SourceSpan | None:
        if cls not in self._span_cache:
            try:
                lines, start = inspect.getsourcelines(cls)
                file = _relative_source_path(inspect.getsourcefile(cls) or "")
                self._span_cache[cls] = SourceSpan(file, start, start + len(lines) - 1)
            except (OSError, TypeError):
                self._span_cache[cls] = None
        return self._span_cache[cls]

    # -- tensors ----------------------------------------------------------------------
    def register(self, value: torch.Tensor, producer: str | None) -> str:
        tensor_id = f"t{len(self.tensors)}"
        self.tensors[tensor_id] = Tensor(
            id=tensor_id,
            shape=list(value.shape),
            dtype=str(value.dtype).removeprefix("torch."),
            device=value.device.type,
            producer=producer,
        )
        self._tensor_ids[id(value)] = tensor_id
        self._alive.append(value)
        return tensor_id

    def add_leaf(self, kind: str, name: str, category: str) -> str:
        node_id = f"n{len(self.nodes)}"
        parent = self._stack[-1]
        self.nodes[node_id] = Node(id=node_id, kind=kind, name=name, category=category,  # type: ignore[arg-type]
                                   parent=parent)
        self.modules[parent].children.append(node_id)
        return node_id

    def connect(self, node_id: str, value: torch.Tensor) -> None:
        tensor_id = self._tensor_ids.get(id(value))
        if tensor_id is None:
            return  # parameters, buffers and tensors made outside the trace
        self.nodes[node_id].inputs.append(tensor_id)
        producer = self.tensors[tensor_id].producer
        if producer is not None:
            self.edges.append(Edge(src=producer, dst=node_id, tensor=tensor_id))

    # -- ops --------------------------------------------------------------------------
    def __torch_function__(
        self,
        func: Callable[..., Any],
        types: Any,
        args: tuple[Any, ...] = (),
        kwargs: dict[str, Any] | None = None,
    ) -> Any:
        kwargs = kwargs or {}
        name = _op_name(func)
        if name in _METADATA_NAMES:
            return func(*args, **kwargs)
        self.current_op = name
        try:
            result = func(*args, **kwargs)
        except Exception:
            self.failed_in = self.failed_in or self.modules[self._stack[-1]].path or "<root>"
            raise
        outputs = [v for v in tree_flatten(result)[0] if isinstance(v, torch.Tensor)]
        if not outputs:
            return result
        node_id = self.add_leaf("op", name, category_of(name))
        node = self.nodes[node_id]
        node.source = _caller_location()
        flat_args = tree_flatten((args, kwargs))[0]
        for value in flat_args:
            if isinstance(value, torch.Tensor):
                self.connect(node_id, value)
        node.args = _scalar_args(flat_args)
        for value in outputs:
            node.outputs.append(self.register(value, node_id))
        self.current_op = None
        return result


def _op_name(func: Callable[..., Any]) -> str:
    qualified = resolve_name(func) or getattr(func, "__name__", repr(func))
    short = qualified.rsplit(".", 1)[-1]
    if short.startswith("__i") and short.endswith("__"):
        return short[3:-2] + "_"
    if short.startswith("__") and short.endswith("__"):
        return short.strip("_")
    return short


def _scalar_args(values: list[Any]) -> dict[str, str]:
    scalars = [repr(v) for v in values if isinstance(v, int | float | bool | str) and v is not None]
    return {f"arg{i}": text for i, text in enumerate(scalars)}


def _relative_source_path(path: str) -> str:
    """A stable, machine-independent name for a source file: relative to its sys.path root."""
    path = os.path.abspath(path)
    roots = sorted((os.path.abspath(p) for p in sys.path if p), key=len, reverse=True)
    for root in roots:
        if path.startswith(root + os.sep):
            return os.path.relpath(path, root).replace(os.sep, "/")
    return os.path.basename(path)


def _caller_location() -> SourceLocation | None:
    """The innermost frame of model code that called the op.

    Model code is anything outside torch and model-trace, plus torch's own ``nn.modules`` (so an
    op inside ``nn.TransformerEncoderLayer`` points at that module's forward). The walk stops at
    model-trace's own frames, which sit below the traced forward.
    """
    frame = sys._getframe(2)
    while frame is not None:
        file = frame.f_code.co_filename
        if file.startswith(_OWN_DIR):
            return None
        in_torch = file.startswith(_TORCH_DIR) and not file.startswith(_TORCH_MODULES_DIR)
        if not in_torch and not file.startswith("<"):
            line = frame.f_lineno
            code = linecache.getline(file, line).strip()
            return SourceLocation(_relative_source_path(file), line, code)
        frame = frame.f_back  # type: ignore[assignment]
    return None


@contextmanager
def _module_hooks(recorder: _Recorder) -> Iterator[None]:
    pre = torch.nn.modules.module.register_module_forward_pre_hook(recorder.enter_module)
    post = torch.nn.modules.module.register_module_forward_hook(
        recorder.exit_module, always_call=True
    )
    try:
        yield
    finally:
        pre.remove()
        post.remove()


def trace(model: torch.nn.Module | Callable[..., Any], *args: Any, **kwargs: Any) -> Graph:
    """Run ``model(*args, **kwargs)`` once and return the recorded ``Graph``.

    Works for any ``nn.Module`` or plain function; tensors may live on the meta device. An
    exception in the forward is re-raised as ``TraceError`` naming the module path and op, with
    the partial graph attached as ``error.graph``.
    """
    root_module = model if isinstance(model, torch.nn.Module) else None
    root_name = type(model).__name__ if root_module is not None else _function_name(model)
    recorder = _Recorder(root_module, root_name)
    _record_inputs(recorder, args, kwargs)
    try:
        with _module_hooks(recorder), recorder:
            result = model(*args, **kwargs)
    except Exception as error:
        partial = _finish(recorder, model)
        where = recorder.failed_in or recorder.modules[recorder._stack[-1]].path or "<root>"
        op = recorder.current_op or "?"
        raise TraceError(
            f"forward failed in module '{where}' at op '{op}': {type(error).__name__}: {error}",
            graph=partial,
        ) from error
    _record_outputs(recorder, result)
    return _finish(recorder, model)


def _function_name(function: Callable[..., Any]) -> str:
    return getattr(function, "__qualname__", None) or type(function).__name__


def _record_inputs(recorder: _Recorder, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    named = [(f"input {i}", a) for i, a in enumerate(args)]
    named += [(f"input {k}", v) for k, v in sorted(kwargs.items())]
    for label, value in named:
        for tensor in (v for v in tree_flatten(value)[0] if isinstance(v, torch.Tensor)):
            node_id = recorder.add_leaf("input", label, "io")
            recorder.nodes[node_id].outputs.append(recorder.register(tensor, node_id))


def _record_outputs(recorder: _Recorder, result: Any) -> None:
    for tensor in (v for v in tree_flatten(result)[0] if isinstance(v, torch.Tensor)):
        node_id = recorder.add_leaf("output", "output", "io")
        recorder.connect(node_id, tensor)


def _finish(recorder: _Recorder, model: Any) -> Graph:
    graph = Graph(
        root=recorder.root,
        modules=recorder.modules,
        nodes=recorder.nodes,
        tensors=recorder.tensors,
        edges=recorder.edges,
        meta={
            "model": recorder.modules[recorder.root].cls,
            "torch": torch.__version__.split("+")[0],
        },
    )
    _roll_up_stats(graph)
    return graph


def _roll_up_stats(graph: Graph) -> None:
    """Sum node stats into every enclosing module, children before parents (iterative)."""
    for node in graph.nodes.values():
        graph.modules[node.parent].stats.add(node.stats)
    for module in reversed(graph.walk_modules()):
        if module.parent is not None:
            graph.modules[module.parent].stats.add(Stats(**vars(module.stats)))
