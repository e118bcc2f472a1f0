"""``OpRunner``: an op's result and its FLOPs, counted by its rule, and meta outputs made
from the cache of an earlier call with the same signature."""

from __future__ import annotations

from typing import Any

import pytest
import torch
import torch.nn.functional as F

from model_trace.tracing import flops, trace
from model_trace.tracing.arguments import tensors_in
from model_trace.tracing.concrete import ConcreteValues
from model_trace.tracing.op_info import OpInfos
from model_trace.tracing.op_runner import AtenRecording, OpRunner
from model_trace.tracing.routing import routing_policy


def _run(runner: OpRunner, infos: OpInfos, func: Any, *args: Any, **kwargs: Any) -> Any:
    """One op as the recorder runs it; afterwards ``runner.flops`` and ``runner.missing``."""
    return runner.run(infos[func], func, args, kwargs, tensors_in(args, kwargs))


def _meta_runner() -> tuple[OpRunner, OpInfos, ConcreteValues]:
    infos = OpInfos()
    values = ConcreteValues(routing_policy("balanced"))
    return OpRunner(values, infos), infos, values


def test_a_linear_op_costs_2_m_n_k_however_its_arguments_are_passed() -> None:
    infos = OpInfos()
    runner = OpRunner(None, infos)
    x, w = torch.randn(2, 3, 8), torch.randn(16, 8)
    expected = F.linear(x, w)
    for args, kwargs in [((x, w), {}), ((x,), {"weight": w}), ((), {"input": x, "weight": w})]:
        result = _run(runner, infos, F.linear, *args, **kwargs)
        assert torch.equal(result, expected)
        assert (runner.flops, runner.missing, runner.from_cache) == (2 * 6 * 16 * 8, (), False)


