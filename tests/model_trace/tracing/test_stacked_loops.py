"""Stacked experts run in a loop by a module of their own, fed each expert's picked rows
(DBRX in transformers: ``w.view(E, I, D)[e]`` inside ``mlp(x[token_idx], w1, v1, w2)``): a
token goes through its chosen experts' slices, counted against the layer's tokens, not the
rows one expert's call was fed."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from model_trace.tracing import trace

EXPERTS, WIDTH, HIDDEN, TOKENS = 4, 8, 16, 12


class Glu(nn.Module):
    """Every expert's weights, flat: (EXPERTS * HIDDEN, WIDTH), as DBRX stores them."""

    def __init__(self) -> None:
        super().__init__()
        self.w1 = nn.Parameter(torch.randn(EXPERTS * HIDDEN, WIDTH))
        self.w2 = nn.Parameter(torch.randn(EXPERTS * HIDDEN, WIDTH))

    def forward(self, x: torch.Tensor, w1: torch.Tensor, w2: torch.Tensor) -> torch.Tensor:
        return x.matmul(w1.T).relu().matmul(w2)


class LoopedExperts(nn.Module):
    """Top-1 of ``EXPERTS`` per token, the chosen experts run one after the other."""

    def __init__(self) -> None:
        super().__init__()
        self.router = nn.Linear(WIDTH, EXPERTS, bias=False)
        self.mlp = Glu()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        chosen = self.router(x).argmax(dim=-1)
        out = torch.zeros_like(x)
        for expert in chosen.unique():
            rows = torch.where(chosen == expert)[0]
            w1 = self.mlp.w1.view(EXPERTS, HIDDEN, WIDTH)[expert]
            w2 = self.mlp.w2.view(EXPERTS, HIDDEN, WIDTH)[expert]
            out.index_add_(0, rows, self.mlp(x[rows], w1, w2))
        return out


def test_a_loop_over_picked_rows_counts_one_expert_per_token() -> None:
    graph = trace(LoopedExperts(), torch.randn(TOKENS, WIDTH), fold=False)
    totals = graph.meta["totals"]
    stacked = 2 * EXPERTS * HIDDEN * WIDTH
    assert totals["params"] == EXPERTS * WIDTH + stacked
    assert totals["activated_params"] == EXPERTS * WIDTH + stacked // EXPERTS
    (load,) = graph.meta["experts"].values()
    assert load["active_per_token"] == 1.0 and sum(load["tokens"]) == TOKENS
    assert load["stacked"] == ["w1", "w2"]


class ReadWholeFirst(LoopedExperts):
    """Reads each flat expert weight whole first (a norm), then expert by expert."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale = self.mlp.w1.norm() + self.mlp.w2.norm()
        return super().forward(x) * scale


@pytest.mark.parametrize("model", [LoopedExperts, ReadWholeFirst])
def test_experts_count_alike_whether_parameters_are_listed_or_drawn(
        model: type[LoopedExperts]) -> None:
    """A parameter drawn as a node is read as a parameter by its first reader only: a
    view that picks experts from it later still counts them."""
    graphs = [trace(model().to("meta"), torch.empty(TOKENS, WIDTH, device="meta"),
                    fold=False, parameters=parameters)  # type: ignore[arg-type]
              for parameters in ("attach", "nodes")]
    attached, drawn = (g.meta for g in graphs)
    assert drawn["totals"]["activated_params"] == attached["totals"]["activated_params"] \
        == EXPERTS * WIDTH + 2 * HIDDEN * WIDTH
    assert drawn["experts"] == attached["experts"]
