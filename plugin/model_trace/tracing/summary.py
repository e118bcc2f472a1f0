"""The per-module table of ``model-trace summary``: params, FLOPs, shapes."""

from __future__ import annotations

from model_trace.caveats import trace_caveats
from model_trace.dims import legend_text, symbolic_shape
from model_trace.graph import Graph, ModuleCall
from model_trace.naming import format_count


def _shapes(graph: Graph, tensor_ids: list[str], limit: int = 2) -> str:
    shapes = [symbolic_shape(graph, graph.tensors[t]) for t in tensor_ids[:limit]
              if t in graph.tensors]
    more = len(tensor_ids) - limit
    return ", ".join(shapes) + (f" +{more}" if more > 0 else "")


def summary_table(graph: Graph, max_depth: int | None = None) -> str:
    """One row per module call in walk order, indented by depth: the call's name and class
    (``×N`` when folded), parameters, activated parameters, FLOPs, activation bytes and its
    input and output shapes; the totals last, with the bytes of weights read, activations and
    workspace (see ``Stats``)."""
    headers = ("module", "class", "params", "active", "FLOPs", "act. bytes", "in", "out")
    depths = graph.module_depths()
    rows = [_row(graph, call, depths[call.id]) for call in graph.walk_modules()
            if max_depth is None or depths[call.id] <= max_depth]
    totals = graph.meta.get("totals", {})
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]
    numeric = {2, 3, 4, 5}

    def line(cells: tuple[str, ...]) -> str:
        return "  ".join(c.rjust(w) if i in numeric else c.ljust(w)
                         for i, (c, w) in enumerate(zip(cells, widths, strict=True))).rstrip()

    out = [line(headers), line(tuple("-" * w for w in widths))]
    out += [line(r) for r in rows]
    if totals:
        out.append("")
        out.append(
            f"total: {format_count(totals.get('params', 0))} parameters, "
            f"{format_count(totals.get('activated_params', 0))} activated per token, "
            f"{format_count(totals.get('flops', 0))} FLOPs, "
            f"{format_count(totals.get('weight_bytes', 0))}B weights read, "
            f"{format_count(totals.get('activation_bytes', 0))}B activations, "
            f"{format_count(totals.get('workspace_bytes', 0))}B workspace")
    if legend_text(graph):
        out.append(f"dimensions: {legend_text(graph)}")
    out += [f"note: {caveat}" for caveat in trace_caveats(graph)]
    folded = graph.meta.get("folded")
    if folded:
        before, after = folded["before"], folded["after"]
        out.append(f"folded: {before['modules']} module calls -> {after['modules']}, "
                   f"{before['nodes']} nodes -> {after['nodes']}")
    return "\n".join(out)


def _row(graph: Graph, call: ModuleCall, depth: int) -> tuple[str, ...]:
    name = call.path.rsplit(".", 1)[-1] if call.path and depth else (call.path or call.cls)
    if call.kind == "function":
        name = f"{call.cls}()"
    cls = call.cls + (f" ×{call.repeat.count}" if call.repeat else "")
    if not call.called:
        cls += " (not called)"
    stats = call.stats
    return ("  " * depth + name, cls, format_count(stats.params),
            format_count(stats.activated_params), format_count(stats.flops),
            format_count(stats.activation_bytes), _shapes(graph, call.inputs),
            _shapes(graph, call.outputs))
