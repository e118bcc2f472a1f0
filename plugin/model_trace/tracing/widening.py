"""Concrete integer ops whose CPU kernel lacks their dtype, computed on a wider one.

A meta trace runs a model's integer code on the CPU, but the model chose that code for the
device its hidden states are on (``meta``, so not ``cpu``), and CPU kernels miss some integer
dtypes: ``histc`` on int32 (transformers' grouped experts), ``topk`` on bool,
``searchsorted``, ``median``, ``max(dim)`` and floor division on uint16. Such an op is run
again with every integer tensor widened to int64 and its boolean ones kept (``masked_fill``'s
mask must stay a mask), else with every integer and boolean tensor widened to float64 (exact
below 2^53; ``topk`` has no bool kernel), and its outputs cast back to the dtypes its meta
kernel gives; an in-place op writes the result back into its target. No op is special-cased.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from model_trace.tracing.arguments import tensors_out
from model_trace.tracing.meta_cache import is_float
from model_trace.tracing.structures import map_structure

Call = Callable[[Any, tuple[Any, ...], dict[str, Any]], Any]

WIDENINGS = ((torch.int64, False), (torch.float64, True))
"""What an op whose kernel lacks its integer dtype is run on, in turn: the dtype its integer
tensors are widened to, and whether its boolean ones are too."""


_MISSING_KERNEL = ("not implemented for", "does not support bool", "not supported for")


def missing_kernel(error: BaseException) -> bool:
    """Whether an op failed for want of a kernel for its dtypes (or its backend)."""
    text = str(error)
    return isinstance(error, NotImplementedError) or any(m in text for m in _MISSING_KERNEL)


def run_widened(func: Any, args: tuple[Any, ...], kwargs: dict[str, Any], call: Call,
                in_place: bool) -> tuple[Any] | None:
    """The op's result computed on a wider dtype and cast back, alone in a tuple (it may be
    None itself: setitem's), or None if no wider dtype has a kernel either (or the meta kernel
    cannot say what the outputs should be)."""
    try:
        expected = tensors_out(func(*_on_meta(args), **_on_meta(kwargs)))
    except (RuntimeError, NotImplementedError, ValueError):
        return None
    for dtype, bools in WIDENINGS:
        widened = _widened(args, dtype, bools)
        try:
            result = call(func, widened, _widened(kwargs, dtype, bools))
        except (RuntimeError, NotImplementedError) as error:
            if missing_kernel(error):
                continue
            raise
        outputs = tensors_out(result)
        if len(outputs) != len(expected) or any(
                list(o.shape) != list(e.shape) for o, e in zip(outputs, expected, strict=True)):
            return None
        if in_place and isinstance(args[0], torch.Tensor):
            args[0].copy_(widened[0])  # the widened target holds the answer (setitem: None)
            return (result if result is None else args[0],)
        if kwargs.get("out") is not None:
            for target, value in zip(tensors_out(kwargs["out"]), outputs, strict=False):
                target.copy_(value)
            return (kwargs["out"],)
        return (_cast(result, {id(o): e.dtype for o, e in zip(outputs, expected, strict=True)}),)
    return None


def _cast(result: Any, dtypes: dict[int, torch.dtype]) -> Any:
    """``result`` with each output tensor cast to its dtype in ``dtypes`` (by object id)."""
    return map_structure(result, lambda t: t.to(dtypes.get(id(t), t.dtype)))


def _widened(value: Any, dtype: torch.dtype, bools: bool) -> Any:
    def widen(tensor: torch.Tensor) -> torch.Tensor:
        kept = is_float(tensor) or (tensor.dtype == torch.bool and not bools)
        return tensor if kept else tensor.to(dtype)

    return map_structure(value, widen)


def _on_meta(value: Any) -> Any:
    return map_structure(value, lambda t: t.to("meta"))
