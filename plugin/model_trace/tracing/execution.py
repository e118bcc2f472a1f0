"""A real run of the model, measured per module call: wall time and peak memory.

``trace(..., execute="cpu")`` first runs the model once with only two module hooks (so the
tracer's own per-op work does not inflate the times), then traces it on the same device, so
the recorded routing is the model's real routing. Measurements are matched to module calls
by path and call index.

Peak memory: on CUDA, the allocator's peak above the allocation at the call's start (nested
calls keep their parents' peaks right); on the CPU, the resident set size sampled at module
boundaries, above its value at the call's start (a coarse figure).
"""

from __future__ import annotations

import time
from typing import Any

import torch

from model_trace.graph import Graph, Measured
from model_trace.tracing.structures import map_structure

Key = tuple[str, int]


class _Meter:
    def __init__(self, root: torch.nn.Module | None, device: torch.device) -> None:
        self.cuda = device.type == "cuda"
        self.paths = ({id(m): n for n, m in root.named_modules(remove_duplicate=False)}
                      if root is not None else {})
        self.calls: dict[str, int] = {}
        self.stack: list[tuple[Key, float, int, int]] = []  # key, start, base memory, peak
        self.results: dict[Key, Measured] = {}

    def _memory(self) -> int:
        if self.cuda:
            return torch.cuda.memory_allocated()
        return _resident_bytes()

    def _peak(self) -> int:
        return torch.cuda.max_memory_allocated() if self.cuda else _resident_bytes()

    def _lift_parent_peak(self) -> None:
        if self.stack:
            key, start, base, peak = self.stack[-1]
            self.stack[-1] = (key, start, base, max(peak, self._peak()))

    def enter(self, module: torch.nn.Module, _args: Any) -> None:
        path = self.paths.get(id(module), type(module).__name__)
        index = self.calls.get(path, 0)
        self.calls[path] = index + 1
        if self.cuda:
            torch.cuda.synchronize()
            self._lift_parent_peak()
            torch.cuda.reset_peak_memory_stats()
        else:
            self._lift_parent_peak()
        memory = self._memory()
        self.stack.append(((path, index), time.perf_counter(), memory, memory))

    def exit(self, module: torch.nn.Module, _args: Any, _output: Any) -> None:
        if not self.stack:
            return
        if self.cuda:
            torch.cuda.synchronize()
        key, start, base, peak = self.stack.pop()
        peak = max(peak, self._peak())
        self.results[key] = Measured(wall_time_s=round(time.perf_counter() - start, 6),
                                     peak_memory_bytes=max(peak - base, 0))
        if self.stack:  # the parent's peak includes this call's
            parent = self.stack[-1]
            self.stack[-1] = (parent[0], parent[1], parent[2], max(parent[3], peak))
        if self.cuda:
            torch.cuda.reset_peak_memory_stats()


def _resident_bytes() -> int:
    try:
        with open("/proc/self/statm", encoding="ascii") as statm:
            return int(statm.read().split()[1]) * 4096
    except OSError:
        return 0


def measure(model: Any, args: tuple[Any, ...], kwargs: dict[str, Any], device: str
            ) -> tuple[dict[Key, Measured], tuple[Any, ...], dict[str, Any]]:
    """Run ``model`` once on ``device`` (moving the model and inputs there) and measure every
    module call. Returns the measurements and the moved inputs."""
    target = torch.device(device)
    root = model if isinstance(model, torch.nn.Module) else None
    if root is not None:
        root.to(target)
    args, kwargs = map_structure((args, kwargs), lambda t: t.to(target))
    meter = _Meter(root, target)
    pre = torch.nn.modules.module.register_module_forward_pre_hook(meter.enter)
    post = torch.nn.modules.module.register_module_forward_hook(meter.exit, always_call=True)
    try:
        with torch.no_grad():
            start = time.perf_counter()
            model(*args, **kwargs)
            if target.type == "cuda":
                torch.cuda.synchronize()
            total = time.perf_counter() - start
    finally:
        pre.remove()
        post.remove()
    if root is None:
        meter.results[("", 0)] = Measured(round(total, 6), 0)
    return meter.results, args, kwargs


def attach_measurements(graph: Graph, measurements: dict[Key, Measured]) -> None:
    """Set ``ModuleCall.measured`` on every call that was measured."""
    for call in graph.modules.values():
        if call.kind == "module" and call.called:
            call.measured = measurements.get((call.path, call.call_index))
    graph.meta["execution"] = {"device": next(iter(graph.tensors.values())).device
                               if graph.tensors else "cpu",
                               "measured_calls": sum(1 for c in graph.modules.values()
                                                     if c.measured is not None)}
