"""Draw a Layout as a static SVG: the first paint of every graph, readable with scripts off,
printable, and convertible to PNG by cairosvg.

Colours are presentation attributes (cairosvg and feed readers understand them); the site
stylesheet overrides them through classes and CSS variables for light and dark themes. The
browser viewer draws the same markup (same classes, same attributes) when the reader expands
something, so the two never look different.
"""

from __future__ import annotations

from dataclasses import dataclass

from jinja2 import Environment, PackageLoader, select_autoescape

from model_trace.caveats import node_caveats
from model_trace.graph import Graph
from model_trace.layout import GROUP_TITLE, Box, Layout, Route, view_tree
from model_trace.view_tree import ViewTree

CATEGORY_FILLS: dict[str, str] = {
    "linear": "#cfe2ff",
    "matmul": "#d9d2f7",
    "norm": "#d3f0e0",
    "activation": "#ffe5b4",
    "elementwise": "#eef0f2",
    "reduce": "#fbd5d5",
    "index": "#f7d9ef",
    "shape": "#f4f4f4",
    "quant": "#ffd8a8",
    "collective": "#ffc9c9",
    "io": "#ffffff",
    "other": "#eceff3",
}
MODULE_FILLS = ("#f6f8fa", "#eef2f7")
CHUNK_FILL = "#fbfbfc"
TEXT_FILL = "#1f2328"
MODULE_STROKE = "#9aa3ad"
CAVEAT_STROKE = "#e5484d"
"""Outline of a node whose values were assumed or whose FLOPs lack a formula."""
NODE_STROKE = "#6e7781"
EDGE_STROKE = "#7a7f87"
EDGE_TEXT_FILL = "#57606a"

_ENVIRONMENT = Environment(
    loader=PackageLoader("model_trace", "templates"),
    autoescape=select_autoescape(default=True, default_for_string=True),
    trim_blocks=True,
    keep_trailing_newline=False,
)


@dataclass(frozen=True)
class _DrawnBox:
    id: str
    kind: str
    path: str
    label: str
    tooltip: str
    css_class: str
    x: str
    y: str
    width: str
    height: str
    text_x: str
    text_y: str
    fill: str
    radius: int
    expanded: bool
    caveat: bool = False
    """Values assumed, or FLOPs without a formula, here: drawn with a dashed red outline."""


@dataclass(frozen=True)
class _DrawnRoute:
    src: str
    dst: str
    d: str
    label: str
    label_x: str | None
    label_y: str | None
    tooltip: str


def render_svg(graph: Graph | ViewTree, placed: Layout, prefix: str = "mt") -> str:
    """The SVG markup of ``placed``; ``prefix`` makes every id unique on the page."""
    tree = placed.tree if placed.tree is not None else view_tree(graph)
    groups = [_group_box(tree, b) for b in placed.boxes.values() if tree.items[b.id].is_group]
    nodes = [_node_box(tree, b) for b in placed.boxes.values() if not tree.items[b.id].is_group]
    routes = [_route(tree, r) for r in placed.routes]
    return _ENVIRONMENT.get_template("graph.svg.j2").render(
        prefix=prefix,
        width=_num(placed.width),
        height=_num(placed.height),
        title=f"Computation graph of {tree.graph.modules[tree.root].cls}",
        groups=groups,
        nodes=nodes,
        routes=routes,
        colors={"text": TEXT_FILL, "module_stroke": MODULE_STROKE, "node_stroke": NODE_STROKE,
                "caveat_stroke": CAVEAT_STROKE,
                "edge": EDGE_STROKE, "edge_text": EDGE_TEXT_FILL},
    )


def _num(value: float) -> str:
    return f"{value:.1f}".removesuffix(".0")


