"""What the recorder draws: ATen drill-down, torch functions traced into, in-place writes,
parameters and buffers, modules below ``module_depth``."""

from __future__ import annotations

import dataclasses
import inspect

import pytest
import torch

from model_trace import TraceError
from model_trace.graph import Graph
from model_trace.tracing import trace

from .models import TwoLayer


def _ops(graph: Graph) -> list[tuple[str, str]]:
    """(op name, name of the enclosing call) in call order."""
    return [(n.name, graph.modules[n.parent].path or graph.modules[n.parent].cls)
            for n in graph.nodes.values() if n.kind == "op"]


def test_aten_drill_down_records_aten_ops_under_each_torch_op() -> None:
    with torch.device("meta"):
        model, x = TwoLayer(), torch.empty(3, 8)
    plain = trace(model, x)
    graph = trace(model, x, aten=True, fold=False)
    groups = [(c.cls, graph.modules[c.parent].path) for c in graph.modules.values()
              if c.kind == "function"]
    assert groups == [("linear", "first"), ("relu", ""), ("linear", "second")]
    ops = [(n.name, graph.modules[n.parent].cls) for n in graph.nodes.values()
           if n.kind == "op"]
    assert ops == [("aten::t", "linear"), ("aten::addmm", "linear"), ("aten::relu", "relu"),
                   ("aten::t", "linear"), ("aten::addmm", "linear")]
    addmm = [n for n in graph.nodes.values() if n.name == "aten::addmm"]
    assert [n.stats.flops for n in addmm] == [2 * 3 * 8 * 16, 2 * 3 * 16 * 4]
    assert graph.meta["totals"] == plain.meta["totals"]  # the same cost, seen closer
    relu_group = next(c for c in graph.modules.values() if c.cls == "relu")
    (relu,) = (graph.nodes[c] for c in relu_group.children)
    assert relu_group.inputs == relu.inputs and relu_group.outputs == relu.outputs


def test_trace_depth_opens_torch_functions_into_their_ops() -> None:
    attention = torch.nn.MultiheadAttention(8, 2, batch_first=True, device="meta")
    q = torch.empty(1, 3, 8, device="meta")
    closed = trace(attention, q, q, q)
    assert [name for name, _ in _ops(closed)] == ["transpose", "multi_head_attention_forward",
                                                  "transpose"]
    opened = trace(attention, q, q, q, trace_depth=1, fold=False)
    (function,) = (c for c in opened.modules.values() if c.kind == "function")
    assert function.cls == "multi_head_attention_forward" and function.source is not None
    inside = [name for name, group in _ops(opened) if group == function.cls]
    # self-attention: one packed q, k, v projection and the output projection
    assert inside.count("linear") == 2 and "softmax" in inside and inside.count("bmm") == 2
    assert opened.meta["totals"]["flops"] == closed.meta["totals"]["flops"] > 0


def test_in_place_writes_make_new_versions_that_later_readers_follow() -> None:
    class Writes(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.proj = torch.nn.Linear(4, 4)
            self.register_buffer("offset", torch.ones(4))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            y = self.proj(x)
            y += self.offset
            y[0] = 0
            return y.relu()

    graph = trace(Writes(), torch.randn(2, 4))
    nodes = {n.name: n for n in graph.nodes.values()}
    assert [n.name for n in graph.nodes.values()] == ["x", "linear", "add_", "offset",
                                                      "setitem", "relu", "output"]
    linear, add, setitem, relu = (nodes[k] for k in ("linear", "add_", "setitem", "relu"))
    assert add.inputs == [linear.outputs[0], nodes["offset"].outputs[0]]
    assert setitem.inputs == add.outputs and relu.inputs == setitem.outputs
    assert len({linear.outputs[0], add.outputs[0], setitem.outputs[0]}) == 3  # three versions
    assert nodes["offset"].kind == "buffer" and setitem.args == {"index": "[0]"}
    assert linear.params == ["proj.weight", "proj.bias"] and linear.stats.params == 20


def test_parameters_can_be_drawn_as_nodes_in_their_module() -> None:
    graph = trace(TwoLayer(), torch.randn(3, 8), parameters="nodes")
    parameters = [(n.name, graph.modules[n.parent].path) for n in graph.nodes.values()
                  if n.kind == "parameter"]
    assert parameters == [("weight", "first"), ("bias", "first"), ("weight", "second"),
                          ("bias", "second")]
    first = next(n for n in graph.nodes.values() if n.name == "linear")
    weight = graph.tensors[first.inputs[1]]
    assert weight.shape == [16, 8] and graph.nodes[weight.producer].kind == "parameter"


def test_modules_below_module_depth_are_one_op_each() -> None:
    model = torch.nn.Sequential(torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.ReLU()),
                                torch.nn.Linear(4, 2))
    graph = trace(model, torch.randn(2, 4), module_depth=1)
    assert [(c.path, c.called) for c in graph.walk_modules()] == [("", True), ("0", True),
                                                                 ("1", True)]
    inner = [(n.name, n.args, n.stats.flops) for n in graph.nodes.values()
             if n.kind == "op" and "path" in n.args]
    assert inner == [("Linear", {"path": "0.0"}, 2 * 2 * 4 * 4), ("ReLU", {"path": "0.1"}, 0)]
    assert graph.modules[graph.root].stats.params == 20 + 10


