"""fence spec -> trace -> graph -> layout -> render.

``run_fences`` is what a trace worker process runs: one trace for fences that differ only in
how they show it (``FenceSpec.trace_identity``), then one figure per fence. Everything it
returns is plain data (HTML text and file bytes) that can be cached and sent between
processes. The figure's HTML uses ``PREFIX_PLACEHOLDER`` for its element ids; the page that
shows it substitutes its own prefix, so one cached figure can appear in several places
without two graphs sharing an id.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable, Iterator
from typing import Any

import torch

from model_trace.annotate import Annotations
from model_trace.breakdown import breakdown_table
from model_trace.cache import PREFIX_PLACEHOLDER, FenceOutput, SharedTraces
from model_trace.caveats import assumption_messages, build_notes, execution_caption
from model_trace.dataviews import CAPTURE_VIEWS
from model_trace.dims import name_dims, scaled_spec, spec_shapes
from model_trace.errors import ModelTraceError, SpecError, TraceError
from model_trace.focus import focus_graph
from model_trace.graph import Graph
from model_trace.loader import ImportPolicy, build_inputs, build_model, resolve
from model_trace.model_warnings import raised_warnings
from model_trace.render_html import FigureData, ViewOptions, export_svg, render_figure
from model_trace.spec import FIELDS, FenceSpec
from model_trace.tracing import trace
from model_trace.view_tree import ViewTree
from model_trace.worker import JobResult

TRACE_OPTIONS = ("routing", "fold", "trace_depth", "aten")
"""Fence fields passed to ``tracing.trace`` by the same name."""
OWN_VIEW_FIELDS = ("focus", "summary", "export", "assume", "view", "layers", "heads",
                   "projection", "highlight", "labels", "notes", "hide")
"""View fields this module applies itself; the other view fields go to ``ViewOptions``."""


def trace_spec(spec: FenceSpec, *, policy: ImportPolicy | None = None) -> Graph:
    """Build the spec's model and inputs on the meta device and trace one forward pass (as
    rank ``spec.rank`` of a ``spec.world_size``-way split when that is above 1), or its
    backward graph (``graph: backward``), with its dimensions named (``dims``); ``policy``
    is what a docs site allows the spec to import and call (None: anything)."""
    shapes = spec_shapes(spec)  # first: a fence `dims: auto` cannot scale fails at once
    graph = _trace_once(spec, policy)
    return name_dims(graph, spec.dims, shapes,
                     lambda scale: _trace_once(scaled_spec(spec, scale), policy))


def _trace_once(spec: FenceSpec, policy: ImportPolicy | None) -> Graph:
    with _process_group(spec.world_size, spec.rank):
        if spec.execute is not None:
            from model_trace.dataviews.runnable import real_inputs, real_model
            from model_trace.tracing.threads import one_thread

            model = real_model(spec, policy, f"`execute: {spec.execute}`")
            args, kwargs = real_inputs(spec, policy)
            with torch.no_grad(), one_thread():
                return trace(model, *args, **kwargs, execute=spec.execute,
                             **trace_options(spec))
        model = build_model(spec, policy=policy)
        args, kwargs = build_inputs(spec, policy=policy)
        if spec.graph == "backward":
            from model_trace.tracing.backward import trace_backward

            loss = resolve(spec.loss, "loss", policy) if spec.loss else None
            return trace_backward(model, *args, **kwargs, loss=loss, **trace_options(spec))
        if spec.loss is not None:
            raise SpecError("field 'loss' is the scalar a backward graph differentiates; add "
                            "`graph: backward`", field="loss")
        with torch.no_grad():
            return trace(model, *args, **kwargs, **trace_options(spec))


@contextlib.contextmanager
def _process_group(world_size: int, rank: int) -> Iterator[None]:
    if world_size == 1:
        yield
        return
    from model_trace.tracing import tensor_parallel

    with tensor_parallel(world_size, rank):
        yield


def trace_options(spec: FenceSpec) -> dict[str, Any]:
    """The fence's options for ``tracing.trace``."""
    return {name: getattr(spec, name) for name in TRACE_OPTIONS}


