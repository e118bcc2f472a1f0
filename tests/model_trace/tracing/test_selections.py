"""Which slices of stacked experts an op used, in each way a model picks them: grouped
products split by offsets, slices picked by an index tensor (alone, in a tuple, through
``index_select``), table rows picked by a router's choice through integer arithmetic."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from model_trace.tracing import trace

from .test_row_experts import Model as RowExperts
from .test_stacked import TOKENS, WIDTH, Scaled

EXPERTS, IN, OUT = 3, 16, 24
META_BF16 = {"dtype": torch.bfloat16, "device": "meta"}


class Grouped(nn.Module):
    """transformers 5's grouped experts: rows sorted by expert, one product per expert."""

    def __init__(self, by_name: bool) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(EXPERTS, IN, OUT, **META_BF16))
        self.by_name = by_name

    def forward(self, x: torch.Tensor, offsets: torch.Tensor | None = None) -> torch.Tensor:
        if self.by_name:
            return torch._grouped_mm(x, self.weight, offs=offsets)
        return torch._grouped_mm(x, self.weight, offsets)


@pytest.mark.parametrize("by_name", [True, False], ids=["offs=", "positional"])
def test_grouped_products_use_the_slices_their_offsets_give_rows(by_name: bool) -> None:
    x = torch.empty(12, IN, **META_BF16)
    offsets = torch.tensor([4, 4, 12], dtype=torch.int32)  # 4, 0 and 8 rows
    graph = trace(Grouped(by_name), x, offsets, fold=False)
    assert graph.meta["experts"] == {"": {
        "cls": "Grouped", "count": EXPERTS, "called": 2, "active_per_token": 1.0,
        "tokens": [4, 0, 8], "stacked": ["weight"]}}
    assert graph.meta["totals"]["activated_params"] == IN * OUT
    # no offsets, (G, M, K) rows: every slice for every row
    whole = trace(Grouped(by_name), torch.empty(EXPERTS, 4, IN, **META_BF16), fold=False)
    assert "experts" not in whole.meta
    assert whole.meta["totals"]["activated_params"] == EXPERTS * IN * OUT


class Picked(nn.Module):
    """A slice of a stacked weight per token, picked by a concrete index tensor."""

    def __init__(self, form: str) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(EXPERTS, IN, OUT, device="meta"))
        self.form = form

    def forward(self, x: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
        if self.form == "tuple":
            picked = self.weight[ids, :]
        elif self.form == "index_select":
            picked = self.weight.index_select(0, ids)
        else:
            picked = self.weight[ids]
        return torch.bmm(x.unsqueeze(1), picked).squeeze(1)


@pytest.mark.parametrize("form", ["tensor", "tuple", "index_select"])
def test_slices_picked_by_an_index_tensor_count_per_use(form: str) -> None:
    ids = torch.tensor([2, 0, 2, 2])
    graph = trace(Picked(form), torch.empty(4, IN, device="meta"), ids, fold=False)
    assert graph.meta["experts"][""]["tokens"] == [1, 0, 3]
    assert graph.meta["experts"][""]["active_per_token"] == 1.0


def test_columns_picked_by_index_select_are_no_slices_of_experts() -> None:
    class Columns(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.weight = nn.Parameter(torch.empty(EXPERTS, IN, OUT, device="meta"))

        def forward(self, ids: torch.Tensor) -> torch.Tensor:
            return self.weight.index_select(1, ids).sum()

    graph = trace(Columns(), torch.tensor([0, 1]), fold=False)
    assert "experts" not in graph.meta


class OffsetRows(nn.Module):
    """Experts as rows of one table shared by layers: a router's choice plus the layer's
    first row (an integer input), so the indices reach the table through an ``add``."""

    def __init__(self) -> None:
        super().__init__()
        self.router = nn.Linear(WIDTH, 4, bias=False, device="meta")
        self.table = nn.Embedding(8, WIDTH, device="meta")

    def forward(self, x: torch.Tensor, first_row: torch.Tensor) -> torch.Tensor:
        _, chosen = self.router(x).topk(2, dim=-1)
        return self.table(chosen + first_row).sum(-2)


def test_rows_reached_from_a_router_through_integer_arithmetic_count_as_chosen() -> None:
    graph = trace(OffsetRows(), torch.empty(TOKENS, WIDTH, device="meta"),
                  torch.tensor([4]), routing="balanced", fold=False)
    (load,) = graph.meta["experts"].values()
    assert load["tokens"] == [0, 0, 0, 0, 4, 4, 3, 3]  # 7 tokens x 2 over rows 4 to 7
    assert load["active_per_token"] == 2.0


@pytest.mark.parametrize("model", ["views of a flat weight", "rows of tables"])
def test_parameters_drawn_as_nodes_give_the_same_expert_load(model: str) -> None:
    """A parameter drawn as a node is read by its first op; the later ones (each expert's
    view, the second table) get it as an input and must count the same."""
    def traced(parameters: str) -> tuple[dict, int]:
        if model == "rows of tables":
            with torch.device("meta"):
                rows = RowExperts()
            graph = trace(rows, torch.arange(TOKENS).unsqueeze(0), fold=False,
                          parameters=parameters)
        else:
            graph = trace(Scaled().to(torch.bfloat16), torch.empty(WIDTH, **META_BF16),
                          torch.empty(TOKENS, WIDTH, **META_BF16), routing="balanced",
                          fold=False, parameters=parameters)
        return graph.meta["experts"], graph.meta["totals"]["activated_params"]

    assert traced("nodes") == traced("attach")


def test_a_slice_used_with_a_scalar_or_with_another_slice_counts_one_row() -> None:
    class Slices(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.weight = nn.Parameter(torch.empty(EXPERTS, 4, 4, device="meta"))

        def forward(self, scale: torch.Tensor) -> torch.Tensor:
            return (scale * self.weight[1]).sum() + (self.weight[0] @ self.weight[2]).sum()

    graph = trace(Slices(), torch.empty((), device="meta"), fold=False)
    assert graph.meta["experts"][""]["tokens"] == [1, 1, 1]