def test_modules_carry_their_class_source_and_extra_repr() -> None:
    graph = trace(TwoLayer(), torch.randn(3, 8))
    root, first, _ = graph.walk_modules()
    assert root.source.file.endswith("tracing/models.py")
    assert root.source.start < root.source.end
    assert first.source.file == "torch/nn/modules/linear.py"
    assert first.extra_repr == "in_features=8, out_features=16, bias=True"


@dataclasses.dataclass
class _Decorated:
    """A decorated class: its span starts at the decorator."""

    class Nested:
        """A class inside a class."""


def _local_class() -> type:
    class Local:
        """A class inside a function (``<locals>`` in its qualified name)."""

    return Local


def test_class_spans_are_those_inspect_finds_from_one_parse_per_file() -> None:
    """Decorated, nested and local classes span the lines ``inspect.getsourcelines`` gives,
    though the file is parsed once for all of them."""
    from model_trace.tracing.source import SourceIndex, relative_source_path

    for cls in (_Decorated, _Decorated.Nested, _local_class(), TwoLayer):
        lines, start = inspect.getsourcelines(cls)
        span = SourceIndex().class_span(cls)
        assert span is not None
        assert (span.file, span.start, span.end) == \
            (relative_source_path(inspect.getsourcefile(cls)), start, start + len(lines) - 1)
def test_a_module_drawn_as_one_op_sits_in_its_parent_and_produces_what_it_returns() -> None:
    inner = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.ReLU())
    model = torch.nn.Sequential(torch.nn.Sequential(inner), torch.nn.Linear(4, 2))
    graph = trace(model, torch.randn(2, 4), module_depth=2, fold=False)
    opaque = {n.args["path"]: n for n in graph.nodes.values() if "path" in n.args}
    assert sorted(opaque) == ["0.0.0", "0.0.1"]
    for node in opaque.values():
        assert node.category == "module"
        assert graph.modules[node.parent].path == "0.0"  # its parent, not a grandparent
    # the ReLU's output is what the last Linear reads
    (last,) = (n for n in graph.nodes.values() if n.name == "linear")
    assert graph.tensors[last.inputs[0]].producer == opaque["0.0.1"].id
    assert graph.tensors[opaque["0.0.1"].inputs[0]].producer == opaque["0.0.0"].id


def test_a_forward_taking_more_arguments_than_it_names_is_traced() -> None:
    class Sum(torch.nn.Module):
        def forward(self, x: torch.Tensor, *rest: torch.Tensor) -> torch.Tensor:
            return x + rest[0] + rest[1]

    class Outer(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.sum = Sum()

        def forward(self, a: torch.Tensor, b: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
            return self.sum(a, b, c)

    graph = trace(Outer(), *(torch.randn(2) for _ in range(3)), fold=False)
    root, inner = graph.walk_modules()
    assert inner.path == "sum" and inner.inputs == root.inputs and len(inner.inputs) == 3


def test_a_forward_failing_between_ops_names_the_last_op_it_ran() -> None:
    class Boom(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            torch.relu(x)
            raise RuntimeError("boom")

    with pytest.raises(TraceError, match=r"in module '<root>' \(Boom\) at op 'relu': "
                                         r"RuntimeError: boom"):
        trace(Boom(), torch.randn(2))


def test_torch_functions_traced_into_one_after_another_are_siblings() -> None:
    """Each call of a Python-level torch function opens its own group and closes it: the
    second call is traced into as the first was, beside it, not inside it."""
    def twice(x: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.normalize(torch.nn.functional.normalize(x) * 2)

    graph = trace(twice, torch.randn(2, 8), trace_depth=1, fold=False)
    groups = [c for c in graph.modules.values() if c.kind == "function"]
    assert [(c.cls, c.parent) for c in groups] == [("normalize", graph.root)] * 2
    inside = [[graph.nodes[n].name for n in c.children] for c in groups]
    assert inside == [["norm", "clamp_min", "expand_as", "div"]] * 2
    assert [n.name for n in graph.nodes.values() if n.parent == graph.root
            and n.kind == "op"] == ["mul"]
