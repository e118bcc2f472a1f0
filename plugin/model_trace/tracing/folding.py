"""Fold repeated structure into one representative with a count, keeping exact statistics.

Signatures are computed bottom-up, one per item (op node or module call), and interned to
small integers, so comparing two subtrees is comparing two integers and the whole pass is
linear in the size of the graph:

- an op's signature: its kind, name, source line, arity and which of its inputs come from
  sibling ops (not shapes: the rows an expert gets differ from expert to expert);
- a module call's: its kind, class, ``extra_repr`` and the signatures of its children after
  they were folded (a folded loop's count is left out, a folded run's count is kept).

In each module call, the children's signatures form a sequence; a run of a pattern repeated
back to back (period 1: ``Block ×58``; period 9: an MoE's per-expert ``where, x[idx], expert,
...``) is folded. A period-1 run of module calls keeps its first call, with ``repeat`` set. A
longer pattern becomes a ``loop`` group holding the first iteration. Either way the other
members are dropped with their insides, leaving their paths and statistics in
``Repeat.members`` / ``Repeat.member_stats``; edges into or out of a dropped member are moved
to the matching item of the representative, and edges between members (layer i's output
into layer i+1) are dropped. Ids are renumbered afterwards (``m0, m1, ...`` in walk order).
"""

from __future__ import annotations

from typing import Any

from model_trace.graph import Edge, Graph, ModuleCall, Node, Repeat, Stats

MAX_PERIOD = 64
"""Longest repeated pattern looked for (items per iteration)."""


def fold_repeats(graph: Graph) -> Graph:
    """Fold ``graph`` in place (see the module docstring) and return it."""
    before = (len(graph.modules), len(graph.nodes), len(graph.tensors), len(graph.edges))
    _Folder(graph).run()
    compact_ids(graph)
    graph.meta["folded"] = {
        "before": dict(zip(("modules", "nodes", "tensors", "edges"), before, strict=True)),
        "after": {"modules": len(graph.modules), "nodes": len(graph.nodes),
                  "tensors": len(graph.tensors), "edges": len(graph.edges)},
    }
    return graph


