"""Lay out a Graph group by group: each expanded module's direct children form one small layered
graph, placed by graphviz-pure's ``dot`` (a self-contained port shipped as a PyPI wheel).

Groups are laid out bottom-up, so an expanded child's size is known before its parent is laid
out, and all groups of one nesting level go to a single ``dot`` process. Nothing ever lays out
the whole graph at once.
"""

from __future__ import annotations

import shlex
import shutil
import subprocess
from collections import defaultdict
from dataclasses import dataclass, field

from model_trace.errors import ModelTraceError
from model_trace.graph import Graph

POINTS_PER_INCH = 72.0
NODE_HEIGHT = 28.0
MODULE_HEIGHT = 34.0
CHAR_WIDTH = 7.0
LABEL_PADDING = 20.0
GROUP_PADDING = 14.0
GROUP_TITLE = 22.0


@dataclass
class Box:
    """A placed node or module, in absolute pixels (top-left corner)."""

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
    points: list[tuple[float, float]]
    label: str
    label_at: tuple[float, float] | None


@dataclass
class Layout:
    """Everything a renderer needs: the canvas size, boxes (parents first) and routes."""

    width: float
    height: float
    boxes: dict[str, Box] = field(default_factory=dict)
    routes: list[Route] = field(default_factory=list)


@dataclass
class _Group:
    module_id: str
    items: list[str]
    links: dict[tuple[str, str], list[str]]
    sizes: dict[str, tuple[float, float]] = field(default_factory=dict)


@dataclass
class _Placed:
    width: float
    height: float
    centers: dict[str, tuple[float, float]]
    routes: list[tuple[str, str, list[tuple[float, float]], tuple[float, float] | None]]


def item_label(graph: Graph, item_id: str) -> str:
    """The text drawn in a box: ``name: Class`` for modules (``×N`` when folded), op names."""
    if item_id in graph.modules:
        module = graph.modules[item_id]
        label = module.label
        if module.repeat is not None:
            label += f" ×{module.repeat.count}"
        return label
    return graph.nodes[item_id].name


def expanded_modules(graph: Graph, depth: int) -> set[str]:
    """Modules open in the first view: the root and everything less than ``depth`` below it."""
    opened: set[str] = set()
    stack = [(graph.root, 0)]
    while stack:
        module_id, level = stack.pop()
        if level > depth:
            continue
        opened.add(module_id)
        stack.extend((c, level + 1) for c in graph.modules[module_id].children
                     if c in graph.modules)
    return opened


def layout(graph: Graph, expanded: set[str]) -> Layout:
    """Place every visible box and edge of ``graph`` with the modules in ``expanded`` open."""
    groups = _collect_groups(graph, expanded)
    placed: dict[str, _Placed] = {}
    for level in sorted({_depth(graph, g) for g in groups}, reverse=True):
        batch = [g for g in groups.values() if _depth(graph, g.module_id) == level]
        for group in batch:
            group.sizes = {item: _item_size(graph, item, placed) for item in group.items}
        for group, result in zip(batch, _run_dot(graph, batch), strict=True):
            placed[group.module_id] = result
    return _compose(graph, groups, placed)


def _depth(graph: Graph, item: str | _Group) -> int:
    module_id = item.module_id if isinstance(item, _Group) else item
    return len(graph.ancestors(module_id))


def _collect_groups(graph: Graph, expanded: set[str]) -> dict[str, _Group]:
    groups = {
        m: _Group(m, list(graph.modules[m].children), defaultdict(list))
        for m in expanded
        if m in graph.modules and graph.modules[m].children
    }
    parent_of = {m.id: m.parent for m in graph.modules.values()}
    parent_of.update({n.id: n.parent for n in graph.nodes.values()})
    for edge in graph.edges:
        src_chain = _chain(edge.src, parent_of)
        dst_chain = _chain(edge.dst, parent_of)
        common = _lowest_common(src_chain, dst_chain)
        if common is None or common not in groups:
            continue
        src_item = src_chain[src_chain.index(common) - 1]
        dst_item = dst_chain[dst_chain.index(common) - 1]
        if src_item != dst_item:
            tensors = groups[common].links[(src_item, dst_item)]
            if edge.tensor not in tensors:
                tensors.append(edge.tensor)
    return groups


def _chain(item: str, parent_of: dict[str, str | None]) -> list[str]:
    chain = [item]
    parent = parent_of[item]
    while parent is not None:
        chain.append(parent)
        parent = parent_of[parent]
    return chain


def _lowest_common(a: list[str], b: list[str]) -> str | None:
    in_b = set(b)
    for item in a[1:]:
        if item in in_b:
            return item
    return None


def _item_size(graph: Graph, item: str, placed: dict[str, _Placed]) -> tuple[float, float]:
    text_width = len(item_label(graph, item)) * CHAR_WIDTH + LABEL_PADDING
    if item in placed:
        inner = placed[item]
        return (
            max(inner.width + 2 * GROUP_PADDING, text_width),
            inner.height + 2 * GROUP_PADDING + GROUP_TITLE,
        )
    height = MODULE_HEIGHT if item in graph.modules else NODE_HEIGHT
    return (max(text_width, 56.0), height)


