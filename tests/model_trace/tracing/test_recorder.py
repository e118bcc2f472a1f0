"""What the recorder draws: ATen drill-down, torch functions traced into, in-place writes,
parameters and buffers, modules below ``module_depth``."""

from __future__ import annotations

import contextlib
import dataclasses
import inspect
from collections.abc import Callable
from typing import Any

import pytest
import torch

from model_trace import TraceError
from model_trace.graph import Graph
from model_trace.tracing import trace
from model_trace.tracing.options import TraceOptions
from model_trace.tracing.recorder import Recorder

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


def test_an_extra_repr_is_asked_of_modules_that_have_one_and_named_arguments_kept() -> None:
    """A class without its own ``extra_repr`` is not asked (``nn.Module``'s says nothing),
    an instance given one is; a class's forward replaced between traces names its own
    arguments (they are kept per function, for every trace of the process)."""

    class Scale(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x * 2

    class Outer(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.plain, self.told = Scale(), Scale()
            self.told.extra_repr = lambda: "factor=2"

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.told(self.plain(x))

    def renamed(self: torch.nn.Module, y: torch.Tensor) -> torch.Tensor:
        return y * 2

    model = Outer()
    graph = trace(model, torch.randn(2), fold=False)
    assert [(m.path, m.extra_repr) for m in graph.walk_modules()] == [
        ("", ""), ("plain", ""), ("told", "factor=2")]
    assert _input_names(model, "plain") == ["x"]
    Scale.forward = renamed  # type: ignore[method-assign]
    assert _input_names(model, "plain") == ["y"]


def _input_names(model: torch.nn.Module, path: str) -> list[str]:
    """The names a recording gives the inputs of the call of ``path``."""
    recorder = Recorder(model, "model", TraceOptions(), None)
    x = torch.randn(2)
    recorder.record_input("x", x)
    with recorder.recording():
        model(x)
    builder = recorder.builder
    call = next(m for m in builder.modules.values() if m.path == path)
    return [builder.input_names[call.id][t] for t in call.inputs]


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


def test_a_call_lists_each_tensor_handed_in_once_and_only_tensors_the_trace_made() -> None:
    """Self-attention hands one tensor in as query, key and value: the call lists it once.
    A tensor no op has made yet (a plain attribute, not a buffer) is no input of the call:
    it is drawn where an op inside first reads it."""
    class Sum(torch.nn.Module):
        def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
            return q + k + v

    class Outer(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.sum = Sum()
            self.table = torch.ones(2)

        def forward(self, a: torch.Tensor) -> torch.Tensor:
            return self.sum(a, a, self.table)

    graph = trace(Outer(), torch.randn(2), fold=False)
    root, inner = graph.walk_modules()
    assert inner.path == "sum" and inner.inputs == root.inputs and len(root.inputs) == 1
    (constant,) = (n for n in graph.nodes.values() if n.kind == "constant")
    assert constant.parent == inner.id


def test_a_forward_failing_between_ops_names_the_last_op_it_ran() -> None:
    class Boom(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            torch.relu(x)
            raise RuntimeError("boom")

    with pytest.raises(TraceError, match=r"in module '<root>' \(Boom\) after op 'relu' at "
                                         r".*test_recorder\.py:\d+ `raise RuntimeError\(\"boom"
                                         r"\"\)`: RuntimeError: boom"):
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


def test_rows_picked_by_an_assumed_mask_are_a_warning_naming_the_mask_origin() -> None:
    def pick(x: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
        return x[ids > 0]

    graph = trace(pick, torch.empty(8, 4, device="meta"),
                  torch.empty(8, dtype=torch.int64, device="meta"), fold=False)
    marks = {n.name: n.assumed for n in graph.nodes.values() if n.assumed}
    assert marks == {"ids": "input", "getitem": "rows"}
    given, rows = graph.meta["assumptions"]
    assert (given["kind"], given["op"]) == ("input", "ids")
    assert (rows["kind"], rows["op"], rows["warning"], rows["origin"]) == (
        "rows", "getitem", True, "input at 'ids'")
    assert rows["code"] == "return x[ids > 0]"


def test_a_value_made_from_two_assumed_ones_is_traced_back_to_the_first_it_read() -> None:
    def branches(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        total = b + a
        if total.any():
            return total * 2
        return total

    graph = trace(branches, torch.empty(3, dtype=torch.int64, device="meta"),
                  torch.empty(3, dtype=torch.int64, device="meta"), fold=False)
    (branch,) = (a for a in graph.meta["assumptions"] if a["kind"] == "branch")
    assert branch["origin"] == "input at 'b'" and branch["code"] == "if total.any():"
    assert {n.name: n.assumed for n in graph.nodes.values() if n.assumed} == {
        "a": "input", "b": "input", "any": "branch"}


def test_an_in_place_op_reads_its_other_inputs_and_writes_no_new_memory() -> None:
    def accumulate(y: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        y = y * 1
        y.add_(z[:, :2])
        return y

    graph = trace(accumulate, torch.empty(3, 2, device="meta"),
                  torch.empty(3, 4, dtype=torch.float64, device="meta"), fold=False)
    add = next(n for n in graph.nodes.values() if n.name == "add_")
    assert (add.stats.read_bytes, add.stats.activation_bytes) == (3 * 2 * 8, 0)
    assert all(n.stats.read_bytes >= 0 for n in graph.nodes.values())


class _Spectrum(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.fft.fft(x).real  # no FLOP formula for the FFT


@pytest.mark.parametrize("drawn", ["opaque", "aten"])
def test_an_op_without_a_flop_formula_is_named_on_the_node_that_ran_it(drawn: str) -> None:
    model = torch.nn.Sequential(torch.nn.Sequential(_Spectrum()), torch.nn.Linear(4, 4))
    options = {"module_depth": 1} if drawn == "opaque" else {"aten": True}
    graph = trace(model, torch.empty(3, 4, device="meta"), fold=False, **options)
    assert graph.meta["flops_without_formula"] == {"aten::_fft_r2c": 1}
    uncounted = [(n.name, n.uncounted_flops) for n in graph.nodes.values() if n.uncounted_flops]
    ran_it = "_Spectrum" if drawn == "opaque" else "aten::_fft_r2c"
    assert uncounted == [(ran_it, ["aten::_fft_r2c"])]


def _close(x: torch.Tensor) -> torch.Tensor:
    return torch.isclose(x, x * 2)


def _ends_in_a_constant(x: torch.Tensor) -> torch.Tensor:
    return torch.bucketize(x, torch.tensor([0.0, 1.0]))


@pytest.mark.parametrize(("model", "op"), [(_close, "isclose"),
                                           (_ends_in_a_constant, "bucketize")])
def test_an_aten_group_hands_out_what_its_last_aten_op_made(model: Callable[..., Any],
                                                           op: str) -> None:
    """On the meta device a boolean or integer result is replaced by concrete values (no
    ATen op made them): the group's last op produces them, not a source node its kernels
    read (bucketize's boundaries, moved to the meta device, are a constant drawn last)."""
    graph = trace(model, torch.empty(3, 5, device="meta"), aten=True, fold=False)
    (group,) = (c for c in graph.modules.values() if c.cls == op)
    ops = [graph.nodes[c] for c in group.children
           if c in graph.nodes and graph.nodes[c].kind == "op"]
    assert len(ops) >= 1 and group.outputs
    for tensor_id in group.outputs:
        assert graph.tensors[tensor_id].producer == ops[-1].id
    (output,) = (n for n in graph.nodes.values() if n.kind == "output")
    assert output.inputs == group.outputs


def test_an_op_whose_kernels_record_nothing_is_drawn_as_the_torch_op() -> None:
    """``new_tensor`` of a meta tensor runs no ATen op the drill-down sees: the op is drawn
    as itself, at its line, with no empty group around it."""

    def constant_plus(x: torch.Tensor) -> torch.Tensor:
        return x.new_tensor([3.0]) + x.sum()

    graph = trace(constant_plus, torch.empty(2, device="meta"), aten=True, fold=False)
    (made,) = (n for n in graph.nodes.values() if n.name == "new_tensor")
    assert made.parent == graph.root and made.outputs
    assert made.source is not None and made.source.code == \
        "return x.new_tensor([3.0]) + x.sum()"
    assert all(c.children for c in graph.modules.values() if c.kind == "function")
    assert [c.cls for c in graph.modules.values() if c.kind == "function"] == ["sum", "add"]


def test_an_observer_sees_each_recorded_op_with_its_module_path() -> None:
    seen: list[tuple[str, int, str, str]] = []

    def observe(op: str, args: tuple[Any, ...], kwargs: dict[str, Any], result: Any,
                path: str) -> None:
        seen.append((op, len(args), type(result).__name__, path))

    model = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.ReLU())
    trace(model, torch.randn(2, 4), observe=observe)
    assert seen == [("linear", 3, "Tensor", "0"), ("relu", 1, "Tensor", "1")]


class _Stop(BaseException):
    """Not an ``Exception``: torch's always-called forward hooks do not run for it."""


class _Quits(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        raise _Stop


class _Catches(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.quits = _Quits()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with contextlib.suppress(_Stop):
            self.quits(x)
        return x * 2


class _Outer(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.inner = _Catches()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner(x).relu()


def test_a_call_that_ends_without_its_inner_ones_ends_them_too() -> None:
    """The inner call never ran its exit hook: when its caller returns, both end, and the
    ops after them are recorded in the caller's caller."""
    graph = trace(_Outer(), torch.randn(2, 3), fold=False)
    relu = next(n for n in graph.nodes.values() if n.name == "relu")
    assert relu.parent == graph.root
    inner = next(c for c in graph.modules.values() if c.path == "inner")
    assert inner.outputs == relu.inputs
