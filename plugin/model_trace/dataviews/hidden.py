"""Hidden states of texts at one layer, pooled to one vector per text.

The layers are the model's run of numbered blocks: the ``nn.ModuleList`` child with the most
numbered modules of one class (``encoder.layer.0``–``5`` in BERT, ``layers.0``–``60`` in
DeepSeek-V3). Layer 0 is what enters the first block, layer N what leaves the Nth; they are
read with forward hooks on a plain run of the model, one text at a time (no padding).
"""

from __future__ import annotations

from typing import Any

import torch

from model_trace.dataviews.runnable import run_model
from model_trace.errors import SpecError
from model_trace.tracing.structures import named_tensors


def blocks(model: torch.nn.Module) -> tuple[str, list[torch.nn.Module]]:
    """The path of the model's list of blocks, and the blocks."""
    best: tuple[str, list[torch.nn.Module]] = ("", [])
    for name, module in model.named_modules():
        if isinstance(module, torch.nn.ModuleList) and len(module) > len(best[1]):
            classes = {type(m) for m in module}
            if len(classes) == 1 or len(module) >= 2 * len(classes):
                best = (name, list(module))
    if not best[1]:
        raise SpecError(f"{type(model).__name__} has no list of blocks (an nn.ModuleList of "
                        "layers) to read hidden states from", field="model")
    return best


def _first_tensor(value: Any) -> torch.Tensor:
    return next(t for _, t in named_tensors(value, "")).detach()


def hidden_states(model: torch.nn.Module, texts: list[list[int]], layer: int | None,
                  pooling: str) -> tuple[torch.Tensor, int, int]:
    """One pooled vector per text (token ids), at ``layer`` (None: the last); returns the
    vectors [texts, dim] in float64, the layer read and the number of layers."""
    path, layers = blocks(model)
    chosen = len(layers) if layer is None else layer
    if chosen > len(layers):
        raise SpecError(f"layer is {chosen}, but {path} has {len(layers)} blocks (layers 0–"
                        f"{len(layers)})", field="layer")
    seen: list[torch.Tensor] = []
    if chosen == 0:
        hook = layers[0].register_forward_pre_hook(
            lambda _m, args, kwargs: seen.append(_first_tensor((args, kwargs))), with_kwargs=True)
    else:
        hook = layers[chosen - 1].register_forward_hook(
            lambda _m, _args, output: seen.append(_first_tensor(output)))
    vectors = []
    try:
        for ids in texts:
            seen.clear()
            run_model(model, ids)
            states = seen[0][0].double()  # [tokens, dim]
            vectors.append(states.mean(0) if pooling == "mean" else
                           states[0] if pooling == "first" else states[-1])
    finally:
        hook.remove()
    return torch.stack(vectors), chosen, len(layers)
