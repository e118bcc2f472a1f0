"""The graph as the builder grows it: ids, where source nodes sit, what a node reads, and
the names of modules outside the model."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import torch

from model_trace.graph import Graph
from model_trace.tracing import trace

from .models import TwoLayer


def _numbers(ids: list[str], prefix: str) -> list[int]:
    assert all(i.startswith(prefix) and i[1:].isdigit() for i in ids), ids
    return [int(i[1:]) for i in ids]


def _in_place(x: torch.Tensor) -> torch.Tensor:
    y = x * 2
    y += 1
    return torch.nn.functional.normalize(y)


TRACES: dict[str, Callable[[], Graph]] = {
    "modules": lambda: trace(TwoLayer(), torch.randn(3, 8), fold=False),
    "parameter nodes": lambda: trace(TwoLayer(), torch.randn(3, 8), fold=False,
                                     parameters="nodes"),
    "aten": lambda: trace(TwoLayer(), torch.randn(3, 8), fold=False, aten=True),
    "functions": lambda: trace(_in_place, torch.randn(2, 4), fold=False, trace_depth=1),
    "meta": lambda: trace(TwoLayer().to("meta"), torch.empty(3, 8, device="meta"),
                          fold=False),
}


@pytest.mark.parametrize("make", TRACES.values(), ids=TRACES.keys())
def test_ids_are_numbered_from_zero_in_the_order_things_were_recorded(
        make: Callable[[], Graph]) -> None:
    """An unfolded trace reserves no numbers (only replayed calls do): nodes and tensors are
    numbered densely, module calls in order from the root's m0 (a torch function traced
    into that recorded nothing leaves its number unused)."""
    graph = make()
    assert _numbers(list(graph.nodes), "n") == list(range(len(graph.nodes)))
    assert _numbers(list(graph.tensors), "t") == list(range(len(graph.tensors)))
    modules = _numbers(list(graph.modules), "m")
    assert modules[0] == 0 and graph.root == "m0" and modules == sorted(set(modules))
    for node in graph.nodes.values():  # a node's outputs are made at its time
        for tensor_id in node.outputs:
            producer = graph.tensors[tensor_id].producer
            assert producer is not None
            assert int(producer[1:]) <= int(node.id[1:])


def test_torch_functions_traced_into_are_not_numbered_as_module_calls() -> None:
    graph = trace(_in_place, torch.randn(2, 4), fold=False, trace_depth=1)
    groups = [c for c in graph.modules.values() if c.kind == "function"]
    assert [(c.cls, c.call_index) for c in groups] == [("normalize", 0)]


FIRST, SECOND = torch.nn.Linear(4, 4), torch.nn.Linear(4, 4)


def _outside(x: torch.Tensor) -> torch.Tensor:
    return SECOND(FIRST(FIRST(x)))


def test_modules_outside_the_model_are_named_after_their_class_once_each() -> None:
    graph = trace(_outside, torch.randn(2, 4), fold=False)
    calls = [(c.path, c.call_index) for c in graph.walk_modules()][1:]
    assert calls == [("Linear", 0), ("Linear", 1), ("Linear#2", 0)]


def test_a_tensor_an_op_reads_twice_is_one_input_with_one_edge() -> None:
    def repeat(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return torch.cat([x, x, y, x])

    graph = trace(repeat, torch.randn(2), torch.randn(3), fold=False)
    (cat,) = (n for n in graph.nodes.values() if n.name == "cat")
    x, y = (n.outputs[0] for n in graph.nodes.values() if n.kind == "input")
    assert cat.inputs == [x, y]
    assert sorted(e.tensor for e in graph.edges if e.dst == cat.id) == sorted([x, y])


TABLE = torch.arange(4.0)
"""A tensor made outside the forward: a constant to the trace."""


class _Shifted(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("shift", torch.ones(4))
        self.proj = torch.nn.Linear(4, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x) + TABLE


class _Reads(torch.nn.Module):
    """Reads a buffer and a weight of a submodule from outside it, after calling it."""

    def __init__(self) -> None:
        super().__init__()
        self.inner = _Shifted()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.inner(x)
        return y * self.inner.shift + self.inner.proj.weight.sum()


@pytest.mark.parametrize("parameters", ["attach", "nodes"])
def test_source_nodes_sit_in_the_call_of_the_module_holding_them(parameters: Any) -> None:
    """A buffer or a parameter drawn as a node sits in its module's (latest) call, wherever
    it is read; a constant where it is first read."""
    graph = trace(_Reads(), torch.randn(2, 4), fold=False, parameters=parameters)
    sources = {n.name: (n.kind, graph.modules[n.parent].path) for n in graph.nodes.values()
               if n.kind in ("constant", "buffer", "parameter")}
    expected = {"constant": ("constant", "inner"), "shift": ("buffer", "inner")}
    if parameters == "nodes":
        expected |= {"weight": ("parameter", "inner.proj"), "bias": ("parameter", "inner.proj")}
    assert sources == expected
    weight = [n for n in graph.nodes.values() if n.name == "weight"]
    readers = [n for n in graph.nodes.values() if n.name in ("linear", "sum")]
    if parameters == "nodes":  # one node for the weight, read twice
        assert [n.inputs.count(weight[0].outputs[0]) for n in readers] == [1, 1]
    else:
        assert [n.params for n in readers] == [["inner.proj.weight", "inner.proj.bias"],
                                               ["inner.proj.weight"]]
        assert [n.stats.params for n in readers] == [20, 0]  # counted by its first reader


class _BufferTable(torch.nn.Module):
    """Rows of a 3-D buffer picked by a router's choice: a table of constants, no experts."""

    def __init__(self) -> None:
        super().__init__()
        self.router = torch.nn.Linear(4, 3)
        self.register_buffer("table", torch.ones(3, 4, 4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        chosen = int(self.router(x).argmax(-1)[0])
        return x @ self.table[chosen] + x @ self.table.view(12, 4).view(3, 4, 4)[1]


@pytest.mark.parametrize("parameters", ["attach", "nodes"])
def test_slices_of_a_buffer_are_no_experts(parameters: Any) -> None:
    graph = trace(_BufferTable(), torch.randn(2, 4), fold=False, parameters=parameters)
    assert [n.name for n in graph.nodes.values() if n.selections] == []
    assert "experts" not in graph.meta
    assert graph.meta["totals"]["activated_params"] == graph.meta["totals"]["params"] == 15
