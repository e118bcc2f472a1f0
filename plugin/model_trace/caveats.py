"""What a reader of a traced figure must know about its facts, as text: values the trace
assumed (``Node.assumed``, ``graph.meta["assumptions"]``), ops whose FLOPs have no formula
(``Node.uncounted_flops``, ``graph.meta["flops_without_formula"]``), a backward that failed to
run, so its FLOPs are partial (``graph.meta["backward_error"]``), where measured times come
from (``graph.meta["execution"]``), and experts the model's code runs for every token although
its router chooses fewer (``Selection.chosen``, ``graph.meta["dense_experts"]``). The tracer
writes these facts into the Graph; the build log, the summary tables and the figure's tooltips
say them in these words. No torch here: rendering a saved graph does not need it.
"""

from __future__ import annotations

from typing import Any

from model_trace.graph import Graph, Node
from model_trace.naming import format_count, format_seconds, natural_key

ASSUMED: dict[str, str] = {
    "input": "integer input given on the meta device, so without values: taken as zeros",
    "zeros": "integer result of meta floats, which have no values: taken as zeros",
    "buffer": "integers of a tensor made on the meta device before the trace (a buffer of a "
              "model built there), which have no values: taken as zeros; where the model "
              "takes them as an input (position_ids, token_type_ids), give them on the CPU",
    "kernel": "no CPU kernel for these integer dtypes, even widened: outputs taken as zeros",
    "branch": "Python read a value computed from assumed values here: the branch it took "
              "may not be the model's",
    "rows": "rows picked by an assumed mask: the shape may not be the model's",
}
"""What each kind of assumption means, as the reader is told."""


def assumption_messages(graph: Graph) -> list[str]:
    """One line per warning-level assumption of a traced graph: what was assumed, the op, the
    module and the model's source line."""
    lines = []
    for entry in graph.meta.get("assumptions", []):
        if not entry["warning"]:
            continue
        where = f" at {entry['file']}:{entry['line']} `{entry['code']}`" if entry["file"] else ""
        times = f" ({entry['count']} times)" if entry["count"] > 1 else ""
        origin = f" (values assumed: {entry['origin']})" if entry["origin"] else ""
        lines.append(f"assumed values at op '{entry['op']}' in module "
                     f"'{entry['module'] or '<root>'}'{where}{times}: {entry['detail']}"
                     f"{origin}")
    return lines


def trace_caveats(graph: Graph) -> list[str]:
    """What a reader of the figure's figures must know, one sentence each: FLOPs that leave
    out ops without a formula or a backward that failed, inputs taken as zeros, other values
    the trace assumed, and experts run densely."""
    caveats = _uncounted_flops_caveats(graph)
    entries = graph.meta.get("assumptions", [])
    inputs = [e["op"] for e in entries if e["kind"] == "input"]
    if inputs:
        caveats.append(f"Integer inputs given on the meta device ({', '.join(inputs)}) were "
                       "taken as zeros.")
    others = [e for e in entries if e["kind"] != "input"]
    if others:
        warned = sum(1 for e in others if e["warning"])
        made = ", ".join(
            f"{e['kind']} at '{e['op']}'" + (f" ({e['file']}:{e['line']})" if e["file"] else "")
            + (f" ×{e['count']}" if e["count"] > 1 else "") for e in others)
        which = f", {warned} of which may change the figure" if warned else ""
        caveats.append(f"Values assumed on the meta device{which}: {made}.")
    caveats += _dense_experts_caveats(graph)
    return caveats


def build_notes(graph: Graph) -> list[str]:
    """The caveats a build logs (as information, each time it shows the figure) besides the
    assumption warnings: FLOPs that leave out ops without a formula or a backward that
    failed, experts run densely."""
    return _uncounted_flops_caveats(graph) + _dense_experts_caveats(graph)


