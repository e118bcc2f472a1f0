"""fence spec -> trace -> graph -> layout -> render, as one call per fence."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from model_trace.graph import Graph
from model_trace.loader import build_inputs, build_model
from model_trace.render_html import ViewOptions, render_figure
from model_trace.spec import FenceSpec
from model_trace.tracer import trace


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


def view_options(spec: FenceSpec) -> ViewOptions:
    """The display half of a fence spec."""
    return ViewOptions(depth=spec.depth, caption=spec.caption, height=spec.height)


def render_spec(spec: FenceSpec, prefix: str) -> RenderedFence:
    """Trace and render one fence spec."""
    graph = trace_spec(spec)
    return RenderedFence(html=render_figure(graph, view_options(spec), prefix), graph=graph)
