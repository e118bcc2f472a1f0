"""Activated parameters and expert load of stacked experts, from the nodes' ``selections``.

A stacked parameter (``gate_up_proj[E, 2I, D]``) counts towards the parameters one token goes
through by the share of its slices the tokens used: slice ``e`` used for ``n_e`` rows out of
the ``T`` tokens that entered the layer counts ``n_e / T`` of a slice, so 8 of 256 experts per
token count 8 slices. ``T`` is the fewest rows among the calls enclosing the op that used the
slices (the layer's tokens; an experts module fed one copy of each token per chosen expert
sees more). A parameter some op used whole (every slice for every row) counts whole.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from model_trace.graph import Graph, Node


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


def stacked_uses(graph: Graph) -> dict[str, StackedUse]:
    """Every stacked parameter some op selected slices of, and never used whole, by name."""
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
                    selection.param, [0] * selection.slices, _token_rows(graph, node))
            for index, tokens in zip(selection.indices, selection.tokens, strict=True):
                use.tokens[index] = max(use.tokens[index], tokens)
    return {name: use for name, use in uses.items() if name not in whole}


def _token_rows(graph: Graph, node: Node) -> int:
    """The fewest rows of a float input of at least two dimensions among the calls that
    enclose ``node`` (all dimensions but the last multiplied)."""
    fewest = 0
    call_id: str | None = node.parent
    while call_id is not None:
        call = graph.modules[call_id]
        for tensor_id in call.inputs[:1]:
            tensor = graph.tensors[tensor_id]
            if len(tensor.shape) >= 2 and tensor.dtype.startswith(("float", "bfloat", "complex")):
                rows = math.prod(tensor.shape[:-1])
                fewest = rows if not fewest else min(fewest, rows)
        call_id = call.parent
    return fewest or 1


def expert_load(graph: Graph, uses: dict[str, StackedUse]) -> dict[str, dict[str, Any]]:
    """``graph.meta["experts"]`` entries for stacked experts, by the path of the module that
    holds them: the same figures as for experts that are modules of their own."""
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
            "cls": owner.cls if owner is not None else "",
            "count": len(use.tokens),
            "called": sum(1 for t in use.tokens if t),
            "active_per_token": round(sum(use.tokens) / use.token_rows, 4),
            "tokens": use.tokens,
            "stacked": [name.rpartition(".")[2]],
        }
    return load
