"""Lay out a graph group by group: each expanded group's direct children form one small layered
graph, placed by graphviz-pure's ``dot`` (a self-contained Rust port shipped as a PyPI wheel).

Groups are laid out bottom-up, so an expanded child's size is known before its parent is laid
out, and all groups of one nesting level go to a single ``dot`` process. Groups whose ``dot``
input is identical (repeated layers, experts) are laid out once. Nothing ever lays out the
whole graph at once, and no group has more than ``view_tree.CHUNK_LIMIT`` boxes.

The browser viewer lays out groups it has to with dagre, using the same rank direction,
separations and box sizes (``LAYOUT_CONSTANTS`` travels with the view data), and keeps these
build-time group layouts until the reader changes what is expanded.
"""

from __future__ import annotations

import math
import shlex
import shutil
import subprocess
from dataclasses import dataclass, field

from model_trace.errors import ModelTraceError
from model_trace.graph import Graph
from model_trace.view_tree import Link, ViewTree, expanded_groups

POINTS_PER_INCH = 72.0
NODE_HEIGHT = 28.0
MODULE_HEIGHT = 34.0
CHAR_WIDTH = 7.0
LABEL_PADDING = 20.0
MIN_WIDTH = 56.0
GROUP_PADDING = 14.0
GROUP_TITLE = 22.0
NODE_SEPARATION = 18.0
"""Horizontal gap between boxes of one rank, in pixels (dot's ``nodesep``, dagre's)."""
RANK_SEPARATION = 22.0
"""Vertical gap between ranks, in pixels (dot's ``ranksep``, dagre's)."""
EDGE_LABEL_SIZE = 10.0
"""Font size of the tensor-shape labels on edges."""
BIG_GROUP = 100
"""Groups with more boxes than this get straight edges and one network-simplex pass
(``splines=line; nslimit=1``): measured on graphviz-pure, a 160-box group takes 0.6 s with
splines and 56 ms without, a 300-box one 11 s against 0.2 s."""
GRID_MIN = 9
"""A group of at least this many boxes and no links (experts never called) is a grid, not a
single dot rank as wide as all of them."""

LAYOUT_CONSTANTS: dict[str, float] = {
    "nodeHeight": NODE_HEIGHT,
    "moduleHeight": MODULE_HEIGHT,
    "charWidth": CHAR_WIDTH,
    "labelPadding": LABEL_PADDING,
    "minWidth": MIN_WIDTH,
    "groupPadding": GROUP_PADDING,
    "groupTitle": GROUP_TITLE,
    "nodeSep": NODE_SEPARATION,
    "rankSep": RANK_SEPARATION,
    "edgeLabelSize": EDGE_LABEL_SIZE,
    "gridMin": GRID_MIN,
}

Point = tuple[float, float]


@dataclass
class Box:
    """A placed node or group, in absolute pixels (top-left corner)."""

    id: str
    label: str
    x: float
    y: float
    width: float
    height: float
    expanded: bool = False


@dataclass
class Route:
    """A placed edge between two sibling boxes, with its tensor-shape label."""

    src: str
    dst: str
    tensors: list[str]
    points: list[Point]
    label: str
    label_at: Point | None


@dataclass
class GroupLayout:
    """One group's children placed relative to the group's inner area (what dot returned)."""

    width: float
    height: float
    centers: dict[str, Point]
    routes: list[tuple[str, str, list[Point], Point | None]]


@dataclass
class Layout:
    """Everything a renderer needs: the canvas size, boxes (parents first) and routes.

    ``groups`` keeps each expanded group's relative layout, which the viewer reuses as long as
    that group and its children's sizes are unchanged.
    """

    tree: ViewTree
    width: float
    height: float
    boxes: dict[str, Box] = field(default_factory=dict)
    routes: list[Route] = field(default_factory=list)
    groups: dict[str, GroupLayout] = field(default_factory=dict)


