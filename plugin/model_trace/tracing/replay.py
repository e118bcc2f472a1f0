"""Early folding: a module call that repeats one already recorded is replayed, not run.

A mixture-of-experts model calls thousands of experts and dozens of layers that a folded graph
draws once each; recording all of them is most of a trace's time. So while tracing, a call of
a module that has siblings built alike (equal structure keys, ``model_index``) is looked up by
its *call key*: the module's structure key, the parent call, the arguments (meta tensors by
shape, stride, dtype and the values they carry where those are known, as a causal mask's;
concrete tensors and other values by value), the routing state and torch's global modes.
It must be the module's first call, with none of its submodules called yet. The first call
with a key is recorded as usual, and becomes the key's *template* if it proves replayable:

- it read nothing but its arguments and its own parameters (no tensor from elsewhere, no
  buffer or constant), wrote into no tensor that existed before it, changed no module state
  except buffers it set to new tensors (a KV cache), and left the CPU generator as it was;
- it made no routing decision, or made them under a policy whose answers depend on their
  arguments only (``RoutingPolicy.replay_state``);
- what it returns, and the buffers it sets, are new tensors (not views) or its arguments.

A later call with the same key is *replayed*: its outputs are made from the template's (meta
tensors from their metadata, concrete ones copied), its buffers are set and its routing
decisions counted, and it becomes a *stub*: a ModuleCall without children that reserves the
ids its recording would have taken (so every later id is what it would have been), whose
incoming edges point at the ids its inner nodes would have had, and whose outputs name their
would-be producers. ``folding`` drops stubs inside folded runs as it would drop the recorded
calls, seeing through the reserved ids into the template, and ``stats`` gives a stub its
template's figures; a stub the fold would keep is recorded after the forward
(``ReplayedCalls.record_survivors``), as at its own time. The folded graph is the same as
without early folding.

What a call's key cannot show is assumed not to matter: module code that reads globals (other
than torch's modes) or changes state outside the module it belongs to. ``early_fold=False``
turns early folding off.
"""

from __future__ import annotations

import bisect
import contextlib
import functools
import itertools
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch

from model_trace.graph import Edge, Node
from model_trace.tracing.known_values import known
from model_trace.tracing.model_index import NO_KEY
from model_trace.tracing.source import PASS_THROUGH

if TYPE_CHECKING:
    from model_trace.tracing.recorder import Recorder

MAX_CONCRETE_ELEMENTS = 1 << 16
"""The largest concrete tensor a call key compares by value, or a replay copies."""
_PLAIN = (int, float, bool, str, type(None), torch.dtype, torch.device)
_UNSEEN = object()
_NOT_REPLAYED = object()


@dataclass(frozen=True, slots=True)
class Escape:
    """A tensor a recorded call handed out (an output, or a buffer it set): how to make it
    again, and which ids it had, relative to the call's first ids."""

    tensor: int
    producer: int
    meta: tuple[tuple[int, ...], tuple[int, ...], torch.dtype] | None = None
    value: torch.Tensor | None = None  # a concrete tensor: a copy of its values


@dataclass(frozen=True, slots=True)
class Argument:
    """An output that is one of the call's tensor arguments (by position)."""

    position: int


@dataclass(slots=True)
class Template:
    """A recorded call that later calls with its key replay."""

    call: str
    path: str
    input_ids: list[str]
    node_base: int
    node_count: int
    tensor_base: int
    tensor_count: int
    module_base: int
    module_count: int
    edge_count: int
    """Edges its recording has (those of calls replayed inside it included)."""
    boundary: list[tuple[int, int]]
    """(relative id of the consuming node, argument position) of each edge coming in."""
    result: Any
    """The returned structure, with ``Escape`` and ``Argument`` for its tensors."""
    buffers: list[tuple[int, str, Escape]]
    """(position in the module's subtree, name, value) of each buffer it set."""
    calls: tuple[tuple[str, int, int], ...]
    """(path below the call, first call index, calls) of every module called inside."""
    call_counts: dict[str, int]
    """How many times each module below the call (by path) has been called once it ends."""
    read: frozenset[str]
    """Parameters it read, by their path below the call."""
    decisions: int
    uncounted: dict[str, int]
    """Ops without a FLOP formula it ran (``recorder.uncounted``), by name."""
    routing_after: tuple[Any, Any]


