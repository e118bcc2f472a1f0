"""Values a trace had to assume, and where.

On the meta device floats have no values, so some values a model computes are not known:
an integer result of meta floats (``(h > 0).any()``), integers a model made on the meta device
before the trace (a ``position_ids`` buffer of a model built there), the outputs of an op with
no CPU kernel for its dtypes, token ids given as a shape. The trace takes them as zeros and
goes on, and says so: each assumption is marked on its node (``Node.assumed``) and listed in
``graph.meta["assumptions"]`` with the op, the module and the model's source line. Values
computed from assumed ones stay assumed, so a Python branch that reads one (``if``,
``.item()``, ``.tolist()``) is listed too: the figure shows the path that branch took.

Two kinds are warnings (``is_warning``), because there the assumed values changed what the
trace drew: ``branch`` (Python read them: ``if``, ``.item()``, ``.tolist()``) and ``rows``
(an assumed mask picked the rows of a meta tensor, so its shape). The others are notes: an assumed
value that only meets meta floats cannot change a shape (a meta kernel reads no values), and
token ids given as a shape are what a fence asks for.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from model_trace.caveats import ASSUMED
from model_trace.graph import SourceLocation

VALUE_READS = frozenset({"__bool__", "item", "tolist", "__int__", "__index__", "__float__",
                         "is_nonzero", "equal", "numpy", "__array__", "__format__"})
"""Queries that hand a tensor's values to Python (and so to its branches)."""


WARNING_KINDS = frozenset({"branch", "rows"})


@dataclass(slots=True)
class Assumption:
    """Assumptions of one kind at one op and source line (a layer repeated 61 times: one
    entry, ``count`` 61). ``origin``, for a branch or rows, names where the values it used
    were assumed (``zeros at 'gt' (modeling_phimoe.py:362)``)."""

    kind: str
    op: str
    module: str
    source: SourceLocation | None
    origin: str = ""
    count: int = 1

    def label(self) -> str:
        """``zeros at 'gt' (modeling_phimoe.py:362)``: what and where, in one phrase."""
        where = f" ({self.source.file}:{self.source.line})" if self.source else ""
        return f"{self.kind} at '{self.op}'{where}"

    def describe(self) -> dict[str, Any]:
        """Plain JSON, for ``graph.meta["assumptions"]``."""
        source = self.source
        return {"kind": self.kind, "op": self.op, "module": self.module, "count": self.count,
                "file": source.file if source else None, "line": source.line if source else None,
                "code": source.code if source else None, "detail": ASSUMED[self.kind],
                "origin": self.origin, "warning": self.kind in WARNING_KINDS}


class AssumptionLog:
    """The assumptions of one trace, in the order they were first made."""

    def __init__(self) -> None:
        self.entries: dict[tuple[Any, ...], Assumption] = {}

    def add(self, kind: str, op: str, module: str, source: SourceLocation | None,
            origin: str = "") -> Assumption:
        key = (kind, op, source.file if source else None, source.line if source else None)
        found = self.entries.get(key)
        if found is None:
            found = self.entries[key] = Assumption(kind, op, module, source, origin)
        else:
            found.count += 1
        return found

    def describe(self) -> list[dict[str, Any]]:
        return [entry.describe() for entry in self.entries.values()]