def view_tree(graph: Graph | ViewTree) -> ViewTree:
    """The view tree of ``graph``; callers that already built one pass it to save the work."""
    return graph if isinstance(graph, ViewTree) else ViewTree.from_graph(graph)


def expanded_modules(graph: Graph | ViewTree, depth: int) -> set[str]:
    """Groups open in the first view: the root and every module less than ``depth`` below it."""
    return expanded_groups(view_tree(graph), depth)


def item_label(graph: Graph | ViewTree, item_id: str) -> str:
    """The text drawn in a box: ``name: Class`` for modules (``×N`` when folded), op names."""
    return view_tree(graph).items[item_id].label


def layout(graph: Graph | ViewTree, expanded: set[str]) -> Layout:
    """Place every visible box and edge with the groups in ``expanded`` open."""
    tree = view_tree(graph)
    open_groups = _visible_open_groups(tree, expanded)
    placed: dict[str, GroupLayout] = {}
    by_level: dict[int, list[str]] = {}
    for group_id in open_groups:
        by_level.setdefault(tree.depth_of(group_id), []).append(group_id)
    for level in sorted(by_level, reverse=True):
        sources: dict[str, str] = {}
        for group_id in by_level[level]:
            if _is_grid(tree, group_id):
                placed[group_id] = grid_layout([item_size(tree, c, placed)
                                                for c in tree.items[group_id].children])
            else:
                sources[group_id] = _dot_source(tree, group_id, placed)
        unique = list(dict.fromkeys(sources.values()))
        results = dict(zip(unique, _run_dot(unique), strict=True))
        for group_id, source in sources.items():
            placed[group_id] = results[source]
    return _compose(tree, placed)


def item_size(tree: ViewTree, item_id: str, placed: dict[str, GroupLayout]) -> Point:
    """The box of an item: its label's width, or the laid-out children plus padding."""
    item = tree.items[item_id]
    text_width = len(item.label) * CHAR_WIDTH + LABEL_PADDING
    if item_id in placed:
        inner = placed[item_id]
        return (
            max(inner.width + 2 * GROUP_PADDING, text_width),
            inner.height + 2 * GROUP_PADDING + GROUP_TITLE,
        )
    height = MODULE_HEIGHT if item.is_group else NODE_HEIGHT
    return (max(text_width, MIN_WIDTH), height)


def edge_label(tree: ViewTree, tensors: list[str]) -> str:
    """``(2, 16, 64)``, or ``(2, 16, 64) +2`` when more tensors share the link."""
    label = tree.graph.tensors[tensors[0]].shape_label
    return label if len(tensors) == 1 else f"{label} +{len(tensors) - 1}"


def _is_grid(tree: ViewTree, group_id: str) -> bool:
    return len(tree.items[group_id].children) >= GRID_MIN and not tree.links.get(group_id)


