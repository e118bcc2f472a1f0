"""How a trace runs: the options of ``trace``, as one validated value."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from model_trace.tracing.routing import RoutingPolicy

ParameterDrawing = Literal["attach", "nodes"]
OpObserver = Callable[[str, tuple[Any, ...], dict[str, Any], Any, str], None]
"""Called after each recorded op with its name, arguments, result and the path of the module
that ran it (what data views capture: attention weights from softmax ops)."""


@dataclass(frozen=True)
class TraceOptions:
    """Options of ``trace``; each field is also a keyword argument of ``trace``.

    - ``routing``: how gates choose experts when their scores are on the meta device: a
      policy name (``balanced``, ``random``/``uniform``, ``random:SEED``, ``first``), a list
      of expert indices (fixed routing) or a ``RoutingPolicy``. Default: balanced.
    - ``force_routing``: apply the policy to real tensors too (the real routing is recorded
      otherwise), e.g. to compare a real run with a meta trace.
    - ``fold``: fold repeated structure (runs of identical layers, loop iterations) into one
      representative with a count and exact per-member statistics.
    - ``early_fold``: with ``fold`` on the meta device, record a module call that repeats one
      already recorded (an expert, a layer: same class, shapes and routing) once and replay
      the others (``tracing.replay``); the folded graph is the same, and a 671B trace takes
      a fraction of the time. Off: every call is recorded, then folded.
    - ``trace_depth``: how many levels into torch's own Python functions to descend
      (``F.multi_head_attention_forward`` is one op at 0; at 1 its inner ops are recorded,
      grouped under the function).
    - ``module_depth``: modules more than this many levels below the root are recorded as
      one op node each, their inside not drawn (None: every level).
    - ``aten``: record ATen ops (a ``TorchDispatchMode``) under each torch-level op.
    - ``execute``: also run the model for real on this device ("cpu", "cuda") and record
      wall time and peak memory per module call and the tokens each expert got.
    - ``parameters``: "attach" lists an op's parameters on the op (``Node.params``); "nodes"
      also draws one parameter node per parameter in its module.
    - ``shared_min_uses``: a tensor passed into at least this many chained calls of one
      class (rotary tables, masks given to every layer) is drawn once per use.
    - ``no_grad``: run the forward without autograd (the default: a forward pass is drawn).
    - ``observe``: an ``OpObserver`` shown every recorded op and its real result (for data
      views; not part of the graph).
    """

    routing: str | Sequence[int] | RoutingPolicy | None = None
    force_routing: bool = False
    fold: bool = True
    early_fold: bool = True
    trace_depth: int = 0
    module_depth: int | None = None
    aten: bool = False
    execute: str | None = None
    parameters: ParameterDrawing = "attach"
    shared_min_uses: int = 3
    no_grad: bool = True
    observe: OpObserver | None = None

    def __post_init__(self) -> None:
        if self.trace_depth < 0:
            raise ValueError(f"trace_depth={self.trace_depth} must be 0 or more")
        if self.module_depth is not None and self.module_depth < 0:
            raise ValueError(f"module_depth={self.module_depth} must be 0 or more, or None")
        if self.parameters not in ("attach", "nodes"):
            raise ValueError(f"parameters={self.parameters!r} must be 'attach' or 'nodes'")
        if self.execute is not None and not isinstance(self.execute, str):
            raise ValueError(f"execute={self.execute!r} must be a device name like 'cpu'")
        if self.shared_min_uses < 2:
            raise ValueError(f"shared_min_uses={self.shared_min_uses} must be 2 or more")

    def describe(self) -> dict[str, Any]:
        """The options as plain JSON, for ``graph.meta["options"]``."""
        return {
            "fold": self.fold,
            "trace_depth": self.trace_depth,
            "module_depth": self.module_depth,
            "aten": self.aten,
            "execute": self.execute,
            "parameters": self.parameters,
            "force_routing": self.force_routing,
        }
