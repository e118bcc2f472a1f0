"""Statistics at their edges: a drawn parameter costs its dtype's size, each stacked
parameter an op reads costs the share of its own slices it selected, an op that writes the
model's state is workspace as a whole; stacked experts no token chose are not activated, and
a module's second call or a module made inside the forward adds no parameters."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from model_trace.graph import Graph, ModuleCall, Node, Selection, Stats, Tensor
from model_trace.tracing import trace
from model_trace.tracing.stats import split_bytes


@pytest.mark.parametrize("dtype", [torch.float64, torch.complex128, torch.complex64,
                                   torch.float32, torch.int32, torch.bfloat16, torch.int16,
                                   torch.float8_e4m3fn, torch.bool, torch.uint8])
def test_a_drawn_parameter_costs_its_elements_times_its_dtypes_size(dtype: torch.dtype) -> None:
    class Holder(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.p = torch.nn.Parameter(torch.zeros(3, 5, dtype=dtype), requires_grad=False)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.p.clone()

    holder = Holder()
    graph = trace(holder, torch.zeros(1), parameters="nodes")
    (clone,) = (n for n in graph.nodes.values() if n.kind == "op")
    assert clone.stats.weight_bytes == holder.p.numel() * holder.p.element_size()


def _graph(node: Node, tensors: list[Tensor]) -> Graph:
    root = ModuleCall("m0", "", "Experts", None, children=[node.id])
    return Graph(root="m0", modules={"m0": root}, nodes={node.id: node},
                 tensors={t.id: t for t in tensors}, edges=[])


class Stacked(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(4, 8, 2))  # 256 bytes, 4 slices
        self.v = torch.nn.Parameter(torch.zeros(4, 2, 2))  # 64 bytes, 4 slices


def test_each_stacked_parameter_costs_the_share_of_its_own_slices_an_op_selected() -> None:
    node = Node("n0", "op", "grouped_mm", "matmul", "m0", inputs=["t0"], outputs=["t1"],
                params=["w", "v"], stats=Stats(activation_bytes=32),
                selections=[Selection("w", 4, [1], [3]),
                            Selection("v", 4, [0, 1, 2, 3], [3, 3, 3, 3], whole=True)])
    graph = _graph(node, [Tensor("t0", [3, 2], "float32", "meta", None),
                          Tensor("t1", [3, 8], "float32", "meta", "n0")])
    split_bytes(graph, {"m0": Stacked()}, frozenset())
    assert node.stats.weight_bytes == 256 // 4 + 64
    assert (node.stats.activation_bytes, node.stats.workspace_bytes) == (32, 0)


def test_an_op_that_writes_the_models_state_is_workspace_as_a_whole() -> None:
    node = Node("n0", "op", "update_cache", "memory", "m0", inputs=["t0"],
                outputs=["t1", "t2"], stats=Stats(activation_bytes=48))
    graph = _graph(node, [Tensor("t0", [3, 2], "float32", "meta", None),
                          Tensor("t1", [3, 2], "float32", "meta", "n0"),
                          Tensor("t2", [3, 2], "float32", "meta", "n0")])
    split_bytes(graph, {}, frozenset({"t2"}))  # its second output is the cache
    assert (node.stats.activation_bytes, node.stats.workspace_bytes) == (0, 48)
    other = Node("n0", "op", "add", "math", "m0", inputs=["t0"], outputs=["t1", "t2"],
                 stats=Stats(activation_bytes=48))
    split_bytes(_graph(other, list(graph.tensors.values())), {}, frozenset())
    assert (other.stats.activation_bytes, other.stats.workspace_bytes) == (48, 0)


class StackedMoe(nn.Module):
    """Four experts stored as one parameter, one chosen per token by indexing it."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = nn.Linear(8, 4, bias=False)
        self.w = nn.Parameter(torch.zeros(4, 8, 8))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        chosen = self.gate(x).topk(1, dim=-1).indices[:, 0]
        return torch.einsum("td,tde->te", x, self.w[chosen])


