"""``execute="cpu"``: a real run measured per module call, with the real routing."""

from __future__ import annotations

import math
import os
import re
import time
from typing import Any

import pytest
import torch

import model_trace.tracing.execution as execution
from model_trace.details import item_text
from model_trace.tracing import trace
from model_trace.tracing.execution import Measurements, attach_measurements, machine_name
from model_trace.view_tree import ViewTree

from .models import TwoLayer


def test_a_real_run_records_time_memory_and_tokens_per_expert(build_tiny, tiny_tokens) -> None:
    model = build_tiny("cpu")
    routed: list[list[int]] = []  # the gates' own choices in a plain run
    handles = [model.get_submodule(f"layers.{i}.ffn.gate").register_forward_hook(
        lambda _m, _a, out: routed.append(torch.bincount(out[1].flatten(), minlength=16)
                                          .tolist())) for i in (1, 2)]
    with torch.inference_mode():
        model(tiny_tokens)
    for handle in handles:
        handle.remove()

    graph = trace(model, tiny_tokens, execute="cpu", fold=False)
    assert graph.meta["routing"] == {"policy": "real"}
    assert graph.meta["execution"]["device"] == "cpu"
    loads = [group["tokens"] for group in graph.meta["experts"].values()]
    assert loads == routed and all(sum(load) == 16 * 4 for load in loads)
    calls = [c for c in graph.modules.values() if c.kind == "module" and c.called]
    assert all(c.measured is not None for c in calls)
    assert graph.meta["execution"]["measured_calls"] == len(calls)
    assert graph.meta["execution"]["called_modules"] == len(calls)
    for call in calls:
        assert call.measured.wall_time_s >= 0 and call.measured.peak_memory_bytes >= 0
        parent = graph.modules.get(call.parent) if call.parent else None
        if parent is not None and parent.measured is not None:  # nested inside its parent
            assert call.measured.wall_time_s <= parent.measured.wall_time_s
    uncalled = [c for c in graph.modules.values() if not c.called]
    assert all(c.measured is None for c in uncalled)
    idle = [c.path for c in uncalled if c.cls == "Expert"]  # experts no token chose
    assert idle == [f"layers.{layer}.ffn.experts.{i}" for layer, load in zip((1, 2), loads,
                                                                               strict=True)
                    for i, tokens in enumerate(load) if not tokens]


class _Reused(torch.nn.Module):
    """One module at two paths and called three times, the same op twice in one call on
    tensors of different sizes, an op after a child call, an in-place op of two tensors."""

    def __init__(self) -> None:
        super().__init__()
        self.square = torch.nn.Linear(8, 8)
        self.alias = self.square  # the same module, reachable as "alias" too
        self.widen = torch.nn.Linear(8, 16)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.alias(torch.relu(self.square(x)))
        y = torch.relu(self.widen(self.square(x)))  # relu again, on twice the bytes
        return y.add_(torch.ones_like(y))


def _bytes(graph, tensor_ids: list[str]) -> int:
    return sum(math.prod(graph.tensors[t].shape) * getattr(torch, graph.tensors[t].dtype)
               .itemsize for t in tensor_ids)


def test_every_call_and_op_is_matched_to_its_own_measurement() -> None:
    graph = trace(_Reused(), torch.randn(2, 8), execute="cpu", fold=False)
    calls = [c for c in graph.modules.values() if c.kind == "module"]
    # a module reachable at two paths is measured under the path the trace names it by
    assert [(c.path, c.call_index) for c in calls] == [
        ("", 0), ("square", 0), ("square", 1), ("square", 2), ("widen", 0)]
    assert all(c.measured is not None for c in calls)
    ops = [n for n in graph.nodes.values() if n.kind == "op"]
    assert [n.name for n in ops].count("relu") == 2
    assert all(n.measured is not None for n in ops)
    for node in ops:  # bytes of new tensors: an in-place op's output is its own input
        fresh = 0 if node.name.endswith("_") else _bytes(graph, node.outputs)
        assert node.measured.peak_memory_bytes == fresh, node.name
    run = graph.meta["execution"]
    assert run["measured_calls"] == run["called_modules"] == len(calls)
    assert run["measured_ops"] == run["ops"] == len(ops)
    assert run["device"] == "cpu" and run["threads"] == torch.get_num_threads()
    assert run["machine"] == machine_name()
    assert run["torch"] == torch.__version__.split("+")[0]
    assert run["total_s"] >= graph.modules[graph.root].measured.wall_time_s > 0


