"""Figures in notebooks (Jupyter, JupyterLab, VS Code, Colab) and files from Python.

``show(model, *inputs, **options)`` traces a model and returns a ``Figure``; a notebook
displays it through ``_repr_html_``: the same figure a docs page shows (the static SVG, then
the viewer takes it over), offline. The viewer's script and style are inlined in the first
figure a kernel displays and only referred to afterwards, so a notebook carries them once;
where every output is a page of its own (Colab), each figure carries them. ``Graph`` displays
itself the same way, and ``Figure.save`` / ``Graph.save`` write ``.html`` (a page that works
on its own), ``.svg``, ``.png`` or ``.json``.

Options are fence fields, validated as a fence's are: view fields (``depth``, ``overlay``,
``direction``, ``focus``, ``highlight``, ``labels``, ``notes``, ``hide``, ``caption``,
``height``, ``show_constants``, ``summary``) and, for ``show``, the trace fields ``routing``,
``fold``, ``trace_depth``, ``aten``, ``graph``, ``loss`` (a function here) and ``dims``.
"""

from __future__ import annotations

import itertools
import os
import sys
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

from model_trace.errors import ModelTraceError, SpecError
from model_trace.spec import FIELDS, FenceSpec, spec_from_mapping

if TYPE_CHECKING:
    import torch

    from model_trace.graph import Graph

INLINE = os.environ.get("MODEL_TRACE_INLINE", "auto")
"""When a figure carries the viewer: "auto" (the first figure of a kernel, every figure in
Colab), "always" or "once"."""
TRACE_FIELDS = ("routing", "fold", "trace_depth", "aten", "graph", "dims")
SAVE_FORMATS = (".html", ".svg", ".png", ".json")

_sent = False
_numbers = itertools.count(1)
_session = uuid.uuid4().hex[:8]


class Figure:
    """A traced graph and how to show it; displays itself in a notebook."""

    def __init__(self, graph: Graph, **options: Any) -> None:
        unknown = sorted(set(options) - set(FIELDS) - {"theme"})
        if unknown:
            raise SpecError(f"unknown option {unknown[0]!r}; options are fence fields: "
                            f"{', '.join(n for n in FIELDS if n not in _NOT_OPTIONS)}",
                            field=unknown[0])
        self.graph = graph
        self.theme = options.pop("theme", "auto")
        self.spec: FenceSpec = spec_from_mapping(
            {"model": graph.modules[graph.root].cls,
             **{k: v for k, v in options.items() if k not in TRACE_FIELDS}}
        ).with_defaults(depth=1, routing="balanced", export=())

    def html(self, *, viewer: bool = True) -> str:
        """The figure's HTML, with the viewer's style and script if ``viewer``."""
        from model_trace.breakdown import breakdown_table
        from model_trace.pipeline import figure_of
        from model_trace.render_html import render_figure

        figure, view, _ = figure_of(self.graph, self.spec, self.theme)
        prefix = f"model-trace-nb-{_session}-{next(_numbers)}"
        body = render_figure(figure, view, prefix)
        if self.spec.summary:
            body += breakdown_table(figure.tree.graph, self.spec.summary)
        return (_viewer_html() if viewer else "") + body + _HYDRATE

    def _repr_html_(self) -> str:
        global _sent
        inline = INLINE == "always" or not _sent or (
            INLINE == "auto" and "google.colab" in sys.modules)
        _sent = True
        return self.html(viewer=inline)

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the figure as ``.html`` (a page of its own), ``.svg``, ``.png`` or the
        graph's ``.json``; returns the path."""
        from model_trace.pipeline import figure_of, svg_to_png
        from model_trace.render_html import export_svg

        target = Path(path)
        suffix = target.suffix.lower()
        if suffix not in SAVE_FORMATS:
            raise ModelTraceError(f"cannot save '{target}': the suffix must be one of "
                                  f"{', '.join(SAVE_FORMATS)}")
        if suffix == ".html":
            from model_trace.cli import standalone_page

            title = self.spec.caption or self.graph.modules[self.graph.root].cls
            target.write_text(standalone_page(self.html(viewer=False), title),
                              encoding="utf-8")
        elif suffix == ".json":
            target.write_text(self.graph.to_json(indent=1) + "\n", encoding="utf-8")
        else:
            figure, view, _ = figure_of(self.graph, self.spec, self.theme)
            svg = export_svg(figure, view)
            if suffix == ".svg":
                target.write_text(svg, encoding="utf-8")
            else:
                target.write_bytes(svg_to_png(svg, 2.0))
        return target


_NOT_OPTIONS = frozenset({"model", "args", "config", "overrides", "inputs", "world_size",
                          "rank", "export", "assume", "compare"})

_HYDRATE = ("<script>window.modelTraceViewer && "
            "window.modelTraceViewer.hydrate(document);</script>\n")
"""Run by a figure shown after the one that brought the viewer."""


def _viewer_html() -> str:
    from model_trace.cli import _script_safe
    from model_trace.viewer_files import VIEWER_SCRIPT, VIEWER_STYLE, asset_bytes

    style = asset_bytes(VIEWER_STYLE).decode("utf-8")
    script = asset_bytes(VIEWER_SCRIPT).decode("utf-8")
    return f"<style>\n{style}\n</style>\n<script>\n{_script_safe(script)}\n</script>\n"


def show(model: torch.nn.Module | Any, *inputs: Any, **options: Any) -> Figure:
    """Trace ``model(*inputs)`` (keyword inputs: ``kwargs={...}``) and return its figure.

    Trace options (``routing``, ``fold``, ``trace_depth``, ``aten``, ``graph: "backward"``,
    ``loss``, ``dims``) apply to the trace; the rest are view fields (see the module doc).
    """
    import torch

    from model_trace.dims import name_dims
    from model_trace.tracing import trace

    kwargs = options.pop("kwargs", {})
    loss = options.pop("loss", None)
    checked = {k: v for k, v in options.items() if k in TRACE_FIELDS}
    spec = spec_from_mapping({"model": type(model).__name__, **checked})
    traced = {"routing": spec.routing, "fold": spec.fold, "trace_depth": spec.trace_depth,
              "aten": spec.aten}

    def run(args: tuple[Any, ...]) -> Graph:
        if spec.graph == "backward":
            from model_trace.tracing.backward import trace_backward

            return trace_backward(model, *args, **kwargs, loss=loss, **traced)
        if loss is not None:
            raise SpecError("`loss` is the scalar a backward graph differentiates; add "
                            "graph='backward'", field="loss")
        with torch.no_grad():
            return trace(model, *args, **kwargs, **traced)

    graph = run(inputs)
    shapes = [(f"input {i}", list(t.shape)) for i, t in enumerate(inputs)
              if isinstance(t, torch.Tensor)]
    graph = name_dims(graph, spec.dims, shapes,
                      lambda scale: run(tuple(_scaled(t, scale) for t in inputs)))
    return Figure(graph, **{k: v for k, v in options.items() if k not in TRACE_FIELDS})


def _scaled(value: Any, scale: dict[int, int]) -> Any:
    """A tensor like ``value`` with the sizes in ``scale`` multiplied (zeros; other values
    unchanged)."""
    import torch

    if not isinstance(value, torch.Tensor):
        return value
    shape = [size * scale.get(size, 1) for size in value.shape]
    return torch.zeros(shape, dtype=value.dtype, device=value.device)

