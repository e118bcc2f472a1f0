"""Experts stored as one stacked parameter: which slices each op used, and for how many rows.

transformers 5 keeps the experts of a mixture-of-experts layer in 3-D parameters
(``gate_up_proj[E, 2I, D]``, ``down_proj[E, D, I]``) and runs them in one of three ways:

- a loop over the experts that got tokens, ``F.linear(x[token_idx], w[e])``: a slice taken
  by a scalar index, whose rows are those of the op that uses it;
- ``w[expert_ids]`` (a slice per token and expert, then ``bmm``): the rows of slice ``e`` are
  how often ``e`` appears in the concrete index;
- ``grouped_mm(x, w, offs=offsets)``: rows sorted by expert, ``offsets`` their concrete
  cumulative counts.

A parameter of three or more dimensions counts as stacked along its first one, and so does a
view of any parameter with three or more (``w.view(E, I, D)``, DBRX). A table of rows
(``nn.Embedding``, a 2-D weight) counts as stacked along its rows where an op picks them by
indices a router chose (``embedding(topk_ids, w)``: Doge's experts are rows of two tables):
a routing op (``topk``, ``argmax``...) among the integer ops that computed the indices. A
token embedding's ids come from the inputs, so that table counts whole, as it always has (a
trace that feeds a token chosen by ``argmax`` back into the embedding counts its rows too).

The tracker follows views of stacked parameters and of scalar-index slices, and writes a
``Selection`` on the node that used the slices; the statistics turn them into activated
parameters and expert load. An op that uses a stacked parameter whole (every expert for
every row) writes a ``whole`` selection: then every slice counts.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from model_trace.graph import Node, Selection, Tensor
from model_trace.tracing.op_info import OpInfo
from model_trace.tracing.op_table import facts_of

STACKED_MIN_DIM = 3
"""Fewest dimensions of a parameter (or a view of one) held as a stack of slices."""

PICKS_ROWS = ("getitem", "index_select", "embedding")
"""Ops that pick rows of a table by an index: a table whose rows a router chose counts by
the rows picked."""


class SliceTracker:
    """Follows stacked parameters through views and selections during one trace."""

    def __init__(self) -> None:
        self.tracked: dict[str, tuple[str, int]] = {}  # tensor id -> (param, slices)
        self.pending: dict[str, tuple[str, int, int]] = {}  # slice taken -> (param, slices, i)
        self.drawn: dict[str, tuple[str, torch.Tensor]] = {}  # a parameter of fewer than
        # three dimensions drawn as a node (``parameters="nodes"``), by its tensor id: only
        # its first reader gets it as a read, later ones as an input

    @property
    def following(self) -> bool:
        """Whether an op without parameter reads may still use stacked experts."""
        return bool(self.tracked or self.pending or self.drawn)

    def observe(self, info: OpInfo, node: Node, args: tuple[Any, ...], kwargs: dict[str, Any],
                reads: list[tuple[str, torch.Tensor, str | None]],
                tensors: dict[str, Tensor], nodes: dict[str, Node]) -> None:
        """Record what ``node`` did with stacked parameters. ``reads`` are the parameters it
        read directly (name, tensor, tensor id if drawn as a node): those of three or more
        dimensions, and for a view any; ``tensors`` and ``nodes`` the trace's, by id."""
        for name, value, tensor_id in reads:
            if tensor_id is not None:
                if value.dim() >= STACKED_MIN_DIM:
                    self.tracked[tensor_id] = (name, value.shape[0])
                else:
                    self.drawn[tensor_id] = (name, value)
        if self.drawn and (info.view or info.name in PICKS_ROWS):
            known = {tensor_id for _, _, tensor_id in reads}
            reads = [*reads, *((*self.drawn[t], t) for t in node.inputs
                               if t in self.drawn and t not in known)]
        if info.view:
            self._follow_view(node, reads, tensors)
            return
        stacked = [(name, value.shape[0]) for name, value, _ in reads
                   if value.dim() >= STACKED_MIN_DIM]
        stacked += [self.tracked[t] for t in node.inputs if t in self.tracked]
        if not stacked and info.name in PICKS_ROWS:
            stacked = [(name, value.shape[0]) for name, value, _ in reads
                       if value.dim() == 2 and _routed(node, tensors, nodes)][:1]
        pending = [self.pending[t] for t in node.inputs if t in self.pending]
        if not stacked and not pending:
            return
        for param, slices, index in pending:
            rows = _rows_of_other_input(node, tensors, set(self.pending))
            node.selections.append(Selection(param, slices, [index], [rows]))
        if not stacked:
            return
        param, slices = stacked[0]
        if info.role == "gather" or info.name in PICKS_ROWS:
            self._select(node, info, args, param, slices)
        elif info.role == "grouped":
            offsets = kwargs.get("offs", args[2] if len(args) > 2 else None)
            if isinstance(offsets, torch.Tensor) and not offsets.is_meta:
                counts = torch.diff(offsets.to(torch.int64), prepend=offsets.new_zeros(1))
                node.selections.append(_from_counts(param, slices, counts))
            else:
                node.selections.append(Selection(param, slices, [], [], whole=True))
        else:
            node.selections.extend(Selection(p, n, [], [], whole=True) for p, n in stacked)

    def _follow_view(self, node: Node, reads: list[tuple[str, torch.Tensor, str | None]],
                     tensors: dict[str, Tensor]) -> None:
        """A view of a slice is that slice; a view of a parameter (or of a stacked one) with
        three or more dimensions is stacked along its first."""
        pending = next((self.pending[t] for t in node.inputs if t in self.pending), None)
        source = next((self.tracked[t][0] for t in node.inputs if t in self.tracked), None)
        if source is None and reads:
            source = reads[0][0]
        for output in node.outputs:
            if pending is not None:
                self.pending[output] = pending
            elif source is not None and len(tensors[output].shape) >= STACKED_MIN_DIM:
                self.tracked[output] = (source, tensors[output].shape[0])

    def _select(self, node: Node, info: OpInfo, args: tuple[Any, ...], param: str,
                slices: int) -> None:
        """``w[i]``, ``w[ids]``, ``index_select(w, 0, ids)``, ``embedding(ids, w)``: which
        slices, for how many rows."""
        if info.name == "index_select":
            if len(args) < 3 or args[1] != 0:
                return
            index = args[2]
        elif info.name == "embedding":
            index = args[0] if args else None
        else:
            index = args[1] if len(args) > 1 else None
            if isinstance(index, tuple):
                index = index[0] if index else None
        if (isinstance(index, torch.Tensor) and not index.is_meta
                and not index.dtype.is_floating_point and index.dtype != torch.bool):
            if index.dim() == 0:
                index = int(index)
            else:
                node.selections.append(_from_counts(
                    param, slices, torch.bincount(index.flatten().to(torch.int64) % slices,
                                                  minlength=slices)))
                return
        if isinstance(index, int) and not isinstance(index, bool):
            for output in node.outputs:
                self.pending[output] = (param, slices, index % slices)
            return
        node.selections.append(Selection(param, slices, [], [], whole=True))