def _uncounted_flops_caveats(graph: Graph) -> list[str]:
    caveats: list[str] = []
    uncounted = graph.meta.get("flops_without_formula", {})
    if uncounted:
        ops = ", ".join(f"{name} ×{count}" for name, count in uncounted.items())
        caveats.append(f"FLOPs are a lower bound: ops without a FLOP formula are not counted "
                       f"({ops}).")
    error = graph.meta.get("backward_error")
    if error:
        caveats.append(f"Backward FLOPs not counted: running the backward on the "
                       f"{graph.meta['device']} device failed ({error}), so only "
                       "the gradient ops that ran before the failure are counted (the graph is "
                       "drawn all the same). To count them, draw a part of the model whose "
                       "backward runs (`model:`), or give the failing op a meta kernel "
                       "(torch.library.register_fake).")
    return caveats


def if_only_chosen_experts_ran(graph: Graph) -> tuple[int, int] | None:
    """Activated parameters and FLOPs had a model whose code runs its experts densely
    (``graph.meta["dense_experts"]``) run only those its routers chose, as published active
    counts assume; None for other models."""
    dense = _dense_experts(graph)
    totals = graph.meta.get("totals")
    if not dense or not totals:
        return None
    params, flops = float(totals["activated_params"]), float(totals["flops"])
    for _path, entry in dense:
        unchosen = 1 - entry["chosen"] / entry["count"]
        params -= entry["params"] * unchosen
        flops -= entry["flops"] * unchosen
    return round(params), round(flops)


def _dense_experts(graph: Graph) -> list[tuple[str, dict[str, Any]]]:
    """``graph.meta["dense_experts"]`` as (path, entry) in layer order, the tracer's, also
    for a graph read back from JSON (which sorts the paths as text)."""
    dense = graph.meta.get("dense_experts", {})
    return [(path, dense[path]) for path in sorted(dense, key=natural_key)]


def _dense_experts_caveats(graph: Graph) -> list[str]:
    """Experts run densely: why activated parameters and FLOPs count them all, and what
    they would be had only the chosen experts run."""
    kinds: dict[tuple[str, int, int], list[str]] = {}
    for path, entry in _dense_experts(graph):
        kinds.setdefault((entry["cls"], entry["count"], entry["chosen"]), []).append(path)
    if not kinds:
        return []
    layers = "; ".join(f"{len(paths)} × {cls}, {paths[0]}{', …' if len(paths) > 1 else ''}: "
                       f"its router chooses {chosen} of {count} per token"
                       for (cls, count, chosen), paths in kinds.items())
    chosen_only = if_only_chosen_experts_ran(graph)
    had = (f" Had only the chosen experts run: {format_count(chosen_only[0])} parameters "
           f"activated per token, {format_count(chosen_only[1])} FLOPs."
           if chosen_only else "")
    return [f"Experts run densely: the model's code runs every token through every expert, "
            f"weighted by the router's scores ({layers}), so activated parameters and FLOPs "
            f"count every expert, as the code computes them.{had}"]


def node_caveats(node: Node) -> list[str]:
    """Lines for a node's tooltip: what was assumed there, which ops have no FLOP formula."""
    lines = []
    if node.assumed:
        lines.append(f"assumed ({node.assumed}): {ASSUMED[node.assumed]}")
    for selection in node.selections:
        if selection.whole and selection.chosen:
            lines.append(f"every expert for every row: {selection.param} holds "
                         f"{selection.slices} experts, the router chose {selection.chosen} "
                         "per token, and this op ran all of them")
    if node.uncounted_flops:
        lines.append("FLOPs not counted (no formula): " + ", ".join(node.uncounted_flops))
    return lines


def execution_caption(graph: Graph, weights: str) -> str:
    """What a figure with measured times says about the run (``execute``): the machine, its
    threads, torch's version, the weights (``random``: seeded, else the model's own)."""
    run = graph.meta["execution"]
    weights = "seeded random weights" if weights == "random" else "the model's weights"
    return (f"Measured: one run on the {run['device']} after a warm-up, {run['machine']}, "
            f"{run['threads']} threads, torch {run['torch']}, {weights}; "
            f"{format_seconds(run['total_s'])} in all ({run['measured_calls']} of "
            f"{run['called_modules']} module calls and {run['measured_ops']} of {run['ops']} "
            "ops timed).")
