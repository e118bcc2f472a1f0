"""Tracing: record one forward pass of a model as a ``Graph``.

- ``api``: ``trace`` / ``trace_with_options``, the entry points;
- ``recorder``: module hooks and the ``TorchFunctionMode`` that records ops into a
  ``builder.GraphBuilder``; ``op_runner`` runs each op and counts its FLOPs;
- ``op_table``: what is known about each op (category, role, FLOP rule), read by all of
  them; ``op_info`` derives it per function, ``arguments`` reads an op's arguments;
- ``concrete``: the meta-device rules (float shapes only, integers concrete);
- ``routing``: routing policies for gates whose scores have no values;
- ``flops``, ``stats``: FLOPs, parameters, activated parameters, bytes read and written;
- ``sharing``: shared inputs (rotary tables, masks) drawn per use;
- ``folding``: repeated layers and loop iterations folded with exact statistics;
- ``execution``: a measured real run; ``distributed``: tensor-parallel traces;
- ``summary``: the per-module table of ``model-trace summary``.
"""

from model_trace.tracing.api import trace, trace_with_options
from model_trace.tracing.distributed import tensor_parallel
from model_trace.tracing.flops import register_flop_formula
from model_trace.tracing.folding import fold_repeats
from model_trace.tracing.options import TraceOptions
from model_trace.tracing.routing import (
    BalancedRouting,
    FixedRouting,
    RandomRouting,
    RoutingPolicy,
    routing_policy,
)
from model_trace.tracing.summary import summary_table

__all__ = [
    "BalancedRouting",
    "FixedRouting",
    "RandomRouting",
    "RoutingPolicy",
    "TraceOptions",
    "fold_repeats",
    "register_flop_formula",
    "routing_policy",
    "summary_table",
    "tensor_parallel",
    "trace",
    "trace_with_options",
]
