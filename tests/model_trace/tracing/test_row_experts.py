"""Experts stored as rows of a table (transformers' Doge: ``nn.Embedding`` rows picked by
the indices a router chose): a token goes through the rows it was routed to, counted against
the layer's tokens, while the token embedding, picked by the input's ids, counts whole."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from model_trace.tracing import trace

VOCAB, WIDTH, EXPERTS, CHOSEN, TOKENS = 50, 8, 64, 4, 16


class RowExperts(nn.Module):
    """Each token's ``CHOSEN`` of ``EXPERTS`` single-neuron experts: a row of ``down`` reads
    the token, the same row of ``up`` writes it back, weighted by the router's score."""

    def __init__(self) -> None:
        super().__init__()
        self.router = nn.Linear(WIDTH, EXPERTS, bias=False)
        self.down = nn.Embedding(EXPERTS, WIDTH)
        self.up = nn.Embedding(EXPERTS, WIDTH)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scores, chosen = self.router(x).topk(CHOSEN, dim=-1)
        picked = (self.down(chosen) @ x.unsqueeze(-1)).squeeze(-1) * scores.softmax(-1)
        return x + (picked.unsqueeze(-2) @ self.up(chosen)).squeeze(-2)


class Model(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(VOCAB, WIDTH)
        self.moe = RowExperts()

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.moe(self.embed(ids))


@pytest.mark.parametrize("parameters", ["attach", "nodes"])
def test_rows_a_router_picked_count_per_token_and_the_token_embedding_whole(
        parameters: str) -> None:
    """The same whether the tables are listed on the ops or drawn as nodes."""
    with torch.device("meta"):
        model = Model()
    graph = trace(model, torch.arange(TOKENS).unsqueeze(0), fold=False,
                  parameters=parameters)  # type: ignore[arg-type]
    totals = graph.meta["totals"]
    tables = 2 * EXPERTS * WIDTH
    assert totals["params"] == VOCAB * WIDTH + EXPERTS * WIDTH + tables
    assert totals["activated_params"] == VOCAB * WIDTH + EXPERTS * WIDTH + 2 * CHOSEN * WIDTH
    loads = graph.meta["experts"]
    assert sorted(loads) == ["moe.down", "moe.up"]
    for load in loads.values():  # balanced routing: 16 tokens x 4 over 64 rows
        assert (load["count"], load["active_per_token"], load["tokens"]) == \
            (EXPERTS, float(CHOSEN), [TOKENS * CHOSEN // EXPERTS] * EXPERTS)
        assert load["stacked"] == ["weight"]


class Buckets(nn.Module):
    """A table of position buckets, T5's relative attention bias: rows picked by indices
    computed with ``min`` of two integer tensors, which chooses nothing."""

    def __init__(self) -> None:
        super().__init__()
        self.bias = nn.Embedding(EXPERTS, WIDTH)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.bias(torch.min(ids, torch.full_like(ids, EXPERTS - 1)))


@pytest.mark.parametrize("model", [nn.Embedding(EXPERTS, WIDTH), Buckets()],
                         ids=["token embedding", "position buckets"])
def test_rows_picked_by_indices_no_router_chose_count_whole(model: nn.Module) -> None:
    """The same table looked up by the input's ids, or by indices computed from them
    without scores, counts whole."""
    graph = trace(model.to("meta"), torch.arange(TOKENS).unsqueeze(0), fold=False)
    assert graph.meta["totals"]["activated_params"] == EXPERTS * WIDTH
    assert "experts" not in graph.meta