class _MakesLayers(torch.nn.Module):
    """Makes a new layer for each of its two steps: modules outside the model's tree."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for _ in range(2):
            x = torch.nn.Linear(8, 8)(x)
        return x


def test_layers_made_in_the_forward_are_each_matched_to_their_own_measurement() -> None:
    """The trace names a second layer of a class made in the forward ``Linear#2``; the
    measured run names it alike (not a second call of ``Linear``), so both are timed."""
    graph = trace(_MakesLayers(), torch.randn(2, 8), execute="cpu", fold=False)
    calls = [c for c in graph.modules.values() if c.kind == "module"]
    assert [(c.path, c.call_index) for c in calls] == [("", 0), ("Linear", 0), ("Linear#2", 0)]
    assert all(c.measured is not None for c in calls)
    assert all(n.measured is not None for n in graph.nodes.values() if n.kind == "op")
    run = graph.meta["execution"]
    assert run["measured_calls"] == run["called_modules"] == 3


def test_times_are_kept_to_the_microsecond_and_ops_to_a_tenth() -> None:
    graph = trace(_Reused(), torch.randn(2, 8), execute="cpu", fold=False)
    calls = [c.measured.wall_time_s for c in graph.modules.values() if c.measured]
    ops = [n.measured.wall_time_s for n in graph.nodes.values() if n.measured]
    total = graph.meta["execution"]["total_s"]
    assert all(round(s, 6) == s for s in [*calls, total])
    assert all(round(s, 7) == s for s in ops)
    # not coarser: of five calls or six ops, some are not whole multiples of the next digit
    assert len(calls) == 5 and any(round(s, 5) != s for s in calls)
    assert any(round(s, 6) != s for s in ops)


def test_function_groups_are_timed_as_one_op_and_counted_apart_from_module_calls() -> None:
    class Normalised(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.nn.functional.normalize(torch.nn.functional.normalize(x) * 2)

    graph = trace(Normalised(), torch.randn(2, 8), execute="cpu", trace_depth=1, fold=False)
    groups = [c for c in graph.modules.values() if c.kind == "function"]
    assert [c.cls for c in groups] == ["normalize", "normalize"]
    assert all(c.measured is not None for c in groups)
    inside = {n for c in groups for n in c.children}
    ops = [n for n in graph.nodes.values() if n.kind == "op"]
    assert [n.name for n in ops if n.id not in inside] == ["mul"]
    assert all((n.measured is None) == (n.id in inside) for n in ops)
    run = graph.meta["execution"]
    # the caption says "N of M module calls timed": function groups are not module calls
    assert run["measured_calls"] == run["called_modules"] == 1
    assert run["measured_ops"] == 1 and run["ops"] == len(ops) > 1


def test_a_traced_function_is_measured_as_one_call() -> None:
    def double(x: torch.Tensor) -> torch.Tensor:
        return torch.relu(x) * 2

    graph = trace(double, torch.randn(2, 8), execute="cpu")
    root = graph.modules[graph.root]
    assert root.measured.wall_time_s == graph.meta["execution"]["total_s"] > 0
    assert root.measured.peak_memory_bytes is None  # no module boundary to sample at
    assert [n.measured is not None for n in graph.nodes.values() if n.kind == "op"] == [True] * 2


def test_on_cuda_each_call_keeps_its_own_peak_though_each_child_resets_the_allocators(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """CUDA's allocator has one peak, reset at each call's start and end: a parent's peak so
    far is lifted into its own record before a child resets it, and a child's reaches its
    parent when it ends. Four nested calls, each allocating and freeing, on a stand-in
    allocator (no GPU here): each call's peak is the most it held above its start."""
    allocator = {"now": 0, "peak": 0}

    def allocate(size: int) -> None:
        allocator["now"] += size
        allocator["peak"] = max(allocator["peak"], allocator["now"])

    def reset_peak() -> None:
        allocator["peak"] = allocator["now"]

    monkeypatch.setattr(torch.cuda, "synchronize", lambda: None)
    monkeypatch.setattr(torch.cuda, "memory_allocated", lambda: allocator["now"])
    monkeypatch.setattr(torch.cuda, "max_memory_allocated", lambda: allocator["peak"])
    monkeypatch.setattr(torch.cuda, "reset_peak_memory_stats", reset_peak)
    leaf = torch.nn.Identity()
    inner = torch.nn.Sequential(leaf)
    middle = torch.nn.Sequential(inner)
    root = torch.nn.Sequential(middle)
    meter = execution._Meter(root, torch.device("cuda"))
    held = {root: 100, middle: 1000, inner: 300, leaf: 20}
    for module in (root, middle, inner, leaf):
        meter.enter(module, ())
        allocate(held[module])
        if module is not root:  # freed before the next call starts
            allocate(-held[module])
    for module in (leaf, inner, middle, root):
        meter.exit(module, (), None)
    assert {path: m.peak_memory_bytes for (path, _), m in meter.results.items()} == {
        "0.0.0": 20, "0.0": 300, "0": 1000, "": 1100}


