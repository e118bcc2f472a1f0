"""Running one intercepted op: under the meta-trace rules when tracing on the meta device,
with its FLOPs counted, and with cached outputs where a meta kernel was already run on the
same shapes."""

from __future__ import annotations

from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode

from model_trace.tracing.arguments import tensors_in
from model_trace.tracing.concrete import ConcreteValues
from model_trace.tracing.flops import (
    NO_COST,
    Cost,
    FlopCounter,
    linear_flops,
    op_cost,
    vecdot_flops,
)
from model_trace.tracing.meta_cache import call_signature, metadata
from model_trace.tracing.op_info import OpInfo
from model_trace.tracing.route_rule import ForcedRouting


class OpRunner:
    """Runs ops for the recorder and keeps the FLOPs of the last one in ``flops``, and in
    ``missing`` the ops in it that computed floats without a FLOP formula.

    ``infos`` is the recorder's ``OpInfo`` per function (an op the meta rules call again,
    such as a factory re-run on the CPU, is looked up there). ``aten``, when given, is the
    ATen recording mode, switched on while an op's kernels run."""

    def __init__(self, values: ConcreteValues | ForcedRouting | None, infos: dict[Any, OpInfo],
                 aten: Any = None, cache_results: bool = True) -> None:
        self.values = values  # None: real tensors, no meta rules
        self.flops = 0
        self.missing: tuple[str, ...] = ()
        self.from_cache = False
        """Whether the last call's outputs were made from the cache of meta outputs: new
        tensors, none a view of an input (the recorder need not compare storages)."""
        self.aten = aten
        self._infos = infos
        self._flop_counter = FlopCounter()
        self._dispatch_costs: dict[tuple[Any, ...], Cost] = {}  # see _counted
        # cached meta outputs skip the kernel: only without autograd, and not for ATen recording
        self._results = values.results if (values is not None and cache_results
                                           and aten is None) else None

    def run(self, info: OpInfo, func: Any, args: tuple[Any, ...], kwargs: dict[str, Any],
            tensors: list[torch.Tensor]) -> Any:
        """The op's result; its FLOPs are in ``self.flops`` afterwards."""
        self.flops = 0
        self.missing = ()
        self.from_cache = False
        if self.values is not None:
            return self.values.run(info, func, args, kwargs, tensors, self.call)
        return self.call(func, args, kwargs)

    def call(self, func: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        """Run the op, counting its FLOPs (added up if the meta rules call it twice)."""
        self.from_cache = False
        info = self._infos.get(func)
        kind = info.flops if info is not None else ""
        aten = self.aten
        if aten is not None and not aten.paused:
            aten.active = True
            try:
                return func(*args, **kwargs)
            finally:
                aten.active = False
        key = None
        results = self._results
        if results is not None and info is not None and info.cacheable:
            key = results.key(func, args, kwargs)
            if key is not None:
                hit = results.get(key)
                if hit is not None:
                    self.from_cache = True
                    flops, missing = hit[1]
                    self.flops += flops
                    if missing:
                        self.missing += missing
                    return hit[0]
        in_place_key = None
        if results is not None and info is not None and info.in_place:
            # y[idx] += ...: 15,000 meta add_ in a 671B trace, each returning its target as is
            in_place_key = results.key_in_place(func, args, kwargs)
            if in_place_key is not None:
                known = results.in_place.get(in_place_key)
                if known is not None:
                    results.hits += 1
                    self._add(known)
                    return args[0]
                before = metadata(args[0])
        cost: Cost = NO_COST
        if kind == "dispatch":
            result, cost = self._counted(func, args, kwargs)
        else:
            result = func(*args, **kwargs)
            if kind == "linear":
                x = args[0] if args else kwargs["input"]
                weight = args[1] if len(args) > 1 else kwargs["weight"]
                cost = (linear_flops(x.shape, weight.shape), ())
            elif kind == "vecdot":
                x = args[0] if args else kwargs["x"]
                y = args[1] if len(args) > 1 else kwargs["y"]
                cost = (vecdot_flops(x.shape, y.shape), ())
            elif kind == "custom":
                cost = op_cost(func, args, kwargs, result)
        flops, missing = cost
        self.flops += flops
        if missing:
            self.missing += missing
        if key is not None:
            results.put(key, result, cost, tensors_in(args, kwargs))  # type: ignore[union-attr]
        elif in_place_key is not None and result is args[0] and metadata(result) == before:
            results.in_place[in_place_key] = cost  # type: ignore[union-attr]
        return result

    def _add(self, cost: Cost) -> None:
        flops, missing = cost
        self.flops += flops
        if missing:
            self.missing += missing

    def _counted(self, func: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
                 ) -> tuple[Any, Cost]:
        """Run an op whose FLOPs torch counts per ATen op, and its cost. Counting runs every
        ATen op inside through a Python dispatch mode (twelve attention layers: 350 round
        trips), and the count depends on shapes only, so each call signature is counted
        once and later calls run at full speed."""
        described = call_signature(func, args, kwargs)
        known = self._dispatch_costs.get(described[0]) if described is not None else None
        if known is not None:
            return func(*args, **kwargs), known
        counter = self._flop_counter
        counter.flops, counter.missing = 0, {}
        with counter:
            result = func(*args, **kwargs)
        cost = (counter.flops, tuple(counter.missing))
        if described is not None:
            self._dispatch_costs[described[0]] = cost
        return result, cost


class AtenRecording(TorchDispatchMode):
    """With ``aten=True``: hands each ATen op run under a torch-level op to ``record``.

    ``active`` is on while a torch-level op's kernels run (the ATen ops of the tracer's own
    bookkeeping are not recorded); ``paused`` while a module drawn as one node runs."""

    def __init__(self, record: Any) -> None:
        super().__init__()
        self.record = record
        self.active = False
        self.paused = False

    def __torch_dispatch__(self, func: Any, types: Any, args: tuple[Any, ...] = (),
                           kwargs: dict[str, Any] | None = None) -> Any:
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        if self.active:  # the ATen ops record runs do not come back: torch takes a mode off
            self.record(func, args, kwargs, out)  # its stack while it handles an op
        return out