def _dot_source(index: int, group: _Group, graph: Graph) -> str:
    lines = [
        f"digraph g{index} {{",
        "rankdir=TB; nodesep=0.25; ranksep=0.3; splines=spline;",
        'node [shape=box, fixedsize=true, label=""];',
        'edge [fontsize=9, fontname="Helvetica"];',
    ]
    for item in group.items:
        width, height = group.sizes[item]
        inches = (width / POINTS_PER_INCH, height / POINTS_PER_INCH)
        lines.append(f'"{item}" [width={inches[0]:.4f}, height={inches[1]:.4f}];')
    for (src, dst), tensors in group.links.items():
        label = _edge_label(graph, tensors)
        lines.append(f'"{src}" -> "{dst}" [label="{label}"];')
    lines.append("}")
    return "\n".join(lines)


def _edge_label(graph: Graph, tensors: list[str]) -> str:
    label = graph.tensors[tensors[0]].shape_label
    return label if len(tensors) == 1 else f"{label} +{len(tensors) - 1}"


def dot_executable() -> str:
    """The graphviz-pure program, installed with this package from PyPI."""
    found = shutil.which("graphviz-pure")
    if found is None:
        raise ModelTraceError(
            "the layout program 'graphviz-pure' was not found on PATH; "
            "install it with `pip install graphviz-pure` (a dependency of mkdocs-model-trace)"
        )
    return found


def _run_dot(graph: Graph, batch: list[_Group]) -> list[_Placed]:
    graph_text = "\n".join(_dot_source(i, g, graph) for i, g in enumerate(batch))
    completed = subprocess.run(
        [dot_executable(), "-Tplain"],
        input=graph_text,
        capture_output=True,
        text=True,
        check=False,
    )
    if completed.returncode != 0:
        raise ModelTraceError(f"graphviz-pure failed: {completed.stderr.strip()}")
    return _parse_plain(completed.stdout)


def _parse_plain(text: str) -> list[_Placed]:
    """Read dot's ``plain`` output (inches, y up) into pixels with y down, one per graph."""
    results: list[_Placed] = []
    current: _Placed | None = None
    for line in text.splitlines():
        parts = shlex.split(line)
        if not parts:
            continue
        if parts[0] == "graph":
            current = _Placed(float(parts[2]) * POINTS_PER_INCH,
                              float(parts[3]) * POINTS_PER_INCH, {}, [])
            results.append(current)
        elif parts[0] == "node" and current is not None:
            current.centers[parts[1]] = _point(parts[2], parts[3], current.height)
        elif parts[0] == "edge" and current is not None:
            count = int(parts[3])
            coords = parts[4 : 4 + 2 * count]
            points = [_point(coords[i], coords[i + 1], current.height)
                      for i in range(0, len(coords), 2)]
            rest = parts[4 + 2 * count :]
            label_at = _point(rest[1], rest[2], current.height) if len(rest) > 3 else None
            current.routes.append((parts[1], parts[2], points, label_at))
    return results


def _point(x: str, y: str, height: float) -> tuple[float, float]:
    return (float(x) * POINTS_PER_INCH, height - float(y) * POINTS_PER_INCH)


def _compose(graph: Graph, groups: dict[str, _Group], placed: dict[str, _Placed]) -> Layout:
    """Turn per-group relative positions into absolute boxes, parents before children."""
    root_size = _item_size(graph, graph.root, placed)
    result = Layout(width=root_size[0], height=root_size[1])
    result.boxes[graph.root] = Box(graph.root, item_label(graph, graph.root), 0.0, 0.0,
                                   *root_size, expanded=graph.root in placed)
    stack = [graph.root]
    while stack:
        module_id = stack.pop()
        if module_id not in placed:
            continue
        outer = result.boxes[module_id]
        inner = placed[module_id]
        left = outer.x + (outer.width - inner.width) / 2
        top = outer.y + GROUP_PADDING + GROUP_TITLE
        group = groups[module_id]
        for item in group.items:
            cx, cy = inner.centers[item]
            width, height = group.sizes[item]
            result.boxes[item] = Box(item, item_label(graph, item), left + cx - width / 2,
                                     top + cy - height / 2, width, height,
                                     expanded=item in placed)
        for src, dst, points, label_at in inner.routes:
            tensors = group.links[(src, dst)]
            result.routes.append(Route(
                src=src,
                dst=dst,
                tensors=tensors,
                points=[(left + x, top + y) for x, y in points],
                label=_edge_label(graph, tensors),
                label_at=(left + label_at[0], top + label_at[1]) if label_at else None,
            ))
        stack.extend(reversed([item for item in group.items if item in placed]))
    return result
