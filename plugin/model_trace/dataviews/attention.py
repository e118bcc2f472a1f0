"""Attention weights captured from a model's own attention ops while the tracer runs it.

The tracer shows every op it records to an observer (``trace(..., observe=...)``); this one
keeps the result of each softmax over the last axis of a tensor of three or more axes whose
last two sizes (or the query axis of the ``[batch, query, head, key]`` layout) are the
text's length: the attention probabilities of one layer. A fused
``scaled_dot_product_attention`` computes the same probabilities inside one kernel; for it
they are recomputed from its query, key, mask and scale, as the kernel defines them. Layers
are numbered in the order the forward runs them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch

from model_trace.errors import SpecError
from model_trace.tracing import trace

SOFTMAX_OPS = frozenset({"softmax", "_softmax"})
FUSED_OPS = frozenset({"scaled_dot_product_attention"})
TRACE_DEPTH = 2
"""Levels into torch's Python functions (``F.multi_head_attention_forward`` calls the fused
kernel inside)."""


@dataclass(frozen=True)
class AttentionMap:
    """One layer's attention: ``weights[head][query][key]``, each row summing to 1."""

    path: str
    """The module that ran the op (``encoder.layer.3.attention.self``)."""
    op: str
    """``softmax``, or ``scaled_dot_product_attention`` (weights recomputed)."""
    weights: torch.Tensor
    """float32, [heads, queries, keys]."""


class AttentionCapture:
    """An op observer keeping every layer's attention probabilities for a text of
    ``length`` tokens (the first item of the batch)."""

    def __init__(self, length: int) -> None:
        self.length = length
        self.maps: list[AttentionMap] = []
        self.softmax_shapes: list[tuple[int, ...]] = []
        """Shapes of softmaxes that were not attention (for the error when none was)."""

    def __call__(self, op: str, args: tuple[Any, ...], kwargs: dict[str, Any], result: Any,
                 path: str) -> None:
        if op in SOFTMAX_OPS and isinstance(result, torch.Tensor):
            weights = self._from_softmax(args, kwargs, result)
            if weights is None:
                self.softmax_shapes.append(tuple(result.shape))
                return
            self.maps.append(AttentionMap(path, op, weights))
        elif op in FUSED_OPS:
            weights = sdpa_weights(*args, **kwargs)
            if weights.shape[-1] == weights.shape[-2] == self.length:
                self.maps.append(AttentionMap(path, op, weights.reshape(
                    -1, self.length, self.length)[:weights.shape[-3]].float()))

    def _from_softmax(self, args: tuple[Any, ...], kwargs: dict[str, Any],
                      result: torch.Tensor) -> torch.Tensor | None:
        dim = kwargs.get("dim", args[1] if len(args) > 1 else None)
        n = self.length
        if not isinstance(dim, int) or result.dim() < 3 or dim % result.dim() != \
                result.dim() - 1 or result.shape[-1] != n:
            return None
        probs = result.detach().float()
        if result.dim() == 4 and result.shape[1] == n and result.shape[2] != n:
            return probs[0].transpose(0, 1)  # [batch, query, head, key] (DeepSeek's MLA)
        if result.shape[-2] != n:
            return None
        return probs if result.dim() == 3 else probs.reshape(-1, *probs.shape[-3:])[0]


def sdpa_weights(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor | None = None,
                 attn_mask: torch.Tensor | None = None, dropout_p: float = 0.0,
                 is_causal: bool = False, scale: float | None = None,
                 enable_gqa: bool = False) -> torch.Tensor:
    """The probabilities ``F.scaled_dot_product_attention`` weighs the values with (no
    dropout: views run in eval mode): softmax(q kᵀ · scale + mask), [..., heads, q, k]."""
    del value, dropout_p
    q, k = query.detach().float(), key.detach().float()
    if enable_gqa or (q.dim() >= 3 and k.shape[-3] != q.shape[-3]):
        k = k.repeat_interleave(q.shape[-3] // k.shape[-3], dim=-3)
    scores = q @ k.transpose(-2, -1) * (scale if scale is not None
                                        else 1.0 / math.sqrt(q.shape[-1]))
    if is_causal:
        causal = torch.ones(q.shape[-2], k.shape[-2], dtype=torch.bool).tril()
        scores = scores.masked_fill(~causal, float("-inf"))
    if attn_mask is not None:
        mask = attn_mask.detach()
        scores = scores.masked_fill(~mask, float("-inf")) if mask.dtype == torch.bool \
            else scores + mask.float()
    return torch.softmax(scores, dim=-1)


def capture_attention(model: torch.nn.Module, ids: list[int]) -> list[AttentionMap]:
    """Run ``model`` on one text (token ids as its first argument) under the tracer and
    return its attention maps, in the order the layers ran; ``SpecError`` if the model
    computed no softmax over attention scores."""
    capture = AttentionCapture(len(ids))
    trace(model, torch.tensor([ids], dtype=torch.long), observe=capture, fold=False,
          trace_depth=TRACE_DEPTH)
    if not capture.maps:
        shapes = ", ".join(map(str, capture.softmax_shapes[:3]))
        seen = f"; the softmaxes it ran had shapes {shapes}" if shapes else \
            "; it ran no softmax at all"
        raise SpecError(f"the model computed no softmax over attention scores of the "
                        f"{len(ids)} tokens (softmax(QKᵀ) over the last axis, or "
                        f"scaled_dot_product_attention){seen}: an attention view needs a model "
                        "with softmax attention", field="model")
    return capture.maps