def find_runs(sequence: list[int], max_period: int = MAX_PERIOD) -> list[tuple[int, int, int]]:
    """Runs ``(start, period, count)`` of a pattern repeated at least twice back to back,
    left to right; at each start the run covering most items wins (the shorter period on a
    tie)."""
    runs: list[tuple[int, int, int]] = []
    n = len(sequence)
    i = 0
    while i < n - 1:
        best: tuple[int, int] | None = None  # (covered, period)
        first = sequence[i]
        j = i
        while True:
            try:
                j = sequence.index(first, j + 1, min(n, i + max_period + 1))
            except ValueError:
                break
            period = j - i
            if i + 2 * period > n:
                break
            pattern = sequence[i:j]
            if sequence[j:j + period] != pattern:
                continue
            count = 2
            while sequence[i + count * period:i + (count + 1) * period] == pattern:
                count += 1
            if best is None or count * period > best[0]:
                best = (count * period, period)
        if best is None:
            i += 1
            continue
        covered, period = best
        runs.append((i, period, covered // period))
        i += covered
    return runs


class _Folder:
    def __init__(self, graph: Graph) -> None:
        self.graph = graph
        self.signatures: dict[tuple[Any, ...], int] = {}
        self.signature: dict[str, int] = {}
        self.alias: dict[str, str] = {}
        self.tensor_alias: dict[str, str] = {}
        self.incident: dict[str, list[int]] = {}
        self.dead_edges: set[int] = set()
        self.loops = 0
        self.experts = graph.meta.get("experts", {})

    def intern(self, key: tuple[Any, ...]) -> int:
        found = self.signatures.get(key)
        if found is None:
            found = self.signatures[key] = len(self.signatures)
        return found

    def included(self, item: str) -> bool:
        """Items that take part in signatures: nodes and called module calls."""
        module = self.graph.modules.get(item)
        return module is None or module.called

    # -- the pass ----------------------------------------------------------------------
    def run(self) -> None:
        graph = self.graph
        for index, edge in enumerate(graph.edges):
            self.incident.setdefault(edge.src, []).append(index)
            self.incident.setdefault(edge.dst, []).append(index)
        for call in reversed(graph.walk_modules()):
            if call.id not in graph.modules:
                continue  # dropped with an enclosing member
            self.fold_children(call)
            self.signature[call.id] = self.module_signature(call)
        self.rewrite()

    def node_signature(self, node: Node, parent: str) -> int:
        nodes, tensors = self.graph.nodes, self.graph.tensors
        wiring = []
        for tensor_id in node.inputs:
            producer = tensors[tensor_id].producer
            wiring.append(producer is not None and producer in nodes
                          and nodes[producer].parent == parent)
        source = node.source
        return self.intern(("n", node.kind, node.name, source.file if source else None,
                            source.line if source else None, tuple(wiring), len(node.params),
                            len(node.outputs)))

    def module_signature(self, call: ModuleCall) -> int:
        children = tuple(self.signature_of(c, call.id) for c in call.children
                         if self.included(c))
        return self.intern(("m", call.kind, call.cls, call.extra_repr, call.called, children))

    def signature_of(self, item: str, parent: str) -> int:
        found = self.signature.get(item)
        if found is None:
            node = self.graph.nodes[item]
            found = self.signature[item] = self.node_signature(node, parent)
        return found

    # -- folding one call's children ---------------------------------------------------
    def fold_children(self, call: ModuleCall) -> None:
        items = [c for c in call.children if self.included(c)]
        if len(items) < 2:
            return
        sequence = [self.signature_of(item, call.id) for item in items]
        runs = find_runs(sequence)
        if not runs:
            return
        folded: list[str] = []
        position = 0
        for start, period, count in runs:
            folded.extend(items[position:start])
            folded.append(self.fold_run(call, items, sequence, start, period, count))
            position = start + period * count
        folded.extend(items[position:])
        call.children = folded + [c for c in call.children if not self.included(c)]

    def fold_run(self, call: ModuleCall, items: list[str], sequence: list[int], start: int,
                 period: int, count: int) -> str:
        graph = self.graph
        members = [items[start + j * period:start + (j + 1) * period] for j in range(count)]
        self.drop_edges_between(members)
        stats = [self.stats_of(member) for member in members]
        labels = [self.label_of(member, call, j) for j, member in enumerate(members)]
        for member in members[1:]:
            for item, counterpart in zip(member, members[0], strict=True):
                self.map_subtree(item, counterpart)
            for item in member:
                self.remove(item)
        first = members[0]
        if period == 1 and first[0] in graph.modules:
            representative = graph.modules[first[0]]
            representative.repeat = Repeat(count=count, members=labels, member_stats=stats,
                                           note=self.note(first, count))
            self.signature[representative.id] = self.intern(
                ("rep", self.signature[representative.id], count))
            return representative.id
        self.loops += 1
        loop_id = f"loop{self.loops}"
        while loop_id in graph.modules:
            loop_id += "_"
        modules_inside = [graph.modules[i] for i in first if i in graph.modules]
        containers = {m.path.rpartition(".")[0] for m in modules_inside}
        path = containers.pop() if len(containers) == 1 and modules_inside else call.path
        loop = ModuleCall(id=loop_id, path=path, cls="loop", parent=call.id,
                          children=list(first), kind="loop", stats=stats[0].copy(),
                          repeat=Repeat(count=count, members=labels, member_stats=stats,
                                        note=self.note(first, count)))
        graph.modules[loop_id] = loop
        for item in first:
            if item in graph.modules:
                graph.modules[item].parent = loop_id
            else:
                graph.nodes[item].parent = loop_id
        self.signature[loop_id] = self.intern(("loop",
                                               tuple(sequence[start:start + period])))
        return loop_id

    def note(self, first: list[str], count: int) -> str:
        """``Expert ×252 of 256 called, 8 active per token`` for a routed group."""
        modules = [self.graph.modules[i] for i in first if i in self.graph.modules]
        if len(modules) != 1:
            return "" if modules else f"{count} iterations"
        container = modules[0].path.rpartition(".")[0]
        group = self.experts.get(container)
        if group is None:
            return ""
        active = group["active_per_token"]
        active_text = f"{active:g}"
        return (f"{group['cls']} ×{group['called']} of {group['count']} called, "
                f"{active_text} active per token")

    def label_of(self, member: list[str], call: ModuleCall, index: int) -> str:
        for item in member:
            module = self.graph.modules.get(item)
            if module is not None:
                return module.path
        return f"{call.path}#{index}" if call.path else f"#{index}"

    def stats_of(self, member: list[str]) -> Stats:
        total = Stats()
        for item in member:
            module = self.graph.modules.get(item)
            total.add(module.stats if module is not None else self.graph.nodes[item].stats)
        return total

    def subtree(self, items: list[str]) -> tuple[list[str], list[str]]:
        """Node ids and module ids under ``items`` (included or not)."""
        nodes: list[str] = []
        modules: list[str] = []
        stack = list(items)
        while stack:
            item = stack.pop()
            module = self.graph.modules.get(item)
            if module is None:
                nodes.append(item)
            else:
                modules.append(item)
                stack.extend(module.children)
        return nodes, modules

    def resolve(self, item: str) -> str:
        alias = self.alias
        if item not in alias:
            return item
        chain = []
        while item in alias:
            chain.append(item)
            item = alias[item]
        for link in chain:  # path compression
            alias[link] = item
        return item

    def resolve_tensor(self, tensor_id: str) -> str:
        alias = self.tensor_alias
        while tensor_id in alias:
            tensor_id = alias[tensor_id]
        return tensor_id

    def drop_edges_between(self, members: list[list[str]]) -> None:
        """Mark edges from one member into another (the chain through a run) as dropped."""
        membership: dict[str, int] = {}
        member_nodes = []
        for index, member in enumerate(members):
            nodes, _ = self.subtree(member)
            member_nodes.append(nodes)
            for node in nodes:
                membership[node] = index
        edges = self.graph.edges
        for index in range(1, len(members)):
            for node in member_nodes[index]:
                for edge_index in self.incident.get(node, ()):
                    if edge_index in self.dead_edges:
                        continue
                    edge = edges[edge_index]
                    src = membership.get(self.resolve(edge.src))
                    dst = membership.get(self.resolve(edge.dst))
                    if src is not None and dst is not None and src != dst:
                        self.dead_edges.add(edge_index)

    def map_subtree(self, item: str, counterpart: str) -> None:
        """Alias every item (and output tensor) under ``item`` to its counterpart."""
        graph = self.graph
        stack = [(item, counterpart)]
        while stack:
            a, b = stack.pop()
            self.alias[a] = b
            if a in graph.nodes:
                for tensor_a, tensor_b in zip(graph.nodes[a].outputs, graph.nodes[b].outputs,
                                              strict=False):
                    if tensor_a != tensor_b:
                        self.tensor_alias[tensor_a] = tensor_b
                moved = self.incident.pop(a, None)
                if moved:
                    self.incident.setdefault(b, []).extend(moved)
                continue
            mine = [c for c in graph.modules[a].children if self.included(c)]
            theirs = [c for c in graph.modules[b].children if self.included(c)]
            stack.extend(zip(mine, theirs, strict=True))

    def remove(self, item: str) -> None:
        nodes, modules = self.subtree([item])
        for node in nodes:
            self.graph.nodes.pop(node, None)
        for module in modules:
            self.graph.modules.pop(module, None)

    # -- rewriting references ----------------------------------------------------------
    def rewrite(self) -> None:
        graph = self.graph
        nodes = graph.nodes
        kept: list[Edge] = []
        seen: set[tuple[str, str, str]] = set()
        for index, edge in enumerate(graph.edges):
            if index in self.dead_edges:
                continue
            src, dst = self.resolve(edge.src), self.resolve(edge.dst)
            if src == dst or src not in nodes or dst not in nodes:
                continue
            key = (src, dst, self.resolve_tensor(edge.tensor))
            if key not in seen:
                seen.add(key)
                kept.append(Edge(*key))
        graph.edges = kept
        referenced: set[str] = set()
        for node in nodes.values():
            node.inputs = self._tensors(node.inputs)
            node.outputs = self._tensors(node.outputs)
            referenced.update(node.inputs)
            referenced.update(node.outputs)
        for call in graph.modules.values():
            call.inputs = self._tensors(call.inputs)
            call.outputs = self._tensors(call.outputs)
            referenced.update(call.inputs)
            referenced.update(call.outputs)
        referenced.update(edge.tensor for edge in kept)
        tensors = {}
        for tensor_id, tensor in graph.tensors.items():
            if tensor_id in referenced:
                if tensor.producer is not None:
                    producer = self.resolve(tensor.producer)
                    tensor.producer = producer if producer in nodes else None
                tensors[tensor_id] = tensor
        graph.tensors = tensors

    def _tensors(self, ids: list[str]) -> list[str]:
        mapped: list[str] = []
        for tensor_id in ids:
            resolved = self.resolve_tensor(tensor_id)
            if resolved not in mapped:
                mapped.append(resolved)
        return mapped


def compact_ids(graph: Graph) -> None:
    """Renumber modules ``m0, m1, ...`` in walk order, nodes ``n0, ...`` in call order (the
    order of their old numbers) and tensors ``t0, ...`` in order of first use."""
    order = graph.walk_modules()
    module_ids = {call.id: f"m{i}" for i, call in enumerate(order)}
    node_order = sorted((c for call in order for c in call.children if c in graph.nodes),
                        key=_number)
    node_ids = {old: f"n{i}" for i, old in enumerate(node_order)}
    tensor_ids: dict[str, str] = {}

    def tensor(old: str) -> str:
        new = tensor_ids.get(old)
        if new is None:
            new = tensor_ids[old] = f"t{len(tensor_ids)}"
        return new

    nodes: dict[str, Node] = {}
    for old in node_order:
        node = graph.nodes[old]
        node.id = node_ids[old]
        node.parent = module_ids[node.parent]
        node.inputs = [tensor(t) for t in node.inputs]
        node.outputs = [tensor(t) for t in node.outputs]
        nodes[node.id] = node
    modules: dict[str, ModuleCall] = {}
    for call in order:
        call.id = module_ids[call.id]
        call.parent = module_ids[call.parent] if call.parent is not None else None
        call.children = [module_ids.get(c) or node_ids[c] for c in call.children]
        call.inputs = [tensor(t) for t in call.inputs]
        call.outputs = [tensor(t) for t in call.outputs]
        modules[call.id] = call
    edges = [Edge(node_ids[e.src], node_ids[e.dst], tensor(e.tensor)) for e in graph.edges]
    tensors = {}
    for old, new in sorted(tensor_ids.items(), key=lambda kv: int(kv[1][1:])):
        value = graph.tensors[old]
        value.id = new
        value.producer = node_ids.get(value.producer) if value.producer is not None else None
        tensors[new] = value
    graph.root = module_ids[graph.root]
    graph.modules, graph.nodes, graph.tensors, graph.edges = modules, nodes, tensors, edges


def _number(item_id: str) -> tuple[int, str]:
    digits = item_id.lstrip("abcdefghijklmnopqrstuvwxyz")
    return (int(digits), item_id) if digits.isdigit() else (1 << 62, item_id)
