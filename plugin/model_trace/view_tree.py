"""The tree a reader expands and collapses: module calls, chunks of very large modules, leaf ops.

It is built once from a (folded) ``Graph`` and shared by the build-time layout, the static SVG
and the compact view data the browser viewer reads, so every stage agrees on what a box is:

- every ``ModuleCall`` is a group; a folded repeat (``ModuleCall.repeat``) is one group drawn
  as ``name: Class ×N``;
- submodules the forward never called (``ModuleCall.called`` false: experts that got no
  tokens) are gathered into one synthetic group per module, ``<module id>/idle``, drawn
  closed at the end as ``not called: 184 Expert``;
- a module with more than ``CHUNK_LIMIT`` direct children gets its children split, in call
  order, into chunks of ``CHUNK_SIZE`` (synthetic groups with ids ``<module id>/<k>``), so no
  layout run ever sees more than a few hundred boxes (256 routed experts plus their routing ops
  become a column of parts, each expandable on its own);
- every ``Node`` is a leaf, except constants and parameters when they are hidden.

Edges are lifted to the lowest common group of their two ends: inside that group they connect
the two children that contain the ends. These *links* depend only on the tree, not on what is
expanded, so they are computed once.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Literal

from model_trace.graph import Graph, Stats

CHUNK_LIMIT = 160
"""A group with more direct children than this is split into chunks."""
CHUNK_SIZE = 64
"""Children per chunk (the last chunk takes the remainder)."""

ItemKind = Literal["module", "chunk", "op", "input", "output", "constant", "parameter"]
HIDDEN_UNLESS_ASKED: frozenset[str] = frozenset({"constant", "parameter"})


@dataclass
class Link:
    """Data flow between two children of one group, with every tensor that flows along it."""

    src: str
    dst: str
    tensors: list[str] = field(default_factory=list)


@dataclass
class ViewItem:
    """One box of the view: a group (module or chunk) or a leaf (op, input, output...)."""

    id: str
    kind: ItemKind
    label: str
    parent: str | None
    children: list[str] = field(default_factory=list)
    category: str = "module"

    @property
    def is_group(self) -> bool:
        """Modules and chunks are boxes that open; everything else is a leaf."""
        return self.kind in ("module", "chunk")


@dataclass
class ViewTree:
    """Items by id (parents before children), the root's id and the links of every group."""

    graph: Graph
    root: str
    items: dict[str, ViewItem]
    links: dict[str, list[Link]]
    show_constants: bool = False

    @classmethod
    def from_graph(cls, graph: Graph, *, show_constants: bool = False) -> ViewTree:
        """The tree of ``graph``: idle submodules gathered, large groups chunked, links lifted.

        Constant and parameter nodes are left out unless ``show_constants``.
        """
        items: dict[str, ViewItem] = {}
        for module in graph.walk_modules():
            items[module.id] = ViewItem(
                id=module.id, kind="module", label=module_label(graph, module.id),
                parent=module.parent,
            )
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
        tree = cls(graph=graph, root=graph.root, items={}, links={},
                   show_constants=show_constants)
        tree.items = _with_chunks(items, graph.root)
        tree.links = _lift_edges(tree)
        return tree

    def groups(self) -> Iterator[ViewItem]:
        """Every item that can be opened, parents first."""
        return (item for item in self.items.values() if item.is_group)

    def depth_of(self, item_id: str) -> int:
        """Levels below the root, chunks included: layout runs one dot process per level."""
        depth, parent = 0, self.items[item_id].parent
        while parent is not None:
            depth, parent = depth + 1, self.items[parent].parent
        return depth

    def ancestors(self, item_id: str) -> list[str]:
        """Group ids from the item's parent up to the root."""
        chain: list[str] = []
        parent = self.items[item_id].parent
        while parent is not None:
            chain.append(parent)
            parent = self.items[parent].parent
        return chain

    def stats(self, item_id: str) -> Stats:
        """Cost of an item: its own stats for ops and modules, the sum of its parts for chunks."""
        if item_id in self.graph.modules:
            return self.graph.modules[item_id].stats
        if item_id in self.graph.nodes:
            return self.graph.nodes[item_id].stats
        total = Stats()
        for child in self.items[item_id].children:
            total.add(self.stats(child))
        return total


def module_label(graph: Graph, module_id: str) -> str:
    """``name: Class`` (the root: ``Class``), with ``×N`` for a folded repeat.

    The name is the path below the enclosing box's (``layers.0`` under the model, since a
    ModuleList is never called; ``experts.17`` under an MoE), and a repeat of numbered
    siblings names its whole run: ``layers.3–60: Block ×58``. viewer.js labels the same way.
    """
    module = graph.modules[module_id]
    if not module.path:
        return module.cls
    parent = graph.modules.get(module.parent) if module.parent is not None else None
    parent_path = parent.path if parent is not None else ""
    name = relative_name(module.path, parent_path)
    if module.repeat is None:
        return f"{name}: {module.cls}"
    members = [relative_name(m, parent_path) for m in module.repeat.members]
    return f"{numbered_run(members) or name}: {module.cls} ×{module.repeat.count}"


def relative_name(path: str, parent_path: str) -> str:
    """``path`` below ``parent_path``, or its last part if it does not lie below it."""
    if not parent_path:
        return path
    if path.startswith(parent_path + "."):
        return path[len(parent_path) + 1:]
    return path.rsplit(".", 1)[-1]


