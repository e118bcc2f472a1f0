"""Concrete integer ops whose CPU kernel lacks their dtype, computed on a wider one.

A meta trace runs a model's integer code on the CPU, but the model chose that code for the
device its hidden states are on (``meta``, so not ``cpu``), and CPU kernels miss some integer
dtypes: ``histc`` on int32 (transformers' grouped experts), ``topk`` on bool,
``searchsorted``, ``median``, ``max(dim)`` and floor division on uint16. Such an op is run
again with every integer or boolean tensor widened to int64, else to float64 (exact below
2^53), and its outputs cast back to the dtypes its meta kernel gives; an in-place op writes
the result back into its target. No op is special-cased.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from model_trace.tracing.arguments import tensors_out
from model_trace.tracing.meta_cache import is_float
from model_trace.tracing.structures import map_structure

Call = Callable[[Any, tuple[Any, ...], dict[str, Any]], Any]

WIDER_DTYPES = (torch.int64, torch.float64)
"""Dtypes tried in turn for an op whose kernel lacks its integer dtype."""


_MISSING_KERNEL = ("not implemented for", "does not support bool", "not supported for")


def missing_kernel(error: BaseException) -> bool:
    """Whether an op failed for want of a kernel for its dtypes (or its backend)."""
    text = str(error)
    return isinstance(error, NotImplementedError) or any(m in text for m in _MISSING_KERNEL)


def run_widened(func: Any, args: tuple[Any, ...], kwargs: dict[str, Any], call: Call,
                in_place: bool) -> Any | None:
    """The op's result computed on a wider dtype and cast back, or None if no wider dtype
    has a kernel either (or the meta kernel cannot say what the outputs should be)."""
    try:
        expected = tensors_out(func(*_on_meta(args), **_on_meta(kwargs)))
    except (RuntimeError, NotImplementedError, ValueError):
        return None
    for dtype in WIDER_DTYPES:
        try:
            result = call(func, _widened(args, dtype), _widened(kwargs, dtype))
        except (RuntimeError, NotImplementedError) as error:
            if missing_kernel(error):
                continue
            raise
        outputs = tensors_out(result)
        if len(outputs) != len(expected) or any(
                list(o.shape) != list(e.shape) for o, e in zip(outputs, expected, strict=True)):
            return None
        if in_place and isinstance(args[0], torch.Tensor):
            return args[0].copy_(outputs[0])
        if kwargs.get("out") is not None:
            for target, value in zip(tensors_out(kwargs["out"]), outputs, strict=False):
                target.copy_(value)
            return kwargs["out"]
        return _cast(result, {id(o): e.dtype for o, e in zip(outputs, expected, strict=True)})
    return None


def _cast(result: Any, dtypes: dict[int, torch.dtype]) -> Any:
    """``result`` with each output tensor cast to its dtype in ``dtypes`` (by object id)."""
    return map_structure(result, lambda t: t.to(dtypes.get(id(t), t.dtype)))


def _widened(value: Any, dtype: torch.dtype) -> Any:
    return map_structure(value, lambda t: t if is_float(t) or t.dtype == dtype else t.to(dtype))


def _on_meta(value: Any) -> Any:
    return map_structure(value, lambda t: t.to("meta"))
