"""Float values known without any data, carried beside their meta tensors.

A meta tensor has no values, but some floats in a model do not depend on its data:
``torch.zeros(n, e).scatter(1, experts, 1)`` (a one-hot of concrete expert indices),
``torch.full((s, s), -inf).triu(1)``. When a model turns such a tensor into integers
(``gates.long().sum(0).tolist()``: tokens per expert), their values matter. So a small float
tensor made by a factory whose values come from its arguments (the op table's ``made="args"``)
stays on the meta device, like every float, and carries a CPU copy of its values in an
attribute; an op whose every meta input carries one computes its copy too (indices and other
concrete tensors as they are). An integer result computed from known floats is then exact
rather than assumed, and Python reads a known float from its copy (``.item()``, ``.tolist()``:
the recorder hands the copy to the read). Copies are kept only up to ``MAX_KNOWN_ELEMENTS``
per tensor, and an in-place write of unknown values into a tensor drops its copy.
"""

from __future__ import annotations

import contextlib
from typing import Any

import torch

from model_trace.tracing.arguments import tensors_out
from model_trace.tracing.structures import map_structure

KNOWN_ATTRIBUTE = "_model_trace_known"
MAX_KNOWN_ELEMENTS = 1 << 16
"""Largest tensor whose values are carried (256 KB of float32): one-hots, masks, tables."""


def known(tensor: torch.Tensor) -> torch.Tensor | None:
    """The CPU copy of a meta tensor's values, if they are known."""
    return getattr(tensor, KNOWN_ATTRIBUTE, None)


def attach(tensor: torch.Tensor, values: torch.Tensor) -> None:
    """Carry ``values`` beside the meta ``tensor`` (if small enough and the same shape)."""
    if values.numel() <= MAX_KNOWN_ELEMENTS and values.shape == tensor.shape:
        with contextlib.suppress(AttributeError, RuntimeError):  # a type without attributes
            setattr(tensor, KNOWN_ATTRIBUTE, values)


def forget(tensor: torch.Tensor) -> None:
    """``tensor``'s values changed in a way not followed: drop its copy."""
    if known(tensor) is not None:
        delattr(tensor, KNOWN_ATTRIBUTE)


def compute_known(func: Any, args: tuple[Any, ...], kwargs: dict[str, Any],
                  tensors: list[torch.Tensor]) -> list[torch.Tensor] | None:
    """The op's outputs computed on the known copies of its meta inputs, or None when some
    meta input has none (or the op fails on the CPU)."""
    for tensor in tensors:
        if tensor.is_meta and known(tensor) is None:
            return None

    def values(tensor: torch.Tensor) -> torch.Tensor:
        return known(tensor) if tensor.is_meta else tensor  # type: ignore[return-value]

    try:
        result = func(*map_structure(args, values), **map_structure(kwargs, values))
    except (RuntimeError, NotImplementedError, ValueError, TypeError, IndexError):
        return None
    return tensors_out(result)