def numbered_run(names: list[str]) -> str | None:
    """``layers.3–60`` for ``layers.3`` ... ``layers.60`` in order, else None."""
    prefix, _, first = names[0].rpartition(".")
    if not (first.isascii() and first.isdigit()):
        return None
    start = int(first)
    for offset, name in enumerate(names):
        if name != (f"{prefix}." if prefix else "") + str(start + offset):
            return None
    return f"{names[0]}\u2013{start + len(names) - 1}" if len(names) > 1 else None


def expanded_groups(tree: ViewTree, depth: int) -> set[str]:
    """Groups open in the first view: the root and every group less than ``depth`` below it.

    Chunks do not count as a level: opening a module opens its chunks too, so ``depth: 2``
    shows the same modules whether or not their parent had to be split. The group of
    never-called submodules stays closed: only a reader opens it.
    """
    opened: set[str] = set()
    stack = [(tree.root, 0)]
    while stack:
        item_id, level = stack.pop()
        item = tree.items[item_id]
        if not item.is_group or level > depth or item.category == "idle":
            continue
        opened.add(item_id)
        for child in item.children:  # into a chunk: the same level; out of one: the next
            stack.append((child, level if _is_part(tree.items[child]) else level + 1))
    return opened


def _is_part(item: ViewItem) -> bool:
    """A chunk of a large module: not a level of its own (the idle group is one)."""
    return item.kind == "chunk" and item.category != "idle"


def _gather_idle(items: dict[str, ViewItem], graph: Graph, module_id: str) -> None:
    """Move the never-called submodules of a module into one closed group at its end."""
    group = items[module_id]
    idle = [c for c in group.children
            if c in graph.modules and not getattr(graph.modules[c], "called", True)]
    if len(idle) < 2:
        return
    classes: dict[str, int] = {}
    for child in idle:
        classes[graph.modules[child].cls] = classes.get(graph.modules[child].cls, 0) + 1
        items[child].parent = f"{module_id}/idle"
    words = ", ".join(f"{n} {name}" for name, n in sorted(classes.items(), key=lambda kv: -kv[1]))
    items[f"{module_id}/idle"] = ViewItem(
        id=f"{module_id}/idle", kind="chunk", label=f"not called: {words}", parent=module_id,
        children=idle, category="idle",
    )
    group.children = [c for c in group.children if c not in set(idle)] + [f"{module_id}/idle"]


def _with_chunks(items: dict[str, ViewItem], root: str) -> dict[str, ViewItem]:
    """Items in pre-order, with chunk groups inserted under every group that is too large."""
    ordered: dict[str, ViewItem] = {}
    stack = [root]
    while stack:
        item = items[stack.pop()]
        ordered[item.id] = item
        if len(item.children) > CHUNK_LIMIT and item.category != "idle":
            for chunk in _chunk(item, items):
                items[chunk.id] = chunk
        stack.extend(reversed(item.children))
    return ordered


def _chunk(group: ViewItem, items: dict[str, ViewItem]) -> list[ViewItem]:
    """Split ``group.children`` into chunk items (recursively, if there are still too many)."""
    members = group.children
    size = CHUNK_SIZE
    while -(-len(members) // size) > CHUNK_LIMIT:  # too many chunks: make them bigger
        size *= CHUNK_SIZE
    chunks: list[ViewItem] = []
    total = -(-len(members) // size)
    for index in range(total):
        part = members[index * size : (index + 1) * size]
        chunk = ViewItem(
            id=f"{group.id}/{index}", kind="chunk", label=_chunk_label(index, total, part, items),
            parent=group.id, children=list(part), category="chunk",
        )
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
            name = item.label.split(": ", 1)[-1].split(" ×", 1)[0]
            counts[name] = counts.get(name, 0) + 1
        else:
            ops += 1
    words = [f"{count} {name}" for name, count in sorted(counts.items(), key=lambda kv: -kv[1])]
    if ops:
        words.append(f"{ops} ops")
    return f"part {index + 1}/{total}: " + ", ".join(words[:3])


def _lift_edges(tree: ViewTree) -> dict[str, list[Link]]:
    """The links of every group, in the order of the graph's edges (deterministic)."""
    depth: dict[str, int] = {}
    for item in tree.items.values():  # pre-order: parents first
        depth[item.id] = 0 if item.parent is None else depth[item.parent] + 1
    by_pair: dict[tuple[str, str], Link] = {}
    links: dict[str, list[Link]] = {}
    for edge in tree.graph.edges:
        if edge.src not in tree.items or edge.dst not in tree.items:
            continue  # an end is hidden (a constant, unless shown)
        src, dst = edge.src, edge.dst
        while depth[src] > depth[dst]:
            src = tree.items[src].parent  # type: ignore[assignment]
        while depth[dst] > depth[src]:
            dst = tree.items[dst].parent  # type: ignore[assignment]
        while tree.items[src].parent != tree.items[dst].parent:
            src = tree.items[src].parent  # type: ignore[assignment]
            dst = tree.items[dst].parent  # type: ignore[assignment]
        if src == dst:
            continue  # both ends inside the same child
        link = by_pair.get((src, dst))
        if link is None:
            link = by_pair[(src, dst)] = Link(src, dst)
            links.setdefault(tree.items[src].parent, []).append(link)  # type: ignore[arg-type]
        if edge.tensor not in link.tensors:
            link.tensors.append(edge.tensor)
    return links