@pytest.mark.parametrize("routing", ["first", "balanced"])
def test_stacked_experts_activate_one_expert_per_token_whoever_gets_the_tokens(
        routing: str) -> None:
    with torch.device("meta"):
        moe = StackedMoe()
    graph = trace(moe, torch.zeros(6, 8, device="meta"), routing=routing, fold=False)
    root = graph.modules[graph.root]
    assert root.stats.params == 32 + 256
    assert root.stats.activated_params == 32 + 256 // 4  # the gate and one expert in four
    assert graph.meta["totals"]["activated_params"] == 32 + 64
    (load,) = graph.meta["experts"].values()
    tokens = load["tokens"]
    assert sum(tokens) == 6 and (tokens == [6, 0, 0, 0]) == (routing == "first")


def test_a_functions_modules_read_their_weights_and_count_as_a_models_do() -> None:
    """A plain function calling a module: the module is outside any model, named after its
    class, and its weights are parameters (not constants), so the stacked experts no token
    chose are not activated, exactly as when the module itself is traced."""
    with torch.device("meta"):
        moe = StackedMoe()
    x = torch.zeros(6, 8, device="meta")

    def step(tokens: torch.Tensor) -> torch.Tensor:
        return moe(tokens) * 2

    as_function = trace(step, x, routing="balanced", fold=False)
    as_model = trace(moe, x, routing="balanced", fold=False)
    read = sorted(name for node in as_function.nodes.values() for name in node.params)
    assert read == ["StackedMoe.gate.weight", "StackedMoe.w"]
    assert not any(n.kind == "constant" for n in as_function.nodes.values())
    for figure in ("params", "activated_params", "weight_bytes", "flops"):
        assert as_function.meta["totals"][figure] == as_model.meta["totals"][figure], figure
    assert as_function.meta["totals"]["activated_params"] == 32 + 256 // 4


class Twice(nn.Module):
    """One layer called twice, and a layer made inside the forward (not the model's)."""

    def __init__(self) -> None:
        super().__init__()
        self.layer = nn.Linear(4, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        made_here = nn.Linear(4, 4)
        return made_here(self.layer(self.layer(x)))


def test_parameters_count_once_at_a_modules_first_call_and_only_the_models() -> None:
    model = Twice()
    graph = trace(model, torch.zeros(2, 4), fold=False)
    calls = [m for m in graph.modules.values() if m.path == "layer"]
    assert [(c.call_index, c.stats.params, c.stats.activated_params) for c in calls] == [
        (0, 20, 20), (1, 0, 0)]
    total = sum(p.numel() for p in model.parameters())
    root = graph.modules[graph.root]
    assert root.stats.params == root.stats.activated_params == total == 20


class NamedLikeAClass(nn.Module):
    """A child called ``Linear``, and a layer of that class made inside the forward."""

    def __init__(self) -> None:
        super().__init__()
        self.Linear = nn.Linear(4, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.Linear(4, 2)(self.Linear(x))


def test_a_layer_made_in_the_forward_is_never_named_as_a_module_of_the_model() -> None:
    """The made layer is named after its class unless the model has a module at that path:
    then it is ``Linear#2``, not a second call of the model's ``Linear``, and its weights
    are not the model's."""
    graph = trace(NamedLikeAClass(), torch.zeros(3, 4), fold=False)
    calls = [(c.path, c.call_index) for c in graph.modules.values() if c.path]
    assert calls == [("Linear", 0), ("Linear#2", 0)]
    reads = [node.params for node in graph.nodes.values() if node.name == "linear"]
    assert reads == [["Linear.weight", "Linear.bias"], ["Linear#2.weight", "Linear#2.bias"]]
    assert graph.modules[graph.root].stats.params == 20
    assert graph.meta["totals"]["activated_params"] == 20


class RoutedAndStacked(nn.Module):
    """A routed group of expert modules beside a stacked MoE: both are expert loads."""

    def __init__(self) -> None:
        super().__init__()
        self.experts = nn.ModuleList(nn.Linear(8, 8) for _ in range(3))
        self.moe = StackedMoe()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        routed = self.experts[0](x[torch.tensor([0, 1])]).sum() \
            + self.experts[2](x[torch.tensor([2])]).sum()
        return self.moe(x).sum() + routed


def test_routed_groups_and_stacked_experts_are_both_listed_with_their_loads() -> None:
    graph = trace(RoutedAndStacked(), torch.randn(6, 8), fold=False)
    experts = graph.meta["experts"]
    assert list(experts) == ["experts", "moe"]
    assert experts["experts"]["tokens"] == [2, 0, 1]
    assert sum(experts["moe"]["tokens"]) == 6 and experts["moe"]["stacked"] == ["w"]
