"""The tree a reader expands and collapses, and the data flow drawn between its leaves.

Built once from a (folded) ``Graph``, it is everything about a figure that is structure and
text, not geometry; the JavaScript engine (``assets/viewer/*.js``) lays it out and draws it, at
build time and in the browser:

- every ``ModuleCall`` is a group labelled by ``naming.module_label``; a folded repeat is one
  group (``layers.3–60: Block ×58``) whose other members are ``member`` items, drawn after it
  only when a reader unfolds it;
- submodules that ran nothing are greyed: one called without running an op that returned
  its input (``Dropout`` in eval mode) stays where it was called, the tensor drawn through
  it; two or more that were never called (experts that got no tokens) are gathered into one
  closed group at the end of their module, ``not called: 184 Expert``;
- a module with more than ``CHUNK_LIMIT`` direct children gets them split, in call order,
  into chunks of ``CHUNK_SIZE``, so no layout sees more than a few hundred boxes; chunks are
  not a level of their own;
- every ``Node`` is a leaf, except constants, buffers and parameters when they are hidden.

The *flow* is the graph's edges between shown leaves, plus two kinds the graph only implies:
an op that reads the weight of a module it is not inside (``wkv_b`` in MLA's absorbed path)
is linked from that module's box, and a ``shared`` source (the per-layer copy of a mask or a
rotary table) is linked from the op that made the tensor.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Literal

from model_trace.graph import Graph, Stats
from model_trace.naming import display_class, module_label, relative_name

CHUNK_LIMIT = 160
"""A group with more direct children than this is split into chunks."""
CHUNK_SIZE = 64
"""Children per chunk (the last chunk takes the remainder)."""

ItemKind = Literal["module", "chunk", "idle", "member", "op", "input", "output", "constant",
                   "parameter", "buffer", "shared"]
GROUP_KINDS: frozenset[str] = frozenset({"module", "chunk", "idle"})
HIDDEN_UNLESS_ASKED: frozenset[str] = frozenset({"constant", "parameter", "buffer"})
"""Node kinds a fence's ``show_constants: false`` leaves out: values made outside the
forward that no gradient flows through."""


@dataclass
class ViewItem:
    """One box of the view: a group (module, chunk, idle group) or a leaf."""

    id: str
    kind: ItemKind
    label: str
    parent: str | None
    children: list[str] = field(default_factory=list)
    category: str = "module"
    """An op's colour group; ``idle`` for a module that ran nothing, ``module`` or ``chunk``
    for the other groups, ``member`` for a folded member."""
    level: int = 0
    """Module levels below the root: the depth at which a fence's ``depth:`` opens it."""

    @property
    def is_group(self) -> bool:
        """Modules, chunks and idle groups are boxes that open; everything else is a leaf."""
        return self.kind in GROUP_KINDS


@dataclass(frozen=True)
class Flow:
    """Data drawn from one leaf (or module box) to another: a tensor, or a module's weight."""

    src: str
    dst: str
    key: str
    """The tensor id, or ``param:<qualified name>`` for a weight read from outside."""


@dataclass
class Mark:
    """What an author (``highlight``, ``notes``) or a comparison drew on one item."""

    colour: str = ""
    """An outline colour (``#rrggbb``), or "" for none."""
    notes: list[int] = field(default_factory=list)
    """The numbers of the notes that point at the item."""
    diff: str = ""
    """In a comparison: "only" (no other variant has it) or "changed" (it differs)."""
    rows: list[tuple[str, str]] = field(default_factory=list)
    """Lines its tooltip and panel add (what differs)."""


@dataclass(frozen=True)
class Note:
    """A numbered note listed under a figure, and the items it points at."""

    number: int
    text: str
    items: tuple[str, ...]


