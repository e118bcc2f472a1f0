"""Errors a user can act on: what was wrong, where, and how to fix it.

Every message reaches a user as one line of a build log, so the helpers here keep it so:
``brief`` cuts a value or a foreign error to one readable line, ``did_you_mean`` names the
nearby spellings of a mistyped name.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from model_trace.graph import Graph

MESSAGE_CHARS = 600
"""The longest message a build prints for one fence."""


def brief(text: str, limit: int = 80) -> str:
    """``text`` on one line (runs of whitespace become one space), cut to ``limit``
    characters with an ellipsis."""
    line = " ".join(text.split())
    return line if len(line) <= limit else line[: max(limit - 1, 1)] + "…"


_HINTS = (
    (("'indices'", "Long"), "token ids need an integer dtype: give the input as "
     "{shape: [1, 16], dtype: int64}"),
)
"""(words that all appear in an error, the fix) for mistakes a newcomer makes."""


def readable(message: str) -> str:
    """An error message as a build log shows it: torch's C++ frame list cut off, a hint
    added where the mistake is a known one, on one line of at most ``MESSAGE_CHARS``."""
    text = message.split("Exception raised from", 1)[0]
    hint = next((fix for words, fix in _HINTS if all(w in text for w in words)), "")
    if hint:
        return brief(text, MESSAGE_CHARS - len(hint) - 2) + "; " + hint
    return brief(text, MESSAGE_CHARS)


def did_you_mean(word: str, candidates: Iterable[str]) -> str:
    """"; did you mean 'x'?" for the candidates close to ``word``, else ""."""
    close = difflib.get_close_matches(word, sorted(set(candidates)), n=2, cutoff=0.7)
    return f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""


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
