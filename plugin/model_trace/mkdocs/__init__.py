"""The MkDocs plugin: ``plugins: [model-trace]`` in ``mkdocs.yml``."""

from model_trace.mkdocs.config import ModelTraceConfig
from model_trace.mkdocs.plugin import ModelTracePlugin

__all__ = ["ModelTraceConfig", "ModelTracePlugin"]
