"""Statistics at their edges: tied weights, what makes a routed group (and what does not),
block scales of fp8 weights."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from torch import nn

from model_trace.graph import Graph
from model_trace.tracing import trace

LINEAR = 4 * 4 + 4  # parameters of one Linear(4, 4)


class Experts(nn.Module):
    """``count`` linear experts in ``experts``; ``route(self, x)`` decides who gets what."""

    def __init__(self, count: int, route: Callable[[Experts, torch.Tensor], torch.Tensor]
                 ) -> None:
        super().__init__()
        self.experts = nn.ModuleList(nn.Linear(4, 4) for _ in range(count))
        self.route = route

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.route(self, x)


def _picked(x: torch.Tensor, *rows: int) -> torch.Tensor:
    return x[torch.tensor(rows)]


def _traced(count: int, route: Callable[[Experts, torch.Tensor], torch.Tensor]) -> Graph:
    return trace(Experts(count, route), torch.randn(8, 4), fold=False)


def _activated(graph: Graph) -> int:
    return graph.meta["totals"]["activated_params"]


def test_experts_on_indexed_rows_count_by_their_share_of_the_rows() -> None:
    """3 and 1 of 8 rows: half an expert per row; the third expert got none."""
    def route(self: Experts, x: torch.Tensor) -> torch.Tensor:
        return self.experts[0](_picked(x, 0, 1, 2)).sum() + self.experts[1](_picked(x, 3)).sum()

    graph = _traced(3, route)
    assert graph.meta["totals"]["params"] == 3 * LINEAR
    assert _activated(graph) == LINEAR // 2
    assert graph.meta["experts"] == {"experts": {
        "cls": "Linear", "count": 3, "called": 2, "active_per_token": 0.5,
        "tokens": [3, 1, 0]}}


def test_rows_picked_by_index_select_are_a_gather_too() -> None:
    def route(self: Experts, x: torch.Tensor) -> torch.Tensor:
        picked = [x.index_select(0, torch.tensor(rows)) for rows in ([0, 1], [2, 3])]
        return sum(e(p).sum() for e, p in zip(self.experts, picked, strict=True))

    graph = _traced(2, route)
    assert graph.meta["experts"]["experts"]["tokens"] == [2, 2]
    assert _activated(graph) == LINEAR // 2


def test_experts_on_slices_are_not_routed() -> None:
    """``x[0:3]`` is a slice, not rows picked by an index: every expert counts fully."""
    def route(self: Experts, x: torch.Tensor) -> torch.Tensor:
        return self.experts[0](x[0:3]).sum() + self.experts[1](x[3:4]).sum()

    graph = _traced(2, route)
    assert "experts" not in graph.meta
    assert _activated(graph) == 2 * LINEAR


def test_the_share_per_token_keeps_four_decimals() -> None:
    """1 row of 7 to one expert, 2 to the other: 3/7 of an expert per token."""
    def route(self: Experts, x: torch.Tensor) -> torch.Tensor:
        return self.experts[0](_picked(x, 0)).sum() + self.experts[1](_picked(x, 1, 2)).sum()

    graph = trace(Experts(2, route), torch.randn(7, 4), fold=False)
    assert graph.meta["experts"]["experts"]["active_per_token"] == 0.4286
    assert _activated(graph) == round(LINEAR * 3 / 7)


def test_a_single_module_on_indexed_rows_is_not_a_group() -> None:
    def route(self: Experts, x: torch.Tensor) -> torch.Tensor:
        return self.experts[0](_picked(x, 0, 1))

    graph = _traced(1, route)
    assert "experts" not in graph.meta
    assert _activated(graph) == LINEAR


def test_a_second_call_of_an_expert_does_not_join_the_group() -> None:
    def route(self: Experts, x: torch.Tensor) -> torch.Tensor:
        first = self.experts[0](_picked(x, 0, 1, 2, 3))
        again = self.experts[0](_picked(x, 4, 5))
        return first.sum() + again.sum() + self.experts[1](_picked(x, 6, 7)).sum()

    group = _traced(2, route).meta["experts"]["experts"]
    assert (group["count"], group["called"], group["tokens"]) == (2, 2, [4, 2])


def test_experts_in_two_containers_are_two_groups_in_natural_order() -> None:
    class TwoLayers(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.layers = nn.ModuleList(Experts(2, _halves) for _ in range(11))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            for layer in self.layers:
                x = layer(x)
            return x

    graph = trace(TwoLayers(), torch.randn(8, 4), fold=False)
    assert list(graph.meta["experts"]) == [f"layers.{i}.experts" for i in range(11)]


def _halves(self: Experts, x: torch.Tensor) -> torch.Tensor:
    out = torch.zeros_like(x)
    out[:4] = self.experts[0](_picked(x, 0, 1, 2, 3))
    out[4:] = self.experts[1](_picked(x, 4, 5, 6, 7))
    return out


# -- parameters counted once ---------------------------------------------------------------
class TiedHead(nn.Module):
    """An embedding and an output head sharing one weight, as many language models do."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(10, 4)
        self.head = nn.Linear(4, 10, bias=False)
        self.head.weight = self.embed.weight

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.head(self.embed(tokens))


