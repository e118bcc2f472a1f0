"""What a reader reads about each item of a figure: the lines of its tooltip and side panel,
and the figures its overlays colour it by, written once here with ``naming``'s number style
and shipped to the viewer as text.

The byte overlays are the three kinds of bytes of ``Stats``: weights read, activations written,
workspace written (never one "memory" figure: on an fp8 model most bytes written are
dequantised weight copies, which are workspace). The time overlay estimates a call's time on
one H100 SXM (dense bf16 tensor cores and HBM3 bandwidth) as the longer of its FLOPs at peak
and the bytes it reads and writes at peak bandwidth, unless the trace measured it
(``ModuleCall.measured``).
"""

from __future__ import annotations

from dataclasses import dataclass

from model_trace.caveats import node_caveats
from model_trace.dims import shape_text
from model_trace.graph import BYTES_WORDS, Graph, ModuleCall, Node, Stats, Tensor
from model_trace.naming import format_bytes, format_count, format_seconds, never_called
from model_trace.tracing.summary import run_seconds
from model_trace.view_tree import ViewTree

PEAK_FLOPS = 989e12
"""FLOP/s of one H100 SXM, dense bf16 (the roofline of the time overlay)."""
PEAK_BYTES = 3.35e12
"""Bytes/s of its HBM3."""
_BYTES = {"weights": "weight_bytes", "activations": "activation_bytes",
          "workspace": "workspace_bytes"}
"""The byte overlays and the ``Stats`` field each colours by."""
OVERLAY_NAMES = {"params": "parameters", "flops": "FLOPs",
                 **{key: BYTES_WORDS[field] for key, field in _BYTES.items()},
                 "time": "est. time"}
"""What a figure can colour its boxes by (besides "none", the op kinds), in menu order, as the
menu, the legend and the tooltips name it."""
OVERLAYS = tuple(OVERLAY_NAMES)


@dataclass(frozen=True)
class ItemText:
    """The tooltip and panel of one item: a heading and ``(name, value)`` rows."""

    heading: str
    rows: list[tuple[str, str]]
    code: str = ""
    """The source line of an op, shown as code in the panel."""
    caveat: bool = False
    """Values were assumed here, or FLOPs have no formula: the node gets a red dashed outline
    and its rows say which (``caveats.node_caveats``)."""

    def tooltip(self) -> str:
        """The lines a static SVG's ``<title>`` and the viewer's tooltip show."""
        lines = [self.heading, *(f"{name}: {value}" for name, value in self.rows)]
        if self.code:
            lines.append(self.code)
        return "\n".join(lines)


def tensor_text(graph: Graph, tensor: Tensor) -> str:
    """``(2, 8, 32) float32``: a tensor as tooltips and the panel list it (with named
    dimensions, ``(B, S, d_model) bfloat16 = (1, 128, 7168)``)."""
    return shape_text(graph, tensor)


def item_text(tree: ViewTree, item_id: str) -> ItemText:
    """The heading and rows of any item of ``tree``, with the rows its mark adds."""
    text = _item_text(tree, item_id)
    mark = tree.marks.get(item_id)
    if mark is None or not mark.rows:
        return text
    return ItemText(text.heading, text.rows + mark.rows, text.code, text.caveat)


def _item_text(tree: ViewTree, item_id: str) -> ItemText:
    item = tree.items[item_id]
    if item.kind == "module":
        return _module_text(tree, tree.graph.modules[item_id])
    if item.kind == "member":
        owner, index = item_id.split("~")
        module = tree.graph.modules[owner]
        assert module.repeat is not None
        rows = [("member", f"{int(index) + 1} of {module.repeat.count}, drawn as "
                           f"{module.path or module.cls} (its internals are the same)")]
        return ItemText(f"{module.repeat.members[int(index)]}: {module.cls}",
                        rows + _stat_rows(tree.stats(item_id)))
    if item.kind in ("chunk", "idle"):
        return ItemText(item.label, _stat_rows(tree.stats(item_id)))
    return _node_text(tree, tree.graph.nodes[item_id])