@dataclass
class ViewTree:
    """Items by id (parents before children), the root, the folded members and the flow."""

    graph: Graph
    root: str
    items: dict[str, ViewItem]
    members: dict[str, list[str]]
    """The member items of each folded repeat, in order (the representative not included)."""
    flows: list[Flow]
    show_constants: bool = False
    marks: dict[str, Mark] = field(default_factory=dict)
    """Marks by item id (``annotate``, ``compare``)."""
    notes: list[Note] = field(default_factory=list)
    """The notes listed under the figure, in order."""

    @classmethod
    def from_graph(cls, graph: Graph, *, show_constants: bool = False) -> ViewTree:
        """The tree of ``graph``: idle submodules gathered, large groups chunked, flow found.

        Constant, buffer and parameter nodes are left out unless ``show_constants``.
        """
        items: dict[str, ViewItem] = {}
        ran = modules_that_ran(graph)
        through = passed_through(graph, ran)
        for module in graph.walk_modules():
            items[module.id] = ViewItem(
                id=module.id, kind="module", label=module_label(graph, module),
                parent=module.parent, category="module" if module.id in ran else "idle")
            for child in module.children:
                if child in graph.modules:
                    items[module.id].children.append(child)
                    continue
                node = graph.nodes[child]
                if node.kind in HIDDEN_UNLESS_ASKED and not show_constants:
                    continue
                items[module.id].children.append(child)
                items[child] = ViewItem(id=child, kind=node.kind, label=node.name,
                                        parent=module.id, category=node.category)
        for module in graph.walk_modules():
            _gather_idle(items, graph, module.id)
        ordered = _with_chunks(items, graph.root)
        _set_levels(ordered)
        members = _members(graph, ordered)
        tree = cls(graph=graph, root=graph.root, items=ordered, members=members,
                   flows=[], show_constants=show_constants)
        tree.flows = _through(_flows(tree), through, list(ordered))
        return tree

    def groups(self) -> Iterator[ViewItem]:
        """Every item that can be opened, parents first."""
        return (item for item in self.items.values() if item.is_group)

    def parents(self) -> dict[str, str | None]:
        """Every item's enclosing item (what the integrity checker walks)."""
        return {item_id: item.parent for item_id, item in self.items.items()}

    def stats(self, item_id: str) -> Stats:
        """Cost of an item: its own stats for ops and modules, the sum of its parts for
        chunks and idle groups, a folded member's own figures for a member."""
        item = self.items[item_id]
        if item.kind == "member":
            owner, index = item_id.split("~")
            repeat = self.graph.modules[owner].repeat
            assert repeat is not None
            return repeat.member_stats[int(index)]
        if item_id in self.graph.modules:
            return self.graph.modules[item_id].stats
        if item_id in self.graph.nodes:
            return self.graph.nodes[item_id].stats
        total = Stats()
        for child in item.children:
            total.add(self.stats(child))
        return total

    def deepest_level(self) -> int:
        """The depth at which every group with children is open."""
        return max((item.level + 1 for item in self.groups()
                    if item.children and item.category != "idle"), default=0)


def modules_that_ran(graph: Graph) -> set[str]:
    """Module calls that ran at least one op, directly or in a submodule."""
    ran: set[str] = set()
    for node in graph.nodes.values():
        parent: str | None = node.parent
        while parent is not None and parent not in ran:
            ran.add(parent)
            parent = graph.modules[parent].parent
    return ran


def passed_through(graph: Graph, ran: set[str]) -> dict[str, list[str]]:
    """Calls that ran no op and returned (some of) their inputs: the tensors they pass on."""
    found: dict[str, list[str]] = {}
    for module in graph.walk_modules():
        if module.called and module.id not in ran and module.parent is not None:
            same = [t for t in module.outputs if t in module.inputs]
            if same:
                found[module.id] = same
    return found


def _through(flows: list[Flow], through: dict[str, list[str]], order: list[str]) -> list[Flow]:
    """Flows of a tensor a pass-through call handed on, drawn through that call's box: the
    producer into it, and out of it to every consumer called after it."""
    position = {item_id: i for i, item_id in enumerate(order)}
    for module_id in sorted(through, key=position.__getitem__):
        at = position[module_id]
        rewritten: list[Flow] = []
        into: set[tuple[str, str]] = set()
        for flow in flows:
            if (flow.key in through[module_id] and position[flow.src] < at < position[flow.dst]):
                if (flow.src, flow.key) not in into:
                    into.add((flow.src, flow.key))
                    rewritten.append(Flow(flow.src, module_id, flow.key))
                rewritten.append(Flow(module_id, flow.dst, flow.key))
            else:
                rewritten.append(flow)
        flows = rewritten
    return flows


def _gather_idle(items: dict[str, ViewItem], graph: Graph, module_id: str) -> None:
    """Move the submodules of a module that were never called into one closed group at its
    end."""
    group = items[module_id]
    idle = [c for c in group.children if c in graph.modules and not graph.modules[c].called]
    if len(idle) < 2:
        return
    classes: dict[str, int] = {}
    for child in idle:
        name = display_class(graph, graph.modules[child])
        classes[name] = classes.get(name, 0) + 1
        items[child].parent = f"{module_id}/idle"
    words = ", ".join(f"{n} {name}" for name, n in sorted(classes.items(), key=lambda kv: -kv[1]))
    items[f"{module_id}/idle"] = ViewItem(
        id=f"{module_id}/idle", kind="idle", label=f"not called: {words}", parent=module_id,
        children=idle, category="idle")
    idle_set = set(idle)
    group.children = [c for c in group.children if c not in idle_set] + [f"{module_id}/idle"]


