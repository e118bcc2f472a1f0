"""The figure that replaces a fence in a page, and the SVG files it exports.

A figure is the first view as an SVG (drawn at build time by the viewer's own engine, see
``engine``) plus the view data the browser viewer hydrates it with (``view_data``; never the
raw Graph JSON). An export is the same engine's drawing of the same state as a file of its
own: the fence's depth, overlay (with its legend), direction and constants, in plain colours.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from jinja2 import Environment, PackageLoader, select_autoescape

from model_trace.dims import legend_text
from model_trace.engine import DrawOptions, draw
from model_trace.graph import Graph
from model_trace.view_data import encode_view
from model_trace.view_tree import ViewTree

OVERLAYS = ("none", "params", "flops", "weights", "activations", "workspace", "time")
THEMES = ("auto", "light", "dark")
DIRECTIONS = ("TB", "LR")

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
    """The most the viewer's frame grows to, in pixels (None: the stylesheet's, 640); a
    shorter graph gets a shorter frame."""
    overlay: str = "none"
    """What boxes are coloured by at load: none (op kinds), params, flops, weights (bytes read),
    activations or workspace (bytes written), or time (an estimate, or the measured time)."""
    theme: str = "auto"
    """auto follows the page's theme (Material's palette, the mkdocs theme, the system's
    colour scheme); light or dark pins the figure to one."""
    show_constants: bool = True
    """Draw constant and parameter nodes (when the tracer records them)."""
    downloads: bool = True
    """Offer SVG, PNG and JSON downloads of the current view in the viewer's toolbar."""
    direction: str = "TB"
    """TB: data flows top to bottom; LR: left to right (for slides and wide models)."""

    def __post_init__(self) -> None:
        if self.overlay not in OVERLAYS:
            raise ValueError(f"overlay {self.overlay!r} is not one of {', '.join(OVERLAYS)}")
        if self.theme not in THEMES:
            raise ValueError(f"theme {self.theme!r} is not one of {', '.join(THEMES)}")
        if self.direction not in DIRECTIONS:
            raise ValueError(f"direction {self.direction!r} is not one of "
                             f"{', '.join(DIRECTIONS)}")

    def draw_options(self, prefix: str, *, standalone: bool = False) -> DrawOptions:
        """What the engine draws for this view: its depth, overlay and direction."""
        return DrawOptions(depth=self.depth, overlay=self.overlay, direction=self.direction,
                           prefix=prefix, standalone=standalone,
                           theme="dark" if self.theme == "dark" else "light")


@dataclass(frozen=True)
class FigureData:
    """A graph's view tree and its view data as JSON, made once for a figure and its files."""

    tree: ViewTree
    json: str

    @classmethod
    def of(cls, graph: Graph, *, show_constants: bool = True,
           marks: Callable[[ViewTree], None] | None = None) -> FigureData:
        """The figure of ``graph``; ``marks`` labels, marks and hides items of its tree
        before it is encoded (``annotate``, ``compare``)."""
        tree = ViewTree.from_graph(graph, show_constants=show_constants)
        if marks is not None:
            marks(tree)
        return cls(tree, view_json(encode_view(tree)))


def render_figure(graph: Graph | FigureData, view: ViewOptions, prefix: str) -> str:
    """HTML for one graph; ``prefix`` keeps its ids apart from other graphs on the page."""
    figure = graph if isinstance(graph, FigureData) else FigureData.of(
        graph, show_constants=view.show_constants)
    drawing = draw(figure.json, view.draw_options(prefix))
    return _ENVIRONMENT.get_template("figure.html.j2").render(
        prefix=prefix, svg=drawing.svg, view=view, data=figure.json, notes=note_list(figure),
        dims=legend_text(figure.tree.graph))


def note_list(figure: FigureData) -> list[tuple[int, str, str, str]]:
    """(number, item id, item label, text) of each note a figure lists under it."""
    items = figure.tree.items
    return [(note.number, note.items[0] if note.items else "",
             items[note.items[0]].label if note.items else "", note.text)
            for note in figure.tree.notes]


def export_svg(figure: FigureData, view: ViewOptions, prefix: str = "model-trace") -> str:
    """The figure's first view as a standalone SVG file."""
    return draw(figure.json, view.draw_options(prefix, standalone=True)).svg


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
