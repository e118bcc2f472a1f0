"""The table a fence can show under its figure (``summary: N``): parameters, activated
parameters and FLOPs per module, N levels deep, computed from the trace at build time.

Counts are exact (``671,026,419,200``), so a page can quote the model's published figures
from its own trace instead of typing them. A folded module shows its repeat count and the sum
over all its members; the modules inside it, one member's figures ("each").
"""

from __future__ import annotations

import html
from typing import Any

from model_trace.caveats import trace_caveats
from model_trace.graph import Graph, ModuleCall, Stats
from model_trace.naming import format_count

COLUMNS = ("module", "class", "parameters", "activated per token", "FLOPs",
           "FLOPs per member")


def breakdown_table(graph: Graph, depth: int) -> str:
    """An HTML table of the modules down to ``depth`` levels below the root, then the totals."""
    rows = []
    levels = graph.module_depths()
    inside_repeat: set[str] = set()
    for call in graph.walk_modules():
        if call.id in inside_repeat or call.repeat is not None:
            inside_repeat.update(c for c in call.children if c in graph.modules)
        if levels[call.id] <= depth:
            parent = graph.modules[call.parent] if call.parent is not None else None
            rows.append(_row(call, parent, levels[call.id], call.id in inside_repeat))
    head = "".join(f"<th>{name}</th>" for name in COLUMNS)
    body = "\n".join(rows)
    return (f'<div class="model-trace-breakdown"><table>\n<thead><tr>{head}</tr></thead>\n'
            f"<tbody>\n{body}\n</tbody>\n</table>\n{_totals(graph)}"
            "</div>\n")


def _row(call: ModuleCall, parent: ModuleCall | None, level: int, each: bool) -> str:
    """A folded call counts all its members; a call inside one counts one member (each)."""
    name = call.path or call.cls
    if parent is not None and parent.path and call.path.startswith(parent.path + "."):
        name = call.path[len(parent.path) + 1:]
    stats = [call.stats]
    cls = call.cls
    if call.repeat is not None:
        cls += f" ×{call.repeat.count}"
        stats = call.repeat.member_stats or stats
    elif each:
        cls += " (each)"
    if not call.called:
        cls += " (never called)"
    cells = [
        f'<td style="padding-left: {0.6 + 1.2 * level:.1f}em; white-space: nowrap">'
        f"<code>{html.escape(name)}</code></td>",
        f"<td>{html.escape(cls)}</td>",
        _number(sum(s.params for s in stats)),
        _number(sum(s.activated_params for s in stats)),
        _number(sum(s.flops for s in stats)),
        f'<td style="text-align: right; white-space: nowrap">{_spread(stats)}</td>',
    ]
    return f"<tr>{''.join(cells)}</tr>"


def _spread(stats: list[Stats]) -> str:
    """The least and the most FLOPs of one member of a folded call (how even the load is)."""
    if len(stats) < 2:
        return ""
    low, high = min(s.flops for s in stats), max(s.flops for s in stats)
    return format_count(low) if low == high else f"{format_count(low)} – {format_count(high)}"


def _number(value: int) -> str:
    return f'<td style="text-align: right">{value:,}</td>'


def _totals(graph: Graph) -> str:
    """The whole model's figures (the root's, with the tracer's ``totals`` on top); fp8 block
    scales are named apart, as published counts leave them out."""
    root = graph.modules[graph.root].stats
    totals: dict[str, Any] = {"params": root.params, "flops": root.flops,
                              "activated_params": root.activated_params,
                              **graph.meta.get("totals", {})}
    scales = totals.get("block_scale_params", 0)
    activated_scales = totals.get("activated_block_scale_params", 0)
    lines = [f"<strong>{totals['params'] - scales:,}</strong> parameters",
             f"<strong>{totals['activated_params'] - activated_scales:,}</strong> "
             "activated per token",
             f"<strong>{totals['flops']:,}</strong> FLOPs per forward pass"]
    note = (f" (the module rows include the {scales:,} float32 fp8 block scales, "
            f"{activated_scales:,} of them activated; the totals leave them out)"
            if scales else "")
    caveats = "".join(f'<p class="model-trace-caveat">{html.escape(c)}</p>\n'
                      for c in trace_caveats(graph))
    return f'<p class="model-trace-totals">Totals: {", ".join(lines)}{note}.</p>\n{caveats}'
