"""Small plain-torch models the tracer tests share."""

from __future__ import annotations

import torch


class TwoLayer(torch.nn.Module):
    """Linear 8 -> 16, relu, linear 16 -> 4: two modules and a function between them."""

    def __init__(self) -> None:
        super().__init__()
        self.first = torch.nn.Linear(8, 16)
        self.second = torch.nn.Linear(16, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.second(torch.relu(self.first(x)))