def view_options(spec: FenceSpec, theme: str = "auto") -> ViewOptions:
    """The display fields of a fence, as the renderer takes them (``theme`` comes from the
    plugin's configuration)."""
    known = {f.name for f in dataclasses.fields(ViewOptions)}
    values: dict[str, Any] = {"theme": theme}
    for name, rule in FIELDS.items():
        value = getattr(spec, name)
        if rule.stage != "view" or name in OWN_VIEW_FIELDS or value is None:
            continue
        if name not in known:
            raise SpecError(f"field '{name}' is not supported by this version of the viewer",
                            field=name)
        values[name] = value
    return ViewOptions(**{k: v for k, v in values.items() if k in known})


def run_fence(spec: FenceSpec, theme: str = "auto", *,
              shared: tuple[SharedTraces, ...] = ()) -> FenceOutput:
    """Trace and render one fence, with the export files it asks for (``shared``: as for
    ``run_fences``)."""
    (output,) = run_fences([spec], theme, shared=shared).outputs
    if isinstance(output, ModelTraceError):
        raise output
    return output


def run_fences(specs: list[FenceSpec], theme: str = "auto", *,
               policy: ImportPolicy | None = None,
               shared: tuple[SharedTraces, ...] = ()) -> JobResult:
    """Trace ``specs[0]`` once (under ``policy``, see ``trace_spec``) and draw every spec from
    that graph (they must share ``trace_identity``); a problem with one spec's view is
    returned in its place (``JobResult.outputs``). Python warnings raised while the model is
    built or traced are added to every figure's warnings (see ``model_warnings``).
    ``shared``: where the traces are kept for other sites (``cache.SharedTraces``, one per
    trace: ``TraceJob.shared``), and taken from if they are there (``JobResult.shared``)."""
    assert all(s.trace_identity() == specs[0].trace_identity() for s in specs)
    if specs[0].view in CAPTURE_VIEWS:  # real values of a run: never shared
        from model_trace.dataviews.run import run_data_views

        with raised_warnings() as model_warnings:
            outputs = run_data_views(specs, policy, theme)
        traced, from_shared = 1, 0
    elif specs[0].compare is not None:  # several traces, drawn side by side
        from model_trace.compare import draw_compare, trace_compare

        variants = trace_compare(specs[0], policy=policy, shared=shared)
        outputs = [_drawn(lambda spec=spec: draw_compare(variants, spec, theme))
                   for spec in specs]
        model_warnings = variants.model_warnings
        from_shared = variants.shared
        traced = len(variants.graphs) - from_shared
    else:
        graph, model_warnings, read = shared_or_traced(specs[0], policy,
                                                       shared[0] if shared else None)
        outputs = [_drawn(lambda spec=spec: draw(graph, spec, theme)) for spec in specs]
        traced, from_shared = int(not read), int(read)
    return JobResult([dataclasses.replace(o, warnings=(*o.warnings, *model_warnings))
                      if isinstance(o, FenceOutput) else o for o in outputs], traced, from_shared)


def shared_or_traced(spec: FenceSpec, policy: ImportPolicy | None,
                     shared: SharedTraces | None) -> tuple[Graph, list[str], bool]:
    """The spec's graph, the warnings its model raised and whether it was read from the
    shared folder: another site's trace where that folder has it, else traced (and shared).
    A real run's measurements (``execute``) are never shared."""
    if spec.execute is not None:
        shared = None
    found = shared.read() if shared is not None else None
    if found is not None:
        with contextlib.suppress(ValueError, KeyError, TypeError):
            return Graph.from_json(found[0]), list(found[1]), True
    with raised_warnings() as model_warnings:
        text = trace_spec(spec, policy=policy).to_json()
    if shared is not None:
        shared.write(text, model_warnings)
    # drawn from the graph read back, as the other sites will: the JSON's sorted keys (of
    # meta, of an op's keyword arguments) then give the same page whether shared or not
    return Graph.from_json(text), model_warnings, False


