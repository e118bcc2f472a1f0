"""The fence spec: the YAML inside a ```model-trace block, parsed and validated.

Validation is declarative (``FIELDS``) so every error names the field, what was wrong and the
values allowed, and so the docs' field reference and the checks cannot drift apart.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import yaml

from model_trace.errors import SpecError


@dataclass(frozen=True)
class FieldRule:
    """One allowed key of a fence spec: its Python types, a description and an example."""

    types: tuple[type, ...]
    description: str
    example: str
    choices: tuple[Any, ...] = ()
    minimum: int | None = None


FIELDS: dict[str, FieldRule] = {
    "model": FieldRule((str,), "a zoo name or an import path 'package.module:factory'",
                       "torch.nn:TransformerEncoderLayer"),
    "args": FieldRule((dict,), "keyword arguments for the factory", "{d_model: 64, nhead: 4}"),
    "config": FieldRule((str,), "zoo config name", "671B"),
    "overrides": FieldRule((dict,), "config field overrides", "{n_layers: 4}"),
    "inputs": FieldRule((list, dict, str),
                        "input shapes (a list for positional, a mapping for keyword inputs), "
                        "or an import path 'package.module:make_inputs'", "[[2, 16, 64]]"),
    "depth": FieldRule((int,), "how many module levels are open in the first view", "2",
                       minimum=0),
    "caption": FieldRule((str,), "caption shown under the graph", "One encoder layer"),
    "height": FieldRule((int,), "height of the viewer in pixels", "600", minimum=100),
}


@dataclass(frozen=True)
class FenceSpec:
    """A validated fence: what to trace and how to show it."""

    model: str
    args: dict[str, Any] = field(default_factory=dict)
    config: str | None = None
    overrides: dict[str, Any] = field(default_factory=dict)
    inputs: list[Any] | dict[str, Any] | str = field(default_factory=list)
    depth: int = 1
    caption: str = ""
    height: int | None = None


def parse_spec(text: str) -> FenceSpec:
    """Parse a fence body; raise ``SpecError`` with the field and the 1-based body line."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        problem = getattr(error, "problem", None) or str(error)
        raise SpecError(f"invalid YAML: {problem}; check indentation and quoting",
                        line=line) from error
    if data is None:
        raise SpecError("the fence is empty; give at least `model: package.module:factory`")
    if not isinstance(data, dict):
        raise SpecError("the fence must be a YAML mapping of `field: value` lines, "
                        f"not a {type(data).__name__}")
    for key, value in data.items():
        _check_field(str(key), value, _line_of(text, str(key)))
    if "model" not in data:
        raise SpecError("the field 'model' is missing; add e.g. "
                        f"`model: {FIELDS['model'].example}`", field="model")
    return FenceSpec(**data)


def _check_field(key: str, value: Any, line: int | None) -> None:
    rule = FIELDS.get(key)
    if rule is None:
        allowed = ", ".join(sorted(FIELDS))
        raise SpecError(f"unknown field '{key}'; allowed fields: {allowed}", field=key, line=line)
    if (isinstance(value, bool) and bool not in rule.types) or not isinstance(value, rule.types):
        kinds = " or ".join(t.__name__ for t in rule.types)
        raise SpecError(f"field '{key}' must be a {kinds}, got {value!r}; e.g. "
                        f"`{key}: {rule.example}`", field=key, line=line)
    if rule.choices and value not in rule.choices:
        allowed = ", ".join(str(c) for c in rule.choices)
        raise SpecError(f"field '{key}' is {value!r}; allowed values: {allowed}",
                        field=key, line=line)
    if rule.minimum is not None and value < rule.minimum:
        raise SpecError(f"field '{key}' must be at least {rule.minimum}, got {value}",
                        field=key, line=line)


def _line_of(text: str, key: str) -> int | None:
    for number, line in enumerate(text.splitlines(), start=1):
        if line.lstrip().startswith(f"{key}:"):
            return number
    return None
