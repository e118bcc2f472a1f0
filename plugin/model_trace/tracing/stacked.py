"""Activated parameters and expert load of stacked experts, from the nodes' ``selections``.

A stacked parameter (``gate_up_proj[E, 2I, D]``) counts towards the parameters one token goes
through by the share of its slices the tokens used: slice ``e`` used for ``n_e`` rows out of
the ``T`` tokens that entered the layer counts ``n_e / T`` of a slice, so 8 of 256 experts per
token count 8 slices. ``T`` is the fewest rows among the calls enclosing the op that used the
slices (the layer's tokens; an experts module fed one copy of each token per chosen expert
sees more), leaving out calls fed rows picked by an index (one expert's tokens, DBRX). A
parameter some op used whole (every slice for every row) counts whole.

Some models' code multiplies every expert by every token and weights the ones the router did
not choose by zero (transformers' Llama 4): the trace counts them all, as the code computes
them, and ``dense_experts`` says so, with what choosing alone would cost.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from model_trace.graph import Graph, ModuleCall, Node
from model_trace.tracing.op_table import facts_of


@dataclass
class StackedUse:
    """How the tokens used one stacked parameter."""

    param: str
    tokens: list[int]
    """Rows per slice (each slice's largest count over the ops that used it)."""
    token_rows: int
    """Tokens that entered the layer (``T``)."""

    @property
    def share(self) -> float:
        """The fraction of the parameter one token goes through."""
        return min(1.0, sum(self.tokens) / (self.token_rows * len(self.tokens)))

    @property
    def owner(self) -> str:
        """Path of the module holding the parameter."""
        return self.param.rpartition(".")[0]


def stacked_uses(graph: Graph, fed_picked_rows: Callable[[ModuleCall], bool]
                 ) -> dict[str, StackedUse]:
    """Every stacked parameter some op selected slices of, and never used whole, by name;
    ``fed_picked_rows`` says whether a call's input is rows picked by an index."""
    uses: dict[str, StackedUse] = {}
    whole: set[str] = set()
    for node in graph.nodes.values():
        for selection in node.selections:
            if selection.whole:
                whole.add(selection.param)
                continue
            use = uses.get(selection.param)
            if use is None:
                use = uses[selection.param] = StackedUse(
                    selection.param, [0] * selection.slices,
                    _token_rows(graph, node, fed_picked_rows))
            for index, tokens in zip(selection.indices, selection.tokens, strict=True):
                use.tokens[index] = max(use.tokens[index], tokens)
    return {name: use for name, use in uses.items() if name not in whole}


def _token_rows(graph: Graph, node: Node, fed_picked_rows: Callable[[ModuleCall], bool]
                ) -> int:
    """The fewest rows of a float input of at least two dimensions among the calls that
    enclose ``node`` (all dimensions but the last multiplied), but calls fed picked rows."""
    fewest = 0
    call_id: str | None = node.parent
    while call_id is not None:
        call = graph.modules[call_id]
        for tensor_id in call.inputs[:1] if not fed_picked_rows(call) else ():
            tensor = graph.tensors[tensor_id]
            if len(tensor.shape) >= 2 and tensor.dtype.startswith(("float", "bfloat", "complex")):
                rows = math.prod(tensor.shape[:-1])
                fewest = rows if not fewest else min(fewest, rows)
        call_id = call.parent
    return fewest or 1


def expert_load(graph: Graph, uses: dict[str, StackedUse],
                class_of: Callable[[str], str] = lambda path: "") -> dict[str, dict[str, Any]]:
    """``graph.meta["experts"]`` entries for stacked experts, by the path of the module that
    holds them: the same figures as for experts that are modules of their own. ``class_of``
    names the class of a holder the graph does not list (inside an uncalled module)."""
    first_call = {}
    for call in graph.modules.values():
        if call.kind == "module":
            first_call.setdefault(call.path, call)
    load: dict[str, dict[str, Any]] = {}
    for name in sorted(uses):
        use = uses[name]
        entry = load.get(use.owner)
        if entry is not None:
            entry["stacked"].append(name.rpartition(".")[2])
            continue
        owner = first_call.get(use.owner)
        load[use.owner] = {
            "cls": owner.cls if owner is not None else class_of(use.owner),
            "count": len(use.tokens),
            "called": sum(1 for t in use.tokens if t),
            "active_per_token": round(sum(use.tokens) / use.token_rows, 4),
            "tokens": use.tokens,
            "stacked": [name.rpartition(".")[2]],
        }
    return load


@dataclass(frozen=True)
class _Choice:
    """A routing op that chose ``chosen`` of ``choices`` per row, in the module at ``path``."""

    path: str
    choices: int
    chosen: int


def _choices(graph: Graph) -> list[_Choice]:
    """Every routing op (``topk``, ``argmax``) that picked fewer indices than it had scores."""
    found = []
    for node in graph.nodes.values():
        if not node.inputs or facts_of(node.name).role != "routing":
            continue
        scores = graph.tensors[node.inputs[0]].shape
        for output in node.outputs:
            indices = graph.tensors[output]
            if not scores or not indices.dtype.startswith(("int", "uint")):
                continue
            chosen = indices.shape[-1] if len(indices.shape) == len(scores) else 1
            if chosen < scores[-1]:
                found.append(_Choice(graph.modules[node.parent].path, scores[-1], chosen))
    return found


def dense_experts(graph: Graph, size_of: Callable[[str], int]) -> dict[str, dict[str, Any]]:
    """Stacked experts an op used whole although a router beside them chose fewer per token
    (a routing op in the module that holds the experts' module, over as many scores as there
    are experts), by the path of the module holding them: class, experts, chosen per token,
    the stacked parameters' names and size (``size_of`` a parameter's name), and the FLOPs of
    the ops that used them whole. Each such whole ``Selection`` gets ``chosen`` set."""
    choices = _choices(graph)
    if not choices:
        return {}
    found: dict[str, dict[str, Any]] = {}
    for node in graph.nodes.values():
        for selection in node.selections:
            if not selection.whole:
                continue
            owner = selection.param.rpartition(".")[0]
            layer = owner.rpartition(".")[0]
            choice = next((c for c in choices if c.choices == selection.slices
                           and (not layer or c.path == layer
                                or c.path.startswith(layer + "."))), None)
            if choice is None:
                continue
            selection.chosen = choice.chosen
            entry = found.setdefault(owner, {
                "cls": _class_at(graph, owner), "count": choice.choices,
                "chosen": choice.chosen, "stacked": [], "params": 0, "flops": 0})
            entry["flops"] += node.stats.flops
            name = selection.param.rpartition(".")[2]
            if name not in entry["stacked"]:
                entry["stacked"].append(name)
                entry["params"] += size_of(selection.param)
    return found


def _class_at(graph: Graph, path: str) -> str:
    return next((call.cls for call in graph.modules.values()
                 if call.kind == "module" and call.path == path), "")
