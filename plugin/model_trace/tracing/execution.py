"""A real run of the model, measured per module call and per op: wall time and memory.

``trace(..., execute="cpu")`` first runs the model once to warm it up, then once measured,
then traces it on the same device, so the recorded routing is the model's real routing. The
measured run goes through the same code as the trace: a pass-through ``TorchFunctionMode``
(``_OpTimer``) is active, as the tracer's is, so a model that picks a fused fast path when no
mode is active (``nn.TransformerEncoderLayer`` in eval mode) takes the traced path here too,
and every op the trace records is timed. The mode does no work of its own beyond a clock read
per op (not the tracer's bookkeeping), so times stay close to an untraced run of the same
code. Measurements are matched to module calls by path and call index, and to ops by the
call they ran in, their name and how many ops of that name ran before in that call.

Peak memory: on CUDA, the allocator's peak above the allocation at the call's start (nested
calls keep their parents' peaks right); on the CPU, the resident set size sampled at module
boundaries, above its value at the call's start (a coarse figure). Where the system has no
resident set size to read (no ``/proc``: macOS, Windows), and for a traced function (no module
boundary to sample at), peak memory is None: not measured, never shown as 0.
"""

from __future__ import annotations

import mmap
import os
import platform
import time
from typing import Any

import torch
from torch.overrides import TorchFunctionMode

from model_trace.graph import Graph, Measured, ModuleCall
from model_trace.tracing.arguments import bytes_of, tensors_in, tensors_out
from model_trace.tracing.model_index import ModelIndex
from model_trace.tracing.op_info import OpInfos
from model_trace.tracing.structures import map_structure

Key = tuple[str, int]
OpKey = tuple[str, int, str, int]
"""(module path, call index, op name, how many ops of that name the call ran before)."""


class _Meter:
    def __init__(self, root: torch.nn.Module | None, device: torch.device) -> None:
        self.cuda = device.type == "cuda"
        self.index = ModelIndex(root)  # names a module as the trace does (a module at two
        # paths by the first)
        self.calls: dict[str, int] = {}
        self.stack: list[tuple[Key, float, int | None, int | None]] = []  # key, start, base
        # memory, peak (None where the system gives no reading)
        self.results: dict[Key, Measured] = {}
        self.ops: dict[OpKey, Measured] = {}
        self.op_counts: dict[tuple[Key, str], int] = {}

    def op(self, name: str, seconds: float, new_bytes: int) -> None:
        """One op of the innermost module call ran for ``seconds`` and returned
        ``new_bytes`` of tensors it did not get as arguments."""
        key = self.stack[-1][0] if self.stack else ("", 0)
        index = self.op_counts.get((key, name), 0)
        self.op_counts[(key, name)] = index + 1
        self.ops[(*key, name, index)] = Measured(round(seconds, 7), new_bytes)

    def _memory(self) -> int | None:
        if self.cuda:
            return torch.cuda.memory_allocated()
        return _resident_bytes()

    def _peak(self) -> int | None:
        return torch.cuda.max_memory_allocated() if self.cuda else _resident_bytes()

    def _lift_parent_peak(self) -> None:
        if self.stack:
            key, start, base, peak = self.stack[-1]
            self.stack[-1] = (key, start, base, _higher(peak, self._peak()))

    def enter(self, module: torch.nn.Module, _args: Any) -> None:
        path = self.index.name(module)
        index = self.calls.get(path, 0)
        self.calls[path] = index + 1
        if self.cuda:  # the parent's peak so far, before the allocator's is reset (on the
            # CPU the child's first sample, its base, reaches the parent when it exits)
            torch.cuda.synchronize()
            self._lift_parent_peak()
            torch.cuda.reset_peak_memory_stats()
        memory = self._memory()
        self.stack.append(((path, index), time.perf_counter(), memory, memory))

    def exit(self, module: torch.nn.Module, _args: Any, _output: Any) -> None:
        if not self.stack:
            return
        if self.cuda:
            torch.cuda.synchronize()
        key, start, base, peak = self.stack.pop()
        peak = _higher(peak, self._peak())
        self.results[key] = Measured(
            wall_time_s=round(time.perf_counter() - start, 6),
            peak_memory_bytes=None if peak is None or base is None else max(peak - base, 0))
        if self.stack:  # the parent's peak includes this call's
            parent = self.stack[-1]
            self.stack[-1] = (parent[0], parent[1], parent[2], _higher(parent[3], peak))
        if self.cuda:
            torch.cuda.reset_peak_memory_stats()


def _higher(peak: int | None, sample: int | None) -> int | None:
    """The higher of two memory readings; None if either is missing (no reading at all)."""
    return None if peak is None or sample is None else max(peak, sample)


