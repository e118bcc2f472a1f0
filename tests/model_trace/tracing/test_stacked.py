"""Expert load of stacked experts: slices used per token, counted against the layer's tokens
(bfloat16 models too), with the figures of experts that are modules of their own."""

from __future__ import annotations

import torch
from torch import nn

from model_trace.tracing import trace

EXPERTS, WIDTH, HIDDEN, TOKENS = 4, 8, 16, 7


class Glu(nn.Module):
    """Every expert's weights, flat, as DBRX stores them; ``up`` is read before ``down``."""

    def __init__(self) -> None:
        super().__init__()
        self.up = nn.Parameter(torch.empty(EXPERTS * HIDDEN, WIDTH, device="meta"))
        self.down = nn.Parameter(torch.empty(EXPERTS * HIDDEN, WIDTH, device="meta"))

    def forward(self, x: torch.Tensor, up: torch.Tensor, down: torch.Tensor) -> torch.Tensor:
        return x.matmul(up.T).relu().matmul(down)


class NullExpertMoe(nn.Module):
    """Top-1 of ``EXPERTS`` per token; expert 0 is a null expert (the token skips the layer,
    as in mixtures with zero-computation experts), the others run one after the other."""

    def __init__(self) -> None:
        super().__init__()
        self.router = nn.Linear(WIDTH, EXPERTS, bias=False, device="meta")
        self.mlp = Glu()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        chosen = self.router(x).argmax(dim=-1)
        out = torch.zeros_like(x)
        for expert in chosen.unique().tolist():
            if expert == 0:
                continue
            rows = torch.where(chosen == expert)[0]
            up = self.mlp.up.view(EXPERTS, HIDDEN, WIDTH)[expert]
            down = self.mlp.down.view(EXPERTS, HIDDEN, WIDTH)[expert]
            out.index_add_(0, rows, self.mlp(x[rows], up, down))
        return out


class Scaled(nn.Module):
    """A call whose first input is a vector: no rows of tokens to count against."""

    def __init__(self) -> None:
        super().__init__()
        self.moe = NullExpertMoe()

    def forward(self, scale: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return self.moe(x * scale)


def test_load_of_stacked_experts_in_bfloat16_counts_tokens_that_skip_every_expert() -> None:
    """Balanced top-1 of 4 over 7 tokens: 2, 2, 2 and 1 tokens; expert 0's 2 skip the layer,
    so a token goes through 5/7 of an expert on average."""
    model = Scaled().to(torch.bfloat16)
    graph = trace(model, torch.empty(WIDTH, dtype=torch.bfloat16, device="meta"),
                  torch.empty(TOKENS, WIDTH, dtype=torch.bfloat16, device="meta"),
                  routing="balanced", fold=False)
    assert graph.meta["experts"] == {"moe.mlp": {
        "cls": "Glu", "count": EXPERTS, "called": 3, "active_per_token": round(5 / 7, 4),
        "tokens": [0, 2, 2, 1], "stacked": ["down", "up"]}}
    slices = 2 * HIDDEN * WIDTH  # one expert's slice of both stacked parameters
    # 5/7 of one expert's slices per token, to the nearest parameter
    assert graph.meta["totals"]["activated_params"] == EXPERTS * WIDTH + round(slices * 5 / 7)
