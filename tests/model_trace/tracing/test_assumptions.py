"""The log of values a trace assumed: one entry per kind, op and line, counted; branches
and rows are warnings."""

from __future__ import annotations

import numpy
import pytest
import torch

from model_trace.caveats import ASSUMED
from model_trace.graph import SourceLocation
from model_trace.tracing import trace
from model_trace.tracing.assumptions import VALUE_READS, AssumptionLog


def _at(line: int) -> SourceLocation:
    return SourceLocation("model.py", line, "x = y")


def test_assumptions_of_one_kind_at_one_line_are_one_entry_counted() -> None:
    log = AssumptionLog()
    first = log.add("zeros", "gt", "layers.0", _at(10))
    assert log.add("zeros", "gt", "layers.1", _at(10)) is first and first.count == 2
    log.add("zeros", "gt", "layers.0", _at(11))  # another line
    log.add("branch", "gt", "layers.0", _at(10), origin="zeros at 'gt' (model.py:10)")
    log.add("zeros", "lt", "layers.0", _at(10))  # another op
    log.add("input", "input", "", None)
    log.add("input", "input", "", None)
    described = log.describe()
    assert [(d["kind"], d["op"], d["line"], d["count"]) for d in described] == [
        ("zeros", "gt", 10, 2), ("zeros", "gt", 11, 1), ("branch", "gt", 10, 1),
        ("zeros", "lt", 10, 1), ("input", "input", None, 2)]
    assert described[0] == {"kind": "zeros", "op": "gt", "module": "layers.0", "count": 2,
                            "file": "model.py", "line": 10, "code": "x = y",
                            "detail": ASSUMED["zeros"], "origin": "", "warning": False}
    assert described[2]["warning"] and described[2]["origin"].startswith("zeros at 'gt'")
    assert described[4]["file"] is None and described[4]["code"] is None


@pytest.mark.parametrize("kind", sorted(ASSUMED))
def test_only_branches_and_rows_are_warnings(kind: str) -> None:
    log = AssumptionLog()
    entry = log.add(kind, "item", "", _at(3))
    assert log.describe()[0]["warning"] == (kind in ("branch", "rows"))
    assert entry.label() == f"{kind} at 'item' (model.py:3)"
    assert AssumptionLog().add(kind, "item", "", None).label() == f"{kind} at 'item'"


READS = {  # each way Python takes a tensor's values, on an integer result of meta floats
    "__bool__": lambda n: bool(n), "item": lambda n: n.item(), "tolist": lambda n: n.tolist(),
    "__int__": lambda n: int(n), "__index__": lambda n: [0, 1][n],
    "__float__": lambda n: float(n), "is_nonzero": lambda n: n.is_nonzero(),
    "equal": lambda n: torch.equal(n, n), "numpy": lambda n: n.numpy(),
    "__array__": lambda n: numpy.asarray(n), "__format__": lambda n: f"{n:d}",
}


@pytest.mark.parametrize("read", sorted(READS))
def test_python_reading_assumed_values_is_a_branch_warning(read: str) -> None:
    assert read in VALUE_READS

    def model(h: torch.Tensor) -> torch.Tensor:
        READS[read]((h > 0).sum())
        return h * 2

    graph = trace(model, torch.empty(4, device="meta"))
    kinds = [(a["kind"], a["op"]) for a in graph.meta["assumptions"]]
    assert ("branch", read) in kinds and kinds[0] == ("zeros", "gt")


class _Positions(torch.nn.Module):
    """A model that keeps its position ids as a buffer and reads it unless given them, as
    transformers' BERT family does."""

    def __init__(self) -> None:
        super().__init__()
        self.table = torch.nn.Embedding(32, 8)
        self.register_buffer("position_ids", torch.arange(32).expand(1, -1), persistent=False)

    def forward(self, x: torch.Tensor, position_ids: torch.Tensor | None = None
                ) -> torch.Tensor:
        if position_ids is None:
            position_ids = self.position_ids[:, :x.shape[1]]
        return x + self.table(position_ids)


def test_integers_made_on_meta_before_the_trace_are_a_buffer_assumption_that_says_the_fix(
        ) -> None:
    """Built on meta, the model's position ids have no values: read, they are taken as
    zeros under their own kind, whose words name the cause and the fix; given on the CPU,
    nothing is assumed. Integers of meta floats stay ``zeros``."""
    with torch.device("meta"):
        model = _Positions()
    x = torch.empty(1, 5, 8, device="meta")
    graph = trace(model, x)
    assert [(a["kind"], a["op"]) for a in graph.meta["assumptions"]] == [("buffer", "getitem")]
    assert "made on the meta device" in ASSUMED["buffer"]
    assert "give them on the CPU" in ASSUMED["buffer"]
    assert not trace(model, x, position_ids=torch.arange(5)[None]).meta["assumptions"]
    graph = trace(lambda h: (h > 0).sum(), x)
    assert [(a["kind"], a["op"]) for a in graph.meta["assumptions"]] == [("zeros", "gt")]