def format_count(value: int) -> str:
    """``1.2 G``-style short numbers for tooltips and labels."""
    for unit, size in (("T", 1e12), ("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(value) >= size:
            return f"{value / size:.3g} {unit}"
    return str(value)


def _group_box(tree: ViewTree, box: Box) -> _DrawnBox:
    item = tree.items[box.id]
    stats = tree.stats(box.id)
    if item.kind == "module":
        module = tree.graph.modules[box.id]
        tooltip = f"{module.path or '<root>'}: {module.cls}"
        if module.repeat is not None:
            tooltip += f" (×{module.repeat.count}, figures of one)"
        path, fill = module.path, MODULE_FILLS[tree.depth_of(box.id) % 2]
        css_class = "mt-module"
    else:
        tooltip, path, fill, css_class = item.label, "", CHUNK_FILL, "mt-module mt-chunk"
    tooltip += f"\nparams {format_count(stats.params)}"
    if stats.flops:
        tooltip += f"\nFLOPs {format_count(stats.flops)}"
    if box.expanded:
        css_class += " mt-open"
    return _DrawnBox(
        id=box.id,
        kind=item.kind,
        path=path,
        label=box.label,
        tooltip=tooltip,
        css_class=css_class,
        x=_num(box.x),
        y=_num(box.y),
        width=_num(box.width),
        height=_num(box.height),
        text_x=_num(box.x + 8 if box.expanded else box.x + box.width / 2),
        text_y=_num(box.y + (GROUP_TITLE - 4 if box.expanded else box.height / 2 + 4)),
        fill=fill,
        radius=6,
        expanded=box.expanded,
    )


def _node_box(tree: ViewTree, box: Box) -> _DrawnBox:
    node = tree.graph.nodes[box.id]
    lines = [f"{node.name}  [{node.category}]"]
    for direction, tensor_ids in (("in: ", node.inputs), ("out:", node.outputs)):
        if tensor_ids:
            tensors = [tree.graph.tensors[t] for t in tensor_ids]
            lines.append(f"{direction} " + ", ".join(f"{t.shape_label} {t.dtype}"
                                                      for t in tensors))
    lines += [f"{name} = {value}" for name, value in node.args.items()]
    if node.stats.params:
        lines.append(f"params {format_count(node.stats.params)}")
    if node.stats.flops:
        lines.append(f"FLOPs {format_count(node.stats.flops)}")
    if node.source is not None:
        lines.append(f"{node.source.file}:{node.source.line}\n{node.source.code}")
    lines += node_caveats(node)
    tooltip = "\n".join(lines)
    return _DrawnBox(
        id=box.id,
        kind=node.kind,
        path="",
        label=box.label,
        tooltip=tooltip,
        css_class=f"mt-node mt-cat-{node.category} mt-kind-{node.kind}",
        x=_num(box.x),
        y=_num(box.y),
        width=_num(box.width),
        height=_num(box.height),
        text_x=_num(box.x + box.width / 2),
        text_y=_num(box.y + box.height / 2 + 4),
        fill=CATEGORY_FILLS.get(node.category, CATEGORY_FILLS["other"]),
        radius=14 if node.kind in ("input", "output") else 4,
        expanded=False,
        caveat=bool(node.assumed or node.uncounted_flops),
    )


def route_path(points: list[tuple[float, float]]) -> str:
    """SVG path data of a dot spline: a start point, then cubic Bézier triples."""
    d = f"M{_num(points[0][0])},{_num(points[0][1])}"
    for i in range(1, len(points) - 2, 3):
        (x1, y1), (x2, y2), (x3, y3) = points[i : i + 3]
        d += f" C{_num(x1)},{_num(y1)} {_num(x2)},{_num(y2)} {_num(x3)},{_num(y3)}"
    return d


def _route(tree: ViewTree, route: Route) -> _DrawnRoute:
    tensors = [tree.graph.tensors[t] for t in route.tensors]
    tooltip = "\n".join(f"{t.shape_label} {t.dtype}" for t in tensors)
    return _DrawnRoute(
        src=route.src,
        dst=route.dst,
        d=route_path(route.points),
        label=route.label,
        label_x=_num(route.label_at[0]) if route.label_at else None,
        label_y=_num(route.label_at[1] + 3) if route.label_at else None,
        tooltip=tooltip,
    )
