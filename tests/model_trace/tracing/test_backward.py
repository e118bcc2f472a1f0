"""``graph: backward``: the autograd graph of a loss, node for node, in the forward's boxes."""

from __future__ import annotations

import gc
import html
import weakref
from collections import Counter
from typing import Any

import pytest
import torch
from torch import nn

from model_trace.caveats import build_notes
from model_trace.errors import SpecError, TraceError
from model_trace.graph import Graph
from model_trace.tracing.backward import (
    _Builder,
    _error_line,
    _GradFns,
    forward_op_of,
    trace_backward,
)
from model_trace.tracing.builder import REF_ATTRIBUTE
from model_trace.tracing.op_table import category_of, facts_of


class TwoLayers(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(16, 32)
        self.act = nn.ReLU()
        self.fc2 = nn.Linear(32, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


def _autograd_graph(loss: torch.Tensor, names: dict[int, str]) -> tuple[Counter, Counter]:
    """torch's own graph from ``loss.grad_fn``: node names (a leaf's AccumulateGrad as
    ``grad <parameter>``) and (from, to) pairs, each counted."""
    nodes: Counter = Counter()
    edges: Counter = Counter()
    seen: set[int] = set()
    stack: list[Any] = [loss.grad_fn]

    def name(fn: torch.autograd.graph.Node) -> str:
        if fn.name().endswith("AccumulateGrad"):
            return f"grad {names[id(fn.variable)]}"
        return fn.name()

    while stack:
        fn = stack.pop()
        if id(fn) in seen:
            continue
        seen.add(id(fn))
        nodes[name(fn)] += 1
        for target, _ in fn.next_functions:
            if target is not None:
                edges[(name(fn), name(target))] += 1
                stack.append(target)
    return nodes, edges


def _drawn(graph: Graph) -> tuple[Counter, Counter]:
    ops = {n.id: (f"grad {n.params[0]}" if n.kind == "output" else n.name)
           for n in graph.nodes.values() if n.kind in ("op", "output")}
    nodes = Counter(ops.values())
    edges = Counter((ops[e.src], ops[e.dst]) for e in graph.edges
                    if e.src in ops and e.dst in ops)
    return nodes, edges


@pytest.mark.parametrize("device", ["cpu", "meta"])
def test_two_layer_mlp_matches_torch_autograd_graph_node_for_node(device: str) -> None:
    torch.manual_seed(0)
    model = TwoLayers().to(device)
    x = torch.randn(8, 16, device=device)
    graph = trace_backward(model, x, fold=False)
    loss = model(x).sum()
    names = {id(p): name for name, p in model.named_parameters()}
    assert _drawn(graph) == _autograd_graph(loss, names)
    assert graph.meta["graph"] == "backward" and graph.meta["loss"] == "sum of outputs"


def test_backward_ops_sit_in_the_module_of_the_op_they_differentiate() -> None:
    graph = trace_backward(TwoLayers(), torch.randn(8, 16), fold=False)
    path = {n.name + "@" + graph.modules[n.parent].path for n in graph.nodes.values()}
    assert {"AddmmBackward0@fc1", "AddmmBackward0@fc2", "ReluBackward0@act",
            "SumBackward0@"} <= path
    # F.linear's weight transpose is inside the linear op: it goes where its gradient is
    assert {"TBackward0@fc1", "TBackward0@fc2"} <= path
    # parameters' gradients are outputs, in the module that owns them
    outputs = {(n.name, n.params[0], graph.modules[n.parent].path)
               for n in graph.nodes.values() if n.kind == "output"}
    assert outputs == {("grad weight", "fc1.weight", "fc1"), ("grad bias", "fc1.bias", "fc1"),
                       ("grad weight", "fc2.weight", "fc2"), ("grad bias", "fc2.bias", "fc2")}
    # the seed is the loss, a scalar
    seed = next(n for n in graph.nodes.values() if n.kind == "input")
    assert seed.name == "loss" and graph.tensors[seed.outputs[0]].shape == []


def test_saved_tensors_are_sources_with_the_memory_they_keep() -> None:
    graph = trace_backward(TwoLayers(), torch.randn(8, 16), fold=False)
    saved = {(n.name, graph.modules[n.parent].path): n for n in graph.nodes.values()
             if n.category == "saved"}
    assert all(n.kind == "constant" for n in saved.values())
    # ReLU keeps its output (8 x 32 floats), and fc2 keeps its input: the same tensor, drawn
    # in each module that reads it, its memory counted once
    relu, fc2 = saved[("saved relu", "act")], saved[("saved relu", "fc2")]
    assert graph.tensors[relu.outputs[0]].shape == graph.tensors[fc2.outputs[0]].shape == [8, 32]
    assert relu.stats.activation_bytes + fc2.stats.activation_bytes == 8 * 32 * 4
    for node, user in ((relu, "ReluBackward0"), (fc2, "AddmmBackward0")):
        assert [graph.nodes[e.dst].name for e in graph.edges if e.src == node.id] == [user]
    # fc1 keeps the model's input for its weight's gradient
    assert graph.tensors[saved[("saved x", "fc1")].outputs[0]].shape == [8, 16]


def test_gradients_carry_the_shapes_they_differentiate_and_flops_are_counted() -> None:
    graph = trace_backward(TwoLayers(), torch.randn(8, 16), fold=False)
    into = {graph.nodes[e.dst].params[0]: graph.tensors[e.tensor].shape for e in graph.edges
            if graph.nodes[e.dst].kind == "output"}
    assert into["fc1.bias"] == [32] and into["fc2.bias"] == [4]
    assert into["fc1.weight"] == [32, 16]
    addmm = [n for n in graph.nodes.values() if n.name == "AddmmBackward0"]
    by_path = {graph.modules[n.parent].path: n.stats.flops for n in addmm}
    # fc2: grad of its input (8x4 @ 4x32) and of its weight (32x8 @ 8x4); fc1: weight only
    assert by_path == {"fc2": 2 * (2 * 8 * 4 * 32), "fc1": 2 * 8 * 32 * 16}
    assert graph.modules[graph.root].stats.flops >= sum(by_path.values())


def test_gradients_of_ops_counted_as_zero_flops_count_zero_too() -> None:
    """Layer norm, softmax and select count 0 FLOPs in the forward by the op table's
    convention, and so do their gradients: nothing is left without a formula."""
    layer = nn.TransformerEncoderLayer(32, 4, 64, batch_first=True)
    graph = trace_backward(layer, torch.randn(2, 8, 32))
    names = {n.name for n in graph.nodes.values()}
    assert {"NativeLayerNormBackward0", "SelectBackward0"} <= names
    assert graph.meta["flops_without_formula"] == {}


def test_the_backward_graph_folds_repeated_layers() -> None:
    model = nn.Sequential(*[nn.Sequential(nn.Linear(8, 8), nn.Tanh()) for _ in range(4)])
    graph = trace_backward(model, torch.randn(2, 8))
    folded = [m for m in graph.modules.values() if m.repeat is not None]
    assert folded and folded[0].repeat.count >= 3


def test_a_loss_function_and_the_errors_of_a_model_without_a_graph() -> None:
    model = TwoLayers()
    graph = trace_backward(model, torch.randn(8, 16), loss=lambda y: (y ** 2).mean(),
                           fold=False)
    names = {n.name for n in graph.nodes.values()}
    assert {"MeanBackward0", "PowBackward0"} <= names
    with pytest.raises(TraceError, match="scalar"):
        trace_backward(model, torch.randn(8, 16), loss=lambda y: y)
    frozen = TwoLayers().requires_grad_(False)
    with pytest.raises(TraceError, match="depends on a parameter"):
        trace_backward(frozen, torch.randn(8, 16))


def test_a_fence_draws_the_backward_graph_and_refuses_a_stray_loss() -> None:
    from model_trace.pipeline import run_fence, trace_spec
    from model_trace.spec import parse_spec

    spec = parse_spec("model: torch.nn:TransformerEncoderLayer\n"
                      "args: {d_model: 32, nhead: 4, dim_feedforward: 64, batch_first: true}\n"
                      "inputs: [[2, 8, 32]]\ngraph: backward\n").with_defaults(
        depth=1, routing="balanced", export=())
    output = run_fence(spec)
    assert "NativeLayerNormBackward0" in output.html and "linear1.weight" in output.html
    with pytest.raises(SpecError, match="graph: backward"):
        trace_spec(parse_spec("model: torch.nn:Linear\nargs: {in_features: 2, "
                              "out_features: 2}\ninputs: [[1, 2]]\nloss: a.b:c"))
    zoo = parse_spec("model: deepseek-v3\nconfig: tiny\ngraph: backward\n").with_defaults(
        depth=1, routing="balanced", export=())
    with pytest.raises(TraceError, match="inference_mode"):
        trace_spec(zoo)


def test_calls_sum_their_parts_list_saved_tensors_first_and_leave_no_hooks() -> None:
    model = TwoLayers()
    graph = trace_backward(model, torch.randn(8, 16), fold=False)
    assert not model._forward_hooks and not model._forward_pre_hooks
    nodes = graph.nodes.values()
    root = graph.modules[graph.root].stats
    assert root.activation_bytes == sum(n.stats.activation_bytes for n in nodes) > 0
    assert root.flops == sum(n.stats.flops for n in nodes) > 0
    assert {k: graph.meta["totals"][k] for k in ("flops", "activation_bytes")} == {
        "flops": root.flops, "activation_bytes": root.activation_bytes}

    def calls_around(node_parent: str | None) -> list[str]:
        calls = []
        while node_parent is not None:
            calls.append(node_parent)
            node_parent = graph.modules[node_parent].parent
        return calls

    for call in graph.modules.values():  # each call: the nodes inside it, at any depth
        inside = [n for n in nodes if call.id in calls_around(n.parent)]
        assert call.stats.flops == sum(n.stats.flops for n in inside), call.path
        assert call.stats.activation_bytes == sum(n.stats.activation_bytes for n in inside)
    mixed = 0
    for call in graph.modules.values():  # equal layers list equal children
        kinds = [graph.nodes[c].kind == "constant" for c in call.children if c in graph.nodes]
        assert kinds == sorted(kinds, reverse=True), call.path
        mixed += len(set(kinds)) == 2
    assert mixed >= 2  # fc1 and fc2 hold saved tensors and backward ops


def test_a_parameter_s_gradient_sits_in_its_owner_even_when_read_outside_it() -> None:
    class Inner(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(16, 16)
            self.scale = nn.Parameter(torch.ones(16))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.fc(x)

    class Outer(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.inner = Inner()

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.inner(x) * self.inner.scale  # read by the parent's own op

    graph = trace_backward(Outer(), torch.randn(8, 16), fold=False)
    outputs = {(n.name, n.params[0], graph.modules[n.parent].path)
               for n in graph.nodes.values() if n.kind == "output"}
    assert ("grad scale", "inner.scale", "inner") in outputs
    (mul,) = (n for n in graph.nodes.values() if n.name == "MulBackward0")
    assert graph.modules[mul.parent].path == ""  # where its gradient comes from


def test_a_backward_op_without_a_formula_is_named_on_its_node_and_in_the_graph() -> None:
    class Distances(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(4, 4)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.cdist(self.fc(x), x)

    graph = trace_backward(Distances(), torch.randn(3, 4), fold=False)
    assert graph.meta["flops_without_formula"] == {"aten::_cdist_backward": 1}
    assert [(n.name, n.uncounted_flops) for n in graph.nodes.values() if n.uncounted_flops] == [
        ("CdistBackward0", ["aten::_cdist_backward"])]


def test_an_op_that_returns_a_parameter_unchanged_still_places_its_new_output() -> None:
    """``atleast_2d(table, x)`` hands the 2-D parameter back as it is (no recorded id) beside
    a new view of ``x``: the view's backward sits in the module whose op made it, and the
    tensor it keeps is named after that op."""

    class Lift(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.table = nn.Parameter(torch.randn(2, 16))

        def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            table, row = torch.atleast_2d(self.table, x)
            assert table is self.table
            return table, row

    class Model(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lift = Lift()

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            table, row = self.lift(x)
            return table * row

    graph = trace_backward(Model(), torch.randn(16, requires_grad=True), fold=False)
    placed = sorted((n.name, graph.modules[n.parent].path) for n in graph.nodes.values())
    assert placed == [("MulBackward0", ""), ("SumBackward0", ""),
                      ("UnsqueezeBackward0", "lift"), ("grad input", "lift"),
                      ("grad table", "lift"), ("loss", ""), ("saved atleast_2d", ""),
                      ("saved table", "")]


class _Canary:
    """Hangs on an autograd node (its ``metadata``): alive exactly as long as the node."""


def test_the_watcher_keeps_what_it_noted_alive_so_each_id_names_one_object() -> None:
    """The watcher's maps are keyed by ``id()``: a tensor or autograd node freed after it
    was noted would leave its id to the next object made at its address (a weight's
    transpose that ``F.linear`` saves, drawn as "saved mul"), so it keeps them all, also
    a view's node that autograd replaces after its base changed in place."""
    watcher = _GradFns()
    base = torch.ones(2, 3, requires_grad=True) * 1
    view = base[0]
    setattr(view, REF_ATTRIBUTE, (object(), "t7"))
    canary = _Canary()
    view.grad_fn.metadata["canary"] = canary
    node_alive, tensor_alive = weakref.ref(canary), weakref.ref(view)
    del canary
    watcher.note((torch.ones(3), [view]))  # a tensor without a recorded id comes first
    assert watcher.objects == {id(view): "t7"}
    assert watcher.made_by == {(id(view.grad_fn), 0): "t7"}
    base.add_(1)
    assert view.grad_fn.name() == "AsStridedBackward0"  # the noted node is let go of
    del view, base
    gc.collect()
    assert tensor_alive() is not None and node_alive() is not None


def test_a_backward_that_fails_leaves_its_flops_uncounted_and_says_why() -> None:
    class NoGradient(torch.autograd.Function):
        @staticmethod
        def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:
            return x * 2

        @staticmethod
        def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
            raise NotImplementedError("no gradient for this function. Ask its author\nor not")

    class Model(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(4, 4)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return NoGradient.apply(self.fc(x))

    graph = trace_backward(Model(), torch.randn(3, 4), fold=False)
    assert graph.meta["backward_error"] == "NotImplementedError: no gradient for this function."
    assert graph.meta["flops_without_formula"] == {}  # not an op without a formula
    assert build_notes(graph) == [
        "Backward FLOPs not counted: running the backward on the cpu device failed "
        "(NotImplementedError: no gradient for this function.), so only the gradient ops that "
        "ran before the failure are counted (the graph is drawn all the same). To count them, "
        "draw a part of the model whose backward runs (`model:`), or give the failing op a "
        "meta kernel (torch.library.register_fake)."]
    names = {n.name for n in graph.nodes.values()}
    assert {"NoGradientBackward", "AddmmBackward0"} <= names  # drawn all the same
    # the run stopped in the first node: nothing after it ran, so nothing was counted
    assert graph.meta["totals"]["flops"] == 0


class BagOfWords(nn.Module):
    """A text classifier with a sparse embedding table (sparse gradients, as SGD and
    SparseAdam take them): its backward builds a sparse tensor from the token ids, which are
    concrete on the CPU in a meta trace, and values on the meta device, which torch refuses."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(100, 8, sparse=True)
        self.head = nn.Linear(8, 3)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.head(self.embed(tokens).mean(dim=1))


def test_a_backward_that_fails_on_meta_is_its_own_caveat_and_counts_what_ran() -> None:
    tokens = torch.tensor([[1, 5, 7, 9, 2], [3, 3, 8, 0, 4]])
    on_cpu = trace_backward(BagOfWords(), tokens, fold=False)
    assert "backward_error" not in on_cpu.meta  # the model's backward is fine
    with torch.device("meta"):
        model = BagOfWords()
    graph = trace_backward(model, tokens, fold=False)
    error = "RuntimeError: backend of indices (CPU) must match backend of values (Meta)"
    assert graph.meta["backward_error"] == error
    assert graph.meta["flops_without_formula"] == {}
    (note,) = build_notes(graph)
    assert note.startswith(f"Backward FLOPs not counted: running the backward on the meta "
                           f"device failed ({error}), so only the gradient ops that ran "
                           "before the failure are counted")
    # drawn as on the CPU; the head's gradients ran before the embedding's failed and count
    assert _drawn(graph) == _drawn(on_cpu)

    def flops(g: Graph) -> dict[str, int]:
        return {n.name: n.stats.flops for n in g.nodes.values() if n.kind == "op"}

    assert flops(graph)["AddmmBackward0"] == flops(on_cpu)["AddmmBackward0"] == 2 * 2 * 3 * 8 * 2
    assert graph.meta["totals"]["flops"] == flops(graph)["AddmmBackward0"]


def test_a_failed_backward_is_told_under_the_summary_table_and_in_the_build_log() -> None:
    from model_trace.pipeline import run_fence
    from model_trace.spec import parse_spec

    spec = parse_spec("model: torch.nn:Embedding\n"
                      "args: {num_embeddings: 100, embedding_dim: 8, sparse: true}\n"
                      "inputs: [{shape: [2, 5], dtype: int64}]\ngraph: backward\nsummary: 1\n"
                      ).with_defaults(depth=1, routing="balanced", export=())
    output = run_fence(spec)
    (note,) = output.notes  # what the build logs
    assert note.startswith("Backward FLOPs not counted: running the backward on the meta "
                           "device failed (RuntimeError: backend of indices (CPU) must match")
    assert f'<p class="model-trace-caveat">{html.escape(note)}</p>' in output.html
    assert "lower bound" not in output.html  # no op is said to lack a formula


def test_a_failure_s_message_is_its_first_sentence_without_memory_addresses() -> None:
    error = TypeError(f"cannot pack {object()}. Try again\nwith a tensor")
    assert _error_line(error) == "TypeError: cannot pack <object object at 0x…>."


class Blocks(nn.Module):
    """A linear layer on 3-D input (its inner product, transpose and views have no op of
    their own in the forward), a layer norm, a view and a transpose, softmax and a cast."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(8, 12)
        self.norm = nn.LayerNorm(12)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.norm(self.fc(x)).view(2, 3, 2, 12).transpose(1, 3)
        return torch.softmax(h, -1).to(torch.float64)


# The forward op each of Blocks' gradient ops differentiates, as the op table names it.
_FORWARD_OPS = {"AddmmBackward0": "addmm", "TBackward0": "t", "ViewBackward0": "view",
                "UnsafeViewBackward0": "unsafe_view", "MmBackward0": "mm",
                "NativeLayerNormBackward0": "layer_norm", "TransposeBackward0": "transpose",
                "SoftmaxBackward0": "softmax", "ToCopyBackward0": "to", "SumBackward0": "sum"}


@pytest.mark.parametrize(("autograd", "op", "category"), [
    ("NativeLayerNormBackward0", "native_layer_norm", "norm"),
    ("ToCopyBackward0", "to_copy", "elementwise"),
    ("SafeSoftmaxBackward0", "safe_softmax", "activation"),
    ("AddmmBackward0", "addmm", "matmul"), ("MmBackward0", "mm", "matmul"),
    ("TBackward0", "t", "shape"), ("UnsafeViewBackward0", "unsafe_view", "shape"),
    ("ReshapeAliasBackward0", "reshape_alias", "shape"), ("MulBackward1", "mul", "elementwise"),
    ("MaxPool2DWithIndicesBackward0", "max_pool2d_with_indices", "reduce"),
    ("Log1PBackward0", "log1p", "elementwise"), ("SliceBackward0", "slice", "index"),
    ("CopyBackwards", "copy_", "shape"), ("torch::autograd::CopySlices", "copy_", "shape"),
    ("ScaledDotProductFlashAttentionForCpuBackward0",
     "scaled_dot_product_flash_attention_for_cpu", "matmul")])
def test_an_autograd_name_reads_as_the_op_it_differentiates(autograd: str, op: str,
                                                            category: str) -> None:
    assert forward_op_of(autograd) == op
    assert category_of(op) == category


@pytest.mark.parametrize("device", ["cpu", "meta"])
def test_every_gradient_op_is_drawn_in_the_family_of_the_op_it_differentiates(
        device: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """With or without a forward op to take it from (the inner ops of ``F.linear`` have
    none), a gradient op's family is its forward op's: never ``other``; the label stays the
    autograd node's name."""
    torch.manual_seed(0)
    model, x = Blocks().to(device), torch.randn(2, 6, 8, device=device)
    graph = trace_backward(model, x, fold=False)
    ops = [n for n in graph.nodes.values() if n.kind == "op"]
    assert {n.name for n in ops} <= set(_FORWARD_OPS)
    assert {"NativeLayerNormBackward0", "ToCopyBackward0", "SoftmaxBackward0", "TBackward0",
            "TransposeBackward0"} <= {n.name for n in ops}
    assert all(n.category != "other" for n in ops), [(n.name, n.category) for n in ops]
    # the ops F.linear runs inside: their own family, not the linear layer's
    inner = {n.name: n.category for n in ops if n.name in ("AddmmBackward0", "TBackward0")}
    assert inner == {"AddmmBackward0": "matmul", "TBackward0": "shape"}
    # every node, read from its name alone, is in its forward op's family
    monkeypatch.setattr(_Builder, "_forward_node", lambda self, fn: None)
    by_name = trace_backward(model, x, fold=False)
    drawn = {(n.name, n.category) for n in by_name.nodes.values() if n.kind == "op"}
    assert drawn == {(name, facts_of(_FORWARD_OPS[name]).category)
                     for name in {n.name for n in ops}}


class Slices(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(8, 16)
        self.fc2 = nn.Linear(2, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.fc1(x)
        picked = h[torch.tensor([2, 0])]
        return self.fc2(h[:, 1:3]).sum() + h.select(1, 0).sum() + picked.narrow(1, 4, 2).sum()


@pytest.mark.parametrize("device", ["cpu", "meta"])
def test_the_gradients_of_slicing_and_selecting_move_data_and_count_no_flops(
        device: str) -> None:
    """Slicing's gradient writes the slice into zeros (``slice_backward``), selecting's and
    narrowing's too: nothing to count and nothing left without a formula. What is counted is
    the matrix products: fc2's input and weight gradients, fc1's weight gradient (x needs
    none)."""
    model, x = Slices().to(device), torch.randn(4, 8, device=device)
    graph = trace_backward(model, x, fold=False)
    names = {n.name for n in graph.nodes.values()}
    assert {"SliceBackward0", "SelectBackward0", "IndexBackward0"} <= names
    assert graph.meta["flops_without_formula"] == {}
    assert not [n.name for n in graph.nodes.values() if n.uncounted_flops]
    fc2 = 2 * 4 * 3 * 2 + 2 * 3 * 4 * 2
    fc1 = 2 * 16 * 4 * 8
    assert graph.meta["totals"]["flops"] == fc1 + fc2