def _with_chunks(items: dict[str, ViewItem], root: str) -> dict[str, ViewItem]:
    """Items in pre-order, with chunk groups inserted under every group that is too large."""
    ordered: dict[str, ViewItem] = {}
    stack = [root]
    while stack:
        item = items[stack.pop()]
        ordered[item.id] = item
        if len(item.children) > CHUNK_LIMIT and item.kind in ("module", "chunk"):
            for chunk in _chunk(item, items):
                items[chunk.id] = chunk
        stack.extend(reversed(item.children))
    return ordered


def _chunk(group: ViewItem, items: dict[str, ViewItem]) -> list[ViewItem]:
    """Split ``group.children`` into chunk items (bigger chunks if there are still too many)."""
    members = group.children
    size = CHUNK_SIZE
    while -(-len(members) // size) > CHUNK_LIMIT:
        size *= CHUNK_SIZE
    chunks: list[ViewItem] = []
    total = -(-len(members) // size)
    for index in range(total):
        part = members[index * size : (index + 1) * size]
        chunk = ViewItem(
            id=f"{group.id}/{index}", kind="chunk", label=_chunk_label(index, total, part, items),
            parent=group.id, children=list(part), category="chunk")
        for member in part:
            items[member].parent = chunk.id
        chunks.append(chunk)
    group.children = [chunk.id for chunk in chunks]
    return chunks


def _chunk_label(index: int, total: int, part: list[str], items: dict[str, ViewItem]) -> str:
    """``part 2/29: 9 Expert, 55 ops``: what is inside, by class, before anyone opens it."""
    counts: dict[str, int] = {}
    ops = 0
    for member in part:
        item = items[member]
        if item.kind == "module":
            name = item.label.split(": ", 1)[-1].split(" \u00d7", 1)[0]
            counts[name] = counts.get(name, 0) + 1
        else:
            ops += 1
    words = [f"{count} {name}" for name, count in sorted(counts.items(), key=lambda kv: -kv[1])]
    if ops:
        words.append(f"{ops} ops")
    return f"part {index + 1}/{total}: " + ", ".join(words[:3])


def _set_levels(items: dict[str, ViewItem]) -> None:
    """Module levels: a chunk (a part of one module) is its module's level, what it holds one
    below; an idle group is a level of its own."""
    for item in items.values():  # pre-order: parents first
        if item.parent is None:  # the root (a focused graph's root has no parent either)
            continue
        item.level = items[item.parent].level + (0 if item.kind == "chunk" else 1)


def _members(graph: Graph, items: dict[str, ViewItem]) -> dict[str, list[str]]:
    """A ``member`` item for every folded member after the representative."""
    members: dict[str, list[str]] = {}
    for module in graph.walk_modules():
        if module.repeat is None or len(module.repeat.members) < 2:
            continue
        parent = graph.modules[module.parent] if module.parent is not None else None
        parent_path = parent.path if parent is not None else ""
        rep = items[module.id]
        ids = []
        for index, path in enumerate(module.repeat.members[1:], start=1):
            member_id = f"{module.id}~{index}"
            items[member_id] = ViewItem(
                id=member_id, kind="member",
                label=f"{relative_name(path, parent_path)}: {display_class(graph, module)}",
                parent=rep.parent, category="member", level=rep.level)
            ids.append(member_id)
        members[module.id] = ids
    return members


def _flows(tree: ViewTree) -> list[Flow]:
    """The graph's edges between shown items, weights read from outside their module, and
    the producer of each shared source; in the graph's order (deterministic)."""
    graph, items = tree.graph, tree.items
    flows = [Flow(e.src, e.dst, e.tensor) for e in graph.edges
             if e.src in items and e.dst in items]
    by_path = {}
    for module in graph.walk_modules():
        by_path.setdefault(module.path, module.id)
    seen: set[tuple[str, str]] = set()
    for node in graph.nodes.values():
        if node.id not in items:
            continue
        enclosing = set(_module_chain(graph, node.parent))
        for param in node.params:
            owner = by_path.get(param.rpartition(".")[0])
            if owner is None or owner in enclosing or (owner, node.id) in seen:
                continue
            seen.add((owner, node.id))
            flows.append(Flow(owner, node.id, f"param:{param}"))
        if node.kind == "shared" and node.outputs:
            producer = graph.tensors[node.outputs[0]].producer
            if producer is not None and producer in items and producer != node.id:
                flows.append(Flow(producer, node.id, node.outputs[0]))
    return flows


def _module_chain(graph: Graph, module_id: str | None) -> Iterator[str]:
    while module_id is not None:
        yield module_id
        module_id = graph.modules[module_id].parent
