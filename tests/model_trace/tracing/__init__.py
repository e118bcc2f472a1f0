"""Tests of ``model_trace.tracing``, one file per module of the package."""
