"""Which module call, op and tensor of one trace is which of another's: keys that do not
depend on ids or on where the traced part sits in its model.

Two traces of related models (``attn_impl: naive`` and ``absorb``; the same model with a
longer input) number their nodes differently, and a focused figure of ``layers.1.ffn`` and
one of ``layers.3.ffn`` differ in every path. So items are matched by where they are in the
call tree, not by id:

- a module call by its path below the traced root (a function or loop traced into: its kind
  and name), its call number, and the same for every call around it;
- an op by the call it is in, its name, the line of code that called it, and which call of
  that line it is there (the 1st ``new_zeros`` of ``_cache``, the 2nd);
- an input or output by the call it is in and its position among them (a focused figure
  names its inputs after the layer they came from);
- a tensor by the node that produced it and its position among that node's outputs.

``compare`` diffs two graphs with these keys; ``dims`` follows a dimension from one trace to
another with them.
"""

from __future__ import annotations

from typing import Any

from model_trace.graph import Graph, ModuleCall, Node
from model_trace.naming import relative_name

Key = tuple[Any, ...]


def module_keys(graph: Graph) -> dict[str, Key]:
    """A key for every module call, from the root (``()``) down."""
    root_path = graph.modules[graph.root].path
    keys: dict[str, Key] = {graph.root: ()}
    for call in graph.walk_modules():
        seen: dict[str, int] = {}
        for child in call.children:
            module = graph.modules.get(child)
            if module is None:
                continue
            label = _module_label(module, root_path)
            seen[label] = seen.get(label, 0) + 1
            keys[child] = (*keys[call.id], (label, seen[label] - 1))
    return keys


def _module_label(module: ModuleCall, root_path: str) -> str:
    if module.kind != "module":
        return f"{module.kind}:{module.cls}"
    return relative_name(module.path, root_path) if module.path != root_path else "."


def node_keys(graph: Graph, modules: dict[str, Key] | None = None) -> dict[str, Key]:
    """A key for every node: its call's key, what it is, and its place among its like."""
    modules = module_keys(graph) if modules is None else modules
    keys: dict[str, Key] = {}
    for call in graph.walk_modules():
        seen: dict[Key, int] = {}
        for child in call.children:
            node = graph.nodes.get(child)
            if node is None:
                continue
            what = _node_label(node)
            seen[what] = seen.get(what, 0) + 1
            keys[child] = (modules[call.id], *what, seen[what] - 1)
    return keys


def _node_label(node: Node) -> Key:
    if node.kind in ("input", "output"):
        return (node.kind,)
    where = f"{node.source.file}:{node.source.line}" if node.source is not None else ""
    return (node.kind, node.name, where)


def tensor_keys(graph: Graph, nodes: dict[str, Key] | None = None) -> dict[str, Key]:
    """A key for every tensor some node produced: the producer's key and the output's
    position."""
    nodes = node_keys(graph) if nodes is None else nodes
    keys: dict[str, Key] = {}
    for node_id, node in graph.nodes.items():
        for position, tensor_id in enumerate(node.outputs):
            if tensor_id in graph.tensors and graph.tensors[tensor_id].producer == node_id:
                keys[tensor_id] = (nodes[node_id], position)
    return keys