def grid_layout(sizes: list[Point]) -> GroupLayout:
    """Boxes without links in rows, about twice as many columns as rows (the viewer's rule)."""
    columns = max(1, math.ceil(math.sqrt(len(sizes) / 2)))
    widths = [0.0] * columns
    heights = [0.0] * math.ceil(len(sizes) / columns)
    for i, (width, height) in enumerate(sizes):
        widths[i % columns] = max(widths[i % columns], width)
        heights[i // columns] = max(heights[i // columns], height)
    lefts = [sum(widths[:c]) + c * NODE_SEPARATION for c in range(columns)]
    tops = [sum(heights[:r]) + r * RANK_SEPARATION for r in range(len(heights))]
    centers = {
        f"c{i}": (round(lefts[i % columns] + widths[i % columns] / 2, 1),
                  round(tops[i // columns] + heights[i // columns] / 2, 1))
        for i in range(len(sizes))
    }
    width = lefts[-1] + widths[-1]
    height = tops[-1] + heights[-1]
    return GroupLayout(round(width, 1), round(height, 1), centers, [])


def _visible_open_groups(tree: ViewTree, expanded: set[str]) -> list[str]:
    """Expanded groups whose ancestors are all expanded (the others are not drawn)."""
    opened: list[str] = []
    stack = [tree.root]
    while stack:
        item = tree.items[stack.pop()]
        if item.is_group and item.id in expanded and item.children:
            opened.append(item.id)
            stack.extend(item.children)
    return opened


def _dot_source(tree: ViewTree, group_id: str, placed: dict[str, GroupLayout]) -> str:
    """One group as a dot graph; names are child positions, so equal groups give equal text."""
    children = tree.items[group_id].children
    index = {child: i for i, child in enumerate(children)}
    links: list[Link] = tree.links.get(group_id, [])
    big = len(children) > BIG_GROUP
    lines = [
        "digraph g {",
        f"rankdir=TB; nodesep={NODE_SEPARATION / POINTS_PER_INCH:.4f}; "
        f"ranksep={RANK_SEPARATION / POINTS_PER_INCH:.4f}; "
        + ("splines=line; nslimit=1;" if big else "splines=spline;"),
        'node [shape=box, fixedsize=true, label=""];',
        f'edge [fontsize={EDGE_LABEL_SIZE:g}, fontname="Helvetica"];',
    ]
    for child in children:
        width, height = item_size(tree, child, placed)
        lines.append(f"c{index[child]} [width={width / POINTS_PER_INCH:.4f}, "
                     f"height={height / POINTS_PER_INCH:.4f}];")
    for link in links:
        label = edge_label(tree, link.tensors).replace('"', "'")
        lines.append(f'c{index[link.src]} -> c{index[link.dst]} [label="{label}"];')
    lines.append("}")
    return "\n".join(lines)


def dot_executable() -> str:
    """The graphviz-pure program, installed with this package from PyPI."""
    found = shutil.which("graphviz-pure")
    if found is None:
        raise ModelTraceError(
            "the layout program 'graphviz-pure' was not found on PATH; "
            "install it with `pip install graphviz-pure` (a dependency of mkdocs-model-trace)"
        )
    return found


def _run_dot(sources: list[str]) -> list[GroupLayout]:
    if not sources:
        return []
    completed = subprocess.run(
        [dot_executable(), "-Tplain"],
        input="\n".join(sources),
        capture_output=True,
        text=True,
        check=False,
    )
    if completed.returncode != 0:
        raise ModelTraceError(f"graphviz-pure failed: {completed.stderr.strip()}")
    results = _parse_plain(completed.stdout)
    if len(results) != len(sources):
        raise ModelTraceError(
            f"graphviz-pure returned {len(results)} layouts for {len(sources)} groups; "
            "report this with the model that triggered it"
        )
    return results


def _parse_plain(text: str) -> list[GroupLayout]:
    """Read dot's ``plain`` output (inches, y up) into pixels with y down, one per graph.

    Node names are ``c<child index>``; they are kept as is and mapped back by ``_compose``.
    """
    results: list[GroupLayout] = []
    current: GroupLayout | None = None
    half_sizes: dict[str, Point] = {}
    for line in text.splitlines():
        parts = shlex.split(line) if '"' in line else line.split()
        if not parts:
            continue
        if parts[0] == "graph":
            current = GroupLayout(float(parts[2]) * POINTS_PER_INCH,
                                  float(parts[3]) * POINTS_PER_INCH, {}, [])
            results.append(current)
            half_sizes = {}
        elif parts[0] == "node" and current is not None:
            current.centers[parts[1]] = _point(parts[2], parts[3], current.height)
            half_sizes[parts[1]] = (float(parts[4]) * POINTS_PER_INCH / 2,
                                    float(parts[5]) * POINTS_PER_INCH / 2)
        elif parts[0] == "edge" and current is not None:
            count = int(parts[3])
            coords = parts[4 : 4 + 2 * count]
            points = [_point(coords[i], coords[i + 1], current.height)
                      for i in range(0, len(coords), 2)]
            rest = parts[4 + 2 * count :]
            label_at = _point(rest[1], rest[2], current.height) if len(rest) > 3 else None
            head = parts[2]
            points[-1] = _to_boundary(points, current.centers[head], half_sizes[head])
            current.routes.append((parts[1], head, points, label_at))
    return results


def _to_boundary(points: list[Point], center: Point, half: Point) -> Point:
    """Where the route should end: on the head box's border, not where dot stopped.

    dot's spline ends where its own arrowhead would begin (about 11 px short of the box); the
    renderers draw a small marker at the very end instead. The end point moves on along the
    last control point's direction to the border, so the curve keeps its final tangent and
    the route stays one point per Bézier piece; dagre's routes end on the border too.
    """
    (px, py), (qx, qy) = points[-1], points[-2]
    dx, dy = px - qx, py - qy
    enter, leave = 0.0, math.inf
    for start, step, low, high in ((px, dx, center[0] - half[0], center[0] + half[0]),
                                   (py, dy, center[1] - half[1], center[1] + half[1])):
        if abs(step) < 1e-9:
            if not low <= start <= high:
                return points[-1]  # parallel to this side and outside: the ray misses
            continue
        near, far = sorted(((low - start) / step, (high - start) / step))
        enter, leave = max(enter, near), min(leave, far)
    if enter <= 0 or enter > leave:
        return points[-1]  # already at the box, or the ray misses it
    return (round(px + enter * dx, 1), round(py + enter * dy, 1))


def _point(x: str, y: str, height: float) -> Point:
    return (round(float(x) * POINTS_PER_INCH, 1), round(height - float(y) * POINTS_PER_INCH, 1))


def _compose(tree: ViewTree, placed: dict[str, GroupLayout]) -> Layout:
    """Turn per-group relative positions into absolute boxes, parents before children.

    A group's children sit centred below its title: the same rule the viewer uses.
    """
    root_size = item_size(tree, tree.root, placed)
    result = Layout(tree=tree, width=root_size[0], height=root_size[1])
    result.boxes[tree.root] = Box(tree.root, tree.items[tree.root].label, 0.0, 0.0,
                                  *root_size, expanded=tree.root in placed)
    stack = [tree.root]
    while stack:
        group_id = stack.pop()
        if group_id not in placed:
            continue
        children = tree.items[group_id].children
        relative = _by_child_id(placed[group_id], children)
        result.groups[group_id] = relative
        outer = result.boxes[group_id]
        left = outer.x + (outer.width - relative.width) / 2
        top = outer.y + GROUP_PADDING + GROUP_TITLE
        for child in children:
            cx, cy = relative.centers[child]
            width, height = item_size(tree, child, placed)
            result.boxes[child] = Box(child, tree.items[child].label, left + cx - width / 2,
                                      top + cy - height / 2, width, height,
                                      expanded=child in placed)
        links = {(link.src, link.dst): link for link in tree.links.get(group_id, [])}
        for src, dst, points, label_at in relative.routes:
            tensors = links[(src, dst)].tensors
            result.routes.append(Route(
                src=src,
                dst=dst,
                tensors=tensors,
                points=[(left + x, top + y) for x, y in points],
                label=edge_label(tree, tensors),
                label_at=(left + label_at[0], top + label_at[1]) if label_at else None,
            ))
        stack.extend(reversed([child for child in children if child in placed]))
    return result


def _by_child_id(raw: GroupLayout, children: list[str]) -> GroupLayout:
    """Rename dot's ``c<index>`` names to child ids (equal groups share one raw layout)."""
    name = {f"c{i}": child for i, child in enumerate(children)}
    return GroupLayout(
        width=raw.width,
        height=raw.height,
        centers={name[k]: v for k, v in raw.centers.items()},
        routes=[(name[s], name[d], pts, at) for s, d, pts, at in raw.routes],
    )
