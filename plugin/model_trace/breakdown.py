"""The table a fence can show under its figure (``summary: N``): parameters, activated
parameters and FLOPs per module, N levels deep, computed from the trace at build time.

Counts are exact (``671,026,419,200``), so a page can quote the model's published figures
from its own trace instead of typing them. Folded modules show their repeat count and the
sum over all their members.
"""

from __future__ import annotations

import html
from typing import Any

from model_trace.graph import Graph, ModuleCall

COLUMNS = ("module", "class", "parameters", "activated per token", "FLOPs")


def breakdown_table(graph: Graph, depth: int) -> str:
    """An HTML table of the modules down to ``depth`` levels below the root, then the totals."""
    rows = []
    levels = {graph.root: 0}
    for call in graph.walk_modules():
        level = levels[call.id]
        for child in call.children:
            if child in graph.modules:
                levels[child] = level + 1
        if level <= depth:
            rows.append(_row(call, level))
    head = "".join(f"<th>{name}</th>" for name in COLUMNS)
    body = "\n".join(rows)
    return (f'<div class="model-trace-breakdown"><table>\n<thead><tr>{head}</tr></thead>\n'
            f"<tbody>\n{body}\n</tbody>\n</table>\n{_totals(graph)}"
            "</div>\n")


def _row(call: ModuleCall, level: int) -> str:
    name = call.path.rsplit(".", 1)[-1] if call.path else call.cls
    repeat = getattr(call, "repeat", None)
    cls = call.cls + (f" ×{repeat.count}" if repeat is not None else "")
    activated = getattr(call.stats, "activated_params", None)
    cells = [
        f'<td style="padding-left: {0.6 + 1.2 * level:.1f}em"><code>{html.escape(name)}</code>'
        "</td>",
        f"<td>{html.escape(cls)}</td>",
        _number(call.stats.params),
        _number(activated),
        _number(call.stats.flops),
    ]
    return f"<tr>{''.join(cells)}</tr>"


def _number(value: int | None) -> str:
    text = "—" if value is None else f"{value:,}"
    return f'<td style="text-align: right">{text}</td>'


def _totals(graph: Graph) -> str:
    """The whole model's figures (the root's, with the tracer's ``totals`` on top); fp8 block
    scales are named apart, as published counts leave them out."""
    root = graph.modules[graph.root].stats
    totals: dict[str, Any] = {"params": root.params, "flops": root.flops,
                              "activated_params": getattr(root, "activated_params", None),
                              **graph.meta.get("totals", {})}
    scales = totals.get("block_scale_params", 0)
    activated_scales = totals.get("activated_block_scale_params", 0)
    lines = [f"<strong>{totals['params'] - scales:,}</strong> parameters"]
    if totals["activated_params"] is not None:
        lines.append(f"<strong>{totals['activated_params'] - activated_scales:,}</strong> "
                     "activated per token")
    lines.append(f"<strong>{totals['flops']:,}</strong> FLOPs per forward pass")
    note = (f" (the module rows include the {scales:,} float32 fp8 block scales, "
            f"{activated_scales:,} of them activated; the totals leave them out)"
            if scales else "")
    return f'<p class="model-trace-totals">Totals: {", ".join(lines)}{note}.</p>\n'
