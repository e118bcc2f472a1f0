"""Errors a user can act on: what was wrong, where, and how to fix it."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from model_trace.graph import Graph


class ModelTraceError(Exception):
    """Base class of every error model-trace reports to a user."""


class SpecError(ModelTraceError):
    """A fence spec is malformed: names the field (if known), the problem and the fix."""

    def __init__(self, message: str, *, field: str | None = None, line: int | None = None):
        super().__init__(message)
        self.field = field
        self.line = line


class ModelLoadError(ModelTraceError):
    """The model or its inputs named by a spec cannot be imported or built."""


class TraceError(ModelTraceError):
    """The forward pass failed; ``graph`` holds what was recorded up to the failure."""

    def __init__(self, message: str, *, graph: Graph | None = None):
        super().__init__(message)
        self.graph = graph
