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
from operator import attrgetter

from model_trace.graph import Edge, Graph, ModuleCall, Node


def draw_shared_per_use(graph: Graph, input_names: dict[str, dict[str, str]],
                        min_uses: int = 3) -> None:
    """Give each call in a chain of at least ``min_uses`` same-class calls that receives the
    same tensor its own source node for that tensor."""
    tensors = list(map(attrgetter("tensor"), graph.edges))  # 378k edges for 671B: no loop
    uses = Counter(tensors)
    candidates = {tensor for tensor, count in uses.items() if count >= min_uses}
    if not candidates:
        return
    by_tensor: dict[str, list[int]] = {}
    for index, tensor in enumerate(tensors):
        if tensor in candidates:
            by_tensor.setdefault(tensor, []).append(index)
    replaced: dict[int, Edge] = {}
    for tensor_id in sorted(by_tensor, key=lambda t: int(t[1:]) if t[1:].isdigit() else t):
        edge_indexes = by_tensor[tensor_id]
        producer = graph.tensors[tensor_id].producer
        if producer is None:
            continue
        home = graph.nodes[producer].parent
        groups: dict[str, list[int]] = {}
        for index in edge_indexes:
            group = _child_of(graph, graph.edges[index].dst, home)
            if group is not None and group in graph.modules:
                groups.setdefault(group, []).append(index)
        calls = [graph.modules[g] for g in groups]
        if len(calls) < min_uses or len({c.cls for c in calls}) != 1 or not _chained(calls):
            continue
        for call in calls:
            if tensor_id not in call.inputs:
                break
        else:
            for call in calls:
                name = input_names.get(call.id, {}).get(tensor_id, graph.nodes[producer].name)
                node_id = f"n{len(graph.nodes)}"
                graph.nodes[node_id] = Node(node_id, "shared", name, "io", call.id,
                                            outputs=[tensor_id],
                                            args={"from": graph.nodes[producer].name})
                call.children.insert(0, node_id)
                for index in groups[call.id]:
                    edge = graph.edges[index]
                    replaced[index] = Edge(node_id, edge.dst, edge.tensor)
    for index, edge in replaced.items():  # in place: 122 of 378k edges change for 671B
        graph.edges[index] = edge


def _child_of(graph: Graph, node_id: str, ancestor: str) -> str | None:
    """The child of ``ancestor`` that contains node ``node_id`` (None if it is not inside)."""
    item = node_id
    parent = graph.nodes[node_id].parent
    while parent is not None and parent != ancestor:
        item = parent
        parent = graph.modules[parent].parent
    return item if parent == ancestor and item != node_id else None


def _chained(calls: list[ModuleCall]) -> bool:
    """Whether consecutive calls mostly feed each other (a stack of layers, not branches)."""
    linked = sum(1 for a, b in itertools.pairwise(calls) if set(a.outputs) & set(b.inputs))
    return linked * 2 >= len(calls) - 1
