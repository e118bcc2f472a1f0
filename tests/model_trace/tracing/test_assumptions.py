"""The log of values a trace assumed: one entry per kind, op and line, counted; branches
and rows are warnings."""

from __future__ import annotations

import pytest

from model_trace.caveats import ASSUMED
from model_trace.graph import SourceLocation
from model_trace.tracing.assumptions import AssumptionLog


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
