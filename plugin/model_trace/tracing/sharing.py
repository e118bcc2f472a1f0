"""Shared inputs drawn per use: a rotary table or a mask handed to every layer.

A tensor that a chain of same-class calls all receive (layer i's output feeds layer i+1, and
every layer also gets ``freqs_cis``) would be one source wired to every layer, a fan of 61
edges across the figure. Instead, each consuming call gets its own small ``shared`` source
node, named after the forward parameter it arrives as, and the producer keeps its other
consumers. The tensor (and its id) stays the same, so its provenance is not lost:
``Tensor.producer`` still names the op that made it.
"""

from __future__ import annotations

import itertools
from collections import Counter
from dataclasses import dataclass
from operator import attrgetter
from typing import TYPE_CHECKING

from model_trace.graph import Edge, Graph, ModuleCall, Node

if TYPE_CHECKING:
    from model_trace.tracing.replay import ReplayedCalls


@dataclass(frozen=True)
class SharedUse:
    """One call's own source node for a shared tensor: its name and the edges it feeds."""

    call: str
    tensor: str
    name: str
    source: str
    """The name of the op that made the tensor."""
    edges: list[int]


def draw_shared_per_use(graph: Graph, input_names: dict[str, dict[str, str]],
                        min_uses: int = 3, replayed: ReplayedCalls | None = None,
                        first_node: int | None = None) -> None:
    """Give each call in a chain of at least ``min_uses`` same-class calls that receives the
    same tensor its own source node for that tensor. New nodes are numbered from
    ``first_node`` (default: after the graph's nodes)."""
    uses = plan_shared_uses(graph, input_names, min_uses, replayed)
    number = len(graph.nodes) if first_node is None else first_node
    replaced: dict[int, Edge] = {}
    for use in uses:
        node_id = f"n{number}"
        number += 1
        graph.nodes[node_id] = Node(node_id, "shared", use.name, "io", use.call,
                                    outputs=[use.tensor], args={"from": use.source})
        graph.modules[use.call].children.insert(0, node_id)
        for index in use.edges:
            edge = graph.edges[index]
            replaced[index] = Edge(node_id, edge.dst, edge.tensor)
    for index, edge in replaced.items():  # in place: 122 of 378k edges change for 671B
        graph.edges[index] = edge


def plan_shared_uses(graph: Graph, input_names: dict[str, dict[str, str]], min_uses: int = 3,
                     replayed: ReplayedCalls | None = None) -> list[SharedUse]:
    """The source nodes ``draw_shared_per_use`` adds, in the order it adds them. Ids that a
    replayed call reserved (``replay``) count as that call's."""
    tensors = list(map(attrgetter("tensor"), graph.edges))  # 378k edges for 671B: no loop
    uses = Counter(tensors)
    candidates = {tensor for tensor, count in uses.items() if count >= min_uses}
    if not candidates:
        return []
    by_tensor: dict[str, list[int]] = {}
    for index, tensor in enumerate(tensors):
        if tensor in candidates:
            by_tensor.setdefault(tensor, []).append(index)
    planned: list[SharedUse] = []
    for tensor_id in sorted(by_tensor, key=lambda t: int(t[1:]) if t[1:].isdigit() else t):
        edge_indexes = by_tensor[tensor_id]
        producer = graph.tensors[tensor_id].producer
        if producer is None:
            continue
        home = _parent(graph, producer, replayed)
        groups: dict[str, list[int]] = {}
        for index in edge_indexes:
            group = _child_of(graph, graph.edges[index].dst, home, replayed)
            if group is not None and group in graph.modules:
                groups.setdefault(group, []).append(index)
        calls = [graph.modules[g] for g in groups]
        if len(calls) < min_uses or len({c.cls for c in calls}) != 1 or not _chained(calls):
            continue
        if any(tensor_id not in call.inputs for call in calls):
            continue
        made_by = graph.nodes[producer] if producer in graph.nodes else \
            replayed.node(graph.nodes, producer)  # type: ignore[union-attr]
        source = made_by.name if made_by is not None else "?"
        for call in calls:
            name = input_names.get(call.id, {}).get(tensor_id, source)
            planned.append(SharedUse(call.id, tensor_id, name, source, groups[call.id]))
    return planned


def leading_shared_names(uses: list[SharedUse]) -> dict[str, list[str]]:
    """The names of the source nodes each call will start with (each is put first)."""
    names: dict[str, list[str]] = {}
    for use in uses:
        names.setdefault(use.call, []).insert(0, use.name)
    return names


def _parent(graph: Graph, node_id: str, replayed: ReplayedCalls | None) -> str | None:
    """A node's parent; for an id a replayed call reserved, that call."""
    node = graph.nodes.get(node_id)
    if node is not None:
        return node.parent
    return replayed.stub_of(node_id) if replayed is not None else None


def _child_of(graph: Graph, node_id: str, ancestor: str | None,
              replayed: ReplayedCalls | None) -> str | None:
    """The child of ``ancestor`` that contains node ``node_id`` (None if it is not inside)."""
    item = node_id
    parent = _parent(graph, node_id, replayed)
    while parent is not None and parent != ancestor:
        item = parent
        parent = graph.modules[parent].parent
    return item if parent == ancestor and item != node_id else None


def _chained(calls: list[ModuleCall]) -> bool:
    """Whether consecutive calls mostly feed each other (a stack of layers, not branches)."""
    linked = sum(1 for a, b in itertools.pairwise(calls) if set(a.outputs) & set(b.inputs))
    return linked * 2 >= len(calls) - 1
