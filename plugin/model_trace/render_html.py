"""The figure that replaces a fence in a page: static SVG first paint plus the viewer's data."""

from __future__ import annotations

from dataclasses import dataclass

from jinja2 import Environment, PackageLoader, select_autoescape

from model_trace.graph import Graph
from model_trace.layout import expanded_modules, layout
from model_trace.render_svg import render_svg

_ENVIRONMENT = Environment(
    loader=PackageLoader("model_trace", "templates"),
    autoescape=select_autoescape(default=True, default_for_string=True),
    trim_blocks=True,
)


@dataclass(frozen=True)
class ViewOptions:
    """How a graph is first shown; every field maps to a fence field of the same name."""

    depth: int = 1
    caption: str = ""
    height: int | None = None


def render_figure(graph: Graph, view: ViewOptions, prefix: str) -> str:
    """HTML for one graph; ``prefix`` keeps its ids apart from other graphs on the page."""
    svg = render_svg(graph, layout(graph, expanded_modules(graph, view.depth)), prefix)
    return _ENVIRONMENT.get_template("figure.html.j2").render(
        prefix=prefix,
        svg=svg,
        caption=view.caption,
        height=view.height,
        depth=view.depth,
        data=script_safe_json(graph.to_json()),
    )


def script_safe_json(text: str) -> str:
    """JSON that can sit inside ``<script type="application/json">`` without closing it."""
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