def _routed(node: Node, tensors: dict[str, Tensor], nodes: dict[str, Node]) -> bool:
    """Whether a routing op (``topk``, ``argmax``...) computed an integer input of ``node``
    from float scores, directly or through other integer ops (``min`` of two integer
    tensors, T5's relative position buckets, chooses nothing)."""
    stack = [t for t in node.inputs if tensors[t].dtype.startswith(("int", "uint"))]
    seen = set(stack)
    while stack:
        producer = nodes.get(tensors[stack.pop()].producer or "")
        if producer is None or producer.kind != "op":
            continue
        if facts_of(producer.name).role == "routing" and any(
                tensors[t].dtype.startswith(("float", "bfloat")) for t in producer.inputs):
            return True
        for tensor_id in producer.inputs:
            if tensor_id not in seen and tensors[tensor_id].dtype.startswith(("int", "uint")):
                seen.add(tensor_id)
                stack.append(tensor_id)
    return False


def _from_counts(param: str, slices: int, counts: torch.Tensor) -> Selection:
    indices = [i for i, count in enumerate(counts.tolist()) if count]
    return Selection(param, slices, indices, [int(counts[i]) for i in indices])


def _rows_of_other_input(node: Node, tensors: dict[str, Tensor], slices: set[str]) -> int:
    """Rows of the first input that is not a slice (``x`` of ``F.linear(x, w[e])``)."""
    for tensor_id in node.inputs:
        if tensor_id not in slices:
            shape = tensors[tensor_id].shape
            return math.prod(shape[:-1]) if shape else 1
    return 1
