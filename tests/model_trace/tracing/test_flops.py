"""FLOPs from torch's formulas: linear layers, matrix products, formulas torch lacks."""

from __future__ import annotations

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from model_trace.tracing import register_flop_formula, trace


@pytest.mark.parametrize(("shape", "m"), [((5, 12), 5), ((2, 7, 12), 14), ((12,), 1)])
def test_a_linear_layer_costs_2_m_n_k(shape: tuple[int, ...], m: int) -> None:
    """m rows (every leading dimension), k inputs, n outputs; the bias add counts 0."""
    n, k = 9, 12
    with torch.device("meta"):
        layer, x = torch.nn.Linear(k, n), torch.empty(shape)
    graph = trace(layer, x)
    (linear,) = (node for node in graph.nodes.values() if node.name == "linear")
    assert linear.stats.flops == 2 * m * n * k
    assert graph.meta["totals"]["flops"] == 2 * m * n * k


def test_matrix_products_count_as_torch_counts_them() -> None:
    """matmul, einsum and bmm go through torch's own registry: the totals of torch's
    FlopCounterMode on the same real computation."""

    def attention_scores(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        scores = torch.einsum("bhsd,bhtd->bhst", q, k).softmax(-1)
        return torch.bmm(scores.flatten(0, 1), v.flatten(0, 1)) @ torch.ones(16, 3)

    q, k, v = torch.randn(2, 4, 5, 16), torch.randn(2, 4, 7, 16), torch.randn(2, 4, 7, 16)
    with FlopCounterMode(display=False) as counter:
        attention_scores(q, k, v)
    graph = trace(attention_scores, q, k, v)
    flops = {node.name: node.stats.flops for node in graph.nodes.values() if node.kind == "op"}
    assert flops["einsum"] == 2 * 2 * 4 * 5 * 7 * 16
    assert flops["bmm"] == 2 * 8 * 5 * 7 * 16
    assert flops["matmul"] == 2 * 8 * 5 * 16 * 3
    assert flops["softmax"] == 0  # elementwise, as in torch
    assert graph.meta["totals"]["flops"] == counter.get_total_flops()
    meta = trace(attention_scores, q.to("meta"), k.to("meta"), v.to("meta"))
    assert meta.meta["totals"]["flops"] == counter.get_total_flops()  # no values needed


def test_a_registered_formula_counts_an_op_torch_has_none_for() -> None:
    library = torch.library.Library("model_trace_test", "DEF")
    library.define("scaled_outer(Tensor a, Tensor b) -> Tensor")

    def scaled_outer(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return torch.outer(a, b) * 2

    library.impl("scaled_outer", scaled_outer, "CompositeExplicitAutograd")
    library.impl("scaled_outer", lambda a, b: a.new_empty(a.shape[0], b.shape[0]), "Meta")
    op = torch.ops.model_trace_test.scaled_outer

    def outer(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return op(a, b)

    a, b = torch.empty(6, device="meta"), torch.empty(4, device="meta")
    assert trace(outer, a, b).meta["totals"]["flops"] == 0
    register_flop_formula("model_trace_test::scaled_outer",
                          lambda a, b, *_, **__: 2 * a.shape[0] * b.shape[0])
    graph = trace(outer, a, b)
    (node,) = (n for n in graph.nodes.values() if n.kind == "op")
    assert node.name == "scaled_outer" and node.stats.flops == 2 * 6 * 4
