"""Compatibility name of the tracer: everything lives in ``model_trace.tracing`` now."""

from model_trace.tracing import TraceOptions, trace, trace_with_options

__all__ = ["TraceOptions", "trace", "trace_with_options"]