def _module_text(tree: ViewTree, module: ModuleCall) -> ItemText:
    rows: list[tuple[str, str]] = []
    if module.repeat is not None:
        note = f"; {module.repeat.note}" if module.repeat.note else ""
        rows.append(("repeat", f"\u00d7{module.repeat.count}{note}; figures below are of "
                               "one member"))
    if not module.called:
        rows.append(("called", never_called(module)))
    elif tree.items[module.id].category == "idle":
        rows.append(("no ops", "called, but ran no op (e.g. dropout in eval mode)"))
    if module.extra_repr:
        rows.append(("config", module.extra_repr))
    rows += _stat_rows(module.stats)
    if module.measured is not None:
        peak = module.measured.peak_memory_bytes
        rows.append(("measured", f"{format_seconds(module.measured.wall_time_s)}, " + (
            f"peak {format_bytes(peak)}" if peak is not None else "peak memory not measured")))
    if module.source is not None:
        rows.append(("source", f"{module.source.file}:{module.source.start}"
                               f"\u2013{module.source.end}"))
    return ItemText(f"{module.path or '(model)'}: {module.cls}", rows)


def _node_text(tree: ViewTree, node: Node) -> ItemText:
    tensors = tree.graph.tensors
    rows: list[tuple[str, str]] = []
    for name, ids in (("in", node.inputs), ("out", node.outputs)):
        if ids:
            rows.append((name, ", ".join(tensor_text(tree.graph, tensors[t]) for t in ids
                                         if t in tensors)))
    rows += list(node.args.items())
    if node.params:
        rows.append(("reads", ", ".join(node.params)))
    rows += _stat_rows(node.stats)
    code = ""
    if node.source is not None:
        rows.append(("source", f"{node.source.file}:{node.source.line}"))
        code = node.source.code
    caveats = node_caveats(node)
    rows += [("caveat", line) for line in caveats]
    return ItemText(f"{node.name}  [{node.category}]", rows, code, caveat=bool(caveats))


def _stat_rows(stats: Stats) -> list[tuple[str, str]]:
    rows = []
    if stats.params:
        rows.append(("params", format_count(stats.params)))
        if stats.activated_params != stats.params:
            rows.append(("activated", format_count(stats.activated_params)))
    if stats.flops:
        rows.append(("FLOPs", format_count(stats.flops)))
    for field, words in BYTES_WORDS.items():
        value = getattr(stats, field)
        if value:
            rows.append((words, format_bytes(value)))
    return rows


def overlay_value(tree: ViewTree, item_id: str, overlay: str) -> float:
    """The figure an overlay colours an item by: params, FLOPs, bytes of one kind, seconds (the
    slower of computing its FLOPs and moving the bytes it reads and writes; after a real run,
    every item's measured time instead, ops included, so one scale holds one kind of
    figure)."""
    stats = tree.stats(item_id)
    if overlay == "params":
        return stats.params
    if overlay == "flops":
        return stats.flops
    if overlay in _BYTES:
        return getattr(stats, _BYTES[overlay])
    if "execution" in tree.graph.meta:  # a real run: every item its measured time, one scale
        return measured_seconds(tree, item_id) or 0.0
    moved = stats.read_bytes + stats.activation_bytes + stats.workspace_bytes
    return max(stats.flops / PEAK_FLOPS, moved / PEAK_BYTES)


def measured_seconds(tree: ViewTree, item_id: str) -> float | None:
    """An item's wall time in a real run (``execute``): an op's or a module call's own, a
    folded run's members summed (as the summary table sums them), a member's own, a chunk's
    parts summed; None where nothing was measured (a module never called)."""
    item = tree.items[item_id]
    if item.kind == "member":
        owner, index = item_id.split("~")
        repeat = tree.graph.modules[owner].repeat
        assert repeat is not None
        seconds = repeat.member_seconds
        return seconds[int(index)] if seconds is not None else None
    if item_id in tree.graph.modules:
        return run_seconds(tree.graph.modules[item_id])
    if item_id in tree.graph.nodes:
        measured = tree.graph.nodes[item_id].measured
        return measured.wall_time_s if measured is not None else None
    known = [s for s in (measured_seconds(tree, child) for child in item.children)
             if s is not None]
    return sum(known) if known else None


def overlay_text(value: float, overlay: str) -> str:
    """An overlay figure as the legend and tooltips write it."""
    if overlay in _BYTES:
        return format_bytes(value)
    if overlay == "time":
        return format_seconds(value)
    return format_count(value)
