"""Models the tracer tests share: the zoo's DeepSeek-V3, tiny and full size."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pytest
import torch

from model_trace.graph import Graph
from model_trace.tracing import trace
from model_zoo.deepseek_v3 import ModelArgs, RuntimeOptions, Transformer, init_weights, load_config

TinyBuilder = Callable[..., Transformer]


@pytest.fixture
def tiny_args() -> ModelArgs:
    """16 routed experts, 4 per token, 4 groups of which a token may use 2; 3 layers, 1 dense."""
    return load_config("tiny")


@pytest.fixture
def build_tiny(tiny_args: ModelArgs) -> TinyBuilder:
    """A fresh tiny model: ``device="meta"`` (shapes only) or ``"cpu"`` (seeded weights).
    Keyword arguments override config fields. Fresh each time: a model fills its attention
    caches on its first forward, so a second trace of one object differs from the first."""

    def build(device: str = "meta", **overrides: object) -> Transformer:
        args = load_config("tiny", **overrides) if overrides else tiny_args
        model = Transformer(args, RuntimeOptions(device=device))
        return model if device == "meta" else init_weights(model, seed=0)

    return build


@pytest.fixture
def tiny_tokens(tiny_args: ModelArgs) -> torch.Tensor:
    """(2, 8) reproducible token ids on the CPU."""
    generator = torch.Generator().manual_seed(0)
    return torch.randint(0, tiny_args.vocab_size, (2, 8), generator=generator)


@dataclass
class Traced:
    """A traced model and the number of parameters the model itself reports."""

    graph: Graph
    parameters: int


@pytest.fixture(scope="session")
def traced_671b() -> Traced:
    """The zoo's 671B DeepSeek-V3 (fp8 weights, absorb attention) traced on the meta device
    over 128 tokens, folded: built once for the whole session (about 12 s, 1 GB)."""
    model = Transformer(load_config("671B"), RuntimeOptions(world_size=1, rank=0, device="meta"))
    graph = trace(model, torch.empty(1, 128, dtype=torch.int64, device="meta"))
    return Traced(graph, sum(p.numel() for p in model.parameters()))