def test_a_parent_call_peaks_at_least_as_high_as_a_child_that_came_before() -> None:
    size = 64 << 20  # above glibc's largest mmap threshold: freed memory leaves the process

    class Allocates(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.ones(size // 4) + x.sum()

    class Parent(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.big, self.small = Allocates(), torch.nn.Linear(8, 8)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            first = self.big(x)[:8].clone()  # the 64 MiB are freed here
            return self.small(x) + first

    graph = trace(Parent(), torch.randn(2, 8), execute="cpu", fold=False)
    by_path = {c.path: c.measured for c in graph.modules.values()}
    # resident memory is sampled at module boundaries: generous margins for a busy machine
    assert by_path["big"].peak_memory_bytes >= size // 2
    assert by_path[""].peak_memory_bytes >= by_path["big"].peak_memory_bytes - (16 << 20)


def test_the_warm_up_run_takes_a_module_s_first_call_costs() -> None:
    class SlowFirst(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.calls = 0

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            self.calls += 1
            if self.calls == 1:  # lazy set-up, as a compiled kernel or a cache
                time.sleep(0.3)
            return x * 2

    model = SlowFirst()
    graph = trace(model, torch.randn(2, 8), execute="cpu")
    assert model.calls == 3  # warm-up, measured run, trace
    assert graph.modules[graph.root].measured.wall_time_s < 0.2


def test_measuring_leaves_no_global_module_hook_behind() -> None:
    module = torch.nn.modules.module
    before = (len(module._global_forward_pre_hooks), len(module._global_forward_hooks))
    trace(TwoLayer(), torch.randn(3, 8), execute="cpu")
    assert (len(module._global_forward_pre_hooks), len(module._global_forward_hooks)) == before


def test_the_execution_note_names_the_device_of_the_graph_s_tensors() -> None:
    graph = trace(TwoLayer(), torch.empty(3, 8, device="meta"))
    attach_measurements(graph, Measurements({}, {}, 0.5))
    run = graph.meta["execution"]
    assert run["device"] == "meta" and run["total_s"] == 0.5
    assert run["measured_calls"] == run["measured_ops"] == 0
    assert run["called_modules"] == 3 and run["ops"] == 3
    graph.tensors.clear()
    attach_measurements(graph, Measurements({}, {}, 0.5))
    assert graph.meta["execution"]["device"] == "cpu"


def test_the_machine_is_named_by_its_processor() -> None:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as info:
            names = [line.split(":", 1)[1].strip() for line in info
                     if line.startswith("model name")]
    except OSError:
        names = []
    if not names:
        pytest.skip("no processor name in /proc/cpuinfo")
    assert machine_name() == f"{names[0]}, {os.cpu_count()} cores"


def test_without_proc_peak_memory_is_not_measured_rather_than_zero(monkeypatch) -> None:
    """macOS and Windows have no ``/proc``: times are measured, peak memory is said to be
    not measured (not 0 B), and the machine is named by ``platform``."""
    real_open = open

    def no_proc(file: Any, *args: Any, **kwargs: Any) -> Any:
        if str(file).startswith("/proc/"):
            raise FileNotFoundError(2, "No such file or directory", str(file))
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr(execution, "open", no_proc, raising=False)
    graph = trace(TwoLayer(), torch.randn(3, 8), execute="cpu", fold=False)
    calls = [c for c in graph.modules.values() if c.kind == "module" and c.called]
    assert len(calls) == 3
    assert all(c.measured.peak_memory_bytes is None and c.measured.wall_time_s > 0
               for c in calls)
    assert graph.meta["execution"]["machine"].endswith(f", {os.cpu_count()} cores")
    rows = dict(item_text(ViewTree.from_graph(graph), graph.root).rows)
    assert rows["measured"].endswith(", peak memory not measured")
    monkeypatch.undo()  # with /proc: every call's peak is a number of bytes
    graph = trace(TwoLayer(), torch.randn(3, 8), execute="cpu", fold=False)
    assert all(c.measured.peak_memory_bytes >= 0 for c in graph.modules.values()
               if c.kind == "module" and c.called)
    rows = dict(item_text(ViewTree.from_graph(graph), graph.root).rows)
    assert re.fullmatch(r".+, peak [\d.]+ [kMG]?B", rows["measured"])


def test_a_folded_run_keeps_each_member_s_measured_time() -> None:
    model = torch.nn.Sequential(*(torch.nn.Linear(8, 8) for _ in range(3)))
    graph = trace(model, torch.randn(2, 8), execute="cpu")
    (run,) = (c for c in graph.modules.values() if c.repeat is not None)
    assert run.repeat.count == 3
    seconds = run.repeat.member_seconds
    assert len(seconds) == 3 and all(s > 0 for s in seconds)
    assert seconds[0] == run.measured.wall_time_s  # the representative: member 0