@dataclass(slots=True)
class Stub:
    """A replayed call: its ModuleCall id and what it stands for."""

    call: str
    path: str
    template: Template
    node_base: int
    tensor_base: int
    module_base: int
    edge_position: int
    """Index in the edge list of the first edge it added (its incoming edges)."""
    emitted: int
    escaped: int
    """Tensors it registered (outputs and buffers)."""
    input_ids: list[str]
    module: torch.nn.Module
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    modes: tuple[Any, ...]
    routing_before: tuple[Any, Any]

    @property
    def hidden_edges(self) -> int:
        """Edges its recording would have had that the graph does not hold."""
        return self.template.edge_count - self.emitted


@dataclass(slots=True)
class _Window:
    """A call being recorded that may become a template."""

    call: Any
    module: torch.nn.Module
    tensors: list[torch.Tensor]
    input_ids: list[str]
    node_base: int
    tensor_base: int
    module_base: int
    edge_base: int
    nodes_before: int
    modules_before: int
    stubs_before: int
    decisions: int
    uncounted: dict[str, int]
    watched: tuple[int, ...]
    generator: torch.Tensor
    state: list[tuple[Any, ...]]
    impure: bool = False


class Replayer:
    """Early folding during one trace (see the module docstring)."""

    def __init__(self, recorder: Recorder) -> None:
        assert recorder.values is not None
        self.recorder = recorder
        self.builder = recorder.builder
        self.values = recorder.values
        self.routing = recorder.values.routing
        self.templates: dict[tuple[Any, ...], Template | None] = {}
        self.stubs: list[Stub] = []
        self.recording = True
        """False: every call runs (after the forward, and while a stub is re-recorded)."""
        self._windows: list[_Window] = []
        self._candidates: dict[int, list[torch.nn.Module]] = {}
        self._installed: dict[int, list[tuple[torch.nn.Module, Any]]] = {}

    # -- which calls may be replayed: siblings built alike -------------------------------
    def entered(self, module: torch.nn.Module) -> None:
        """A call of ``module`` began: let its children built alike be replayed."""
        if not self.recording:
            return
        candidates = self._candidates.get(id(module))
        if candidates is None:
            with torch._C.DisableTorchFunction():  # reading parameters' shapes: no ops
                candidates = self._candidates[id(module)] = self._find_candidates(module)
        if not candidates or id(module) in self._installed:
            return
        installed = []
        for child in candidates:
            if "forward" not in child.__dict__:
                override = functools.partial(self._forward, child)
                child.__dict__["forward"] = override  # shadows the class's forward
                installed.append((child, override))
        self._installed[id(module)] = installed

    def exited(self, module: torch.nn.Module) -> None:
        """A call of ``module`` ended: its children run their own forward again."""
        self._uninstall(id(module))

    def finish(self) -> None:
        """The forward ended (or failed): remove every override, replay no more."""
        self.recording = False
        for module_id in list(self._installed):
            self._uninstall(module_id)

    def _uninstall(self, module_id: int) -> None:
        for child, override in self._installed.pop(module_id, ()):
            if child.__dict__.get("forward") is override:
                del child.__dict__["forward"]

    def _find_candidates(self, module: torch.nn.Module) -> list[torch.nn.Module]:
        """The modules ``module`` may call (its children, and theirs through containers
        such as ``ModuleList``) that share their structure key with another of them."""
        index = self.builder.index
        reachable: list[torch.nn.Module] = []
        stack = [c for c in reversed(module._modules.values()) if c is not None]
        while stack:
            child = stack.pop()
            if type(child).forward is torch.nn.Module.forward:  # a container: not called
                stack.extend(c for c in reversed(child._modules.values()) if c is not None)
            else:
                reachable.append(child)
        keys = [index.key(child) for child in reachable]
        counts: dict[int, int] = {}
        for key in keys:
            counts[key] = counts.get(key, 0) + 1
        return [child for child, key in zip(reachable, keys, strict=True)
                if key != NO_KEY and counts[key] > 1]

    # -- the override: record, replay, or run ------------------------------------------
    def _forward(self, module: torch.nn.Module, *args: Any, **kwargs: Any) -> Any:
        forward = type(module).forward
        builder = self.builder
        if not self.recording or builder.stack_objects[-1] is not module:
            return forward(module, *args, **kwargs)
        call = builder.modules[builder.stack[-1]]
        tensors: list[torch.Tensor] = []
        with torch._C.DisableTorchFunction():
            key = self._call_key(module, call, args, kwargs, tensors)
            template = self.templates.get(key, _UNSEEN) if key is not None else None
            if template is not None and template is not _UNSEEN:
                replayed = self._replay(template, call, module, args, kwargs, tensors, key)
                if replayed is not _NOT_REPLAYED:
                    return replayed
            window = self._open(call, module, tensors) if template is _UNSEEN else None
        if window is None:
            return forward(module, *args, **kwargs)
        self._windows.append(window)
        try:
            result = forward(module, *args, **kwargs)
        finally:
            self._windows.pop()
        with torch._C.DisableTorchFunction():
            self.templates[key] = self._close(window, result)  # type: ignore[index]
        return result

    def _watched(self) -> tuple[int, ...]:
        return self.recorder.replay_watch()

    def written(self, tensor_id: str | None) -> None:
        """An op wrote into the tensor ``tensor_id`` in place: a call being recorded that
        began after that tensor was made changed something outside itself."""
        if tensor_id is None or not self._windows:
            return
        number = int(tensor_id[1:])
        for window in reversed(self._windows):
            if number >= window.tensor_base:
                break
            window.impure = True

    # -- call keys ---------------------------------------------------------------------
    def _call_key(self, module: torch.nn.Module, call: Any, args: tuple[Any, ...],
                  kwargs: dict[str, Any], tensors: list[torch.Tensor]
                  ) -> tuple[Any, ...] | None:
        structure = self.builder.index.key(module)
        if structure == NO_KEY or call.call_index:
            return None
        parts: list[Any] = [structure, call.parent, *_modes(), self.routing.state()]
        if not self._describe(args, parts, tensors):
            return None
        if kwargs:
            parts.append(tuple(kwargs))
            if not self._describe(tuple(kwargs.values()), parts, tensors):
                return None
        return tuple(parts)

    def _describe(self, values: tuple[Any, ...] | list[Any], parts: list[Any],
                  tensors: list[torch.Tensor]) -> bool:
        """Append a description of ``values`` to ``parts`` (tensors by metadata or value,
        each tensor once: a repeat names the first); False if one cannot be described."""
        for value in values:
            if isinstance(value, torch.Tensor):
                for position, seen in enumerate(tensors):
                    if seen is value:
                        parts.append(("same", position))
                        break
                else:
                    tensor_id = self.builder.ref(value)
                    if tensor_id is None or self.recorder.is_assumed(tensor_id):
                        return False  # a parameter or a constant, or values not followed
                    tensors.append(value)
                    values = known(value)
                    if value.is_meta:
                        parts.append((type(value), value.shape, value.stride(), value.dtype,
                                      value.storage_offset(), value.requires_grad,
                                      None if values is None else _bytes(values)))
                    elif value.numel() <= MAX_CONCRETE_ELEMENTS and value.device.type == "cpu":
                        parts.append((type(value), value.shape, value.dtype, _bytes(value)))
                    else:
                        return False
            elif isinstance(value, _PLAIN):
                parts.append((type(value), value))
            elif isinstance(value, tuple | list):
                parts.append((type(value), len(value)))
                if not self._describe(value, parts, tensors):
                    return False
            elif isinstance(value, slice):
                parts.append((slice, value.start, value.stop, value.step))
            else:
                return False
        return True

    # -- recording a template ----------------------------------------------------------
    def _open(self, call: Any, module: torch.nn.Module, tensors: list[torch.Tensor]
              ) -> _Window:
        builder = self.builder
        return _Window(
            call=call, module=module, tensors=tensors,
            input_ids=[builder.ref(t) for t in tensors],  # type: ignore[misc]
            node_base=builder.next_node, tensor_base=builder.next_tensor,
            module_base=builder.next_module, edge_base=len(builder.edges),
            nodes_before=len(builder.nodes), modules_before=len(builder.modules),
            stubs_before=len(self.stubs), decisions=self.routing.decisions,
            uncounted=dict(self.recorder.uncounted), watched=self._watched(),
            generator=torch.default_generator.get_state(),
            state=[_module_state(m) for m in builder.index.subtree(module)])

    def _close(self, window: _Window, result: Any) -> Template | None:
        """The template a recorded call makes, or None if it cannot be replayed."""
        if window.impure:
            return None
        builder = self.builder
        call, prefix = window.call, window.call.path + "."
        inputs = {tensor_id: k for k, tensor_id in enumerate(window.input_ids)}
        read: set[str] = set()
        for node in itertools.islice(reversed(builder.nodes.values()),
                                     len(builder.nodes) - window.nodes_before):
            if node.kind != "op" or not _reads_inside(node.inputs, inputs, window.tensor_base):
                return None  # a source node: it read a buffer or a constant
            if node.selections:
                return None  # slices of stacked experts: their statistics are the node's
            for name in node.params:
                if not name.startswith(prefix):
                    return None
                read.add(name[len(prefix):])
        calls: dict[str, list[int]] = {}
        for inner in itertools.islice(reversed(builder.modules.values()),
                                      len(builder.modules) - window.modules_before):
            if inner.kind != "module" or not inner.path.startswith(prefix):
                return None
            _count_call(calls, inner.path[len(prefix):], inner.call_index, 1)
        hidden_edges = 0
        for stub in self.stubs[window.stubs_before:]:
            if not _reads_inside(stub.input_ids, inputs, window.tensor_base):
                return None
            below = stub.path[len(prefix):] + "."
            read.update(below + name for name in stub.template.read)
            for suffix, first, count in stub.template.calls:
                _count_call(calls, below + suffix, first, count)
            hidden_edges += stub.hidden_edges
        if any(first for first, _ in calls.values()):
            return None  # a submodule was called before it: its statistics are that call's
        boundary = []
        edges = builder.edges
        for edge in itertools.islice(edges, window.edge_base, None):
            if int(edge.src[1:]) < window.node_base:
                position = inputs.get(edge.tensor)
                if position is None:
                    return None
                boundary.append((int(edge.dst[1:]) - window.node_base, position))
        decisions = self.routing.decisions - window.decisions
        if decisions and self.routing.policy.replay_state() is None:
            return None
        if self._watched() != window.watched:
            return None  # it assumed values, or followed stacked experts
        if not torch.equal(torch.default_generator.get_state(), window.generator):
            return None
        escapes: dict[str, Escape | Argument] = {}
        subtree = builder.index.subtree(window.module)
        buffers = []
        for position, (module, before) in enumerate(zip(subtree, window.state, strict=True)):
            after = _module_state(module)
            if after == before:
                continue
            if after[:4] != before[:4] or after[5] != before[5]:
                return None  # attributes, parameters, buffer names or submodules changed
            for name, value in module._buffers.items():
                if value is not None and id(value) not in before[4]:
                    escape = self._escape(value, window, escapes)
                    if not isinstance(escape, Escape):
                        return None
                    buffers.append((position, name, escape))
        pattern = self._pattern(result, window, escapes)
        if pattern is _NOT_REPLAYED:
            return None
        return Template(
            call=call.id, path=call.path, input_ids=window.input_ids,
            node_base=window.node_base, node_count=builder.next_node - window.node_base,
            tensor_base=window.tensor_base,
            tensor_count=builder.next_tensor - window.tensor_base,
            module_base=window.module_base,
            module_count=builder.next_module - window.module_base,
            edge_count=len(edges) - window.edge_base + hidden_edges, boundary=boundary,
            result=pattern, buffers=buffers,
            calls=tuple((s, first, count) for s, (first, count) in calls.items()),
            call_counts={s: first + count for s, (first, count) in calls.items()},
            read=frozenset(read), decisions=decisions,
            uncounted={name: count - window.uncounted.get(name, 0)
                       for name, count in self.recorder.uncounted.items()
                       if count != window.uncounted.get(name, 0)},
            routing_after=self.routing.saved())

    def _escape(self, value: torch.Tensor, window: _Window,
                escapes: dict[str, Escape | Argument]) -> Escape | Argument | None:
        """How to make ``value`` again (a tensor the call hands out), or None."""
        tensor_id = self.builder.ref(value)
        if tensor_id is None:
            return None
        seen = escapes.get(tensor_id)
        if seen is not None:
            return seen
        number = int(tensor_id[1:])
        if number < window.tensor_base:
            position = next((k for k, t in enumerate(window.tensors) if t is value), None)
            return Argument(position) if position is not None else None
        producer = self.builder.tensors[tensor_id].producer
        if value._base is not None or producer is None or known(value) is not None:
            return None  # a view (a new tensor would lose what it views), or known values
        relative = (number - window.tensor_base, int(producer[1:]) - window.node_base)
        if value.is_meta:
            escape = Escape(*relative, meta=(tuple(value.shape), value.stride(), value.dtype))
        elif value.numel() <= MAX_CONCRETE_ELEMENTS:
            escape = Escape(*relative, value=value.clone())
        else:
            return None
        escapes[tensor_id] = escape
        return escape

    def _pattern(self, value: Any, window: _Window,
                 escapes: dict[str, Escape | Argument]) -> Any:
        """``value`` with each tensor replaced by how to make it again."""
        if isinstance(value, torch.Tensor):
            escape = self._escape(value, window, escapes)
            return escape if escape is not None else _NOT_REPLAYED
        if isinstance(value, _PLAIN):
            return value
        if isinstance(value, tuple | list):
            items = [self._pattern(v, window, escapes) for v in value]
            if any(item is _NOT_REPLAYED for item in items):
                return _NOT_REPLAYED
            if isinstance(value, list):
                return items
            return type(value)(*items) if hasattr(value, "_fields") else type(value)(items)
        if type(value) is dict:
            items = [self._pattern(v, window, escapes) for v in value.values()]
            if any(item is _NOT_REPLAYED for item in items):
                return _NOT_REPLAYED
            return dict(zip(value, items, strict=True))
        return _NOT_REPLAYED

    # -- replaying ---------------------------------------------------------------------
    def _replay(self, template: Template, call: Any, module: torch.nn.Module,
                args: tuple[Any, ...], kwargs: dict[str, Any], tensors: list[torch.Tensor],
                key: tuple[Any, ...]) -> Any:
        builder = self.builder
        prefix = call.path + "."
        calls = builder.calls_per_path
        for suffix, first, _ in template.calls:  # none of its submodules called yet
            if calls.get(prefix + suffix, 0) != first:
                return _NOT_REPLAYED
        builder.replayed[call.path] = template  # its submodule calls and parameter reads
        node_base, tensor_base = builder.next_node, builder.next_tensor
        builder.next_node += template.node_count
        builder.next_tensor += template.tensor_count
        module_base = builder.next_module
        builder.next_module += template.module_count
        input_ids = [builder.ref(t) for t in tensors]
        edges = builder.edges
        edge_position = len(edges)
        for relative, position in template.boundary:
            tensor_id = input_ids[position]
            producer = builder.tensors[tensor_id].producer  # type: ignore[index]
            if producer is not None:
                edges.append(Edge(producer, f"n{node_base + relative}", tensor_id))  # type: ignore[arg-type]
        routing, uncounted = self.routing, self.recorder.uncounted
        routing_before = routing.saved()
        routing.decisions += template.decisions
        for name, count in template.uncounted.items():
            uncounted[name] = uncounted.get(name, 0) + count
        routing.restore(template.routing_after)
        made: dict[int, torch.Tensor] = {}

        def make(escape: Escape | Argument) -> torch.Tensor:
            if isinstance(escape, Argument):
                return tensors[escape.position]
            found = made.get(id(escape))
            if found is None:
                if escape.meta is not None:
                    shape, stride, dtype = escape.meta
                    found = torch.empty_strided(shape, stride, dtype=dtype, device="meta")
                else:
                    found = escape.value.clone()  # type: ignore[union-attr]
                builder.register(found, f"n{node_base + escape.producer}",
                                 f"t{tensor_base + escape.tensor}")
                made[id(escape)] = found
            return found

        result = _rebuild(template.result, make)
        subtree = builder.index.subtree(module)
        for position, name, escape in template.buffers:
            subtree[position]._buffers[name] = make(escape)
        stub = Stub(call=call.id, path=call.path, template=template, node_base=node_base,
                    tensor_base=tensor_base, module_base=module_base,
                    edge_position=edge_position, emitted=len(edges) - edge_position,
                    escaped=len(made), input_ids=input_ids, module=module,  # type: ignore[arg-type]
                    args=args, kwargs=kwargs, modes=key[2:6], routing_before=routing_before)
        self.stubs.append(stub)
        return result


