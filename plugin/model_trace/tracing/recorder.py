"""The recorder: module calls from global forward hooks, ops from a ``TorchFunctionMode``.

Nothing in torch is patched. Every op call goes through ``Recorder.__torch_function__``, which
runs it (``OpRunner``: under the meta-trace rules of ``concrete`` when tracing on the meta
device, FLOPs counted), then adds a ``Node``, its output ``Tensor``s and the ``Edge``s from the
producers of its inputs to the ``GraphBuilder``.

This is the hot path of a trace (a quarter of a million op calls for DeepSeek-V3 671B): the
per-op work is a cached ``OpInfo`` lookup, a short scan of the arguments, one ``Node`` and
cached source locations.
"""

from __future__ import annotations

import contextlib
import sys
import types
import weakref
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch.overrides import TorchFunctionMode

from model_trace.graph import ModuleCall, Node, SourceLocation, SourceSpan, Stats
from model_trace.tracing.arguments import (
    bytes_of,
    format_args,
    shares_memory,
    tensors_in,
    tensors_out,
)
from model_trace.tracing.assumptions import VALUE_READS, AssumptionLog
from model_trace.tracing.builder import GraphBuilder
from model_trace.tracing.concrete import ConcreteValues
from model_trace.tracing.flops import op_cost
from model_trace.tracing.known_values import known
from model_trace.tracing.op_info import OpInfo, OpInfos, argument_names, function_body
from model_trace.tracing.op_runner import AtenRecording, OpRunner
from model_trace.tracing.op_table import category_of
from model_trace.tracing.options import TraceOptions
from model_trace.tracing.replay import Replayer
from model_trace.tracing.route_rule import ForcedRouting
from model_trace.tracing.selections import SliceTracker
from model_trace.tracing.source import SourceIndex
from model_trace.tracing.structures import named_tensors


def _written(info: OpInfo, args: tuple[Any, ...], kwargs: dict[str, Any]
             ) -> list[torch.Tensor]:
    """The tensors an op writes into: its first argument (in place, a collective), ``out``."""
    mutated: list[torch.Tensor] = []
    if info.mutates == "self" and args and isinstance(args[0], torch.Tensor):
        mutated.append(args[0])
    elif info.mutates == "collective" and args:
        mutated.extend(tensors_out(args[0]))
    if kwargs and kwargs.get("out") is not None:
        mutated.extend(tensors_out(kwargs["out"]))
    return mutated


_FORWARD_ARGUMENTS: weakref.WeakKeyDictionary[Any, list[str]] = weakref.WeakKeyDictionary()
"""The names of each ``forward``'s positional arguments, for every trace of this process:
``inspect.signature`` takes tens of microseconds a class, as much as recording a small
model's ops of that class."""


def _forward_arguments(forward: Callable[..., Any]) -> list[str]:
    """``argument_names(forward)``, found once per process for a function."""
    names = _FORWARD_ARGUMENTS.get(forward)
    if names is None:
        names = argument_names(forward)
        with contextlib.suppress(TypeError):  # not weakly referable (a builtin): not kept
            _FORWARD_ARGUMENTS[forward] = names
    return names


@dataclass(frozen=True)
class FailurePoint:
    """Where a forward failed: the module call it was in, the op and the model's line."""

    call: ModuleCall | None
    op: str
    source: SourceLocation | None


