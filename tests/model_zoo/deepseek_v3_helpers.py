"""Helpers for the DeepSeek-V3 tests: small models with reproducible weights."""

import dataclasses

import torch

from model_zoo.deepseek_v3 import ModelArgs, RuntimeOptions, Transformer, init_weights


def relative_error(actual: torch.Tensor, expected: torch.Tensor) -> float:
    """||actual - expected|| / ||expected||, in float32."""
    actual, expected = actual.float(), expected.float()
    return ((actual - expected).norm() / expected.norm()).item()


def random_tokens(args: ModelArgs, batch: int, seq: int, seed: int = 0) -> torch.Tensor:
    """(batch, seq) token ids drawn reproducibly from the vocabulary."""
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(0, args.vocab_size, (batch, seq), generator=generator)


def build(args: ModelArgs, seed: int = 0, **options: object) -> Transformer:
    """A single-rank model with `init_weights(seed)` weights; `options` go to RuntimeOptions."""
    opts = RuntimeOptions(**{"world_size": 1, "rank": 0, **options})  # type: ignore[arg-type]
    return init_weights(Transformer(args, opts), seed=seed)


def twin(model: Transformer, **changes: object) -> Transformer:
    """A model sharing `model`'s weight tensors (no copy), with other RuntimeOptions."""
    opts = dataclasses.replace(model.options, **changes)  # type: ignore[arg-type]
    other = Transformer(model.args, opts)  # uninitialised memory, replaced below
    other.load_state_dict(model.state_dict(), assign=True)
    return other
