"""fence spec -> trace -> graph -> layout -> render, as one call per fence.

``run_fence`` is what a trace worker process runs: everything it returns is plain data (HTML
text and file bytes) that can be cached and sent between processes. The figure's HTML uses
``PREFIX_PLACEHOLDER`` for its element ids; the page that shows it substitutes its own prefix,
so one cached figure can appear in several places without two graphs sharing an id.
"""

from __future__ import annotations

import dataclasses
import inspect
from typing import Any

import torch

from model_trace.cache import PREFIX_PLACEHOLDER, FenceOutput
from model_trace.errors import SpecError
from model_trace.graph import Graph
from model_trace.layout import expanded_modules, layout
from model_trace.loader import build_inputs, build_model
from model_trace.render_html import ViewOptions, render_figure
from model_trace.render_svg import render_svg
from model_trace.spec import FenceSpec
from model_trace.tracer import trace

OPTION_FIELDS = ("depth", "focus", "routing", "fold", "trace_depth", "show_constants",
                 "overlay", "height", "export", "caption")
"""Fence fields that say how to trace or show the model. Each goes, by the same name, to
``tracer.trace`` if it takes it, else to ``render_html.ViewOptions`` if it has it; a field
neither supports is an error only where the fence sets it away from its default."""


def trace_spec(spec: FenceSpec) -> Graph:
    """Build the spec's model and inputs on the meta device and trace one forward pass."""
    model = build_model(spec)
    args, kwargs = build_inputs(spec)
    with torch.no_grad():
        return trace(model, *args, **kwargs, **trace_options(spec))


def trace_options(spec: FenceSpec) -> dict[str, Any]:
    """The fence fields ``tracer.trace`` takes."""
    accepted = inspect.signature(trace).parameters
    return {name: getattr(spec, name) for name in OPTION_FIELDS if name in accepted}


def view_options(spec: FenceSpec, theme: str = "auto") -> ViewOptions:
    """The fence fields ``ViewOptions`` has (``theme`` comes from the plugin's configuration)."""
    accepted = inspect.signature(trace).parameters
    known = {f.name for f in dataclasses.fields(ViewOptions)}
    defaults = FenceSpec(model="")
    values: dict[str, Any] = {"theme": theme} if "theme" in known else {}
    for name in OPTION_FIELDS:
        value = getattr(spec, name)
        if name in known:
            if value is not None:
                values[name] = value
        elif (name not in accepted and name != "export" and name in spec.lines
              and value != getattr(defaults, name)):
            raise SpecError(f"field '{name}' is not supported by this version of model-trace's "
                            "tracer and viewer", field=name)
    return ViewOptions(**values)


def run_fence(spec: FenceSpec, theme: str = "auto") -> FenceOutput:
    """Trace and render one fence, with the export files it asks for."""
    view = view_options(spec, theme)
    graph = trace_spec(spec)
    html = render_figure(graph, view, PREFIX_PLACEHOLDER)
    return FenceOutput(html=html, exports=export_files(graph, spec))


def export_files(graph: Graph, spec: FenceSpec) -> dict[str, bytes]:
    """The bytes of each export format the spec asks for."""
    exports: dict[str, bytes] = {}
    formats = set(spec.export or ())
    if "json" in formats:
        exports["json"] = graph.to_json(indent=1).encode("utf-8")
    if formats & {"svg", "png"}:
        svg = static_svg(graph, spec.depth or 0)
        if "svg" in formats:
            exports["svg"] = svg.encode("utf-8")
        if "png" in formats:
            exports["png"] = svg_to_png(svg)
    return exports


def static_svg(graph: Graph, depth: int, prefix: str = "model-trace") -> str:
    """A standalone SVG of the graph opened ``depth`` levels deep."""
    return render_svg(graph, layout(graph, expanded_modules(graph, depth)), prefix)


def svg_to_png(svg: str, scale: float = 1.0) -> bytes:
    import cairosvg

    return cairosvg.svg2png(bytestring=svg.encode("utf-8"), scale=scale)
