"""What every folded graph must satisfy, checked on each graph ``fold_repeats`` returns while
the tests run (``tests/conftest.py`` wraps it): a fold that leaves a dangling reference, a
duplicated edge or a self-loop breaks the layout and the viewer far from its cause."""

from __future__ import annotations

from collections import Counter

from model_trace.graph import Graph


def folded_graph_problems(graph: Graph) -> list[str]:
    """Every broken invariant of a folded graph, as readable lines (empty: sound)."""
    problems: list[str] = []
    problems += _tree_problems(graph)
    problems += _tensor_problems(graph)
    problems += _edge_problems(graph)
    problems += _repeat_problems(graph)
    problems += _id_problems(graph)
    folded = graph.meta.get("folded", {}).get("after")
    actual = {"modules": len(graph.modules), "nodes": len(graph.nodes),
              "tensors": len(graph.tensors), "edges": len(graph.edges)}
    if folded != actual:
        problems.append(f"meta['folded']['after'] is {folded}, the graph has {actual}")
    return problems


def assert_sound_folded_graph(graph: Graph) -> None:
    problems = folded_graph_problems(graph)
    assert not problems, "folded graph is broken:\n  " + "\n  ".join(problems[:20])


def _tree_problems(graph: Graph) -> list[str]:
    problems = []
    seen: Counter[str] = Counter()
    for call in graph.modules.values():
        for child in call.children:
            seen[child] += 1
            item = graph.modules.get(child) or graph.nodes.get(child)
            if item is None:
                problems.append(f"{call.id} has child {child}, which does not exist")
            elif item.parent != call.id:
                problems.append(f"{child} is a child of {call.id} but names {item.parent}")
    for item_id, times in seen.items():
        if times > 1:
            problems.append(f"{item_id} is a child {times} times")
    for item_id in [*graph.modules, *graph.nodes]:
        if item_id != graph.root and not seen[item_id]:
            problems.append(f"{item_id} is in no module call's children")
    if graph.modules[graph.root].parent is not None:
        problems.append("the root has a parent")
    return problems


def _tensor_problems(graph: Graph) -> list[str]:
    problems = []
    for tensor in graph.tensors.values():
        if tensor.producer is None:
            continue
        producer = graph.nodes.get(tensor.producer)
        if producer is None:
            problems.append(f"tensor {tensor.id}'s producer {tensor.producer} does not exist")
        elif tensor.id not in producer.outputs:
            problems.append(f"tensor {tensor.id}'s producer {tensor.producer} does not output it")
    holders = [(n.id, "inputs", n.inputs) for n in graph.nodes.values()]
    holders += [(n.id, "outputs", n.outputs) for n in graph.nodes.values()]
    holders += [(m.id, "inputs", m.inputs) for m in graph.modules.values()]
    holders += [(m.id, "outputs", m.outputs) for m in graph.modules.values()]
    for owner, role, ids in holders:
        if len(set(ids)) != len(ids):
            problems.append(f"{owner}'s {role} repeat a tensor: {ids}")
        missing = [t for t in ids if t not in graph.tensors]
        if missing:
            problems.append(f"{owner}'s {role} name missing tensors {missing}")
    return problems


def _edge_problems(graph: Graph) -> list[str]:
    problems = []
    counts = Counter((e.src, e.dst, e.tensor) for e in graph.edges)
    problems += [f"edge {key} appears {n} times" for key, n in counts.items() if n > 1]
    for edge in graph.edges:
        if edge.src == edge.dst:
            problems.append(f"edge {edge} is a self-loop")
        if edge.src not in graph.nodes or edge.dst not in graph.nodes:
            problems.append(f"edge {edge} has an end that does not exist")
            continue
        tensor = graph.tensors.get(edge.tensor)
        source = graph.nodes[edge.src]
        if tensor is None:
            problems.append(f"edge {edge} carries a tensor that does not exist")
        elif edge.tensor not in source.outputs:
            problems.append(f"edge {edge} starts at a node that does not output {edge.tensor}")
        elif tensor.producer != edge.src and source.kind != "shared":
            problems.append(f"edge {edge} starts at {edge.src}, but {edge.tensor} is made by "
                            f"{tensor.producer}")  # only a shared source stands for another
        if edge.tensor not in graph.nodes[edge.dst].inputs:
            problems.append(f"edge {edge} ends at a node that does not read {edge.tensor}")
    return problems


def _repeat_problems(graph: Graph) -> list[str]:
    problems = []
    for call in graph.modules.values():
        repeat = call.repeat
        if repeat is None:
            continue
        if not (repeat.count >= 2 and repeat.count == len(repeat.members)
                == len(repeat.member_stats)):
            problems.append(f"{call.id}: repeat count {repeat.count} with "
                            f"{len(repeat.members)} members, {len(repeat.member_stats)} stats")
        if len(set(repeat.members)) != len(repeat.members):
            problems.append(f"{call.id}: repeat members are not distinct: {repeat.members}")
    return problems


def _id_problems(graph: Graph) -> list[str]:
    walk = [call.id for call in graph.walk_modules()]
    problems = []
    if walk != [f"m{i}" for i in range(len(graph.modules))]:
        problems.append(f"module ids are not m0, m1, ... in walk order: {walk[:8]}...")
    for kind, items in (("n", graph.nodes), ("t", graph.tensors)):
        if list(items) != [f"{kind}{i}" for i in range(len(items))]:  # the JSON's order too
            problems.append(f"{kind} ids are not {kind}0, {kind}1, ... in order, without gaps")
    return problems
