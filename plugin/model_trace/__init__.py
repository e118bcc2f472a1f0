"""model-trace: interactive computation graphs of PyTorch models, traced at docs build time.

The pipeline is fence spec -> trace -> graph -> layout -> render; each stage is importable on
its own from here.
"""

from model_trace.errors import ModelLoadError, ModelTraceError, SpecError, TraceError
from model_trace.graph import Graph
from model_trace.tracer import trace

__all__ = [
    "Graph",
    "ModelLoadError",
    "ModelTraceError",
    "SpecError",
    "TraceError",
    "trace",
]
__version__ = "0.1.0"
