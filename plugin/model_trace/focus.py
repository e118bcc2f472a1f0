"""``focus: layers.3.ffn`` -- the part of a graph inside one module call.

The focused call becomes the root; every tensor that enters it from outside gets an input
node named after where it came from, and every tensor that leaves it an output node, so the
figure shows the module with its interface. Its place in the model is recorded in
``graph.meta["focus"]`` (the classes from the model's root down).
"""

from __future__ import annotations

import dataclasses

from model_trace.errors import SpecError
from model_trace.graph import Edge, Graph, ModuleCall, Node


def focus_graph(graph: Graph, path: str) -> Graph:
    """The subgraph of the first call of the module at ``path``; ``SpecError`` naming the
    nearby modules if no call has that path."""
    target = next((m for m in graph.walk_modules() if m.path == path), None)
    if target is None:
        raise SpecError(_not_found(graph, path), field="focus")
    modules = _subtree(graph, target.id)
    nodes = {i: n for i, n in graph.nodes.items() if n.parent in modules}
    kept_tensors = {t for n in nodes.values() for t in (*n.inputs, *n.outputs)}
    # in the graph's order: a set's order of string ids changes with the process's hash seed
    tensors = {t: tensor for t, tensor in graph.tensors.items() if t in kept_tensors}
    edges = [e for e in graph.edges if e.src in nodes and e.dst in nodes]
    root = dataclasses.replace(modules[target.id], parent=None,
                               children=list(modules[target.id].children))
    modules[target.id] = root

    def add_node(node_id: str, kind: str, name: str) -> None:
        node = Node(id=node_id, kind=kind, name=name, category="io", parent=root.id)  # type: ignore[arg-type]
        nodes[node_id] = node
        root.children.insert(0 if kind == "input" else len(root.children), node_id)

    from_outside: dict[str, list[str]] = {}
    for edge in graph.edges:  # a consumer fed by a shared copy inside needs no stub
        if edge.src not in nodes and edge.dst in nodes:
            from_outside.setdefault(edge.tensor, []).append(edge.dst)
    for tensor_id in sorted(kept_tensors, key=_natural):
        tensor = graph.tensors.get(tensor_id)
        if tensor is None:
            continue
        producer = tensor.producer
        consumers = [nodes[c] for c in dict.fromkeys(from_outside.get(tensor_id, []))]
        if producer is not None and producer not in nodes and consumers:
            node_id = f"focus-in-{tensor_id}"
            add_node(node_id, "input", f"from {_place(graph, producer)}")
            nodes[node_id].outputs.append(tensor_id)
            tensors[tensor_id] = dataclasses.replace(tensor, producer=node_id)
            edges += [Edge(src=node_id, dst=c.id, tensor=tensor_id) for c in consumers]
        elif producer in nodes and any(e.src == producer and e.tensor == tensor_id
                                       and e.dst not in nodes for e in graph.edges):
            node_id = f"focus-out-{tensor_id}"
            add_node(node_id, "output", "output")
            nodes[node_id].inputs.append(tensor_id)
            edges.append(Edge(src=producer, dst=node_id, tensor=tensor_id))
    made_inside = {t: n.id for n in reversed(list(nodes.values())) for t in n.outputs}
    for tensor_id, tensor in list(tensors.items()):  # made outside, handed in as a shared copy
        if tensor.producer is not None and tensor.producer not in nodes:
            tensors[tensor_id] = dataclasses.replace(tensor, producer=made_inside.get(tensor_id))
    ancestors = [graph.modules[a] for a in reversed(graph.ancestors(target.id))]
    meta = {key: value for key, value in graph.meta.items() if key != "totals"}  # the model's
    meta["focus"] = {"path": path, "context": [m.cls for m in ancestors] + [target.cls]}
    return dataclasses.replace(graph, root=root.id, modules=modules, nodes=nodes,
                               tensors=tensors, edges=edges, meta=meta)


def _subtree(graph: Graph, root_id: str) -> dict[str, ModuleCall]:
    found: dict[str, ModuleCall] = {}
    stack = [root_id]
    while stack:
        call = graph.modules[stack.pop()]
        found[call.id] = dataclasses.replace(call)
        stack.extend(c for c in call.children if c in graph.modules)
    return found


def _place(graph: Graph, node_id: str) -> str:
    """Where a node sits, for naming the tensors it sends into the focused module."""
    node = graph.nodes[node_id]
    if node.kind == "input":
        return node.name.removeprefix("input ").strip() or "input"
    return graph.modules[node.parent].path or node.name


def _natural(tensor_id: str) -> tuple[int, str]:
    digits = "".join(ch for ch in tensor_id if ch.isdigit())
    return (int(digits) if digits else 0, tensor_id)


def _not_found(graph: Graph, path: str) -> str:
    for call in graph.walk_modules():
        if call.repeat is None:
            continue
        member = next((m for m in call.repeat.members
                       if path == m or path.startswith(m + ".")), None)
        if member is not None:
            return (f"'{path}' is folded into '{call.path}' (×{call.repeat.count}); focus on "
                    f"'{call.path}{path.removeprefix(member)}', or add `fold: false`")
    parent = path.rpartition(".")[0]
    nearby = sorted({m.path for m in graph.walk_modules()
                     if m.path and m.path.rpartition(".")[0] == parent})
    return (f"no module '{path}' was called in this trace; modules there: "
            f"{', '.join(nearby[:12]) or 'none'}")
