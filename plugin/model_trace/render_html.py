"""The figure that replaces a fence in a page: the static SVG first paint plus the view data the
browser viewer hydrates it with (see ``view_data``; never the raw Graph JSON)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from jinja2 import Environment, PackageLoader, select_autoescape

from model_trace.graph import Graph
from model_trace.layout import layout
from model_trace.render_svg import render_svg
from model_trace.view_data import encode_view
from model_trace.view_tree import ViewTree, expanded_groups

OVERLAYS = ("none", "params", "flops", "memory", "time")
THEMES = ("auto", "light", "dark")

_ENVIRONMENT = Environment(
    loader=PackageLoader("model_trace", "templates"),
    autoescape=select_autoescape(default=True, default_for_string=True),
    trim_blocks=True,
)


@dataclass(frozen=True)
class ViewOptions:
    """How a graph is first shown; every field maps to a fence field of the same name."""

    depth: int = 1
    """Module levels open below the model's own box when the page loads (0: the model's box
    is open and its children are closed)."""
    caption: str = ""
    """Text under the graph."""
    height: int | None = None
    """Height of the viewer in pixels (None: the stylesheet's, 640)."""
    overlay: str = "none"
    """What boxes are coloured by at load: none, params, flops, memory or time."""
    theme: str = "auto"
    """auto follows the page's theme (Material's palette, the mkdocs theme, the system's
    colour scheme); light or dark pins the figure to one."""
    show_constants: bool = True
    """Draw constant and parameter nodes (when the tracer records them)."""
    downloads: bool = True
    """Offer SVG, PNG and JSON downloads of the current view in the viewer's toolbar."""

    def __post_init__(self) -> None:
        if self.overlay not in OVERLAYS:
            raise ValueError(f"overlay {self.overlay!r} is not one of {', '.join(OVERLAYS)}")
        if self.theme not in THEMES:
            raise ValueError(f"theme {self.theme!r} is not one of {', '.join(THEMES)}")


def render_figure(graph: Graph, view: ViewOptions, prefix: str) -> str:
    """HTML for one graph; ``prefix`` keeps its ids apart from other graphs on the page."""
    tree = ViewTree.from_graph(graph, show_constants=view.show_constants)
    placed = layout(tree, expanded_groups(tree, view.depth))
    return _ENVIRONMENT.get_template("figure.html.j2").render(
        prefix=prefix,
        svg=render_svg(tree, placed, prefix),
        view=view,
        data=view_json(encode_view(tree, placed)),
    )


def view_json(data: dict[str, Any]) -> str:
    """Compact, deterministic JSON of the view data, safe as the text of any element (the
    figure carries it in a ``<template>``)."""
    return script_safe_json(json.dumps(data, separators=(",", ":"), ensure_ascii=False,
                                       sort_keys=False))


def script_safe_json(text: str) -> str:
    """JSON with no ``<``, ``>`` or ``&``: inert as HTML text, and unable to close the element
    it sits in (a ``<template>`` or a ``<script>``)."""
    return (text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
            .replace("\u2028", "\\u2028").replace("\u2029", "\\u2029"))
