"""``trace``: what it accepts (modules, functions, keyword inputs, nested outputs), how it
fails, and that it leaves torch as it found it."""

from __future__ import annotations

import contextlib
import gc
from dataclasses import dataclass
from typing import Any

import pytest
import torch
from torch.utils._python_dispatch import _get_current_dispatch_mode_stack

from model_trace import TraceError, trace
from model_trace.graph import Graph

from .models import TwoLayer


def _ops(graph: Graph) -> list[tuple[str, str]]:
    """(op name, module path) of every op node, in call order."""
    return [(n.name, graph.modules[n.parent].path) for n in graph.nodes.values()
            if n.kind == "op"]


def _shape(graph: Graph, tensor_id: str) -> list[int]:
    return graph.tensors[tensor_id].shape


def test_records_modules_ops_and_shapes() -> None:
    graph = trace(TwoLayer(), torch.randn(3, 8))
    paths = [m.path for m in graph.walk_modules()]
    assert paths == ["", "first", "second"]
    assert _ops(graph) == [("linear", "first"), ("relu", ""), ("linear", "second")]
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
    assert relu.source.file.endswith("tracing/models.py")
    assert "torch.relu" in relu.source.code


class Scaled(torch.nn.Module):
    """Keyword-only inputs, one of them optional."""

    def __init__(self) -> None:
        super().__init__()
        self.proj = torch.nn.Linear(4, 4)

    def forward(self, x: torch.Tensor, *, mask: torch.Tensor | None = None,
                scale: float = 1.0) -> torch.Tensor:
        y = self.proj(x) * scale
        return y if mask is None else y.masked_fill(mask, 0.0)


def test_keyword_inputs_are_named_sources() -> None:
    graph = trace(Scaled(), torch.randn(2, 4), mask=torch.zeros(2, 4, dtype=torch.bool),
                  scale=2.0)
    sources = {n.name: n for n in graph.nodes.values() if n.kind == "input"}
    assert set(sources) == {"x", "mask"}
    assert _shape(graph, sources["mask"].outputs[0]) == [2, 4]
    assert graph.tensors[sources["mask"].outputs[0]].dtype == "bool"
    fill = next(n for n in graph.nodes.values() if n.name == "masked_fill")
    assert sources["mask"].outputs[0] in fill.inputs
    mul = next(n for n in graph.nodes.values() if n.name == "mul")
    assert mul.args == {"arg1": "2.0"}  # the keyword scalar reached the op


@dataclass
class Hidden:
    states: torch.Tensor
    pooled: torch.Tensor