def test_ops_counted_per_aten_op_are_counted_once_per_signature(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """matmul's count comes from the ATen ops it runs (a dispatch mode); a later call with
    the same shapes takes the count known, without the mode."""
    counted: list[str] = []
    enter = flops.FlopCounter.__enter__

    def noting(counter: flops.FlopCounter) -> flops.FlopCounter:
        counted.append("counted")
        return enter(counter)

    monkeypatch.setattr(flops.FlopCounter, "__enter__", noting)
    infos = OpInfos()
    runner = OpRunner(None, infos)
    for shape, n in [((3, 4), 5), ((3, 4), 5), ((6, 4), 2), ((3, 4), 5)]:
        a, b = torch.randn(*shape), torch.randn(shape[1], n)
        assert torch.equal(_run(runner, infos, torch.matmul, a, b), a @ b)
        assert (runner.flops, runner.missing) == (2 * shape[0] * shape[1] * n, ())
    assert counted == ["counted", "counted"]  # one per signature
    _run(runner, infos, torch.ops.aten.mm.default, a, b)  # an ATen op: by its formula
    assert runner.flops == 2 * 3 * 4 * 5


def test_an_op_without_a_formula_is_named_and_the_next_op_starts_afresh() -> None:
    infos = OpInfos()
    runner = OpRunner(None, infos)
    _run(runner, infos, torch.fft.fft, torch.randn(4, 4))
    assert (runner.flops, runner.missing) == (0, ("aten::_fft_r2c",))
    _run(runner, infos, torch.matmul, torch.randn(2, 3), torch.randn(3, 2))
    assert (runner.flops, runner.missing) == (24, ())


def test_a_repeated_meta_call_is_made_from_the_cache_with_its_cost() -> None:
    runner, infos, values = _meta_runner()
    x, w = torch.empty(2, 3, 8, device="meta"), torch.empty(16, 8, device="meta")
    first = _run(runner, infos, F.linear, x, w)
    assert (runner.flops, runner.from_cache, values.results.hits) == (1536, False, 0)
    second = _run(runner, infos, F.linear, x, w)
    assert (runner.flops, runner.from_cache, values.results.hits) == (1536, True, 1)
    assert second is not first and second.is_meta
    assert (second.shape, second.stride(), second.dtype) == (first.shape, first.stride(),
                                                            first.dtype)
    for cached in (False, True):  # what has no formula is named from the cache too
        _run(runner, infos, torch.fft.fft, torch.empty(4, 4, device="meta"))
        assert (runner.flops, runner.missing, runner.from_cache) == (
            0, ("aten::_fft_r2c",), cached)
    _run(runner, infos, torch.add, torch.ones(2), torch.ones(2))  # real: never cached
    _run(runner, infos, torch.add, torch.ones(2), torch.ones(2))
    assert (runner.from_cache, values.results.hits) == (False, 2)


def test_without_autograd_or_with_aten_recording_nothing_is_cached() -> None:
    infos = OpInfos()
    values = ConcreteValues(routing_policy("balanced"))
    x, w = torch.empty(2, 8, device="meta"), torch.empty(16, 8, device="meta")
    paused = AtenRecording(lambda *_: None)
    paused.paused = True  # as inside a module drawn as one node: ops run as they are
    for runner in (OpRunner(values, infos, cache_results=False),
                   OpRunner(values, infos, aten=paused)):
        for _ in range(2):
            _run(runner, infos, F.linear, x, w)
            assert (runner.flops, runner.from_cache) == (512, False)
    assert values.results.hits == 0 and values.results.entries == {}


def test_a_repeated_in_place_write_on_meta_returns_its_target_with_its_cost(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """x.renorm_(...) on meta tensors: the kernel would only check shapes, so a second call
    with the same signature returns x as it is, costed as the first (its op without a FLOP
    formula named again)."""
    runner, infos, values = _meta_runner()
    x = torch.empty(4, 4, device="meta")
    for hits in (0, 1, 2):
        assert _run(runner, infos, torch.Tensor.renorm_, x, 2, 0, 1.0) is x
        assert (runner.flops, runner.missing, values.results.hits) == (
            0, ("aten::renorm_",), hits)
    monkeypatch.setitem(flops._EXTRA_FORMULAS, "aten::renorm_",
                        lambda x, *_, **__: 12 * x.numel())
    runner, infos, values = _meta_runner()
    for hits in (0, 1):
        assert _run(runner, infos, torch.Tensor.renorm_, x, 2, 0, 1.0) is x
        assert (runner.flops, runner.missing, values.results.hits) == (192, (), hits)
    # a write that changes its target's shape is no "returns its target as it was"
    y = torch.empty(2, 3, device="meta")
    for _ in range(2):
        assert _run(runner, infos, torch.Tensor.resize_, y, (3, 4)).shape == (3, 4)
        y = torch.empty(2, 3, device="meta")
    assert values.results.hits == 1


def test_aten_ops_are_recorded_only_while_a_torch_level_op_runs() -> None:
    """With ``aten=True`` each torch-level op is a group of the ATen ops it ran; the tracer's
    own bookkeeping between ops (ids, statistics) shows none."""
    graph = trace(lambda x: (x * 2).sum(), torch.randn(3, 4), aten=True)
    ops = [(n.name, graph.modules[n.parent].cls, graph.modules[n.parent].kind)
           for n in graph.nodes.values() if n.kind == "op"]
    assert ops == [("aten::mul", "mul", "function"), ("aten::sum", "sum", "function")]
    graph = trace(torch.nn.Linear(4, 2), torch.randn(3, 4), aten=True)
    assert [n.name for n in graph.nodes.values() if n.kind == "op"] == [
        "aten::t", "aten::addmm"]

    def reads_first(x: torch.Tensor, n: torch.Tensor) -> torch.Tensor:
        if n.item() > 1:  # a value read before any op: no op, though ATen runs one for it
            x = x * 2
        return x.sum()

    graph = trace(reads_first, torch.randn(3), torch.tensor([2]), aten=True)
    assert [n.name for n in graph.nodes.values() if n.kind == "op"] == [
        "aten::mul", "aten::sum"]