PASS_THROUGH.add(Replayer._forward.__code__)


def _modes() -> tuple[Any, ...]:
    """torch's global modes a forward may branch on."""
    return (torch.is_grad_enabled(), torch.is_inference_mode_enabled(),
            torch.get_default_dtype(), torch.is_autocast_enabled())


@contextlib.contextmanager
def _in_modes(modes: tuple[Any, ...]) -> Iterator[None]:
    grad, inference, dtype, autocast = modes
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.inference_mode(inference), torch.set_grad_enabled(grad), \
                torch.autocast("cpu", enabled=autocast):
            yield
    finally:
        torch.set_default_dtype(previous)


def _bytes(tensor: torch.Tensor) -> bytes:
    return tensor.detach().reshape(-1).contiguous().view(torch.uint8).numpy().tobytes()


def _module_state(module: torch.nn.Module) -> tuple[Any, ...]:
    """Identities of what a module holds: attributes, parameters, submodules, buffer names
    and buffers (ids, so comparing two states compares no tensors)."""
    return (tuple(map(id, module.__dict__.values())), tuple(module.__dict__),
            tuple(map(id, module._parameters.values())), tuple(module._buffers),
            tuple(map(id, module._buffers.values())), tuple(map(id, module._modules.values())))


def _reads_inside(tensor_ids: list[str], inputs: dict[str, int], first: int) -> bool:
    """Whether every tensor id is an argument or was made at number ``first`` or later."""
    for tensor_id in tensor_ids:
        if tensor_id not in inputs and int(tensor_id[1:]) < first:
            return False
    return True


