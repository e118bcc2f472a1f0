"""Output metadata of meta-kernel calls, cached by op and argument signature.

Many meta kernels are written in Python (elementwise ops go through ``torch._refs``: 80 us for
a ``mul``), and a large model calls the same op on the same shapes thousands of times, so the
output metadata (shape, stride, dtype) of pure ops on meta tensors is cached per op and
argument signature; a hit makes the outputs with ``torch.empty_strided`` (1 us). An in-place
op on meta tensors that returned its target unchanged in shape, strides and dtype is not run
again for the same signature (it would only check shapes). Views, routing ops, factories and
in-place ops on concrete tensors always run (the op table's roles say which is which), and so
does a call whose output turned out to be a view of an input (a ``getitem`` that slices).
"""

from __future__ import annotations

from typing import Any

import torch

from model_trace.tracing.arguments import shares_memory
from model_trace.tracing.flops import Cost


def is_float(tensor: torch.Tensor) -> bool:
    return tensor.dtype.is_floating_point or tensor.dtype.is_complex


_SCALARS = (bool, int, float, str, type(None), torch.dtype)


def _key(values: Any, parts: list[Any]) -> int:
    """Append a hashable description of ``values`` (an op's arguments, as far as a meta
    kernel can see them: shapes, strides, dtypes, scalars) to ``parts``. Returns -1 if some
    value cannot be described (the call is not cached), else the number of meta tensors."""
    metas = 0
    for value in values:
        if isinstance(value, torch.Tensor):
            if value.is_meta:
                metas += 1
                parts.append((value.shape, value.stride(), value.dtype))
            elif value.dtype == torch.bool:
                return -1  # a concrete mask: the output shape depends on its values
            else:
                parts.append((value.shape, value.dtype, "real"))
        elif isinstance(value, _SCALARS):
            parts.append(value)
        elif isinstance(value, list | tuple):
            parts.append(len(value))
            inner = _key(value, parts)
            if inner < 0:
                return -1
            metas += inner
        elif isinstance(value, slice):
            parts.append(("slice", value.start, value.stop, value.step))
        elif value is Ellipsis or isinstance(value, torch.device | torch.memory_format):
            parts.append(str(value))
        else:
            return -1
    return metas


def metadata(tensor: torch.Tensor) -> tuple[Any, ...]:
    """What a meta kernel can change about a tensor: its shape, strides and dtype."""
    return tensor.shape, tensor.stride(), tensor.dtype


def _all_meta(values: Any) -> bool:
    """Whether every tensor among ``values`` (in lists and tuples too) is on meta."""
    for value in values:
        if isinstance(value, torch.Tensor):
            if not value.is_meta:
                return False
        elif isinstance(value, list | tuple) and not _all_meta(value):
            return False
    return True


def call_signature(func: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
                   ) -> tuple[tuple[Any, ...], int] | None:
    """A hashable description of a call as far as shapes go (the op, tensors' shapes and
    dtypes, scalars) and its number of meta tensors; None if an argument cannot be
    described (a boolean mask, whose values decide the output's shape)."""
    parts: list[Any] = [func]
    metas = _key(args, parts)
    if metas < 0:
        return None
    if kwargs:
        parts.append(tuple(kwargs))
        more = _key(kwargs.values(), parts)
        if more < 0:
            return None
        metas += more
    return tuple(parts), metas


class MetaResults:
    """Output metadata (and FLOPs) of pure meta-kernel calls, by op and argument signature.
    Only calls with at least one meta tensor argument are keyed."""

    def __init__(self) -> None:
        self.entries: dict[tuple[Any, ...], tuple[Any, ...]] = {}
        # cost of in-place calls that returned their target with its metadata unchanged:
        # a later call with the same key needs no kernel (it would only check the shapes)
        self.in_place: dict[tuple[Any, ...], Cost] = {}
        self.hits = 0

    def key(self, func: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
            ) -> tuple[Any, ...] | None:
        described = call_signature(func, args, kwargs)
        if described is None or not described[1]:
            return None  # no meta tensor: a real computation, whose values matter
        return described[0]

    def key_in_place(self, func: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
                     ) -> tuple[Any, ...] | None:
        """The key of an in-place call whose every tensor is on meta (no values for its
        kernel to read), or None. The target's inference-ness and the inference mode are part
        of it: they decide whether an in-place write is allowed."""
        if not args or not isinstance(args[0], torch.Tensor):
            return None
        if not (_all_meta(args) and _all_meta(kwargs.values())):
            return None
        described = call_signature(func, args, kwargs)
        if described is None:
            return None
        return (*described[0], args[0].is_inference(), torch.is_inference_mode_enabled())

    def get(self, key: tuple[Any, ...]) -> tuple[Any, Cost] | None:
        """(outputs, cost) of a cached call, or None."""
        entry = self.entries.get(key)
        if entry is None:
            return None
        self.hits += 1
        kind, outputs, cost = entry
        made = [torch.empty_strided(shape, stride, dtype=dtype, device="meta")
                for shape, stride, dtype in outputs]
        if kind is torch.Tensor:
            return made[0], cost
        return (kind(made) if kind in (tuple, list) else kind(tuple(made))), cost

    def put(self, key: tuple[Any, ...], result: Any, cost: Cost,
            inputs: list[torch.Tensor]) -> None:
        outputs = [result] if isinstance(result, torch.Tensor) else result
        if not isinstance(outputs, list | tuple) or not outputs:
            return
        described = []
        for value in outputs:
            if (not isinstance(value, torch.Tensor) or not value.is_meta or not is_float(value)
                    or shares_memory(value, inputs) is not False):
                return  # a view (``x[:, :128]``) must stay one: it writes no new memory
            described.append((value.shape, value.stride(), value.dtype))
        kind = torch.Tensor if isinstance(result, torch.Tensor) else type(result)
        self.entries[key] = (kind, tuple(described), cost)
