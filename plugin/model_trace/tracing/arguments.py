"""An op's arguments as the recorder sees them: the tensors among them, and the other values
as short texts for the figure (``dim=-1``, ``index=[:, 0]``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch


def tensors_in(args: tuple[Any, ...], kwargs: dict[str, Any]) -> list[torch.Tensor]:
    """The tensors among an op's arguments (two levels into lists and tuples)."""
    found: list[torch.Tensor] = []
    for group in (args, kwargs.values()) if kwargs else (args,):
        for value in group:
            if isinstance(value, torch.Tensor):
                found.append(value)
            elif isinstance(value, list | tuple):
                for inner in value:
                    if isinstance(inner, torch.Tensor):
                        found.append(inner)
                    elif isinstance(inner, list | tuple):
                        found.extend(t for t in inner if isinstance(t, torch.Tensor))
    return found


def tensors_out(result: Any) -> list[torch.Tensor]:
    """The tensors an op returned."""
    if isinstance(result, torch.Tensor):
        return [result]
    if isinstance(result, list | tuple):
        return tensors_in(tuple(result), {})
    if isinstance(result, dict):
        return tensors_in(tuple(result.values()), {})
    return []


def shares_memory(value: torch.Tensor, tensors: list[torch.Tensor]) -> bool | None:
    """Whether ``value`` is a view of one of ``tensors`` (``x[:, :128]``, a reshape that needed
    no copy), which writes no new bytes; None for a tensor without storage (a subclass).
    Compared by storage, as a forward under ``torch.inference_mode`` (DeepSeek-V3's) does not
    record views' bases."""
    try:
        storage = value.untyped_storage()._cdata
        for tensor in tensors:  # a loop, not any(): this runs for every op
            if tensor.untyped_storage()._cdata == storage:
                return True
    except (RuntimeError, NotImplementedError):
        return None
    return False


def bytes_of(tensors: list[torch.Tensor]) -> int:
    """Bytes of the tensors' elements. ``nbytes`` is one call where ``numel() *
    element_size()`` is two (each through torch's function check for a parameter); a sparse
    tensor has no ``nbytes``, and counts its ``numel`` elements."""
    total = 0
    for tensor in tensors:
        try:
            total += tensor.nbytes
        except RuntimeError:
            total += tensor.numel() * tensor.element_size()
    return total


def _format_slice(value: slice) -> str:
    parts = ["" if v is None else str(v) for v in (value.start, value.stop, value.step)]
    return ":".join(parts[:2] if value.step is None else parts)


_WRITTEN_AS_PYTHON = (int, float, bool, str, type(None))
"""Types whose text is their ``repr``, as a list writes its items."""


def _format_sequence(value: list[Any] | tuple[Any, ...]) -> str | None:
    if len(value) > 8:
        return None
    for item in value:  # a loop, not all(): shapes and dims are formatted on most ops
        if type(item) not in _WRITTEN_AS_PYTHON:
            items = [format_value(v) for v in value]
            if any(i is None for i in items):
                return None
            inner = ", ".join(items)  # type: ignore[arg-type]
            break
    else:
        inner = repr(list(value))[1:-1]
    return f"[{inner}]" if isinstance(value, list) else f"({inner})"


_FORMATTERS: dict[type, Callable[[Any], str | None]] = {
    **dict.fromkeys(_WRITTEN_AS_PYTHON, repr),
    torch.dtype: lambda v: str(v).removeprefix("torch."),
    torch.device: lambda v: v.type,
    slice: _format_slice,
    type(Ellipsis): lambda _: "...",
    list: _format_sequence, tuple: _format_sequence, torch.Size: _format_sequence,
}


def format_value(value: Any) -> str | None:
    """A short text for a non-tensor argument, or None to leave it out."""
    formatter = _FORMATTERS.get(type(value))
    if formatter is not None:
        return formatter(value)
    if isinstance(value, torch.Tensor):
        return "T"
    return None


def _positional(formatter: Callable[[Any], str | None]) -> Callable[[Any], str | None]:
    """``formatter`` for a positional argument, where an empty sequence says nothing."""
    def format_positional(value: Any) -> str | None:
        text = formatter(value)
        return None if text in ("[]", "()") else text

    return format_positional


_POSITIONAL_FORMATTERS: dict[type, Callable[[Any], str | None]] = {
    **_FORMATTERS, **dict.fromkeys((list, tuple, torch.Size), _positional(_format_sequence)),
}
_ARG_NAMES = tuple(f"arg{i}" for i in range(16))


def format_args(name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, str]:
    """The non-tensor arguments of an op call, as short texts (``index`` for getitem).

    Formatted at the call, not when the graph is written: a list argument may be changed
    later, and the figure shows what the op saw."""
    formatted: dict[str, str] = {}
    if name in ("getitem", "setitem") and len(args) > 1:
        index = args[1] if isinstance(args[1], tuple) else (args[1],)
        parts = [format_value(v) for v in index]
        formatted["index"] = "[" + ", ".join(p if p is not None else "?" for p in parts) + "]"
        return formatted
    formatter_of = _POSITIONAL_FORMATTERS.get  # every op: a tensor argument costs one look-up
    i = 0  # a counter, not enumerate(): a third of the time of formatting one argument
    for value in args:
        formatter = formatter_of(type(value))
        if formatter is not None:
            text = formatter(value)
            if text is not None:
                formatted[_ARG_NAMES[i] if i < 16 else f"arg{i}"] = text
        i += 1  # noqa: SIM113
    if kwargs:
        formatter_of = _FORMATTERS.get
        for key, value in kwargs.items():
            formatter = formatter_of(type(value))
            if formatter is not None:
                text = formatter(value)
                if text is not None:
                    formatted[key] = text
    return formatted
