"""The tracer on small models: hierarchy, ops, shapes, errors, determinism."""

from __future__ import annotations

import pytest
import torch

from model_trace import TraceError, trace


class TwoLayer(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.first = torch.nn.Linear(8, 16)
        self.second = torch.nn.Linear(16, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.second(torch.relu(self.first(x)))


def test_records_modules_ops_and_shapes() -> None:
    graph = trace(TwoLayer(), torch.randn(3, 8))
    paths = [m.path for m in graph.walk_modules()]
    assert paths == ["", "first", "second"]
    ops = [(n.name, graph.modules[n.parent].path) for n in graph.nodes.values() if n.kind == "op"]
    assert ops == [("linear", "first"), ("relu", ""), ("linear", "second")]
    shapes = [graph.tensors[t].shape for n in graph.nodes.values() for t in n.outputs]
    assert shapes == [[3, 8], [3, 16], [3, 16], [3, 4]]
    assert graph.modules[graph.root].stats.params == 8 * 16 + 16 + 16 * 4 + 4


def test_edges_follow_data_flow() -> None:
    graph = trace(TwoLayer(), torch.randn(3, 8))
    names = {n.id: n.name for n in graph.nodes.values()}
    assert [(names[e.src], names[e.dst]) for e in graph.edges] == [
        ("x", "linear"), ("linear", "relu"), ("relu", "linear"), ("linear", "output")
    ]


def test_source_location_points_at_model_code() -> None:
    graph = trace(TwoLayer(), torch.randn(3, 8))
    relu = next(n for n in graph.nodes.values() if n.name == "relu")
    assert relu.source is not None
    assert relu.source.file.endswith("test_tracer_basics.py")
    assert "torch.relu" in relu.source.code


def test_meta_device_and_determinism() -> None:
    with torch.device("meta"):
        model = TwoLayer()
    first = trace(model, torch.empty(2, 8, device="meta")).to_json()
    second = trace(model, torch.empty(2, 8, device="meta")).to_json()
    assert first == second


def test_exception_names_module_and_keeps_partial_graph() -> None:
    model = TwoLayer()
    with pytest.raises(TraceError) as caught:
        trace(model, torch.randn(3, 5))  # wrong input width for `first`
    assert "'first'" in str(caught.value) and "linear" in str(caught.value)
    assert caught.value.graph is not None
    assert [m.path for m in caught.value.graph.walk_modules()] == ["", "first"]
    # hooks and modes are gone: a plain forward works and records nothing
    assert model(torch.randn(3, 8)).shape == (3, 4)
    assert torch.overrides._get_current_function_mode_stack() == []
