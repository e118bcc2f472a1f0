"""FLOPs from torch's formulas: linear layers, matrix products, formulas torch lacks."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from model_trace.graph import Graph
from model_trace.tracing import register_flop_formula, trace
from model_trace.tracing.flops import FlopCounter, counts_no_flops

from .models import TwoLayer


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
    before = trace(outer, a, b)  # no formula: no FLOPs, and said so on the node and in meta
    assert before.meta["totals"]["flops"] == 0
    assert before.meta["flops_without_formula"] == {"model_trace_test::scaled_outer": 1}
    (node,) = (n for n in before.nodes.values() if n.kind == "op")
    assert node.uncounted_flops == ["model_trace_test::scaled_outer"]
    register_flop_formula("model_trace_test::scaled_outer",
                          lambda a, b, *_, **__: 2 * a.shape[0] * b.shape[0])
    graph = trace(outer, a, b)
    (node,) = (n for n in graph.nodes.values() if n.kind == "op")
    assert node.name == "scaled_outer" and node.stats.flops == 2 * 6 * 4
    assert node.uncounted_flops == [] and graph.meta["flops_without_formula"] == {}


def _op_flops(graph: Graph) -> dict[str, int]:
    return {node.name: node.stats.flops for node in graph.nodes.values() if node.kind == "op"}


def test_grouped_and_batched_products_count_2_m_n_k() -> None:
    """Stacked experts multiply through grouped_mm (rows split by offsets, one weight slice
    per group), bmm, baddbmm or einsum: each counts 2 flops per multiply-add."""
    rows, k, n, groups = 12, 16, 8, 3
    x = torch.empty(rows, k, dtype=torch.bfloat16, device="meta")
    weights = torch.empty(groups, k, n, dtype=torch.bfloat16, device="meta")
    offsets = torch.tensor([4, 4, 12], dtype=torch.int32)  # 4, 0 and 8 rows
    for grouped in (torch.nn.functional.grouped_mm, torch._grouped_mm):
        graph = trace(lambda a, b, o, f=grouped: f(a, b, offs=o), x, weights, offsets)
        assert _op_flops(graph) == {"_grouped_mm": 2 * rows * k * n}
    a, b = torch.empty(4, 8, 16, device="meta"), torch.empty(4, 16, 5, device="meta")
    c = torch.empty(4, 8, 5, device="meta")
    graph = trace(lambda a, b, c: (torch.bmm(a, b), torch.baddbmm(c, a, b),
                                   torch.einsum("bij,bjk->bik", a, b)), a, b, c)
    assert _op_flops(graph) == dict.fromkeys(("bmm", "baddbmm", "einsum"), 2 * 4 * 8 * 16 * 5)
    assert graph.meta["flops_without_formula"] == {}


def test_ops_the_table_does_not_know_are_looked_up_and_never_a_silent_zero() -> None:
    """cov is not in the op table: its matrix product is found inside it; cdist computes
    floats with a kernel torch has no formula for: listed, not counted as a silent 0;
    diff is slices and a subtraction: 0 by convention, nothing to list."""
    x = torch.randn(5, 7)
    with FlopCounterMode(display=False) as counter:
        torch.cov(x)
    graph = trace(lambda a: (torch.cov(a), torch.cdist(a, a), torch.diff(a)), x)
    flops = {n.name: (n.stats.flops, n.uncounted_flops) for n in graph.nodes.values()
             if n.kind == "op"}
    assert flops == {"cov": (counter.get_total_flops(), []),
                     "cdist": (0, ["aten::_cdist_forward"]), "diff": (0, [])}
    assert graph.meta["flops_without_formula"] == {"aten::_cdist_forward": 1}


def test_pooling_counts_0_like_the_reductions_it_is() -> None:
    """Max and average pooling compare or add (torch's counter has no formula for them):
    0 FLOPs by the op table, nothing listed as uncounted, on meta as on the CPU (where
    adaptive average pooling reaches ``as_strided_``)."""
    layers = torch.nn.Sequential(torch.nn.MaxPool2d(3, 2, 1), torch.nn.AvgPool2d(2),
                                 torch.nn.AdaptiveAvgPool2d(1), torch.nn.AdaptiveMaxPool2d(1))
    for device in ("meta", "cpu"):
        graph = trace(layers, torch.empty(1, 4, 16, 16, device=device))
        assert graph.meta["totals"]["flops"] == 0
        assert graph.meta["flops_without_formula"] == {}


def _counted(func: Callable[..., Any], *args: Any, **kwargs: Any) -> tuple[int, list[str]]:
    """FLOPs and ops without a formula of one call under the tracer's ``FlopCounter``."""
    counter = FlopCounter()
    with counter:
        func(*args, **kwargs)
    return counter.flops, list(counter.missing)


def test_grouped_products_count_2_m_n_k_in_each_of_their_forms() -> None:
    meta = {"dtype": torch.bfloat16, "device": "meta"}
    offsets = torch.tensor([4, 4, 16], dtype=torch.int32, device="meta")
    # (M, K) x (K, N), K split by the offsets (a weight gradient): one product in all
    assert _counted(torch._grouped_mm, torch.empty(8, 16, **meta), torch.empty(16, 24, **meta),
                    offs=offsets) == (2 * 8 * 16 * 24, [])
    # (G, M, K) x (G, K, N): a product per group
    assert _counted(torch._grouped_mm, torch.empty(3, 8, 16, **meta),
                    torch.empty(3, 16, 24, **meta)) == (2 * 3 * 8 * 24 * 16, [])


def test_the_zoo_s_fp8_product_counts_as_the_product_it_stands_for() -> None:
    import model_zoo.deepseek_v3.kernels  # noqa: F401  (registers model_zoo::fp8_gemm)

    fp8 = {"dtype": torch.float8_e4m3fn, "device": "meta"}
    a, b = torch.empty(4, 256, **fp8), torch.empty(384, 256, **fp8)
    scales = torch.empty(4, 2, device="meta"), torch.empty(3, 2, device="meta")
    assert _counted(torch.ops.model_zoo.fp8_gemm, a, scales[0], b, scales[1], torch.bfloat16,
                    "torch") == (2 * 4 * 384 * 256, [])


def test_a_triangular_solve_counts_n_squared_per_column_of_every_batch() -> None:
    a, b = torch.randn(3, 4, 4).triu() + 4 * torch.eye(4), torch.randn(3, 4, 2)
    graph = trace(lambda a, b: torch.linalg.solve_triangular(a, b, upper=True), a, b)
    assert _op_flops(graph) == {"solve_triangular": 4 * 4 * 3 * 2}
    assert graph.meta["flops_without_formula"] == {}


def test_attention_on_the_cpu_counts_both_products() -> None:
    """The CPU runs its own flash-attention kernel, which torch's counter has no formula
    for: 2 b h s_q s_k d for the scores, as much again for the weighted values."""
    q, kv = torch.randn(1, 2, 5, 8), torch.randn(1, 2, 7, 8)
    graph = trace(torch.nn.functional.scaled_dot_product_attention, q, kv, kv)
    assert _op_flops(graph) == {"scaled_dot_product_attention": 2 * 2 * (2 * 5 * 7 * 8)}
    assert graph.meta["flops_without_formula"] == {}


def test_an_aten_trace_counts_composite_ops_under_inference_mode() -> None:
    """Under inference mode ``aten::linear`` reaches the tracer whole, not as ``addmm``: its
    decomposition is counted, as in a trace without inference mode."""
    plain = trace(TwoLayer(), torch.empty(3, 8, device="meta"), aten=True)
    with torch.inference_mode():
        inference = trace(TwoLayer(), torch.empty(3, 8, device="meta"), aten=True)
    assert [n.name for n in inference.nodes.values() if n.kind == "op"].count("aten::linear") == 2
    assert inference.meta["totals"]["flops"] == plain.meta["totals"]["flops"] == 2 * 3 * (
        8 * 16 + 16 * 4)
    assert inference.meta["flops_without_formula"] == {}


class _Products(torch.nn.Module):
    """Every form of matrix product torch offers beyond mm, bmm, addmm and baddbmm: written
    in place, summed over a batch, with a vector, followed by an activation."""

    def forward(self, c: torch.Tensor, a: torch.Tensor, b: torch.Tensor,
                batch_c: torch.Tensor, batch_a: torch.Tensor, batch_b: torch.Tensor,
                v: torch.Tensor, w: torch.Tensor) -> list[torch.Tensor]:
        into = c.clone()
        into.addmm_(a, b, beta=0.5)
        batches = batch_c.clone()
        batches.baddbmm_(batch_a, batch_b)
        summed = torch.addbmm(c, batch_a, batch_b)
        summed.addbmm_(batch_a, batch_b, alpha=2)
        column = torch.addmv(w, a, v)
        column.addmv_(a, v)
        return [into, batches, summed, column, torch.mv(a, v), a @ v, torch.dot(v, v),
                torch.vdot(v, v), torch.mm(a, b), torch._addmm_activation(c, a, b)]


def test_every_form_of_matrix_product_counts_2_m_n_k() -> None:
    """m x k times k x n is 2 m n k FLOPs; a matrix times a vector is n = 1, a dot product
    m = n = 1; a batch summed into one matrix is a product per batch element."""
    m, k, n, batch = 3, 4, 5, 2
    shapes = [(m, n), (m, k), (k, n), (batch, m, n), (batch, m, k), (batch, k, n), (k,), (m,)]
    graph = trace(_Products(), *(torch.empty(s, device="meta") for s in shapes))
    ops = [(node.name, node.category, node.stats.flops) for node in graph.nodes.values()
           if node.kind == "op" and node.name != "clone"]
    assert ops == [("addmm_", "matmul", 2 * m * n * k),
                   ("baddbmm_", "matmul", batch * 2 * m * n * k),
                   ("addbmm", "matmul", batch * 2 * m * n * k),
                   ("addbmm_", "matmul", batch * 2 * m * n * k),
                   ("addmv", "matmul", 2 * m * k), ("addmv_", "matmul", 2 * m * k),
                   ("mv", "matmul", 2 * m * k), ("matmul", "matmul", 2 * m * k),
                   ("dot", "matmul", 2 * k), ("vdot", "matmul", 2 * k),
                   ("mm", "matmul", 2 * m * n * k),
                   ("_addmm_activation", "matmul", 2 * m * n * k)]
    assert graph.meta["flops_without_formula"] == {}
    assert all(not node.uncounted_flops for node in graph.nodes.values())


def test_vecdot_counts_a_dot_product_per_output_along_any_dim() -> None:
    """torch runs linalg.vecdot as a product and a sum (0 FLOPs each by the elementwise
    convention): it counts as the dot products it computes, 2 K each, as torch.dot does,
    over the operands' broadcast shape, summed along the last dim or the one given."""
    rows, k = 3, 4
    graph = trace(lambda a, b: (torch.linalg.vecdot(a, b), torch.linalg.vecdot(a, b[0]),
                                torch.linalg.vecdot(x=a.mT, y=b.mT, dim=0),
                                torch.dot(a[0], b[0])),
                  torch.empty(rows, k, device="meta"), torch.empty(rows, k, device="meta"))
    ops = [(node.name, node.category, node.stats.flops) for node in graph.nodes.values()
           if node.kind == "op" and node.name in ("vecdot", "dot")]
    assert ops == [("vecdot", "matmul", rows * 2 * k)] * 3 + [("dot", "matmul", 2 * k)]
    assert graph.meta["flops_without_formula"] == {}


def test_in_place_products_count_as_torch_counts_their_out_of_place_forms() -> None:
    """torch's counter has formulas for addmm and baddbmm only: their in-place forms, on
    real values, count what it counts for the same product written to a new tensor."""
    c, a, b = torch.randn(3, 5), torch.randn(3, 4), torch.randn(4, 5)
    bc, ba, bb = torch.randn(2, 3, 5), torch.randn(2, 3, 4), torch.randn(2, 4, 5)
    with FlopCounterMode(display=False) as counter:
        torch.addmm(c, a, b)
        torch.baddbmm(bc, ba, bb)
    graph = trace(lambda *t: (t[0].clone().addmm_(t[1], t[2]), t[3].clone().baddbmm_(t[4], t[5])),
                  c, a, b, bc, ba, bb)
    assert graph.meta["totals"]["flops"] == counter.get_total_flops() == 2 * 60 + 2 * 120


def test_a_bilinear_layer_counts_a_multiply_add_per_weight_per_row() -> None:
    """``F.bilinear`` runs ``_trilinear``, which torch has no formula for: x1^T W x2 for
    each of B rows and O outputs is I x J multiply-adds, 2 B O I J FLOPs, on CPU and meta
    alike, with nothing listed as missing a formula."""
    model = torch.nn.Bilinear(8, 6, 4)
    for device in ("cpu", "meta"):
        graph = trace(model.to(device), torch.randn(3, 8, device=device),
                      torch.randn(3, 6, device=device))
        assert graph.meta["totals"]["flops"] == 2 * 3 * 4 * 8 * 6
        assert graph.meta["flops_without_formula"] == {}


def test_an_outer_product_counts_0_like_the_elementwise_products_it_is() -> None:
    """addr adds an outer product (no sum over k): 0 by the elementwise convention, as outer
    and ger, and not listed as an op without a formula."""
    c, u, v = (torch.empty(s, device="meta") for s in ((3, 5), (3,), (5,)))
    graph = trace(lambda c, u, v: (torch.addr(c, u, v), c.clone().addr_(u, v),
                                   torch.outer(u, v), torch.ger(u, v)), c, u, v)
    ops = {(node.name, node.category, node.stats.flops) for node in graph.nodes.values()
           if node.kind == "op" and node.name != "clone"}
    assert ops == {(name, "elementwise", 0) for name in ("addr", "addr_", "outer", "ger")}
    assert graph.meta["flops_without_formula"] == {}


@pytest.mark.parametrize(("op", "no_formula_needed"), [
    # zero-fill and copy, or copy a part into a whole: no element added to another
    (torch.ops.aten.slice_backward, True), (torch.ops.aten.select_backward, True),
    (torch.ops.aten.slice_scatter, True), (torch.ops.aten.select_scatter, True),
    (torch.ops.aten.diagonal_scatter, True), (torch.ops.aten.as_strided_scatter, True),
    (torch.ops.aten.new_zeros, True), (torch.ops.aten.zero_, True), (torch.ops.aten.copy_, True),
    # gradients that add up the rows (or windows, or elements) read more than once
    (torch.ops.aten.embedding_dense_backward, False), (torch.ops.aten.col2im, False),
    (torch.ops.aten.put, False)])
def test_only_ops_that_move_data_need_no_flop_formula(op: Any, no_formula_needed: bool) -> None:
    assert counts_no_flops(op.default) == no_formula_needed


def test_the_backward_of_slicing_a_tensor_leaves_nothing_uncounted() -> None:
    """``x[:, 1:3]``'s gradient runs ``slice_backward``, ``x.narrow``'s and
    ``x.diagonal_scatter``'s too: pure data movement, counted as 0 and not listed."""
    x = torch.randn(4, 4, requires_grad=True)
    y = x[:, 1:3].sum() + x.narrow(0, 1, 2).sum() + torch.diagonal_scatter(x, x[0]).sum()
    counter = FlopCounter()
    with counter:
        y.backward()
    assert counter.flops == 0 and counter.missing == {}
