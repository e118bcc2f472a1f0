"""fence spec -> trace -> graph -> layout -> render, as one call per fence."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from jinja2 import Environment, PackageLoader, select_autoescape

from model_trace.graph import Graph
from model_trace.layout import expanded_modules, layout
from model_trace.loader import build_inputs, build_model
from model_trace.render_svg import render_svg
from model_trace.spec import FenceSpec
from model_trace.tracer import trace

_ENVIRONMENT = Environment(
    loader=PackageLoader("model_trace", "templates"),
    autoescape=select_autoescape(default=True, default_for_string=True),
    trim_blocks=True,
)


@dataclass(frozen=True)
class RenderedFence:
    """The HTML that replaces one fence, and the graph it was drawn from."""

    html: str
    graph: Graph


def trace_spec(spec: FenceSpec) -> Graph:
    """Build the spec's model and inputs on the meta device and trace one forward pass."""
    model = build_model(spec)
    args, kwargs = build_inputs(spec)
    with torch.no_grad():
        return trace(model, *args, **kwargs)


def render_graph(graph: Graph, spec: FenceSpec, prefix: str) -> str:
    """The figure that replaces a fence: static SVG plus the graph data for the viewer."""
    svg = render_svg(graph, layout(graph, expanded_modules(graph, spec.depth)), prefix)
    return _ENVIRONMENT.get_template("figure.html.j2").render(
        prefix=prefix,
        svg=svg,
        caption=spec.caption,
        height=spec.height,
        depth=spec.depth,
        data=script_safe_json(graph.to_json()),
    )


def render_spec(spec: FenceSpec, prefix: str) -> RenderedFence:
    """Trace and render one fence spec."""
    graph = trace_spec(spec)
    return RenderedFence(html=render_graph(graph, spec, prefix), graph=graph)


def script_safe_json(text: str) -> str:
    """JSON that can sit inside ``<script type="application/json">`` without closing it."""
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