def _count_call(calls: dict[str, list[int]], suffix: str, index: int, count: int) -> None:
    found = calls.get(suffix)
    if found is None:
        calls[suffix] = [index, count]
    else:
        found[0] = min(found[0], index)
        found[1] += count


def _rebuild(pattern: Any, make: Callable[[Any], torch.Tensor]) -> Any:
    if isinstance(pattern, Escape | Argument):
        return make(pattern)
    if isinstance(pattern, list):
        return [_rebuild(v, make) for v in pattern]
    if isinstance(pattern, tuple):
        items = [_rebuild(v, make) for v in pattern]
        return type(pattern)(*items) if hasattr(pattern, "_fields") else tuple(items)
    if isinstance(pattern, dict):
        return {k: _rebuild(v, make) for k, v in pattern.items()}
    return pattern


# -- after the forward: what the graph's passes need to know about stubs -----------------
class ReplayedCalls:
    """The stubs of a trace, for the passes that run on its graph (``stats``, ``sharing``,
    ``folding``): which call a reserved id lies in, and what it stands for there."""

    def __init__(self, stubs: list[Stub]) -> None:
        self.stubs: dict[str, Stub] = {stub.call: stub for stub in stubs}
        self._by_base: dict[str, tuple[list[int], list[Stub]]] = {}
        for kind, name in _KINDS.items():
            ordered = sorted(stubs, key=lambda s, n=name: getattr(s, f"{n}_base"))  # type: ignore[misc]
            self._by_base[kind] = ([getattr(s, f"{name}_base") for s in ordered], ordered)

    def __bool__(self) -> bool:
        return bool(self.stubs)

    def locate(self, item: str) -> tuple[Stub, str] | None:
        """The stub whose reserved ids hold ``item`` (a node or module call), and the id it
        stands for in the template's recording (which may lie in a stub again); None for any
        other id."""
        kind, digits = item[:1], item[1:]
        found = self._by_base.get(kind)
        if found is None or not digits.isdigit():
            return None
        bases, stubs = found
        index = bisect.bisect_right(bases, int(digits)) - 1
        if index < 0:
            return None
        stub, name = stubs[index], _KINDS[kind]
        offset = int(digits) - bases[index]
        if offset >= getattr(stub.template, f"{name}_count"):
            return None
        return stub, f"{kind}{getattr(stub.template, f'{name}_base') + offset}"

    def stub_of(self, item: str) -> str | None:
        """The stub call holding a reserved id (None for a recorded one)."""
        found = self.locate(item)
        return found[0].call if found is not None else None

    def node(self, nodes: dict[str, Node], item: str) -> Node | None:
        """The recorded node a reserved id stands for (through templates), or None."""
        while item not in nodes:
            found = self.locate(item)
            if found is None:
                return None
            item = found[1]
        return nodes[item]

    def stub_tensor(self, stub: Stub, tensor_id: str) -> str:
        """The stub's tensor that the template's ``tensor_id`` stands for."""
        template = stub.template
        return _same_tensor(tensor_id, (template.tensor_base, template.input_ids),
                            (stub.tensor_base, stub.input_ids), template.tensor_count)