class Recorder(TorchFunctionMode):
    """Records one forward pass into a ``GraphBuilder`` (``self.builder``)."""

    def __init__(self, root: torch.nn.Module | None, root_name: str, options: TraceOptions,
                 values: ConcreteValues | ForcedRouting | None, early_fold: bool = False
                 ) -> None:
        super().__init__()
        self.options = options
        self.values = values  # the op rules: meta (ConcreteValues), forced routing, or None
        self.assumptions = AssumptionLog()
        self.uncounted: dict[str, int] = {}  # op without a FLOP formula -> calls
        self._slices = SliceTracker()
        # ids of the tensors whose values are assumed -> where they were assumed
        self._assumed_tensors: dict[str, str] = {}
        self.builder = GraphBuilder(root, root_name, options.parameters)
        self.sources = SourceIndex()
        self.opaque_paths: set[str] = set()  # modules drawn as one op node (module_depth)
        self._infos = OpInfos()
        self._bodies: dict[Any, types.FunctionType] = {}
        self._root_module = root
        self._root_entered = False
        # per module class: where it is defined, the names of its forward's arguments, and
        # whether it has its own extra_repr
        self._classes: dict[type, tuple[SourceSpan | None, list[str], bool]] = {}
        self._function_depth = 0
        self._opaque_node: str | None = None
        self._opaque_depth = 0
        self._aten = AtenRecording(self._record_aten) if options.aten else None
        self._runner = OpRunner(values, self._infos, self._aten, cache_results=options.no_grad)
        self._current_op: str | None = None
        self._failed_at: tuple[str, str, SourceLocation | None] | None = None
        self._observe = options.observe
        # early folding: repeated calls replayed (a meta trace that folds, see ``replay``)
        self.replayer = Replayer(self) if early_fold and values is not None else None
        self.resumed: tuple[str, torch.nn.Module] | None = None
        """A replayed call (id, module) whose next call records into it (``replay``)."""

    # -- the recording, as the caller sees it -------------------------------------------
    @contextlib.contextmanager
    def recording(self) -> Iterator[None]:
        """Hooks and modes on, for the forward only; all removed on exit, even on error."""
        hooks = torch.nn.modules.module
        pre = hooks.register_module_forward_pre_hook(self._enter_module)
        post = hooks.register_module_forward_hook(self._exit_module, with_kwargs=True,
                                                  always_call=True)
        try:
            with contextlib.ExitStack() as stack:
                if self.options.no_grad:
                    stack.enter_context(torch.no_grad())
                if self._aten is not None:
                    stack.enter_context(self._aten)
                stack.enter_context(self)
                yield
        finally:
            pre.remove()
            post.remove()
            if self.replayer is not None:
                self.replayer.finish()

    def record_input(self, label: str, value: torch.Tensor, assumed: bool = False) -> None:
        """An input node for ``value``, unless it is already known (a parameter passed in);
        ``assumed``: its values stand in for ones the caller did not give (token ids given
        on the meta device)."""
        builder = self.builder
        if builder.ref(value) is not None:
            return
        tensor_id = builder.register_source(value, "input", label)
        if assumed:
            node = builder.nodes[builder.tensors[tensor_id].producer]  # type: ignore[index]
            node.assumed = "input"
            self._assumed_tensors[tensor_id] = self.assumptions.add("input", label, "",
                                                                    None).label()

    def record_outputs(self, result: Any) -> None:
        """One output node per tensor the forward returned."""
        builder = self.builder
        for label, tensor in named_tensors(result, "output"):
            node_id = builder.add_node("output", label, "io", builder.root)
            builder.connect(builder.nodes[node_id], [tensor])

    def failure(self) -> FailurePoint:
        """Where the forward failed (the first op that raised, or the op it was in)."""
        if self._failed_at is not None:
            group, op, source = self._failed_at
        else:
            group, op, source = self.builder.stack[-1], self._current_op or "?", None
        return FailurePoint(self.builder.modules.get(group), op, source)

    @property
    def failed(self) -> bool:
        return self._failed_at is not None

    # -- what early folding (``replay``) asks ------------------------------------------
    def replay_watch(self) -> tuple[int, ...]:
        """Counts that grow when an op does what a replay could not repeat: an assumption
        made or followed, a stacked-expert slice followed. (Known float values may be
        carried inside a replayed call: its key holds its inputs' known values, and a tensor
        it hands out with known values makes it unreplayable, ``Replayer._escape``.)"""
        return (sum(a.count for a in self.assumptions.entries.values()),
                len(self._assumed_tensors), len(self._slices.tracked),
                len(self._slices.pending))

    def is_assumed(self, tensor_id: str) -> bool:
        """Whether a recorded tensor's values were assumed (``assumptions``)."""
        return tensor_id in self._assumed_tensors

    def release(self, handed_back: Any) -> None:
        """Let go of what was recorded, which the graph owns now, and drop the id attribute
        from the tensors in ``handed_back`` (the caller's inputs and outputs). A lazy import
        inside torch during the trace (its meta kernels import ``torch._dynamo`` on first
        use) leaves a reference cycle through the frames that ran it, ours included, which
        keeps this recorder alive until the next garbage collection: without this, the
        unfolded graph (millions of objects for 671B) would stay with it, and that
        collection would scan it all."""
        for _, tensor in named_tensors(handed_back, ""):
            self.builder.forget(tensor)
        self.builder.release()
        self._runner = OpRunner(None, {})
        self._assumed_tensors = {}
        if self.values is not None:
            self.values.release()

    # -- module hierarchy ---------------------------------------------------------------
    def _enter_module(self, module: torch.nn.Module, args: tuple[Any, ...]) -> None:
        if self._opaque_depth:
            self._opaque_depth += 1
            return
        builder = self.builder
        if module is self._root_module and not self._root_entered:
            self._root_entered = True
            self._describe(builder.modules[builder.root], module, args)
            if self.replayer is not None:
                self.replayer.entered(module)
            return
        if self.resumed is not None and self.resumed[1] is module:
            builder.stack.append(self.resumed[0])  # a replayed call recorded after all
            builder.stack_objects.append(module)
            self.resumed = None
            return
        path = builder.path_of(module)
        limit = self.options.module_depth
        if limit is not None and len(builder.stack) > limit:
            self._enter_opaque(module, path, args)
            return
        cls = type(module)
        call = builder.new_module(cls.__name__, path, builder.stack[-1], module)
        self._describe(call, module, args)
        builder.stack.append(call.id)
        builder.stack_objects.append(module)
        if self.replayer is not None:
            self.replayer.entered(module)

    def _exit_module(self, module: torch.nn.Module, args: tuple[Any, ...],
                     kwargs: dict[str, Any], output: Any = None) -> None:
        if self._opaque_depth:
            self._opaque_depth -= 1
            if self._opaque_depth == 0:
                self._exit_opaque(kwargs, output)
            return
        builder = self.builder
        objects = builder.stack_objects
        top = index = len(objects) - 1
        if objects[top] is not module:  # a call that ended without its inner ones
            for index in range(top - 1, -1, -1):
                if objects[index] is module:
                    break
            else:
                return
        call = builder.modules[builder.stack[index]]
        if kwargs:
            names = builder.input_names.setdefault(call.id, {})
            for key, value in kwargs.items():
                for tensor_id in builder.refs(tensors_in((value,), {})):
                    if tensor_id not in call.inputs:
                        call.inputs.append(tensor_id)
                        names[tensor_id] = key
        if output is not None:
            call.outputs = builder.refs(tensors_out(output))
        if index == 0:
            return  # the root: it stays on the stack
        if self.replayer is not None:
            for ended in objects[index:]:
                self.replayer.exited(ended)
        del builder.stack[index:]
        del objects[index:]

    def _describe(self, call: ModuleCall, module: torch.nn.Module, args: tuple[Any, ...]
                  ) -> None:
        """A module call's ``extra_repr``, class source and named inputs. ``extra_repr`` runs
        with torch functions off: it is the model's description, not its forward, and each
        tensor attribute it reads (``weight.shape``) would go through this mode (3 us)."""
        cls = type(module)
        known = self._classes.get(cls)
        if known is None:
            known = self._classes[cls] = (self.sources.class_span(cls),
                                          _forward_arguments(cls.forward),
                                          cls.extra_repr is not torch.nn.Module.extra_repr)
        call.source, names, described = known
        if described or "extra_repr" in module.__dict__:  # else nn.Module's: no text
            try:
                with torch._C.DisableTorchFunction():
                    call.extra_repr = module.extra_repr()
            except Exception:  # a broken extra_repr must not break the trace
                call.extra_repr = ""
        builder = self.builder
        refs: list[str] = []
        named: dict[str, str] = {}
        for position, value in enumerate(args):
            for tensor in (value,) if isinstance(value, torch.Tensor) else \
                    tensors_in((value,), {}):
                tensor_id = builder.ref(tensor)
                if tensor_id is not None and tensor_id not in refs:
                    refs.append(tensor_id)
                    named[tensor_id] = names[position] if position < len(names) else \
                        f"arg{position}"
        call.inputs = refs
        if named:
            builder.input_names[call.id] = named

    def _enter_opaque(self, module: torch.nn.Module, path: str, args: tuple[Any, ...]) -> None:
        self.opaque_paths.add(path)
        builder = self.builder
        node = builder.nodes[builder.add_node("op", type(module).__name__, "module",
                                              builder.stack[-1])]
        node.args = {"path": path}
        node.source = self.sources.call_site(sys._getframe(1))
        builder.connect(node, tensors_in(args, {}))
        self._opaque_node, self._opaque_depth = node.id, 1
        if self._aten is not None:
            self._aten.paused = True

    def _exit_opaque(self, kwargs: dict[str, Any], output: Any) -> None:
        builder = self.builder
        node = builder.nodes[self._opaque_node]  # type: ignore[index]
        if kwargs:
            builder.connect(node, tensors_in((), kwargs))
        for value in tensors_out(output):
            node.outputs.append(builder.register(value, node.id))
        self._opaque_node = None
        if self._aten is not None:
            self._aten.paused = False

    # -- ops ----------------------------------------------------------------------------
    def __torch_function__(self, func: Callable[..., Any], types: Any,
                           args: tuple[Any, ...] = (), kwargs: dict[str, Any] | None = None
                           ) -> Any:
        if kwargs is None:
            kwargs = {}
        info = self._infos[func]
        if info.passthrough:
            if info.name in VALUE_READS and args:
                if self._assumed_tensors:
                    self._check_read(info.name, args)
                values = known(args[0]) if isinstance(args[0], torch.Tensor) else None
                if values is not None:  # a meta tensor whose values are known: read them
                    args = (values, *args[1:])
            try:
                return func(*args, **kwargs)
            except Exception:  # .item() of a meta tensor, say: name it, not the op before
                self._note_failure(info.name)
                raise
        if info.python and self._function_depth < self.options.trace_depth:
            return self._descend(info, func, args, kwargs)
        tensors = tensors_in(args, kwargs)
        self._current_op = info.name
        aten = self._aten is not None and not self._opaque_depth
        group = self._open_group(info.name, "function") if aten else None
        try:
            result = self._runner.run(info, func, args, kwargs, tensors)
        except Exception:
            self._note_failure(info.name)
            raise
        finally:
            if group is not None:
                self._close_group(group)
        node: Node | None = None
        if group is not None:
            self._finish_aten_group(group, info, args, kwargs, tensors, result)
        elif self._opaque_depth:
            node = self._record_opaque(info, args, tensors, result)
        else:
            node = self._record(info, args, kwargs, tensors, result, sys._getframe(1))
        if self._observe is not None and node is not None:
            self._observe(info.name, args, kwargs, result, self.builder.modules[node.parent].path)
        values = self.values
        if values is not None and values.assumed:
            self._assumed(values.assumed, info.name, node, sys._getframe(1))
            values.assumed = ""
        elif self._assumed_tensors and node is not None:
            assumed = self._assumed_tensors
            for tensor_id in node.inputs:  # a loop, not any(): this runs for every op
                if tensor_id in assumed:
                    self._follow_assumed(info, node, assumed[tensor_id])
                    break
        return result

    def _note_failure(self, op: str) -> None:
        if self._failed_at is None:
            self._failed_at = (self.builder.stack[-1], op,
                               self.sources.call_site(sys._getframe(2)))

    def _record(self, info: OpInfo, args: tuple[Any, ...], kwargs: dict[str, Any],
                tensors: list[torch.Tensor], result: Any, frame: Any) -> Node | None:
        mutated = _written(info, args, kwargs) if info.mutates or kwargs else ()
        same: list[torch.Tensor] = []
        if not mutated and isinstance(result, torch.Tensor):  # most ops: one new tensor
            for read in tensors:  # loops, not any(): this runs for every op
                if result is read:
                    return None  # an op that returned its input unchanged
            fresh = [result]
        else:
            fresh = []
            for value in tensors_out(result):
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
                return None  # a query, or an op that returned its input unchanged
        builder = self.builder
        parent = builder.stack[-1]
        node_id = f"n{builder.next_node}"
        builder.next_node += 1
        runner = self._runner
        stats = Stats(0, runner.flops)
        node = builder.nodes[node_id] = Node(
            node_id, "op", info.name, info.category, parent, [], [],
            format_args(info.name, args, kwargs),
            self.sources.call_site(frame, self._function_depth > 0), stats)
        builder.modules[parent].children.append(node_id)
        reads = builder.param_reads
        if reads:
            reads.clear()  # left by a node recorded elsewhere (an input, an ATen op)
        view = builder.reading_view = info.role == "view"
        builder.connect(node, tensors)
        outputs_ids = node.outputs
        register = builder.register
        for value in fresh:
            outputs_ids.append(register(value, node_id))
        if runner.from_cache:  # new tensors made from the cache of meta outputs: no views
            written = fresh
        else:  # outputs sharing an input's memory (views, a slicing getitem, not a reshape
            written = []  # that had to copy) write nothing
            for value in fresh:
                shared = shares_memory(value, tensors)
                if not (shared or (shared is None and view)):
                    written.append(value)
        stats.activation_bytes = bytes_of(written)
        read = 0
        if mutated:
            for value in mutated:
                if self.replayer is not None:
                    self.replayer.written(builder.ref(value))
                outputs_ids.append(register(value, node_id))
                base = value._base
                if base is not None and builder.ref(base) is not None:
                    outputs_ids.append(register(base, node_id))
            read = bytes_of([value for value in tensors  # its inputs but those it writes into
                             if not any(value is target for target in mutated)])
        elif written:  # an op that only made views reads nothing
            read = bytes_of(tensors)
        stats.read_bytes = read
        for value in same:
            tensor_id = builder.ref(value)
            if tensor_id is not None and tensor_id not in outputs_ids:
                outputs_ids.append(tensor_id)
        if runner.missing:
            self._uncounted(node, runner.missing)
        slices = self._slices
        if reads or slices.following:
            slices.observe(info, node, args, kwargs, reads, builder.tensors, builder.nodes)
            reads.clear()
        return node

    def _uncounted(self, node: Node, missing: tuple[str, ...]) -> None:
        """Name on the node, and count, the ops that computed floats without a formula."""
        for name in missing:
            if name not in node.uncounted_flops:
                node.uncounted_flops.append(name)
            self.uncounted[name] = self.uncounted.get(name, 0) + 1

    def _record_opaque(self, info: OpInfo, args: tuple[Any, ...], tensors: list[torch.Tensor],
                       result: Any) -> Node:
        """Inside a module drawn as one node: add up its cost; writes into outside tensors
        become new versions produced by that node."""
        builder = self.builder
        node = builder.nodes[self._opaque_node]  # type: ignore[index]
        node.stats.flops += self._runner.flops
        if self._runner.missing:
            self._uncounted(node, self._runner.missing)
        if not info.view:
            node.stats.read_bytes += bytes_of(tensors)
            node.stats.activation_bytes += bytes_of([v for v in tensors_out(result)
                                                     if not any(v is t for t in tensors)])
        if info.mutates:
            targets = [args[0]] if info.mutates == "self" else tensors_out(args[0])
            for value in targets:
                if isinstance(value, torch.Tensor) and builder.ref(value) is not None:
                    node.outputs.append(builder.register(value, node.id))
        return node

    # -- assumed values -----------------------------------------------------------------
    def _assumed(self, kind: str, op: str, node: Node | None, frame: Any) -> None:
        """The op's values were assumed (``kind``): mark its node and its concrete outputs."""
        source = node.source if node is not None else self.sources.call_site(frame)
        module = self.builder.modules[self.builder.stack[-1]].path
        origin = self.assumptions.add(kind, op, module, source).label()
        if node is None:
            return
        node.assumed = kind
        tensors = self.builder.tensors
        self._assumed_tensors.update((t, origin) for t in node.outputs
                                     if tensors[t].device != "meta")

    def _follow_assumed(self, info: OpInfo, node: Node, origin: str) -> None:
        """The node read assumed values (first assumed at ``origin``): values computed from
        them are assumed too; rows of a meta tensor gathered by an assumed mask have an
        assumed shape (integer indices decide only which rows, a meta tensor's rows have no
        values, and a write through a mask keeps its target's shape)."""
        assumed = self._assumed_tensors
        tensors = self.builder.tensors
        if info.role == "gather" and any(tensors[t].dtype == "bool" for t in node.inputs
                                         if t in assumed) and any(
                tensors[t].device == "meta" for t in node.outputs):
            node.assumed = "rows"  # a mask's count of True values decides the shape
            self.assumptions.add("rows", info.name, self.builder.modules[node.parent].path,
                                 node.source, origin)
            return
        assumed.update((t, origin) for t in node.outputs if tensors[t].device != "meta")

    def _check_read(self, op: str, args: tuple[Any, ...]) -> None:
        """Python reads a tensor's values (``if``, ``.item()``): a branch, if they were
        assumed; its producer is marked."""
        value = args[0] if args else None
        if not isinstance(value, torch.Tensor):
            return
        builder = self.builder
        tensor_id = builder.ref(value)
        origin = self._assumed_tensors.get(tensor_id) if tensor_id is not None else None
        if origin is None:
            return
        source = self.sources.call_site(sys._getframe(2))
        self.assumptions.add("branch", op, builder.modules[builder.stack[-1]].path, source,
                             origin)
        producer = builder.tensors[tensor_id].producer
        node = builder.nodes.get(producer) if producer is not None else None
        if node is not None and node.kind == "op":
            node.assumed = node.assumed or "branch"

    # -- groups: torch functions traced into, ATen drill-down ---------------------------
    def _open_group(self, name: str, kind: str) -> str:
        builder = self.builder
        parent = builder.modules[builder.stack[-1]]
        group = builder.new_module(name, parent.path, parent.id, None, kind).id
        builder.stack.append(group)
        builder.stack_objects.append(None)
        return group

    def _close_group(self, group: str) -> None:
        stack = self.builder.stack
        index = stack.index(group)
        del stack[index:]
        del self.builder.stack_objects[index:]

    def _descend(self, info: OpInfo, func: Any, args: tuple[Any, ...],
                 kwargs: dict[str, Any]) -> Any:
        body = self._bodies.get(func)
        if body is None:
            body = self._bodies[func] = function_body(func)
        group = self._open_group(info.name, "function")
        builder = self.builder
        builder.modules[group].source = self.sources.class_span(func)
        self._function_depth += 1
        try:
            with self:
                result = body(*args, **kwargs)
        finally:
            self._function_depth -= 1
            self._close_group(group)
        call = builder.modules[group]
        call.inputs = builder.refs(tensors_in(args, kwargs))
        call.outputs = builder.refs(tensors_out(result))
        if not call.children:
            builder.drop_module(group)
        return result

    def _finish_aten_group(self, group: str, info: OpInfo, args: tuple[Any, ...],
                           kwargs: dict[str, Any], tensors: list[torch.Tensor],
                           result: Any) -> None:
        builder = self.builder
        call = builder.modules[group]
        if not call.children:
            builder.drop_module(group)
            self._record(info, args, kwargs, tensors, result, sys._getframe(2))
            return
        nodes = builder.nodes
        last = next((nodes[c] for c in reversed(call.children)  # not a source node drawn
                     if c in nodes and nodes[c].kind == "op"), None)  # for an input
        for value in tensors_out(result):  # values the meta rules replaced
            if builder.ref(value) is None and last is not None:
                last.outputs.append(builder.register(value, last.id))
        call.inputs = builder.refs(tensors)
        call.outputs = builder.refs(tensors_out(result))

    def _record_aten(self, func: Any, args: tuple[Any, ...], kwargs: dict[str, Any],
                     out: Any) -> None:
        name = str(func.overloadpacket).split(".")[-1] if hasattr(func, "overloadpacket") \
            else str(func)
        namespace = func.namespace if hasattr(func, "namespace") else "aten"
        tensors = tensors_in(args, kwargs)
        outputs = tensors_out(out)
        builder = self.builder
        node = builder.nodes[builder.add_node("op", f"{namespace}::{name}", category_of(name),
                                              builder.stack[-1])]
        builder.connect(node, tensors)
        node.args = format_args(name, args, kwargs)
        view = getattr(func, "is_view", False)  # aliases its input: no new memory
        for value in outputs:
            node.outputs.append(builder.register(value, node.id))
        node.stats.flops, missing = op_cost(func, args, kwargs, out)
        node.stats.activation_bytes = 0 if view else bytes_of(
            [value for value in outputs if not any(value is t for t in tensors)])
        node.stats.read_bytes = 0 if view else bytes_of(tensors)
        if missing:
            self._uncounted(node, missing)