class Unused(nn.Module):
    """A submodule the forward never calls, with a submodule of its own."""

    def __init__(self) -> None:
        super().__init__()
        self.used = nn.Linear(4, 4)
        self.spare = nn.Sequential(nn.Linear(4, 4), nn.Linear(4, 4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.used(x)


def test_an_uncalled_module_is_added_once_with_its_whole_subtree() -> None:
    graph = trace(Unused(), torch.randn(2, 4))
    calls = {c.path: c for c in graph.modules.values()}
    assert set(calls) == {"", "used", "spare"}  # not spare.0, spare.1: inside spare
    assert calls["spare"].called is False and calls["spare"].parent == graph.root
    assert calls["spare"].stats.params == 2 * LINEAR
    assert graph.meta["totals"]["params"] == 3 * LINEAR


def test_a_tied_weight_counts_once_at_the_first_module() -> None:
    model = TiedHead()
    graph = trace(model, torch.tensor([[1, 2, 3]]))
    by_path = {c.path: c.stats for c in graph.modules.values()}
    assert graph.meta["totals"]["params"] == sum(p.numel() for p in model.parameters()) == 40
    assert (by_path["embed"].params, by_path["head"].params) == (40, 0)
    assert graph.meta["totals"]["activated_params"] == 40


# -- block scales --------------------------------------------------------------------------
class Fp8Linear(nn.Module):
    def __init__(self, scale_dtype: torch.dtype, weight_dtype: torch.dtype) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(8, 8, dtype=weight_dtype), requires_grad=False)
        self.scale = nn.Parameter(torch.empty(2, 2, dtype=scale_dtype), requires_grad=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * 2


@pytest.mark.parametrize(("scale_dtype", "weight_dtype", "scales"), [
    (torch.float32, torch.float8_e4m3fn, 4),
    (torch.bfloat16, torch.float8_e4m3fn, 0),  # not a float32 block scale
    (torch.float32, torch.bfloat16, 0),  # not next to an fp8 weight
    (torch.float32, torch.int8, 0),  # one byte, but not a float
])
def test_only_float32_scales_of_fp8_weights_are_block_scales(
        scale_dtype: torch.dtype, weight_dtype: torch.dtype, scales: int) -> None:
    with torch.device("meta"):  # one level down: the scales roll up to the root
        model = nn.Sequential(Fp8Linear(scale_dtype, weight_dtype))
    totals = trace(model, torch.empty(2, 8, device="meta")).meta["totals"]
    assert totals["params"] == 64 + 4
    assert totals["block_scale_params"] == totals["activated_block_scale_params"] == scales


def test_rows_picked_by_index_count_through_views_of_them() -> None:
    """Switch Transformers feeds each expert ``x[None, idx].reshape(-1, d)``."""
    def route(self: Experts, x: torch.Tensor) -> torch.Tensor:
        picked = [x[None, torch.tensor(rows)].reshape(-1, 4) for rows in ([0, 1, 2], [3])]
        return sum(e(p).sum() for e, p in zip(self.experts, picked, strict=True))

    graph = _traced(2, route)
    assert graph.meta["experts"]["experts"]["tokens"] == [3, 1]
    assert _activated(graph) == LINEAR // 2


def test_a_view_of_a_slice_is_still_not_routed() -> None:
    def route(self: Experts, x: torch.Tensor) -> torch.Tensor:
        return sum(e(x[rows].reshape(-1, 4)).sum()
                   for e, rows in zip(self.experts, (slice(0, 3), slice(3, 4)), strict=True))

    graph = _traced(2, route)
    assert "experts" not in graph.meta
    assert _activated(graph) == 2 * LINEAR
