"""Example inputs for figures of one forward pass other than the default prefill.

A fence names one as `inputs: model_zoo.deepseek_v3.examples:decode_step`; each returns the
keyword arguments of `Transformer.forward` with token ids on the meta device (their values do
not matter for a trace).
"""

from typing import Any

import torch

DECODE_START_POS = 4096
"""Where `decode_step` decodes: one new token after 4,096 cached ones."""


def decode_step() -> dict[str, Any]:
    """One decoding step: a single new token per sequence at position 4,096, attending to the
    4,096 positions before it in the KV cache and to itself."""
    tokens = torch.empty(1, 1, dtype=torch.int64, device="meta")
    return {"tokens": tokens, "start_pos": DECODE_START_POS}
