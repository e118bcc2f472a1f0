"""The graph as it grows during a trace: module calls, nodes, tensors and edges, and which
recorded tensor each live tensor object is.

Tensor identity: each recorded tensor object carries its id in an attribute (with this trace's
token, so a tensor left over from another trace is not mistaken for one of this trace). An op
that writes into a tensor in place gives it a new id, produced by that op, so later readers
link to the write. Parameters, buffers and tensors made outside the forward are looked up by
object identity among the model's parameters and buffers.
"""

from __future__ import annotations

import contextlib
from typing import Any

import torch

from model_trace.graph import Edge, Graph, ModuleCall, Node, Tensor
from model_trace.tracing.model_index import ModelIndex
from model_trace.tracing.options import ParameterDrawing
from model_trace.tracing.selections import PICKS_ROWS

REF_ATTRIBUTE = "_model_trace_ref"


class GraphBuilder:
    """Collects modules, nodes, tensors and edges; ``stack`` holds the ids of the calls the
    forward is inside (the root first), ``stack_objects`` their module objects."""

    def __init__(self, root: torch.nn.Module | None, root_name: str,
                 parameters: ParameterDrawing) -> None:
        self.modules: dict[str, ModuleCall] = {}
        self.nodes: dict[str, Node] = {}
        self.tensors: dict[str, Tensor] = {}
        self.edges: list[Edge] = []
        self.call_modules: dict[str, Any] = {}  # module object of each ModuleCall
        self.input_names: dict[str, dict[str, str]] = {}  # module call -> tensor id -> name
        self.parameters = parameters
        # the number in the next id of each kind: ids are never reused, and a replayed call
        # (``replay``) reserves the numbers its recording would have taken
        self.next_module = self.next_node = self.next_tensor = 0
        self.calls_per_path: dict[str, int] = {}
        self.replayed: dict[str, Any] = {}
        """Replayed calls by path (``replay``): the submodule calls and parameter reads they
        stand for (their ``Template``: ``call_counts``, ``read``)."""
        self._token = object()
        self._dtypes: dict[torch.dtype, str] = {}
        self._root_module = root
        self._index: ModelIndex | None = None
        self._latest_call: dict[str, str] = {}
        self._fixed_tensors: dict[int, str] = {}  # parameters/buffers drawn as nodes
        self.params_read: set[int] = set()  # parameters some op has read (their first reader
        # counts them in its stats)
        # parameters the current op read that may be stacked experts (see ``selections``):
        # those of three or more dimensions, and any when the op is a view (``reading_view``)
        # or picks rows of a table (``PICKS_ROWS``); every one drawn as a node, at its first
        # reader (the tracker keeps it for later views and row picks, which read its node)
        self.param_reads: list[tuple[str, torch.Tensor, str | None]] = []
        self.reading_view = False
        self.root = self.new_module(root_name, "", None, root).id
        self.stack: list[str] = [self.root]
        self.stack_objects: list[Any] = [root]

    @property
    def index(self) -> ModelIndex:
        """Paths, names and structure keys of the model's modules (one walk, on first use)."""
        if self._index is None:
            self._index = ModelIndex(self._root_module)
        return self._index

    def graph(self) -> Graph:
        """The recorded graph (sharing this builder's dicts, until ``release``)."""
        return Graph(root=self.root, modules=self.modules, nodes=self.nodes,
                     tensors=self.tensors, edges=self.edges)

    # -- module calls -------------------------------------------------------------------
    def new_module(self, cls: str, path: str, parent: str | None, module: Any,
                   kind: str = "module") -> ModuleCall:
        """A new call of the module at ``path`` (a torch function or loop for other
        ``kind``s), numbered among the calls of that path, replayed calls included."""
        module_id = f"m{self.next_module}"
        self.next_module += 1
        if kind == "module":
            call_index = self.calls_per_path.get(path)
            if call_index is None:  # its first call, or its first inside a replayed call
                inside = self.replayed_at(path)
                call_index = inside[1].call_counts.get(inside[0], 0) if inside is not None \
                    else 0
            self.calls_per_path[path] = call_index + 1
            self._latest_call[path] = module_id
        else:
            call_index = 0
        call = self.modules[module_id] = ModuleCall(module_id, path, cls, parent, [],
                                                    call_index)
        if kind != "module":  # set apart: a keyword argument costs a third more per call
            call.kind = kind  # type: ignore[assignment]
        self.call_modules[module_id] = module
        if parent is not None:
            self.modules[parent].children.append(module_id)
        return call

    def replayed_at(self, path: str) -> tuple[str, Any] | None:
        """The path below the replayed call that holds ``path``, and that call's template."""
        if not self.replayed:
            return None
        at = len(path)
        while True:
            at = path.rfind(".", 0, at)
            if at < 0:
                return None
            found = self.replayed.get(path[:at])
            if found is not None:
                return path[at + 1:], found

    def drop_module(self, module_id: str) -> None:
        """Remove an empty call (a torch function traced into that recorded nothing)."""
        call = self.modules.pop(module_id)
        self.modules[call.parent].children.remove(module_id)  # type: ignore[index]
        del self.call_modules[module_id]

    def path_of(self, module: torch.nn.Module) -> str:
        """A module's qualified name in the model; a module outside the root's tree is named
        after its class (``Linear``, ``Linear#2``: ``ModelIndex.name``)."""
        return self.index.name(module)

    # -- nodes --------------------------------------------------------------------------
    def add_node(self, kind: str, name: str, category: str, parent: str) -> str:
        node_id = f"n{self.next_node}"
        self.next_node += 1
        self.nodes[node_id] = Node(node_id, kind, name, category, parent)  # type: ignore[arg-type]
        self.modules[parent].children.append(node_id)
        return node_id

    def connect(self, node: Node, values: list[torch.Tensor]) -> None:
        """Add ``values`` to the node's inputs, with an edge from each one's producer."""
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

    def _unknown_tensor(self, value: torch.Tensor, node: Node) -> str | None:
        """A tensor with no producer: a parameter (listed on the node, or drawn as a node),
        a buffer or a constant (drawn as a source node at its first use)."""
        # tensors reached through a live module (buffers, cached tensors) are keyed by id;
        # anything else (a tensor made outside the forward) carries the attribute
        kind, name = self.index.tensor_name(value, self.stack_objects[-1]) or ("constant",
                                                                               "constant")
        if kind == "parameter":
            node.params.append(name)
            read = self.params_read
            if id(value) not in read:  # an op's parameters: those it reads first
                read.add(id(value))
                inside = self.replayed_at(name)
                if inside is None or inside[0] not in inside[1].read:  # not read by a replay
                    stats = node.stats
                    stats.params += value.numel()
                    stats.activated_params = stats.params
            if self.parameters != "nodes":
                if value.dim() >= 3 or self.reading_view or node.name in PICKS_ROWS:
                    self.param_reads.append((name, value, None))
                return None
        owner = name.rpartition(".")[0] if kind != "constant" else None
        parent = self._latest_call.get(owner, self.stack[-1]) if owner is not None \
            else self.stack[-1]
        source_id = self.add_node(kind, name.rpartition(".")[2] if kind != "constant" else name,
                                  "io", parent)
        tensor_id = self.register(value, source_id)
        if kind != "constant":
            self._fixed_tensors[id(value)] = tensor_id
        if kind == "parameter":  # every one: only this first reader reads it as a parameter,
            self.param_reads.append((name, value, tensor_id))  # a later view picks experts
        self.nodes[source_id].outputs.append(tensor_id)
        return tensor_id

    # -- tensors ------------------------------------------------------------------------
    def register(self, value: torch.Tensor, producer: str | None,
                 tensor_id: str | None = None) -> str:
        """A new tensor id for ``value`` (or ``tensor_id``, a number reserved before),
        produced by node ``producer``."""
        if tensor_id is None:
            tensor_id = f"t{self.next_tensor}"
            self.next_tensor += 1
        dtype = self._dtypes.get(value.dtype)
        if dtype is None:
            dtype = self._dtypes[value.dtype] = str(value.dtype).removeprefix("torch.")
        self.tensors[tensor_id] = Tensor(tensor_id, [*value.shape], dtype,
                                         "meta" if value.is_meta else value.device.type,
                                         producer)
        try:
            setattr(value, REF_ATTRIBUTE, (self._token, tensor_id))
        except (AttributeError, RuntimeError):  # a tensor type without attributes
            self._fixed_tensors[id(value)] = tensor_id
        return tensor_id

    def register_source(self, value: torch.Tensor, kind: str, name: str) -> str:
        """A source node (an input, say) producing ``value``, in the current group."""
        node_id = self.add_node(kind, name, "io", self.stack[-1])
        tensor_id = self.register(value, node_id)
        self.nodes[node_id].outputs.append(tensor_id)
        return tensor_id

    def ref(self, value: torch.Tensor) -> str | None:
        """The id of a recorded tensor, or None (parameters, unknown tensors)."""
        found = getattr(value, REF_ATTRIBUTE, None)
        if found is not None and found[0] is self._token:
            return found[1]
        return self._fixed_tensors.get(id(value))

    def refs(self, values: list[torch.Tensor]) -> list[str]:
        """The ids of the recorded tensors among ``values``, each once."""
        refs: list[str] = []
        for value in values:
            tensor_id = self.ref(value)
            if tensor_id is not None and tensor_id not in refs:
                refs.append(tensor_id)
        return refs

    def forget(self, value: torch.Tensor) -> None:
        """Drop the id attribute from a tensor handed back to the caller."""
        ref = getattr(value, REF_ATTRIBUTE, None)
        if ref is not None and ref[0] is self._token:
            with contextlib.suppress(AttributeError):
                delattr(value, REF_ATTRIBUTE)

    def release(self) -> None:
        """Let go of what was recorded, which the graph owns now."""
        self.modules, self.nodes, self.tensors, self.edges = {}, {}, {}, []
        self.call_modules, self.input_names = {}, {}
        self._fixed_tensors, self.params_read = {}, set()
