"""Data views: what a model does with data, drawn at build time beside its graph.

A fence with ``view: attention | embeddings | experts`` draws one of these instead of the
computation graph, and ``execute: cpu`` adds measured time to a graph fence:

- ``attention``: the attention weights of a text, captured from the model's own softmax (or
  ``scaled_dot_product_attention``) ops through the tracer's op observer
  (``attention``), as heat maps: a layer × head grid with the head average, one map large;
- ``embeddings``: hidden states of many texts at one layer, pooled and projected to 2-D
  (``hidden``, ``projection``), as a scatter plot coloured by group;
- ``experts``: tokens per routed expert from a trace's ``graph.meta["experts"]``
  (``experts``), as a layers × experts heat map with imbalance figures and per-layer bars.

Each is drawn once, in Python, as a static SVG readable without scripts and in print
(``draw_*``); the viewer's ``6-dataviews.js`` only adds behaviour to the elements it finds
(hover, a click on a token, a thumbnail or an expert), from numbers the figure carries.
``fields`` (no torch) checks which fields a fence's view takes; ``run`` is what a trace
worker calls.
"""

from model_trace.dataviews.fields import CAPTURE_VIEWS, check_view_fields

__all__ = ["CAPTURE_VIEWS", "check_view_fields"]
