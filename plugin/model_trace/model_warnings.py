"""Python warnings a fence's model raises (a deprecated argument, the zoo's ``YarnOffWarning``)
belong in the build log beside the page and line of the fence, not on the worker's stderr
where nobody reads them and ``--strict`` cannot see them.

``raised_warnings`` records them while a model is built and traced (the filters in force
decide which, as they would for a printed warning) and turns each distinct one into a line.
"""

from __future__ import annotations

import contextlib
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path

from model_trace.errors import readable

_OWN_CODE = Path(__file__).resolve().parent
"""Where model-trace's own code lies: a warning located here was raised by a model's function
we called (its ``stacklevel`` points at the caller), so its location means nothing to a reader."""


@contextlib.contextmanager
def raised_warnings() -> Iterator[list[str]]:
    """Collect the warnings raised in the block, as build-log lines (first seen first, each
    once), into the list it yields; none reaches ``warnings.showwarning``."""
    lines: list[str] = []
    with warnings.catch_warnings(record=True) as caught:
        yield lines
    for raised in caught:
        line = warning_line(raised)
        if line not in lines:
            lines.append(line)


def warning_line(raised: warnings.WarningMessage) -> str:
    """One line for a warning: its category, where it was raised (unless in model-trace
    itself) and its message."""
    where = _where(Path(raised.filename), raised.lineno)
    at = f" (at {where})" if where else ""
    return readable(f"{raised.category.__name__} raised while the model was built or "
                    f"traced{at}: {raised.message}")


def _where(path: Path, line: int) -> str:
    """``path:line`` relative to the ``sys.path`` folder it was imported from (the module's
    dotted name as a path); "" for model-trace's own code."""
    resolved = path.resolve() if path.is_absolute() else path
    if resolved.is_relative_to(_OWN_CODE):
        return ""
    roots = sorted((Path(p).resolve() for p in sys.path if p), key=lambda p: -len(p.parts))
    root = next((r for r in roots if resolved.is_relative_to(r)), None)
    shown = resolved.relative_to(root) if root is not None else Path(resolved.name)
    return f"{shown.as_posix()}:{line}"
