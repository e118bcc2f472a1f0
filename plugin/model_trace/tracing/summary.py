"""The per-module table of a trace: ``model-trace summary`` prints it, a fence's ``summary: N``
puts it under the figure (``breakdown``). One table: the same rows, names and numbers in both.

Counts are exact (``671,026,419,200``), so a page can quote the model's published figures
from its own trace instead of typing them. A folded module shows its repeat count and the sum
over all its members, with the least and most FLOPs of one member; the modules inside it, one
member's figures ("each"). Rows are named as the figure names its boxes (``naming``). Bytes
are the three kinds of ``Stats`` apart, in ``BYTES_WORDS``' words: weights read, activations
written, workspace written (dequantised weight copies, caches); traffic summed over the
forward, not memory held at once. A trace with a measured run (``execute``) adds each call's
wall time, in the same terms (a folded run: every member's time summed).
"""

from __future__ import annotations

from dataclasses import dataclass

from model_trace.caveats import trace_caveats
from model_trace.dims import legend_text, symbolic_shape
from model_trace.graph import BYTES_WORDS, Graph, ModuleCall, Stats
from model_trace.naming import (
    display_class,
    format_bytes,
    format_count,
    format_seconds,
    module_name,
    never_called,
)

COLUMNS = ("module", "class", "parameters", "activated per token", "FLOPs",
           "FLOPs per member", *BYTES_WORDS.values())
MEASURED_COLUMN = "measured time"
"""The column a trace with a measured run (``execute``) adds after ``COLUMNS``."""
NUMERIC = frozenset(range(2, len(COLUMNS) + 1))
"""Columns of numbers (right-aligned)."""
FLOPS_COUNTED = "matrix products, convolutions and attention; elementwise ops count 0"
"""What the FLOPs total counts (``flops``), said beside it so no reader takes it for every op."""
SHAPE_COLUMNS = ("in", "out")
"""The text table's last columns: the call's input and output shapes (symbolic when the
trace names its dimensions)."""


@dataclass(frozen=True)
class SummaryRow:
    """One module call's line of the table."""

    call: str
    """The module call's id."""
    level: int
    """Module levels below the root (the table's indentation)."""
    name: str
    cls: str
    params: int
    activated: int
    flops: int
    per_member: str
    """The least and the most FLOPs of one member of a folded call, or ""."""
    bytes: tuple[int, ...]
    """Bytes of weights read, of activations and of workspace written (``BYTES_WORDS``)."""
    measured: str | None = None
    """The call's measured wall time ("–": not measured); None when the trace measured no
    run."""

    def cells(self) -> tuple[str, ...]:
        numbers = (self.name, self.cls, f"{self.params:,}", f"{self.activated:,}",
                   f"{self.flops:,}", self.per_member, *(format_bytes(b) for b in self.bytes))
        return numbers if self.measured is None else (*numbers, self.measured)


@dataclass(frozen=True)
class Totals:
    """The whole model's figures (the root's, with the tracer's ``totals`` on top); fp8 block
    scales counted apart, as published counts leave them out."""

    params: int
    activated: int
    flops: int
    scales: int
    activated_scales: int
    weight_bytes: int
    activation_bytes: int
    workspace_bytes: int
    """Bytes of weights read, of activations and of workspace written (see ``Stats``)."""

    def parts(self) -> list[tuple[str, str]]:
        """(number, words) of the totals sentence."""
        return [(f"{self.params - self.scales:,}", "parameters"),
                (f"{self.activated - self.activated_scales:,}", "activated per token"),
                (f"{self.flops:,}", f"FLOPs per forward pass ({FLOPS_COUNTED})"),
                *((format_bytes(getattr(self, stat)), f"of {words}")
                  for stat, words in BYTES_WORDS.items())]

    def note(self) -> str:
        if not self.scales:
            return ""
        return (f" (the module rows include the {self.scales:,} float32 fp8 block scales, "
                f"{self.activated_scales:,} of them activated; the totals leave them out)")


def columns(graph: Graph) -> tuple[str, ...]:
    """The table's columns: ``COLUMNS``, and the measured time for a measured trace."""
    return COLUMNS + ((MEASURED_COLUMN,) if "execution" in graph.meta else ())


