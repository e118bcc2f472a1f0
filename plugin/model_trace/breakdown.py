"""The table a fence can show under its figure (``summary: N``): the per-module table of
``tracing.summary`` (the one ``model-trace summary`` prints) as HTML, then the totals."""

from __future__ import annotations

import html

from model_trace.caveats import trace_caveats
from model_trace.graph import Graph
from model_trace.tracing.summary import NUMERIC, SummaryRow, columns, summary_rows, totals


def breakdown_table(graph: Graph, depth: int) -> str:
    """An HTML table of the modules down to ``depth`` levels below the root, then the totals."""
    head = "".join(f"<th>{name}</th>" for name in columns(graph))
    body = "\n".join(_row(row) for row in summary_rows(graph, depth))
    return (f'<div class="model-trace-breakdown"><table>\n<thead><tr>{head}</tr></thead>\n'
            f"<tbody>\n{body}\n</tbody>\n</table>\n{_totals(graph)}"
            "</div>\n")


def _row(row: SummaryRow) -> str:
    name, *rest = row.cells()
    cells = [f'<td style="padding-left: {0.6 + 1.2 * row.level:.1f}em; white-space: nowrap">'
             f"<code>{html.escape(name)}</code></td>"]
    for index, text in enumerate(rest, start=1):
        style = ' style="text-align: right; white-space: nowrap"' if index in NUMERIC else ""
        cells.append(f"<td{style}>{html.escape(text)}</td>")
    return f"<tr>{''.join(cells)}</tr>"


def _totals(graph: Graph) -> str:
    total = totals(graph)
    parts = ", ".join(f"<strong>{number}</strong> {words}" for number, words in total.parts())
    caveats = "".join(f'<p class="model-trace-caveat">{html.escape(c)}</p>\n'
                      for c in trace_caveats(graph))
    return f'<p class="model-trace-totals">Totals: {parts}{total.note()}.</p>\n{caveats}'
