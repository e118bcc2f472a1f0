"""model-trace: interactive computation graphs of PyTorch models, traced at docs build time.

The pipeline is fence spec -> trace -> graph -> layout -> render; each stage is importable on
its own from here. ``trace`` and ``Graph`` are imported on first use, so that the docs build,
which mostly reads fences and its cache, does not pay for importing torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from model_trace.errors import ModelLoadError, ModelTraceError, SpecError, TraceError

if TYPE_CHECKING:
    from model_trace.graph import Graph
    from model_trace.notebook import show
    from model_trace.tracing import trace

__all__ = [
    "Graph",
    "ModelLoadError",
    "ModelTraceError",
    "SpecError",
    "TraceError",
    "show",
    "trace",
]
__version__ = "0.1.0"

_LAZY = {"Graph": "model_trace.graph", "show": "model_trace.notebook",
         "trace": "model_trace.tracing"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'model_trace' has no attribute {name!r}")
