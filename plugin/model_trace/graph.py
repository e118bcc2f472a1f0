"""The Graph: the one data model that flows from the tracer to layout and rendering.

A graph is a tree of module calls (``ModuleCall``) whose leaves are ``Node``s (torch ops,
inputs, outputs, constants); ``Tensor``s carry shapes and ``Edge``s connect a producing node to
a consuming node through one tensor. Everything is plain data: ``Graph.to_json()`` is
deterministic (sorted keys, stable ids in call order) and ``Graph.from_json()`` reads it back,
so each later stage can run on a saved file.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

SCHEMA_VERSION = 4
READABLE_VERSIONS = (1, 2, 3, 4)
"""Schema versions ``Graph.from_dict`` reads; older files lack the fields added since (4: the
split of ``Stats``' bytes), which take their defaults."""

NodeKind = Literal["op", "input", "output", "constant", "parameter", "buffer", "shared"]
ModuleKind = Literal["module", "function", "loop"]


@dataclass(frozen=True, slots=True)
class SourceLocation:
    """Where an op was called: a path relative to its package root, the line and its text."""

    file: str
    """Path of the file, relative to the root of the package it belongs to
    (``torch/nn/modules/linear.py``, ``model_zoo/deepseek_v3/model.py``)."""
    line: int
    """1-based line of the call."""
    code: str
    """The line's text, stripped."""


@dataclass(frozen=True, slots=True)
class SourceSpan:
    """Where a module's class is defined: a path relative to its package root and its lines."""

    file: str
    """Path of the file, relative to the root of the package it belongs to."""
    start: int
    """1-based first line of the class (or function) definition."""
    end: int
    """1-based last line of the definition."""


@dataclass(slots=True)
class Stats:
    """Cost figures of one op, or of a module summed over everything it called.

    Memory comes in four figures: the bytes an op writes are either ``activation_bytes`` (what
    the computation produces) or ``workspace_bytes`` (copies of weights, such as a dequantised
    fp8 weight, and the model's own state made during the forward, such as a KV cache); the
    bytes it reads are ``read_bytes``, of which ``weight_bytes`` are parameters.
    """

    params: int = 0
    """Parameters: of a module call, those of its module and submodules, counted once (at the
    module's first call); of an op, the parameters it is the first to read."""
    flops: int = 0
    """Floating-point operations (a multiply-add counts 2), by torch's FLOP formulas;
    elementwise ops count 0."""
    activation_bytes: int = 0
    """Bytes of the new tensors the ops computed from their inputs (views excluded), neither
    copies of weights nor the model's own state."""
    activated_params: int = 0
    """Parameters one token goes through: for a mixture of experts only its routed experts'
    share (equal to ``params`` for dense modules); for a module the forward never called,
    those of its parameters some op read directly (0 if none was read)."""
    workspace_bytes: int = 0
    """Bytes of the other new tensors: made from weights alone (a dequantised fp8 weight, a
    cast copy) or kept by the model as its state (a KV cache allocated on the first forward).
    With ``activation_bytes``, every byte the ops wrote into new tensors."""
    weight_bytes: int = 0
    """Bytes of the parameters the ops read, in their stored dtype, at every read."""
    read_bytes: int = 0
    """Bytes of every tensor the ops read (parameters included, a tensor written in place
    not): with the bytes written, the memory traffic a time estimate rests on."""

    def add(self, other: Stats) -> None:
        for name in STAT_NAMES:
            setattr(self, name, getattr(self, name) + getattr(other, name))

    def copy(self) -> Stats:
        return Stats(**{name: getattr(self, name) for name in STAT_NAMES})


STAT_NAMES = tuple(Stats.__dataclass_fields__)
"""The fields of ``Stats``, in order."""
BYTES_WORDS = {"weight_bytes": "weights read", "activation_bytes": "activations written",
               "workspace_bytes": "workspace written"}
"""The three kinds of bytes a reader is shown (tooltips, overlays, tables, comparisons), in
the words every one of them uses: never a single "memory" figure."""


@dataclass(slots=True)
class Selection:
    """The slices of a stacked parameter one op used: experts stored as one tensor
    (``gate_up_proj[E, 2I, D]``), of which an op took some (``w[e]``, ``w[expert_ids]``,
    ``grouped_mm(x, w, offs=...)``), each for some rows (tokens)."""

    param: str
    """Qualified name of the parameter."""
    slices: int
    """How many slices (experts) the parameter holds along its first dimension."""
    indices: list[int]
    """The slices used, in increasing order."""
    tokens: list[int]
    """Rows each of ``indices`` was used for."""
    whole: bool = False
    """True when the op used every slice for every row (no selection at all)."""
    chosen: int = 0
    """For a whole use: how many of the slices a router beside them chose per row (the
    model's code ran the others too, weighted by the router); 0 when no router chose."""


@dataclass(slots=True)
class Tensor:
    """One tensor value seen during the trace (a new id after every in-place write)."""

    id: str
    """``t0``, ``t1``, ... in the order the values appeared."""
    shape: list[int]
    """Sizes of each dimension; ``[]`` for a scalar tensor."""
    dtype: str
    """torch's dtype name without ``torch.``: ``float32``, ``bfloat16``, ``int64``."""
    device: str
    """Device type the tensor had during the trace: ``meta``, ``cpu``, ``cuda``."""
    producer: str | None = None
    """Id of the node that produced this value (None when folding dropped it)."""

    @property
    def shape_label(self) -> str:
        return "(" + ", ".join(str(d) for d in self.shape) + ")"


@dataclass(slots=True)
class Node:
    """A leaf of the graph: one op call, or a source (input, constant) or sink (output)."""

    id: str
    """``n0``, ``n1``, ... in call order."""
    kind: NodeKind
    """"op": a torch function (or ATen op) call; "input", "output": the traced call's
    arguments and results; "constant": a tensor made outside the forward; "parameter",
    "buffer": a module's tensor drawn as a node; "shared": one use of a tensor handed to a
    chain of layers (a rotary table, a mask)."""
    name: str
    """The op's short name (``linear``, ``add_``, ``aten::mm``) or the source's name
    (``tokens``, ``output['logits']``, ``freqs_cis``)."""
    category: str
    """Colour group of the op: ``linear``, ``activation``, ``shape``, ``io``, ``collective``,
    ... (``model_trace.tracing.op_table``)."""
    parent: str
    """Id of the module call the node belongs to."""
    inputs: list[str] = field(default_factory=list)
    """Ids of the tensors the node read, in argument order, each once."""
    outputs: list[str] = field(default_factory=list)
    """Ids of the tensors the node produced (or wrote in place)."""
    args: dict[str, str] = field(default_factory=dict)
    """The op's non-tensor arguments as short texts: ``arg1``, ``dim``, and ``index`` for
    indexing (``[:, 0]``, ``[T]`` for a tensor index)."""
    source: SourceLocation | None = None
    """Where the op was called in the model's code (None for sources and sinks)."""
    stats: Stats = field(default_factory=Stats)
    """The op's own cost."""
    params: list[str] = field(default_factory=list)
    """Qualified names of the parameters the op reads (drawn as nodes only with
    ``trace(..., parameters="nodes")``)."""
    selections: list[Selection] = field(default_factory=list)
    """Slices of stacked parameters (experts in one tensor) the op used, with their rows:
    what activated parameters and ``graph.meta["experts"]`` count for such models."""
    uncounted_flops: list[str] = field(default_factory=list)
    """Ops that computed floats here without a FLOP formula (``aten::foo``): ``stats.flops``
    leaves them out, so it is a lower bound. Empty when every op was counted."""
    measured: Measured | None = None
    """Wall time of the op in a real run (``trace(..., execute=...)``); its memory is the
    bytes of the tensors it returned that were not its arguments."""
    assumed: str = ""
    """Set when values here were assumed, not computed (``tracing.assumptions``): ``zeros``
    (an integer result of meta floats), ``buffer`` (integers of a tensor made on the meta
    device before the trace), ``kernel`` (no CPU kernel for its dtypes), ``input``
    (token ids given on the meta device), ``branch`` (Python branched on its assumed values),
    ``rows`` (rows picked by assumed indices). Empty when every value is known."""


@dataclass(slots=True)
class Repeat:
    """Siblings folded into one representative: how many, and which (with their own stats).

    ``members`` are the paths of the folded calls in call order, the representative first
    (for a loop, one entry per iteration); ``member_stats`` holds each member's own figures,
    so their sum is exact although only the representative's internals are kept.
    """

    count: int
    """How many members the run has, the representative included."""
    members: list[str]
    """Module paths of the members in call order, representative first (``path#i`` for an
    iteration of a loop without modules)."""
    member_stats: list[Stats]
    """Each member's own statistics, in the order of ``members``."""
    note: str = ""
    """A line for the viewer: ``Expert ×252 of 256 called, 8 active per token``."""
    member_seconds: list[float] | None = None
    """Each member's measured wall time (``execute``), in the order of ``members``; None when
    the trace measured nothing or a member's time is unknown."""


@dataclass(slots=True)
class Measured:
    """What a real run of one module call cost: wall time and peak memory above its start."""

    wall_time_s: float
    """Seconds from the call's start to its end (CUDA synchronised at both), to the
    microsecond (an op's to a tenth of one)."""
    peak_memory_bytes: int | None
    """Peak memory above the call's start: the CUDA allocator's, or on the CPU the resident
    set size sampled at module boundaries; None where it was not measured (no resident set
    size to read on this system, or a traced function: no module boundary to sample at)."""


@dataclass(slots=True)
class ModuleCall:
    """One call of an ``nn.Module`` (or the traced function itself, at the root)."""

    id: str
    """``m0`` (the root), ``m1``, ... in the order the calls began (submodules the forward
    never called last); in pre-order after folding."""
    path: str
    """Qualified name in the model, as ``named_modules`` gives it (``layers.3.ffn``); ``""``
    for the root."""
    cls: str
    """The module's class name, the function's name for "function", ``loop`` for "loop"."""
    parent: str | None
    """Id of the enclosing call; None for the root."""
    children: list[str] = field(default_factory=list)
    """Ids of the nodes and module calls inside, in call order."""
    call_index: int = 0
    """0 for a module's first call, 1 for its second, ..."""
    extra_repr: str = ""
    """The module's ``extra_repr()``: ``in_features=7168, out_features=2048, bias=False``."""
    source: SourceSpan | None = None
    """Where the module's class is defined."""
    stats: Stats = field(default_factory=Stats)
    """The call's statistics, summed over everything inside it."""
    repeat: Repeat | None = None
    """Set on the representative of folded repeats: the call stands for ``repeat.count``."""
    kind: ModuleKind = "module"
    """"module": an ``nn.Module`` call; "function": a torch Python function traced into
    (``trace_depth``); "loop": iterations of a repeated pattern folded into one."""
    called: bool = True
    """False for a submodule the forward never called (an expert that got no tokens)."""
    inputs: list[str] = field(default_factory=list)
    """Tensor ids passed to the call (positional, then keyword arguments, flattened)."""
    outputs: list[str] = field(default_factory=list)
    """Tensor ids the call returned (flattened)."""
    measured: Measured | None = None
    """Wall time and peak memory of a real run (``trace(..., execute=...)``)."""


@dataclass(slots=True)
class Edge:
    """Data flow: ``tensor`` produced by node ``src`` is consumed by node ``dst``."""

    src: str
    """Id of the producing node."""
    dst: str
    """Id of the consuming node."""
    tensor: str
    """Id of the tensor that flows."""


@dataclass
class Graph:
    """A traced forward pass: module tree, leaf nodes, tensors and edges, plus trace metadata."""

    root: str
    """Id of the root module call (the traced model or function)."""
    modules: dict[str, ModuleCall]
    """Every module call by id (a list in JSON, in id order)."""
    nodes: dict[str, Node]
    """Every node by id (a list in JSON)."""
    tensors: dict[str, Tensor]
    """Every tensor value by id (a list in JSON)."""
    edges: list[Edge]
    """Data flow between nodes, in the order the consumers ran."""
    meta: dict[str, Any] = field(default_factory=dict)
    """What the trace was and what it found: the model, options, routing, totals, folding
    (its keys are listed in the docs' graph schema page)."""
    schema_version: int = SCHEMA_VERSION
    """The version of this format (a reader refuses versions it does not know)."""

    def is_module(self, item_id: str) -> bool:
        return item_id in self.modules

    def children(self, module_id: str) -> list[str]:
        return self.modules[module_id].children

    def ancestors(self, item_id: str) -> list[str]:
        """Module ids from the item's parent up to the root (iterative: no recursion limit)."""
        chain: list[str] = []
        parent = self._parent_of(item_id)
        while parent is not None:
            chain.append(parent)
            parent = self.modules[parent].parent
        return chain

    def _parent_of(self, item_id: str) -> str | None:
        if item_id in self.modules:
            return self.modules[item_id].parent
        return self.nodes[item_id].parent

    def walk_modules(self) -> list[ModuleCall]:
        """All module calls in pre-order (parents before children, call order kept)."""
        ordered: list[ModuleCall] = []
        stack = [self.root]
        while stack:
            module = self.modules[stack.pop()]
            ordered.append(module)
            stack.extend(reversed([c for c in module.children if c in self.modules]))
        return ordered

    def walk_modules_children_first(self) -> list[ModuleCall]:
        """All module calls in post-order: each after its children, earlier calls first."""
        ordered: list[ModuleCall] = []
        stack: list[tuple[str, bool]] = [(self.root, False)]
        while stack:
            module_id, expanded = stack.pop()
            module = self.modules[module_id]
            if expanded:
                ordered.append(module)
                continue
            stack.append((module_id, True))
            stack.extend((c, False) for c in reversed(module.children) if c in self.modules)
        return ordered

    def module_depths(self) -> dict[str, int]:
        """How many module calls enclose each one (the root: 0), for tables cut at a depth."""
        depths = {self.root: 0}
        for module in self.walk_modules():
            for child in module.children:
                if child in self.modules:
                    depths[child] = depths[module.id] + 1
        return depths

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema_version": self.schema_version,
            "root": self.root,
            "meta": self.meta,
            "modules": [asdict(m) for m in self.modules.values()],
            "nodes": [asdict(n) for n in self.nodes.values()],
            "tensors": [asdict(t) for t in self.tensors.values()],
            "edges": [asdict(e) for e in self.edges],
        }

    def to_json(self, indent: int | None = None) -> str:
        """Deterministic JSON: the same graph always gives the same bytes."""
        return json.dumps(
            self.to_dict(), sort_keys=True, indent=indent, separators=_separators(indent)
        )

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Graph:
        version = data.get("schema_version")
        if version not in READABLE_VERSIONS:
            raise ValueError(
                f"graph schema version {version!r} is not supported (this model-trace reads "
                f"{', '.join(map(str, READABLE_VERSIONS))}); re-trace the model with this "
                "version of model-trace"
            )
        return cls(
            root=data["root"],
            meta=data.get("meta", {}),
            modules={m["id"]: _module_from_dict(m) for m in data["modules"]},
            nodes={n["id"]: _node_from_dict(n) for n in data["nodes"]},
            tensors={t["id"]: Tensor(**t) for t in data["tensors"]},
            edges=[Edge(**e) for e in data["edges"]],
        )

    @classmethod
    def from_json(cls, text: str) -> Graph:
        return cls.from_dict(json.loads(text))

    def _repr_html_(self) -> str:
        """The interactive figure, when a notebook displays the graph (``notebook``)."""
        from model_trace.notebook import Figure

        return Figure(self)._repr_html_()

    def save(self, path: str | os.PathLike[str], **options: Any) -> Path:
        """Write the graph's figure as ``.html``, ``.svg`` or ``.png`` (or the graph as
        ``.json``); ``options`` are fence view fields (``depth``, ``overlay``, ...)."""
        from model_trace.notebook import Figure

        return Figure(self, **options).save(path)


def _separators(indent: int | None) -> tuple[str, str]:
    return (",", ": ") if indent is not None else (",", ":")


def _module_from_dict(data: dict[str, Any]) -> ModuleCall:
    repeat = data.get("repeat")
    source = data.get("source")
    measured = data.get("measured")
    return ModuleCall(
        **{
            **data,
            "stats": Stats(**data["stats"]),
            "source": SourceSpan(**source) if source else None,
            "measured": Measured(**measured) if measured else None,
            "repeat": (
                Repeat(**{**repeat, "member_stats": [Stats(**s) for s in repeat["member_stats"]]})
                if repeat
                else None
            ),
        }
    )


def _node_from_dict(data: dict[str, Any]) -> Node:
    source = data.get("source")
    return Node(
        **{
            **data,
            "stats": Stats(**data["stats"]),
            "source": SourceLocation(**source) if source else None,
            "selections": [Selection(**s) for s in data.get("selections", [])],
            "measured": Measured(**data["measured"]) if data.get("measured") else None,
        }
    )
