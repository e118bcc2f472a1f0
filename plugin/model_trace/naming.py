"""How model-trace names modules and writes numbers: one helper each, used by the figure's boxes,
tooltips and legend, the fence's table and the CLI's summary, so they never disagree.

- a module is named by its path below the enclosing box's (``layers.0`` under the model,
  ``experts.17`` under an MoE), a folded run of numbered siblings by its range and its class
  (``layers.3–60: Block ×58``, ``experts.0–255: Expert ×256``);
- a count is short, three significant digits and a letter: ``671B``, ``37.6B``, ``1.23K``;
  bytes the same with a unit, ``1.36 TB``; seconds in µs, ms or s.
"""

from __future__ import annotations

import re
from typing import Any

from model_trace.graph import Graph, ModuleCall

_COUNT_UNITS = (("T", 1e12), ("B", 1e9), ("M", 1e6), ("K", 1e3))
_BYTE_UNITS = (("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("kB", 1e3))
_SECOND_UNITS = (("s", 1.0), ("ms", 1e-3), ("µs", 1e-6), ("ns", 1e-9))


def format_count(value: float) -> str:
    """``671026419200`` -> ``671B``, ``1234`` -> ``1.23K``, ``999500`` -> ``1M``, ``12`` ->
    ``12``."""
    return _in_units(value, _COUNT_UNITS, "") or (
        f"{value:.3g}" if isinstance(value, float) and not value.is_integer() else f"{int(value)}")


def format_bytes(value: float) -> str:
    """``1.36e12`` -> ``1.36 TB``, ``512`` -> ``512 B``."""
    return _in_units(value, _BYTE_UNITS, " ") or f"{round(value)} B"


def format_seconds(value: float) -> str:
    """``3.2e-6`` -> ``3.2 µs``, ``0.0151`` -> ``15.1 ms``, ``2.5`` -> ``2.5 s``."""
    if value == 0:
        return "0 s"
    return _in_units(value, _SECOND_UNITS, " ") or f"{value / 1e-9:.3g} ns"


def _in_units(value: float, units: tuple[tuple[str, float], ...], separator: str) -> str | None:
    """``value`` in the largest of ``units`` (largest first) it reaches once rounded to three
    significant digits, so that 999,500 reads ``1M`` and not ``1e+03K``; None below them all."""
    rounded = float(f"{value:.3g}")
    for unit, size in units:
        if abs(rounded) >= size:
            number = rounded / size
            text = f"{number:.3g}" if abs(number) < 1000 else f"{number:,.0f}"
            return f"{text}{separator}{unit}"
    return None


def natural_key(path: str) -> tuple[Any, ...]:
    """Sort key putting ``layers.3`` before ``layers.10`` (a graph's JSON sorts its dicts'
    keys as strings, so an order read back from it must be restored with this)."""
    return tuple(int(p) if p.isdigit() else p for p in re.split(r"(\d+)", path))


def relative_name(path: str, parent_path: str) -> str:
    """``path`` below ``parent_path``, or its last part if it does not lie below it."""
    if not parent_path:
        return path
    if path.startswith(parent_path + "."):
        return path[len(parent_path) + 1:]
    return path.rsplit(".", 1)[-1]


def numbered_run(names: list[str]) -> str | None:
    """``layers.3–60`` for ``layers.3`` ... ``layers.60`` in order, else None."""
    prefix, _, first = names[0].rpartition(".")
    if len(names) < 2 or not (first.isascii() and first.isdigit()):
        return None
    start = int(first)
    for offset, name in enumerate(names):
        if name != (f"{prefix}." if prefix else "") + str(start + offset):
            return None
    return f"{names[0]}\u2013{start + len(names) - 1}"


def module_name(graph: Graph, call: ModuleCall) -> str:
    """The call's name below its enclosing call (a folded run: its range); the root's class,
    and a function traced into (``trace_depth``) as ``name()``."""
    if call.kind == "function":
        return f"{call.cls}()"
    if not call.path:
        return call.cls
    parent = graph.modules.get(call.parent) if call.parent is not None else None
    parent_path = parent.path if parent is not None else ""
    name = relative_name(call.path, parent_path)
    if call.repeat is None:
        return name
    members = [relative_name(m, parent_path) for m in call.repeat.members]
    return numbered_run(members) or name


def module_label(graph: Graph, call: ModuleCall) -> str:
    """``name: Class``, with ``×N`` for a folded repeat (``layers.3–60: Block ×58``); the
    root is its class alone."""
    name = module_name(graph, call)
    if not call.path or call.kind == "function":
        label = name
    else:
        label = f"{name}: {display_class(graph, call)}"
    return label if call.repeat is None else f"{label} \u00d7{call.repeat.count}"


def display_class(graph: Graph, call: ModuleCall) -> str:
    """The class a reader knows the call by: a folded loop (``cls`` "loop") is named after the
    modules each iteration calls (``Expert``), or, calling none, after its ops."""
    if call.kind != "loop":
        return call.cls
    classes = sorted({graph.modules[c].cls for c in call.children if c in graph.modules})
    if not classes:
        classes = list(dict.fromkeys(graph.nodes[c].name for c in call.children
                                     if c in graph.nodes))[:3]
    return "/".join(classes) if classes else "loop"


def never_called(call: ModuleCall) -> str:
    """Why a call ran nothing, in the words the table and the tooltip use ("" for a call the
    forward made): its weights count as activated only where an op read them directly
    (``wkv_b.weight`` in absorbed attention), which the reader must be told apart from a
    module nothing touched (an expert without tokens, a skipped vision tower)."""
    if call.called:
        return ""
    return "never called; weights read directly" if call.stats.activated_params \
        else "never called"