def _same_tensor(tensor_id: str, source: tuple[int, list[str]], target: tuple[int, list[str]],
                 count: int) -> str:
    """The tensor of one recording (``target``: its first tensor id and its inputs) that
    ``tensor_id`` of another (``source``) stands for: a tensor either made, at the same offset,
    or was handed in, at the same place; any other tensor is the same in both."""
    (source_base, source_inputs), (target_base, target_inputs) = source, target
    if tensor_id[1:].isdigit():
        offset = int(tensor_id[1:]) - source_base
        if 0 <= offset < count:
            return f"t{target_base + offset}"
    if tensor_id in source_inputs:
        return target_inputs[source_inputs.index(tensor_id)]
    return tensor_id


_KINDS = {"n": "node", "m": "module"}
"""Id prefixes and the names of their counters: the items a fold places (a stub's tensors
are mapped by ``stub_tensor``)."""


def record_survivors(recorder: Recorder, stubs: list[Stub]) -> None:
    """Record each of ``stubs`` for real, as it would have been recorded at its own time:
    with the ids it reserved, its edges where its incoming edges were, and the routing and
    call counts of that time. Later stubs first, so edge positions stay valid."""
    builder = recorder.builder
    replayer = recorder.replayer
    assert replayer is not None
    for stub in sorted(stubs, key=lambda s: s.edge_position, reverse=True):
        saved_ids = (builder.next_node, builder.next_tensor, builder.next_module)
        saved_stack = (builder.stack, builder.stack_objects)
        routing = replayer.routing
        saved_routing = routing.saved()
        saved_counts = (routing.decisions, dict(recorder.uncounted))
        edges = builder.edges
        template = stub.template
        prefix = stub.path + "."
        saved_calls = {}
        for suffix, first, count in template.calls:  # counted as at the call's own time
            path = prefix + suffix
            saved_calls[path] = builder.calls_per_path.get(path, first + count)
            builder.calls_per_path[path] = first
        del builder.replayed[stub.path]
        subtree = builder.index.subtree(stub.module)
        for position, name, _ in template.buffers:
            subtree[position]._buffers[name] = None  # as before the call: no buffer yet
        chain = []
        current = builder.modules[stub.call].parent
        while current is not None:
            chain.append(current)
            current = builder.modules[current].parent
        chain.reverse()
        builder.stack = chain
        builder.stack_objects = [builder.call_modules[c] for c in chain]
        builder.next_node, builder.next_tensor = stub.node_base, stub.tensor_base
        builder.next_module = stub.module_base
        builder.edges = []
        routing.restore(stub.routing_before)
        recorder.resumed = (stub.call, stub.module)
        try:
            with recorder.recording(), _in_modes(stub.modes):
                stub.module(*stub.args, **stub.kwargs)  # through its hooks, as at the time
            inside = builder.edges
        finally:
            builder.edges = edges
            builder.next_node, builder.next_tensor, builder.next_module = saved_ids
            builder.stack, builder.stack_objects = saved_stack
            builder.calls_per_path.update(saved_calls)
            recorder.resumed = None
            routing.restore(saved_routing)
            routing.decisions = saved_counts[0]
            recorder.uncounted.clear()
            recorder.uncounted.update(saved_counts[1])
        edges[stub.edge_position:stub.edge_position + stub.emitted] = inside
        replayer.stubs.remove(stub)
    for items in (builder.modules, builder.nodes, builder.tensors):  # in id order again
        ordered = sorted(items.items(), key=lambda item: int(item[0][1:]))
        items.clear()
        items.update(ordered)