class _OpTimer(TorchFunctionMode):
    """Times each op the tracer would record; ops that return no tensor run untimed."""

    def __init__(self, meter: _Meter) -> None:
        super().__init__()
        self.meter = meter
        self.infos = OpInfos()

    def __torch_function__(self, func: Any, types: Any, args: tuple[Any, ...] = (),
                           kwargs: dict[str, Any] | None = None) -> Any:
        kwargs = kwargs or {}
        info = self.infos[func]
        if info.passthrough:
            return func(*args, **kwargs)
        start = time.perf_counter()
        result = func(*args, **kwargs)
        seconds = time.perf_counter() - start
        read = tensors_in(args, kwargs)
        fresh = bytes_of([t for t in tensors_out(result) if not any(t is r for r in read)])
        self.meter.op(info.name, seconds, fresh)
        return result


def _resident_bytes() -> int | None:
    """The process's resident set size; None where the system has no ``/proc/self/statm``
    (macOS, Windows): peak memory is then reported as not measured, never as 0."""
    try:
        with open("/proc/self/statm", encoding="ascii") as statm:
            return int(statm.read().split()[1]) * mmap.PAGESIZE  # 4 KiB, or 16 or 64 on ARM
    except OSError:
        return None


class Measurements:
    """What one measured run found: per module call, per op, and the whole forward."""

    def __init__(self, calls: dict[Key, Measured], ops: dict[OpKey, Measured],
                 total_s: float) -> None:
        self.calls = calls
        self.ops = ops
        self.total_s = total_s


def measure(model: Any, args: tuple[Any, ...], kwargs: dict[str, Any], device: str
            ) -> tuple[Measurements, tuple[Any, ...], dict[str, Any]]:
    """Run ``model`` on ``device`` (moving the model and inputs there), once to warm up and
    once measured, and measure every module call and op. Returns the measurements and the
    moved inputs."""
    target = torch.device(device)
    root = model if isinstance(model, torch.nn.Module) else None
    if root is not None:
        root.to(target)
    args, kwargs = map_structure((args, kwargs), lambda t: t.to(target))
    meter = _Meter(root, target)
    with torch.no_grad(), _OpTimer(_Meter(root, target)):
        model(*args, **kwargs)  # warm-up: lazy initialisation, caches, allocator
    pre = torch.nn.modules.module.register_module_forward_pre_hook(meter.enter)
    post = torch.nn.modules.module.register_module_forward_hook(meter.exit, always_call=True)
    try:
        with torch.no_grad(), _OpTimer(meter):
            start = time.perf_counter()
            model(*args, **kwargs)
            if target.type == "cuda":
                torch.cuda.synchronize()
            total = time.perf_counter() - start
    finally:
        pre.remove()
        post.remove()
    if root is None:
        meter.results[("", 0)] = Measured(round(total, 6), None)
    return Measurements(meter.results, meter.ops, round(total, 6)), args, kwargs


def attach_measurements(graph: Graph, measurements: Measurements) -> None:
    """Set ``ModuleCall.measured`` on every call that was measured and ``Node.measured`` on
    every op matched to a timed one (a torch function traced into, ``trace_depth``, is timed
    as one op: its group gets the time); describe the run in ``graph.meta["execution"]``."""
    for call in graph.modules.values():
        if call.kind == "module" and call.called:
            call.measured = measurements.calls.get((call.path, call.call_index))
            _attach_ops(graph, call, measurements.ops)
    ops = [n for n in graph.nodes.values() if n.kind == "op"]
    graph.meta["execution"] = {
        "device": next(iter(graph.tensors.values())).device if graph.tensors else "cpu",
        "machine": machine_name(),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__.split("+")[0],
        "total_s": measurements.total_s,
        "measured_calls": sum(1 for c in graph.modules.values()
                              if c.kind == "module" and c.measured is not None),
        "called_modules": sum(1 for c in graph.modules.values()
                              if c.kind == "module" and c.called),
        "measured_ops": sum(1 for n in ops if n.measured is not None),
        "ops": len(ops),
    }


def _attach_ops(graph: Graph, call: ModuleCall, ops: dict[OpKey, Measured]) -> None:
    seen: dict[str, int] = {}
    for child in call.children:
        module = graph.modules.get(child)
        if module is not None and module.kind != "function":
            continue
        name = module.cls if module is not None else graph.nodes[child].name
        if module is None and graph.nodes[child].kind != "op":
            continue
        index = seen.get(name, 0)
        seen[name] = index + 1
        measured = ops.get((call.path, call.call_index, name, index))
        if module is not None:
            module.measured = measured
        else:
            graph.nodes[child].measured = measured


def machine_name() -> str:
    """The processor, as a caption names the machine a figure was measured on."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as info:
            for line in info:
                if line.startswith("model name"):
                    name = line.split(":", 1)[1].strip()
                    return f"{name}, {os.cpu_count()} cores"
    except OSError:
        pass
    return f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores"