def run_seconds(call: ModuleCall) -> float | None:
    """A call's measured wall time, every member's summed for a folded run (None: not
    measured, as a call never made or a member whose time is unknown)."""
    if call.repeat is not None:
        seconds = call.repeat.member_seconds
        return sum(seconds) if seconds is not None else None
    return call.measured.wall_time_s if call.measured is not None else None


def summary_rows(graph: Graph, max_depth: int | None = None) -> list[SummaryRow]:
    """The modules down to ``max_depth`` levels below the root (None: all), in walk order."""
    rows = []
    levels = graph.module_depths()
    inside_repeat: set[str] = set()
    for call in graph.walk_modules():
        if call.id in inside_repeat or call.repeat is not None:
            inside_repeat.update(c for c in call.children if c in graph.modules)
        if max_depth is None or levels[call.id] <= max_depth:
            rows.append(_row(graph, call, levels[call.id], call.id in inside_repeat))
    return rows


def _row(graph: Graph, call: ModuleCall, level: int, each: bool) -> SummaryRow:
    """A folded call counts all its members; a call inside one counts one member (each)."""
    stats = [call.stats]
    cls = display_class(graph, call)
    if call.repeat is not None:
        cls += f" \u00d7{call.repeat.count}"
        stats = call.repeat.member_stats or stats
    elif each:
        cls += " (each)"
    if not call.called:
        cls += f" ({never_called(call)})"
    measured = None
    if "execution" in graph.meta:
        seconds = run_seconds(call)
        measured = format_seconds(seconds) if seconds is not None else "\u2013"
    return SummaryRow(call.id, level, module_name(graph, call), cls,
                      sum(s.params for s in stats), sum(s.activated_params for s in stats),
                      sum(s.flops for s in stats), _spread(stats),
                      tuple(sum(getattr(s, stat) for s in stats) for stat in BYTES_WORDS),
                      measured)


def _spread(stats: list[Stats]) -> str:
    if len(stats) < 2:
        return ""
    low, high = min(s.flops for s in stats), max(s.flops for s in stats)
    return format_count(low) if low == high else f"{format_count(low)} \u2013 {format_count(high)}"


def _shapes(graph: Graph, tensor_ids: list[str], limit: int = 2) -> str:
    shapes = [symbolic_shape(graph, graph.tensors[t]) for t in tensor_ids[:limit]
              if t in graph.tensors]
    more = len(tensor_ids) - limit
    return ", ".join(shapes) + (f" +{more}" if more > 0 else "")


def totals(graph: Graph) -> Totals:
    root = graph.modules[graph.root].stats
    found = {"params": root.params, "flops": root.flops,
             "activated_params": root.activated_params, "weight_bytes": root.weight_bytes,
             "activation_bytes": root.activation_bytes,
             "workspace_bytes": root.workspace_bytes, **graph.meta.get("totals", {})}
    return Totals(found["params"], found["activated_params"], found["flops"],
                  found.get("block_scale_params", 0), found.get("activated_block_scale_params", 0),
                  found["weight_bytes"], found["activation_bytes"], found["workspace_bytes"])


def summary_table(graph: Graph, max_depth: int | None = None) -> str:
    """The table as text, indented by level, then the totals and what a reader must know."""
    rows = [("  " * row.level + row.name, *row.cells()[1:],
             _shapes(graph, graph.modules[row.call].inputs),
             _shapes(graph, graph.modules[row.call].outputs))
            for row in summary_rows(graph, max_depth)]
    headers = columns(graph) + SHAPE_COLUMNS
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]
    numeric = NUMERIC & set(range(len(columns(graph))))  # not the shapes after them

    def line(cells: tuple[str, ...]) -> str:
        return "  ".join(c.rjust(w) if i in numeric else c.ljust(w)
                         for i, (c, w) in enumerate(zip(cells, widths, strict=True))).rstrip()

    out = [line(headers), line(tuple("-" * w for w in widths)), *(line(r) for r in rows)]
    total = totals(graph)
    out += ["", "Totals: " + ", ".join(f"{n} {w}" for n, w in total.parts()) + total.note()
            + "."]
    if legend_text(graph):
        out.append(f"dimensions: {legend_text(graph)}")
    out += [f"note: {caveat}" for caveat in trace_caveats(graph)]
    folded = graph.meta.get("folded")
    if folded:
        before, after = folded["before"], folded["after"]
        out.append(f"folded: {before['modules']} module calls -> {after['modules']}, "
                   f"{before['nodes']} nodes -> {after['nodes']}")
    return "\n".join(out)