def _drawn(draw_one: Callable[[], FenceOutput]) -> FenceOutput | ModelTraceError:
    """A fence's output, or the error of its view (the other fences of a trace still draw)."""
    try:
        return draw_one()
    except ModelTraceError as error:
        return error


def draw(graph: Graph, spec: FenceSpec, theme: str = "auto") -> FenceOutput:
    """One fence's figure (and table, and export files) from its traced graph."""
    if spec.view == "experts":
        from model_trace.dataviews.run import draw_experts_view

        return draw_experts_view(graph, spec, theme)
    if "execution" in graph.meta:
        spec = dataclasses.replace(spec, caption=" ".join(
            filter(None, (spec.caption, execution_caption(graph, spec.weights)))))
    figure, view, warnings = figure_of(graph, spec, theme)
    html = render_figure(figure, view, PREFIX_PLACEHOLDER)
    if spec.summary:
        html += breakdown_table(figure.tree.graph, spec.summary)
    return FenceOutput(html=html, exports=export_files(figure, spec, view), warnings=warnings,
                       notes=tuple(build_notes(figure.tree.graph)))


def focused(graph: Graph, spec: FenceSpec) -> tuple[Graph, FenceSpec]:
    """The part of ``graph`` a spec draws (``focus``), and the spec with the caption that
    names the focused module's place when it has none of its own."""
    if not spec.focus:
        return graph, spec
    graph = focus_graph(graph, spec.focus)
    if not spec.caption:
        context = " › ".join(graph.meta["focus"]["context"])
        spec = dataclasses.replace(spec, caption=f"{spec.focus} ({context})")
    return graph, spec


def figure_of(graph: Graph, spec: FenceSpec, theme: str = "auto", *, strict: bool = True,
              marks: Callable[[ViewTree], None] | None = None,
              matched: set[tuple[str, str]] | None = None,
              ) -> tuple[FigureData, ViewOptions, tuple[str, ...]]:
    """The figure a spec draws of its graph (focused, annotated, then ``marks`` applied),
    its view options and the warnings about assumed values; ``strict``: an annotation that
    matches nothing is an error (else ``matched`` collects those that did)."""
    graph, spec = focused(graph, spec)
    warnings = assumption_warnings(graph, spec.assume or "warn")
    view = view_options(spec, theme)
    annotations = Annotations.of(spec)

    def mark(tree: ViewTree) -> None:
        annotations.apply(tree, strict=strict, matched=matched)
        if marks is not None:
            marks(tree)

    figure = FigureData.of(graph, show_constants=view.show_constants, marks=mark)
    return figure, view, warnings


def assumption_warnings(graph: Graph, assume: str) -> tuple[str, ...]:
    """The lines to warn about for a graph whose trace assumed values that may change it
    (``assume: warn``); none with ``allow``; with ``error``, a ``TraceError`` naming them."""
    messages = assumption_messages(graph)
    if not messages or assume == "allow":
        return ()
    if assume == "error":
        raise TraceError("the trace assumed values that may change the figure (`assume: "
                         f"error`): {'; '.join(messages)}; give real values (integer inputs "
                         "as CPU tensors, from an `inputs:` factory) or set `assume: warn`")
    return tuple(messages)


def export_files(figure: FigureData, spec: FenceSpec, view: ViewOptions) -> dict[str, bytes]:
    """The bytes of each export format the spec asks for: the graph JSON, and the figure's
    first view (depth, focus, overlay with its legend, direction, constants) as SVG or PNG."""
    exports: dict[str, bytes] = {}
    formats = set(spec.export or ())
    if "json" in formats:
        exports["json"] = figure.tree.graph.to_json(indent=1).encode("utf-8")
    if formats & {"svg", "png"}:
        svg = export_svg(figure, view)
        if "svg" in formats:
            exports["svg"] = svg.encode("utf-8")
        if "png" in formats:
            exports["png"] = svg_to_png(svg)
    return exports


def svg_to_png(svg: str, scale: float = 1.0) -> bytes:
    import cairosvg

    return cairosvg.svg2png(bytestring=svg.encode("utf-8"), scale=scale)
