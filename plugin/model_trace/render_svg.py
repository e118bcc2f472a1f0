"""Draw a Layout as a static SVG: the first paint of every graph, readable with scripts off,
printable, and convertible to PNG by cairosvg.

Colours are presentation attributes (cairosvg and feed readers understand them); the site
stylesheet overrides them through classes and CSS variables for light and dark themes.
"""

from __future__ import annotations

from dataclasses import dataclass

from jinja2 import Environment, PackageLoader, select_autoescape

from model_trace.graph import Graph, Node
from model_trace.layout import GROUP_TITLE, Box, Layout, Route

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

_ENVIRONMENT = Environment(
    loader=PackageLoader("model_trace", "templates"),
    autoescape=select_autoescape(default=True, default_for_string=True),
    trim_blocks=True,
    keep_trailing_newline=False,
)


@dataclass(frozen=True)
class _DrawnBox:
    id: str
    path: str
    label: str
    tooltip: str
    category: str
    x: str
    y: str
    width: str
    height: str
    text_x: str
    text_y: str
    fill: str
    radius: int
    expanded: bool


@dataclass(frozen=True)
class _DrawnRoute:
    src: str
    dst: str
    d: str
    label: str
    label_x: str | None
    label_y: str | None
    tooltip: str


def render_svg(graph: Graph, placed: Layout, prefix: str = "mt") -> str:
    """The SVG markup of ``placed``; ``prefix`` makes every id unique on the page."""
    modules = [_module_box(graph, b) for b in placed.boxes.values() if b.id in graph.modules]
    nodes = [_node_box(graph.nodes[b.id], b) for b in placed.boxes.values()
             if b.id in graph.nodes]
    routes = [_route(graph, r) for r in placed.routes]
    return _ENVIRONMENT.get_template("graph.svg.j2").render(
        prefix=prefix,
        width=_num(placed.width),
        height=_num(placed.height),
        title=f"Computation graph of {graph.modules[graph.root].cls}",
        modules=modules,
        nodes=nodes,
        routes=routes,
    )


def _num(value: float) -> str:
    return f"{value:.1f}".removesuffix(".0")


def _module_box(graph: Graph, box: Box) -> _DrawnBox:
    module = graph.modules[box.id]
    depth = len(graph.ancestors(box.id))
    stats = module.stats
    tooltip = f"{module.path or '<root>'}: {module.cls}\nparams {stats.params:,}"
    if stats.flops:
        tooltip += f"\nFLOPs {stats.flops:,}"
    return _DrawnBox(
        id=box.id,
        path=module.path,
        label=box.label,
        tooltip=tooltip,
        category="module",
        x=_num(box.x),
        y=_num(box.y),
        width=_num(box.width),
        height=_num(box.height),
        text_x=_num(box.x + 8 if box.expanded else box.x + box.width / 2),
        text_y=_num(box.y + (GROUP_TITLE - 4 if box.expanded else box.height / 2 + 4)),
        fill=MODULE_FILLS[depth % 2],
        radius=6,
        expanded=box.expanded,
    )


def _node_box(node: Node, box: Box) -> _DrawnBox:
    tooltip = node.name
    if node.source is not None:
        tooltip += f"\n{node.source.file}:{node.source.line}\n{node.source.code}"
    return _DrawnBox(
        id=box.id,
        path="",
        label=box.label,
        tooltip=tooltip,
        category=node.category,
        x=_num(box.x),
        y=_num(box.y),
        width=_num(box.width),
        height=_num(box.height),
        text_x=_num(box.x + box.width / 2),
        text_y=_num(box.y + box.height / 2 + 4),
        fill=CATEGORY_FILLS.get(node.category, CATEGORY_FILLS["other"]),
        radius=14 if node.kind in ("input", "output") else 4,
        expanded=False,
    )


def _route(graph: Graph, route: Route) -> _DrawnRoute:
    points = route.points
    d = f"M{_num(points[0][0])},{_num(points[0][1])}"
    for i in range(1, len(points) - 2, 3):
        (x1, y1), (x2, y2), (x3, y3) = points[i : i + 3]
        d += f" C{_num(x1)},{_num(y1)} {_num(x2)},{_num(y2)} {_num(x3)},{_num(y3)}"
    tensors = [graph.tensors[t] for t in route.tensors]
    tooltip = "\n".join(f"{t.shape_label} {t.dtype}" for t in tensors)
    return _DrawnRoute(
        src=route.src,
        dst=route.dst,
        d=d,
        label=route.label,
        label_x=_num(route.label_at[0]) if route.label_at else None,
        label_y=_num(route.label_at[1] + 3) if route.label_at else None,
        tooltip=tooltip,
    )