class ManyOutputs(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> dict[str, Any]:
        return {"logits": x.sum(-1), "extra": (x.t(), [x * 2]),
                "hidden": Hidden(x + 1, x.mean(0)), "note": "not a tensor"}


def test_dict_nested_and_dataclass_outputs_become_named_sinks() -> None:
    graph = trace(ManyOutputs(), torch.randn(3, 5))
    sinks = {n.name: _shape(graph, n.inputs[0]) for n in graph.nodes.values()
             if n.kind == "output"}
    assert sinks == {"output['logits']": [3], "output['extra'][0]": [5, 3],
                     "output['extra'][1][0]": [3, 5], "output['hidden'].states": [3, 5],
                     "output['hidden'].pooled": [5]}


def test_a_plain_function_is_the_root_and_its_modules_nest_inside() -> None:
    layer = torch.nn.Linear(6, 3)

    def project_twice(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return layer(x) + layer(y).flip(0)

    graph = trace(project_twice, torch.randn(2, 6), torch.randn(2, 6))
    root = graph.modules[graph.root]
    assert root.cls.endswith("project_twice") and root.path == ""
    calls = [(m.path, m.cls, m.call_index) for m in graph.walk_modules()[1:]]
    assert calls == [("Linear", "Linear", 0), ("Linear", "Linear", 1)]  # outside any model
    assert [n.name for n in graph.nodes.values() if n.kind == "input"] == ["x", "y"]
    assert root.stats.params == 6 * 3 + 3  # one module, counted once


def test_a_module_called_twice_gets_two_calls_and_counts_once() -> None:
    class Twice(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.shared = torch.nn.Linear(4, 4)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.shared(torch.tanh(self.shared(x)))

    graph = trace(Twice(), torch.randn(2, 4), fold=False)
    calls = [m for m in graph.walk_modules() if m.path == "shared"]
    assert [c.call_index for c in calls] == [0, 1]
    assert [c.stats.params for c in calls] == [20, 0]  # parameters count at the first call
    assert graph.modules[graph.root].stats.params == 20
    assert calls[1].inputs == [next(n for n in graph.nodes.values() if n.name == "tanh")
                               .outputs[0]]


def test_a_module_called_outside_its_parents_forward_nests_where_it_ran() -> None:
    """A weight-tied head called by a helper function, and a submodule called from outside
    the model's forward: each call sits under the call that was running."""

    class Tied(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.embed = torch.nn.Embedding(10, 4)
            self.body = torch.nn.Linear(4, 4)

        def forward(self, ids: torch.Tensor) -> torch.Tensor:
            return logits(self, self.body(self.embed(ids)))

    def logits(model: Tied, h: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.linear(h, model.embed.weight)

    model = Tied()
    graph = trace(model, torch.tensor([[1, 2, 3]]))
    assert _ops(graph) == [("embedding", "embed"), ("linear", "body"), ("linear", "")]
    head = list(graph.nodes.values())[-2]
    assert head.params == ["embed.weight"] and head.stats.params == 0  # read before
    assert graph.modules[graph.root].stats.params == 10 * 4 + 4 * 4 + 4  # tied: once

    def outside(x: torch.Tensor) -> torch.Tensor:
        return model.body(x) * 2  # model.body without model

    graph = trace(outside, torch.randn(1, 4))
    (body,) = graph.walk_modules()[1:]
    assert body.path == "Linear" and body.parent == graph.root
    assert _ops(graph) == [("linear", "Linear"), ("mul", "")]


class Broken(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.proj = torch.nn.Linear(8, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.proj(x)
        return h @ x  # (2, 4) @ (2, 8): the shapes do not chain


class Outer(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.norm = torch.nn.LayerNorm(8)
        self.block = Broken()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.block(self.norm(x))


@pytest.mark.parametrize("device", ["cpu", "meta"])
def test_an_exception_names_module_op_and_line_and_keeps_the_partial_graph(device: str
                                                                            ) -> None:
    with torch.device(device):
        model, x = Outer(), torch.randn(2, 8)
    with pytest.raises(TraceError) as caught:
        trace(model, x)
    message = str(caught.value)
    assert message.startswith("forward failed in module 'block' (Broken) at op 'matmul' at ")
    assert "tracing/test_api.py:" in message and "`return h @ x" in message
    assert ": RuntimeError: " in message  # then torch's own words, which vary by device
    partial = caught.value.graph
    assert [m.path for m in partial.walk_modules()] == ["", "norm", "block", "block.proj"]
    assert _ops(partial) == [("layer_norm", "norm"), ("linear", "block.proj")]
    assert partial.modules[partial.root].stats.params == 8 * 2 + 8 * 4 + 4


def test_reading_a_float_value_on_meta_says_why_and_what_to_do() -> None:
    def normalise(x: torch.Tensor) -> torch.Tensor:
        return x / x.abs().max().item()

    with pytest.raises(TraceError, match=r"at op 'item' .*cannot be called on meta tensors; "
                       r"on the meta device float tensors have shapes but no values.*trace "
                       r"the model on the CPU with real weights"):
        trace(normalise, torch.empty(4, device="meta"))


def _torch_state() -> dict[str, Any]:
    module = torch.nn.modules.module
    return {
        "function modes": list(torch.overrides._get_current_function_mode_stack()),
        "dispatch modes": list(_get_current_dispatch_mode_stack()),
        "global hooks": [dict(getattr(module, name)) for name in dir(module)
                         if name.startswith("_global_") and name.endswith("hooks")],
        "grad": torch.is_grad_enabled(),
        "gc": gc.isenabled(),
        "default device": torch.get_default_device(),
    }


@pytest.mark.parametrize("aten", [False, True])
def test_torch_is_left_as_it_was_after_success_and_after_an_exception(aten: bool) -> None:
    before = _torch_state()
    assert before["function modes"] == [] and before["dispatch modes"] == []
    x = torch.randn(3, 8)
    trace(TwoLayer(), x, aten=aten)
    assert _torch_state() == before
    assert not hasattr(x, "_model_trace_ref")  # the input carries no trace id
    with pytest.raises(TraceError):
        trace(Outer(), torch.randn(2, 8), aten=aten)
    assert _torch_state() == before
    model = TwoLayer()  # hooks are gone: a plain forward runs unrecorded
    assert model(torch.randn(3, 8)).shape == (3, 4)


def test_two_traces_are_byte_identical(build_tiny, tiny_tokens) -> None:
    first = trace(build_tiny(), tiny_tokens.to("meta"), routing="random:5").to_json()
    second = trace(build_tiny(), tiny_tokens.to("meta"), routing="random:5").to_json()
    assert first == second
    assert Graph.from_json(first).to_json() == first  # and the JSON round-trips


def test_execute_refuses_a_meta_model() -> None:
    with torch.device("meta"):
        model = TwoLayer()
    with pytest.raises(TraceError, match="execute='cpu' runs the model for real, but its "
                       "weights or inputs are on the meta device"):
        trace(model, torch.empty(3, 8, device="meta"), execute="cpu")


def test_bad_options_are_refused_before_tracing() -> None:
    with pytest.raises(ValueError, match="trace_depth=-1 must be 0 or more"):
        trace(TwoLayer(), torch.randn(3, 8), trace_depth=-1)
    with pytest.raises(ValueError, match="unknown routing policy 'fastest'; use one of "
                       "balanced, random, first"):
        trace(TwoLayer(), torch.randn(3, 8), routing="fastest")


class Layered(torch.nn.Module):
    """Three layers built alike and a head; ``fail`` raises after the layers: an op that
    cannot run on meta, a Python error, or one the forward catches and goes on from."""

    def __init__(self, fail: str) -> None:
        super().__init__()
        self.fail = fail
        self.layers = torch.nn.ModuleList(torch.nn.Linear(8, 8) for _ in range(3))
        self.head = torch.nn.Linear(8, 2)
        self.unused = torch.nn.Linear(8, 8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            x = layer(x)
        if self.fail == "op":
            x.sum().item()  # no value on the meta device
        elif self.fail == "python":
            {"mask": x}["masks"]
        elif self.fail == "caught":
            with contextlib.suppress(RuntimeError):
                x.sum().item()
        return self.head(x)


def test_a_partial_graph_is_unfolded_and_leaves_out_what_the_forward_never_reached() -> None:
    with torch.device("meta"):
        model = Layered("op")
    with pytest.raises(TraceError, match=r"at op 'item' at .*test_api\.py:") as caught:
        trace(model, torch.empty(2, 8, device="meta"))
    partial = caught.value.graph
    # each layer its own call (no fold), and neither the head nor the unused layer is listed
    # as never called: the forward stopped before it could reach them
    assert [(m.path, m.repeat) for m in partial.walk_modules()] == [
        ("", None), ("layers.0", None), ("layers.1", None), ("layers.2", None)]


def test_an_error_raised_between_ops_names_the_last_op_and_the_line_that_raised_it() -> None:
    with pytest.raises(TraceError) as caught:
        trace(Layered("python"), torch.randn(2, 8))
    message = str(caught.value)
    assert message.startswith("forward failed in module '<root>' (Layered) after op "
                              "'linear' at ")
    assert 'test_api.py:' in message and '`{"mask": x}["masks"]`: KeyError: ' in message
    assert [m.path for m in caught.value.graph.walk_modules()] == [
        "", "layers.0", "layers.1", "layers.2"]

    def refuses(x: torch.Tensor) -> torch.Tensor:
        raise ValueError("not this shape")

    with pytest.raises(TraceError, match=r"^forward failed in module '<root>' \(.*refuses\) "
                       r"before its first op at .*test_api.py:\d+ `raise ValueError"):
        trace(refuses, torch.randn(2))


@pytest.mark.parametrize("fold", [True, False])
def test_an_error_the_forward_catches_leaves_a_complete_graph(fold: bool) -> None:
    """The op that raised is noted, but the forward went on: its never-called modules are
    listed whether or not the graph is folded."""
    with torch.device("meta"):
        model = Layered("caught")
    graph = trace(model, torch.empty(2, 8, device="meta"), fold=fold)
    called = {m.path: m.called for m in graph.walk_modules()}
    assert (called["head"], called["unused"]) == (True, False)
    assert graph.modules[graph.root].stats.params == 3 * 72 + 18 + 72


class Spread(torch.nn.Module):
    """Inputs of every kind: positional, ``*extra``, keyword-only, ``**named``."""

    def forward(self, x: torch.Tensor, *extra: torch.Tensor, scale: float = 1.0,
                **named: torch.Tensor) -> torch.Tensor:
        for other in (*extra, *named.values()):
            x = x + other
        return x * scale


def _inputs(graph: Graph) -> list[str]:
    return [n.name for n in graph.nodes.values() if n.kind == "input"]


def test_inputs_are_named_after_the_forward_s_parameters() -> None:
    a, b, c, d, e = (torch.randn(2) for _ in range(5))
    graph = trace(Spread(), a, b, c, zeta=d, alpha=e, scale=2.0)
    assert _inputs(graph) == ["x", "extra[0]", "extra[1]", "alpha", "zeta"]  # **: by name
    # a builtin has no signature to bind: positions, then the keywords by name
    graph = trace(torch.lerp, a, weight=torch.rand(2), end=b)
    assert _inputs(graph) == ["input 0", "end", "weight"]


def test_the_weights_or_any_input_on_meta_make_a_meta_trace() -> None:
    """On meta: floats keep only shapes and integers are made concrete by the policy."""

    class Table(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            with torch.device("meta"):
                self.proj = torch.nn.Linear(4, 4)
            self.register_buffer("scale", torch.ones(4))  # on the CPU, beside meta weights

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.proj(x)

    def devices(graph: Graph) -> tuple[str, str]:
        return graph.meta["device"], graph.meta["routing"]["policy"]

    meta_weights = trace(Table(), torch.randn(2, 4))
    assert devices(meta_weights) == ("meta", "balanced")
    assert {t.device for t in meta_weights.tensors.values()} == {"meta", "cpu"}
    assert devices(trace(torch.nn.ReLU(), torch.randn(2))) == ("cpu", "real")  # no weights
    assert devices(trace(torch.relu, torch.randn(2))) == ("cpu", "real")
    assert devices(trace(torch.relu, torch.empty(2, device="meta"))) == ("meta", "balanced")
    assert devices(trace(torch.nn.Linear(2, 2), torch.empty(2, device="meta"))) == (
        "meta", "balanced")


def test_a_model_built_on_meta_with_a_weight_on_the_cpu_is_traced_on_meta() -> None:
    """``torch.FloatTensor(n)`` ignores the default device, so a model built under
    ``torch.device("meta")`` can hold a CPU weight first (XLNet's ``mask_emb``): its other
    weights have no values, and it is traced on meta, counting as a real run does."""

    class LegacyFirst(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.offset = torch.nn.Parameter(torch.FloatTensor(4).zero_())  # on the CPU
            self.proj = torch.nn.Linear(4, 8)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.proj(x + self.offset)

    with torch.device("meta"):
        mixed = LegacyFirst()
    assert [p.device.type for p in mixed.parameters()] == ["cpu", "meta", "meta"]
    graph = trace(mixed, torch.randn(3, 4))
    real = trace(LegacyFirst(), torch.randn(3, 4))
    assert (graph.meta["device"], real.meta["device"]) == ("meta", "cpu")
    assert graph.meta["totals"] == real.meta["totals"]
    (output,) = (node for node in graph.nodes.values() if node.kind == "output")
    assert graph.tensors[output.inputs[0]].shape == [3, 8]


def test_integer_inputs_on_the_cpu_keep_their_values_in_a_meta_trace() -> None:
    """Token ids given on the CPU are used as they are; on meta they have no values, so
    zeros stand in for them, and the trace says so."""

    def first_columns(h: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
        return h[:, :int(ids.max()) + 1]  # a width the ids' values decide

    h = torch.empty(2, 8, device="meta")
    given = trace(first_columns, h, torch.tensor([1, 4]))
    assert given.meta["assumptions"] == []
    assumed = trace(first_columns, h, torch.empty(2, dtype=torch.int64, device="meta"))
    kinds = [a["kind"] for a in assumed.meta["assumptions"]]
    assert "input" in kinds

    def width(graph: Graph) -> list[int]:
        (sink,) = [n for n in graph.nodes.values() if n.kind == "output"]
        return graph.tensors[sink.inputs[0]].shape

    assert (width(given), width(assumed)) == ([2, 5], [2, 1])
    ids = next(n for n in given.nodes.values() if n.name == "ids")
    assert given.tensors[ids.outputs[0]].device == "cpu"


def test_the_graph_names_its_model_torch_and_how_it_was_traced() -> None:
    graph = trace(TwoLayer(), torch.randn(3, 8), fold=False, trace_depth=1)
    version = graph.meta["torch"]
    assert torch.__version__.startswith(version) and "+" not in version
    assert version.count(".") == 2 and version.split(".")[0].isdigit()
    assert {k: graph.meta[k] for k in ("model", "device", "routing")} == {
        "model": "TwoLayer", "device": "cpu", "routing": {"policy": "real"}}
    assert graph.meta["options"]["fold"] is False and graph.meta["options"]["trace_depth"] == 1
    assert "tensor_parallel" not in graph.meta


def test_ops_without_a_flop_formula_are_listed_by_name() -> None:
    """In name order, not in the order they ran: the same model lists them alike."""
    x = torch.randn(5, 7)
    graph = trace(lambda a: (torch.fft.fft(a).real, torch.cdist(a, a)), x)
    assert list(graph.meta["flops_without_formula"].items()) == [
        ("aten::_cdist_forward", 1), ("aten::_fft_r2c", 1)]


def test_a_failure_after_assumed_values_lists_them_with_their_lines() -> None:
    def guesses(h: torch.Tensor) -> torch.Tensor:
        if (h > 0).any():  # a boolean of meta floats: assumed False
            h = h * 2
        return h / h.sum().item()

    with pytest.raises(TraceError) as caught:
        trace(guesses, torch.empty(4, device="meta"))
    message = str(caught.value)
    assert "; before it failed, the trace assumed values it did not have (" in message
    assert "zeros at 'gt' (" in message and "test_api.py:" in message.split("zeros at")[1]
    assert message.endswith("rather than on the meta device (in a fence, an `inputs:` "
                            "factory that returns them)")


def test_a_function_of_no_tensors_is_an_empty_graph_on_the_cpu() -> None:
    graph = trace(lambda: 3)
    assert (graph.nodes, graph.tensors, graph.meta["device"]) == ({}, {}, "cpu")
