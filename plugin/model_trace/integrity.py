"""Does a drawn figure show the data flow its graph knows? Checked from the SVG markup alone.

A figure's SVG names what it draws: every box and op carries ``data-id`` (its view item),
an open box the class ``mt-open``, every edge ``data-src`` and ``data-dst``. An edge end is
an item id, or a *port* on an open box's border, ``<box id>:in:<tensor id>`` for a tensor
entering it and ``<box id>:out:<tensor id>`` for one leaving it, so a reader (and this
checker) can follow a tensor from its producer, across box borders, to each consumer.

``check_figure`` compares the markup with the graph and counts four kinds of problems:

- ``missing``: a visible consumer (an op, or a closed box holding the consumer) with no
  chain of drawn edges from the visible producer of one of its inputs (an op, or the closed
  box holding it), counted once per (producer, consumer) pair; a chain passes ports, the
  boxes of calls that ran nothing and returned their input (dropout in eval mode), and the
  members of an unfolded repeat (``<id>~<k>``: the layers the representative stands for);
- ``dead_ends``: an edge that ends on an open box itself, or on a port that no edge leaves;
- ``unconnected``: a visible op or closed box with no edge at all although the graph has
  data flow into or out of it (an op whose result nothing reads, like a tensor a model stores
  on the side, has none to draw; a module that ran nothing has none unless an op outside reads
  its weights);
- ``detached``: an edge whose first or last point is more than ``SLACK`` px away from the
  border of the box (or the port) it names, as after a stale layout.

Only what the graph says is checked: a tensor whose producer or consumer is not drawn (a
hidden constant) asks for nothing; an op a fence hides (``hide:``) is bridged, so the
producers of its inputs must reach its consumers.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Iterable
from dataclasses import dataclass, field

from model_trace.graph import Graph
from model_trace.view_tree import modules_that_ran

SVG = "{http://www.w3.org/2000/svg}"
SLACK = 1.5
"""How far (px) an edge end may lie from the border it names."""
_NUMBER = re.compile(r"-?\d+(?:\.\d+)?(?:e-?\d+)?")


@dataclass
class DrawnItem:
    """A box or op of the SVG: its rectangle, and whether it is an open box."""

    id: str
    x: float
    y: float
    width: float
    height: float
    open: bool


@dataclass
class DrawnEdge:
    """An edge of the SVG: the ends it names and the first and last points of its path."""

    src: str
    dst: str
    start: tuple[float, float] | None
    end: tuple[float, float] | None


@dataclass
class Drawing:
    """What an SVG draws, read back from its markup."""

    items: dict[str, DrawnItem] = field(default_factory=dict)
    edges: list[DrawnEdge] = field(default_factory=list)


@dataclass
class Report:
    """Problems found in one figure, each with examples for the error message."""

    missing: list[str] = field(default_factory=list)
    dead_ends: list[str] = field(default_factory=list)
    unconnected: list[str] = field(default_factory=list)
    detached: list[str] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        return {"missing": len(self.missing), "dead_ends": len(self.dead_ends),
                "unconnected": len(self.unconnected), "detached": len(self.detached)}

    @property
    def total(self) -> int:
        return sum(self.counts().values())

    def __str__(self) -> str:
        parts = []
        for name, found in (("missing", self.missing), ("dead ends", self.dead_ends),
                            ("unconnected", self.unconnected), ("detached", self.detached)):
            if found:
                parts.append(f"{len(found)} {name} ({', '.join(found[:6])}"
                             + (", ..." if len(found) > 6 else "") + ")")
        return "; ".join(parts) or "no problems"


def read_svg(svg: str) -> Drawing:
    """The boxes, ops and edges an SVG draws (any element with ``data-id`` or an edge)."""
    drawing = Drawing()
    for g in ET.fromstring(svg).iter(f"{SVG}g"):
        classes = (g.get("class") or "").split()
        if "mt-edge" in classes:
            path = g.find(f"{SVG}path")
            points = _ends(path.get("d", "")) if path is not None else (None, None)
            drawing.edges.append(DrawnEdge(g.get("data-src", ""), g.get("data-dst", ""),
                                           *points))
        elif g.get("data-id") is not None:
            rect = g.find(f"{SVG}rect")
            box = [float(rect.get(a, "0")) for a in ("x", "y", "width", "height")] if (
                rect is not None) else [0.0, 0.0, 0.0, 0.0]
            drawing.items[g.get("data-id", "")] = DrawnItem(g.get("data-id", ""), *box,
                                                            open="mt-open" in classes)
    return drawing


def _ends(d: str) -> tuple[tuple[float, float] | None, tuple[float, float] | None]:
    numbers = [float(n) for n in _NUMBER.findall(d)]
    if len(numbers) < 4:
        return None, None
    return (numbers[0], numbers[1]), (numbers[-2], numbers[-1])


def check_figure(svg: str, graph: Graph, parents: dict[str, str | None],
                 idle: Iterable[str] = ()) -> Report:
    """Check the SVG of ``graph``; ``parents`` maps every view item (modules, chunks, nodes)
    to its enclosing item, ``idle`` names the groups of modules that never ran."""
    drawing = read_svg(svg)
    report = Report()
    idle_groups = set(idle)
    following: dict[str, list[str]] = {}
    touched: set[str] = set()
    for edge in drawing.edges:
        following.setdefault(edge.src, []).append(edge.dst)
        touched.update((_owner(edge.src), _owner(edge.dst)))
    ran = modules_that_ran(graph)
    passing = {m.id for m in graph.modules.values()
               if m.id not in ran and set(m.inputs) & set(m.outputs)}
    flowing = _with_flow(graph, parents, _weights_read_from_outside(graph))
    _check_ends(drawing, following, report)
    _check_chains(drawing, graph, parents, following, passing, report)
    for item in drawing.items.values():
        if item.open or item.id in touched or item.id in idle_groups:
            continue
        if _inside(item.id, idle_groups, parents) or item.id not in flowing:
            continue
        report.unconnected.append(item.id)
    return report


def _owner(end: str) -> str:
    """The box a port belongs to (an item id is its own owner)."""
    return end.split(":", 1)[0]


def _inside(item_id: str, groups: set[str], parents: dict[str, str | None]) -> bool:
    parent = parents.get(item_id)
    while parent is not None:
        if parent in groups:
            return True
        parent = parents.get(parent)
    return False


def _with_flow(graph: Graph, parents: dict[str, str | None], weighed: set[str]) -> set[str]:
    """Items with data flow into or out of them: an end of an edge, a module whose weights an
    op outside reads, a pass-through call, and every item around one."""
    ends = {e.src for e in graph.edges} | {e.dst for e in graph.edges} | weighed
    ends |= {m.id for m in graph.modules.values()
             if m.called and set(m.inputs) & set(m.outputs)}
    found: set[str] = set()
    for item in ends:
        while item is not None and item not in found:
            found.add(item)
            item = parents.get(item)
    return found


def _weights_read_from_outside(graph: Graph) -> set[str]:
    """Modules whose parameters an op outside them reads (a figure must link them)."""
    by_path = {}
    for module in graph.modules.values():
        by_path.setdefault(module.path, module.id)
    found = set()
    for node in graph.nodes.values():
        for param in node.params:
            owner = by_path.get(param.rpartition(".")[0])
            parent: str | None = node.parent
            inside = False
            while parent is not None:
                inside = inside or parent == owner
                parent = graph.modules[parent].parent
            if owner is not None and not inside:
                found.add(owner)
    return found


def _check_ends(drawing: Drawing, following: dict[str, list[str]], report: Report) -> None:
    for edge in drawing.edges:
        target = drawing.items.get(_owner(edge.dst))
        on_open_box = target is not None and target.open and ":" not in edge.dst
        if on_open_box or (":in:" in edge.dst and edge.dst not in following):
            report.dead_ends.append(f"{edge.src}->{edge.dst}")
        for end, point in ((edge.src, edge.start), (edge.dst, edge.end)):
            box = drawing.items.get(_owner(end))
            if box is None or point is None or not _on_border(point, box, end):
                report.detached.append(f"{edge.src}->{edge.dst}")
                break


def _on_border(point: tuple[float, float], box: DrawnItem, end: str) -> bool:
    x, y = point
    left, right = box.x - SLACK, box.x + box.width + SLACK
    top, bottom = box.y - SLACK, box.y + box.height + SLACK
    if ":in:" in end:  # a port of an open box: on its top (left to right: left) border
        return (left <= x <= right and abs(y - box.y) <= SLACK) or (
            top <= y <= bottom and abs(x - box.x) <= SLACK)
    if ":out:" in end:  # on its bottom (right) border
        return (left <= x <= right and abs(y - box.y - box.height) <= SLACK) or (
            top <= y <= bottom and abs(x - box.x - box.width) <= SLACK)
    inside = left <= x <= right and top <= y <= bottom
    deep = (box.x + SLACK < x < box.x + box.width - SLACK
            and box.y + SLACK < y < box.y + box.height - SLACK)
    return inside and not deep


def _visible(item_id: str, drawing: Drawing, parents: dict[str, str | None]) -> str | None:
    """The drawn item that shows ``item_id``: itself, or the closed box that holds it."""
    chain = [item_id]
    parent = parents.get(item_id)
    while parent is not None:
        chain.append(parent)
        parent = parents.get(parent)
    for candidate in reversed(chain):  # from the root down
        drawn = drawing.items.get(candidate)
        if drawn is None:
            return None
        if not drawn.open:
            return candidate
    return None


def _check_chains(drawing: Drawing, graph: Graph, parents: dict[str, str | None],
                  following: dict[str, list[str]], passing: set[str], report: Report) -> None:
    pairs: dict[tuple[str, str], None] = {}
    for first, last in _flow_pairs(graph, parents):
        src, dst = _visible(first, drawing, parents), _visible(last, drawing, parents)
        if src is not None and dst is not None and src != dst:
            pairs.setdefault((src, dst))
    reach: dict[str, set[str]] = {}
    for src, dst in pairs:
        if src not in reach:
            reach[src] = _reachable(src, following, passing)
        if dst not in reach[src]:
            report.missing.append(f"{src}->{dst}")


def _flow_pairs(graph: Graph, parents: dict[str, str | None]) -> list[tuple[str, str]]:
    """(producer, consumer) of each edge between items of the figure, with the nodes it
    leaves out bridged: an edge into a hidden node continues to that node's consumers
    (``hide:``); a hidden constant, with no producer of its own, asks for nothing."""
    into: dict[str, list[str]] = {}
    for edge in graph.edges:
        if edge.dst not in parents:
            into.setdefault(edge.dst, []).append(edge.src)

    def producers(node: str) -> list[str]:
        found, stack, seen = [], [node], {node}
        while stack:
            for src in into.get(stack.pop(), ()):
                if src in parents:
                    found.append(src)
                elif src not in seen:
                    seen.add(src)
                    stack.append(src)
        return found

    pairs = []
    for edge in graph.edges:
        if edge.dst not in parents:
            continue
        sources = [edge.src] if edge.src in parents else producers(edge.src)
        pairs += [(src, edge.dst) for src in sources]
    return pairs


def _reachable(start: str, following: dict[str, list[str]], passing: set[str]) -> set[str]:
    """Items reached from ``start`` by one edge, or by a chain that passes only ports and
    pass-through boxes."""
    found: set[str] = set()
    seen = {start}
    stack = [start]
    while stack:
        for nxt in following.get(stack.pop(), ()):
            if nxt in seen:
                continue
            seen.add(nxt)
            if ":" in nxt or nxt in passing or "~" in nxt:
                stack.append(nxt)
            if ":" not in nxt:
                found.add(nxt)
    return found
