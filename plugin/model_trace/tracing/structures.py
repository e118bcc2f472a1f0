"""Tensors inside nested inputs and outputs: tuples, lists, dicts, named tuples, dataclasses.

Both helpers walk iteratively, so a deeply nested structure cannot hit the recursion limit.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Callable
from typing import Any

import torch


def map_structure(value: Any, fn: Callable[[torch.Tensor], Any]) -> Any:
    """``value`` with ``fn`` applied to every tensor in nested tuples, lists, dicts and
    dataclasses (iteratively: no recursion limit)."""
    if isinstance(value, torch.Tensor):
        return fn(value)
    if not _is_container(value):
        return value  # a number, a string, None: nothing to map
    # each entry: (container, items to rebuild from); rebuilt bottom-up
    built: dict[int, Any] = {}
    order: list[Any] = []
    stack = [value]
    while stack:
        item = stack.pop()
        order.append(item)
        stack.extend(c for c in _children(item) if _is_container(c))
    for item in reversed(order):
        parts = [fn(c) if isinstance(c, torch.Tensor) else built.get(id(c), c)
                 for c in _children(item)]
        built[id(item)] = _rebuild(item, parts)
    return built[id(value)]


def _is_container(value: Any) -> bool:
    return isinstance(value, tuple | list | dict) or _is_dataclass_instance(value)


def _is_dataclass_instance(value: Any) -> bool:
    return dataclasses.is_dataclass(value) and not isinstance(value, type)


def _children(value: Any) -> list[Any]:
    if isinstance(value, dict):
        return list(value.values())
    if isinstance(value, tuple | list):
        return list(value)
    if _is_dataclass_instance(value):
        return [getattr(value, f.name) for f in dataclasses.fields(value)]
    return []


def _rebuild(value: Any, parts: list[Any]) -> Any:
    if isinstance(value, dict):
        pairs = list(zip(value.keys(), parts, strict=True))
        try:
            return type(value)(pairs)
        except TypeError:  # a defaultdict, whose first argument is its factory
            rebuilt = copy.copy(value)
            rebuilt.update(pairs)
            return rebuilt
    if isinstance(value, tuple | list):
        if hasattr(value, "_fields"):  # a named tuple
            return type(value)(*parts)
        try:
            return type(value)(parts)
        except TypeError:
            return tuple(parts)
    names = [f.name for f in dataclasses.fields(value)]
    try:
        return dataclasses.replace(value, **dict(zip(names, parts, strict=True)))
    except (TypeError, ValueError):
        return value


def named_tensors(value: Any, prefix: str) -> list[tuple[str, torch.Tensor]]:
    """Every tensor in a nested structure with a readable path: ``output[0]``,
    ``output['logits']``, ``output.hidden`` (iteratively, in order)."""
    found: list[tuple[str, torch.Tensor]] = []
    stack: list[tuple[str, Any]] = [(prefix, value)]
    while stack:
        label, item = stack.pop()
        if isinstance(item, torch.Tensor):
            found.append((label, item))
            continue
        if isinstance(item, dict):
            entries = [(f"{label}[{k!r}]", v) for k, v in item.items()]
        elif isinstance(item, tuple | list):
            entries = ([(f"{label}.{k}", v) for k, v in zip(item._fields, item, strict=True)]
                       if hasattr(item, "_fields")  # a named tuple
                       else [(f"{label}[{i}]", v) for i, v in enumerate(item)])
        elif _is_dataclass_instance(item):
            entries = [(f"{label}.{f.name}", getattr(item, f.name))
                       for f in dataclasses.fields(item)]
        else:
            continue
        stack.extend(reversed(entries))
    return found
