"""Symbolic shapes: ``(B, S, d_model)`` on edges, in tooltips and in the summary, instead of
``(1, 128, 7168)``.

A fence names dimensions in one of two ways (``dims:``):

- ``{1: B, 128: S, 7168: d_model}``: the author decides what a size means. When the inputs
  are given as shapes, the named input sizes are checked as ``auto`` finds them: the model
  is traced again with them scaled, and a name goes only to the dimensions that follow its
  size (``B·S`` for a product), so 128 heads are not ``S`` when the sequence is 128 too; a
  named size the model fixes (its width) names every dimension of that size that stays
  fixed. Without shapes to scale (an inputs function), every dimension of that size is
  named, wherever it is;
- ``auto``: the model is traced again with its input sizes scaled (each distinct size of the
  inputs is a variable: all scaled at once by distinct primes, or one at a time if that
  fails), and a dimension is named after the variables it follows: ``S``, a product
  ``B·S`` (tokens of a batch), a multiple ``S·2`` or a part ``H/2``, an offset ``S+4096``.
  A dimension that never changes is a number, except the model width (the last dimension
  of the first float tensor that carries the batch and sequence), named ``d_model``.
  Variables are named by what they do: the sequence is the one that meets itself in one
  tensor (attention scores, ``(B, S, H, S)``), the batch is an input's first dimension;
  the rest by position (``H``, ``W`` of an image, else ``S``, ``T``, ...).

The result is ``graph.meta["dims"]``: ``{"sizes": {size: name}}`` for a mapping that could
not be checked, else ``{"names": {name: size}, "tensors": {tensor id: [name or "", ...]}}``. This
module needs no torch: the traces come from the caller.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from fractions import Fraction
from typing import Any

from model_trace.errors import ModelTraceError, SpecError
from model_trace.graph import Graph, Tensor
from model_trace.matching import tensor_keys
from model_trace.spec import FenceSpec

PRIMES = (2, 3, 5, 7, 11, 13, 17, 19)
"""The factors the input sizes are scaled by in the combined trace (one per variable)."""
WIDTH = "d_model"

Tracer = Callable[[dict[int, int]], Graph]
"""Traces the model again with some input sizes multiplied: ``{128: 3}``."""


# ------------------------------------------------------------------ reading the names
def symbolic_shape(graph: Graph, tensor: Tensor) -> str:
    """``(B, S, d_model)``: the tensor's shape with the dimensions ``dims`` named (its plain
    shape without them)."""
    names = _names_of(graph, tensor)
    if names is None:
        return tensor.shape_label
    parts = [name or str(size) for name, size in zip(names, tensor.shape, strict=False)]
    return "(" + ", ".join(parts) + ")"


def _names_of(graph: Graph, tensor: Tensor) -> list[str] | None:
    dims = graph.meta.get("dims")
    if not dims:
        return None
    if "sizes" in dims:
        sizes = dims["sizes"]
        names = [sizes.get(str(size), "") for size in tensor.shape]
    else:
        names = dims["tensors"].get(tensor.id)
    return names if names and any(names) else None


def shape_text(graph: Graph, tensor: Tensor) -> str:
    """A tensor as tooltips and panels list it: ``(B, S, d_model) bfloat16 = (1, 128, 7168)``
    (``(2, 8, 32) float32`` without names)."""
    named = symbolic_shape(graph, tensor)
    plain = tensor.shape_label
    return f"{named} {tensor.dtype}" + (f" = {plain}" if named != plain else "")


def legend(graph: Graph) -> list[tuple[str, int]]:
    """(name, size) of every named dimension, in naming order: ``B = 1, S = 128``."""
    dims = graph.meta.get("dims")
    if not dims:
        return []
    if "sizes" in dims:
        return [(name, int(size)) for size, name in dims["sizes"].items()]
    return list(dims["names"].items())


def legend_text(graph: Graph) -> str:
    """``B = 1, S = 128, d_model = 7168``, or ""."""
    return ", ".join(f"{name} = {size:,}" for name, size in legend(graph))


# ------------------------------------------------------------------ naming
def name_dims(graph: Graph, dims: dict[int, str] | str | None,
              shapes: list[tuple[str, list[int]]], trace: Tracer) -> Graph:
    """``graph`` with ``graph.meta["dims"]`` set from a ``dims`` field: a mapping of sizes to
    names, or ``auto``, which calls ``trace`` with a factor for some of the input ``shapes``'
    sizes (``{128: 3}``) and follows the dimensions from one trace to the other."""
    if dims is None:
        return graph
    if isinstance(dims, dict):
        named = _checked_dims(graph, dims, shapes, trace) if shapes else None
        if named is None:
            named = {"sizes": {str(size): name for size, name in dims.items()}}
    else:
        named = _auto_dims(graph, shapes, trace)
    return dataclasses.replace(graph, meta={**graph.meta, "dims": named})


def spec_shapes(spec: FenceSpec) -> list[tuple[str, list[int]]]:
    """(name, shape) of each input a fence gives as a shape: ``dims: auto`` needs them, a
    mapping is checked with them."""
    inputs = _spec_inputs(spec)
    if spec.dims is None:
        return []
    if inputs is None or isinstance(inputs, str):
        if spec.dims != "auto":
            return []  # a mapping names every dimension of its sizes, unchecked
        raise SpecError("`dims: auto` scales the input sizes, so it needs `inputs:` given as "
                        "shapes (an inputs function cannot be scaled); name the sizes instead, "
                        "e.g. `dims: {1: B, 128: S}`", field="dims")
    items = list(inputs.items()) if isinstance(inputs, dict) else [
        (f"input {i}", value) for i, value in enumerate(inputs)]
    return [(name, list(value["shape"] if isinstance(value, dict) else value))
            for name, value in items]


def scaled_spec(spec: FenceSpec, scale: dict[int, int]) -> FenceSpec:
    """The spec with every input size in ``scale`` multiplied by its factor."""
    inputs = _spec_inputs(spec)

    def shape(value: Any) -> Any:
        if isinstance(value, dict):
            return {**value, "shape": shape(value["shape"])}
        return [size * scale.get(size, 1) for size in value]

    scaled = ({name: shape(v) for name, v in inputs.items()} if isinstance(inputs, dict)
              else [shape(v) for v in inputs])  # type: ignore[union-attr]
    return dataclasses.replace(spec, inputs=scaled, dims=None, compare=None)


def _spec_inputs(spec: FenceSpec) -> Any:
    if spec.inputs is not None:
        return spec.inputs
    from model_trace.loader import ZOO

    zoo = ZOO.get(spec.model)
    return zoo.default_inputs if zoo is not None else None


@dataclasses.dataclass(frozen=True)
class _Variable:
    """A distinct size of the inputs, scaled together wherever it appears."""

    size: int
    positions: tuple[tuple[str, int, int], ...]
    """(input name, its number of dimensions, axis) of each appearance, inputs in order."""


@dataclasses.dataclass(frozen=True)
class _Run:
    """A trace with scaled inputs: each variable's factor (1: not scaled) and the graph."""

    factors: tuple[int, ...]
    graph: Graph


@dataclasses.dataclass(frozen=True)
class _Form:
    """A dimension as a function of the variables: ``coefficient · Π x^e + offset``."""

    powers: tuple[int, ...]
    coefficient: Fraction
    offset: int = 0


def _auto_dims(graph: Graph, shapes: list[tuple[str, list[int]]], trace: Tracer
               ) -> dict[str, Any]:
    variables = _variables(shapes)
    if not variables:
        raise SpecError("`dims: auto` found no input dimension to scale (every size is 0); "
                        "name the sizes instead, e.g. `dims: {128: S}`", field="dims")
    runs = _runs(variables, trace)
    forms = _forms(graph, runs, [v.size for v in variables])
    names = _variable_names(graph, variables, forms)
    width = _width(graph, forms, names)
    tensors: dict[str, list[str]] = {}
    for tensor_id, per_dim in forms.items():
        labels = [_format(form, names) if form is not None else "" for form in per_dim]
        if width is not None:
            shape = graph.tensors[tensor_id].shape
            labels = [WIDTH if not label and _constant(form) and shape[k] == width
                      else label for k, (label, form) in enumerate(zip(labels, per_dim,
                                                                        strict=True))]
        if any(labels):
            tensors[tensor_id] = labels
    legend_names = {names[k]: variables[k].size for k in range(len(variables)) if names[k]}
    if width is not None:
        legend_names[WIDTH] = width
    return {"names": legend_names, "tensors": tensors}


def _checked_dims(graph: Graph, dims: dict[int, str], shapes: list[tuple[str, list[int]]],
                  trace: Tracer) -> dict[str, Any] | None:
    """A mapping's names on the dimensions that follow their input sizes (see the module's
    doc); None if no named input size could be scaled."""
    variables = [v for v in _variables(shapes) if v.size in dims]
    if not variables:
        return None
    try:
        runs = _runs(variables, trace)
    except SpecError:
        return None
    forms = _forms(graph, runs, [v.size for v in variables])
    scaled = {variables[k].size for run in runs for k, f in enumerate(run.factors) if f != 1}
    names = [dims[v.size] if v.size in scaled else "" for v in variables]
    fixed = {size: name for size, name in dims.items() if size not in scaled}
    tensors: dict[str, list[str]] = {}
    for tensor_id, tensor in graph.tensors.items():
        per_dim = forms.get(tensor_id)
        if per_dim is None:  # not found in the other traces: named by size, unchecked
            labels = [dims.get(size, "") for size in tensor.shape]
        else:
            labels = [_format(form, names) if form is not None and any(form.powers)
                      else fixed.get(size, "") if _constant(form) else ""
                      for form, size in zip(per_dim, tensor.shape, strict=True)]
        if any(labels):
            tensors[tensor_id] = labels
    return {"names": {name: size for size, name in dims.items()}, "tensors": tensors}


def _variables(shapes: list[tuple[str, list[int]]]) -> list[_Variable]:
    found: dict[int, list[tuple[str, int, int]]] = {}
    for name, shape in shapes:
        for axis, size in enumerate(shape):
            if size > 0:
                found.setdefault(size, []).append((name, len(shape), axis))
    return [_Variable(size, tuple(at)) for size, at in found.items()][:len(PRIMES)]


def _runs(variables: list[_Variable], trace: Tracer) -> list[_Run]:
    """One trace with every variable scaled by its own prime; if the model refuses that
    (a size its weights fix, two inputs that must agree), one trace per variable, doubled."""
    def scale(factors: tuple[int, ...]) -> dict[int, int]:
        return {v.size: f for v, f in zip(variables, factors, strict=True) if f != 1}

    combined = tuple(PRIMES[: len(variables)])
    try:
        return [_Run(combined, trace(scale(combined)))]
    except (ModelTraceError, RuntimeError, ValueError, TypeError, IndexError):
        pass
    runs = []
    for k in range(len(variables)):
        factors = tuple(2 if j == k else 1 for j in range(len(variables)))
        try:
            runs.append(_Run(factors, trace(scale(factors))))
        except (ModelTraceError, RuntimeError, ValueError, TypeError, IndexError):
            continue  # this size is fixed (a model width): its dimensions stay numbers
    if not runs:
        raise SpecError("`dims: auto` could not trace the model with any input size changed; "
                        "name the sizes instead, e.g. `dims: {1: B, 128: S}`", field="dims")
    return runs


def _forms(graph: Graph, runs: list[_Run], sizes: list[int]) -> dict[str, list[_Form | None]]:
    """For each tensor of ``graph`` found in the runs, each dimension's form as a function of
    the variables (their ``sizes`` in ``graph``); None: not explained by them."""
    keys = tensor_keys(graph)
    found: list[dict[Any, Tensor]] = []
    for run in runs:
        other = run.graph
        found.append({key: other.tensors[t] for t, key in tensor_keys(other).items()})
    forms: dict[str, list[_Form | None]] = {}
    for tensor_id, key in keys.items():
        tensor = graph.tensors[tensor_id]
        seen = [(run, index[key]) for run, index in zip(runs, found, strict=True)
                if key in index and len(index[key].shape) == len(tensor.shape)]
        if not seen:
            continue
        forms[tensor_id] = [_fit(size, [(run.factors, other.shape[axis]) for run, other in seen],
                                 sizes) for axis, size in enumerate(tensor.shape)]
    return forms


def _fit(base: int, seen: list[tuple[tuple[int, ...], int]], sizes: list[int]) -> _Form | None:
    """The form of one dimension of size ``base`` that also gives each (factors, size)."""
    count = len(sizes)
    if all(value == base for _, value in seen):
        return _Form((0,) * count, Fraction(base))
    powers = _powers(base, seen, count)
    if powers is not None:
        product = math.prod(Fraction(sizes[k]) ** e for k, e in enumerate(powers))
        return _Form(powers, Fraction(base) / product)
    return _offset(base, seen, sizes)


def _powers(base: int, seen: list[tuple[tuple[int, ...], int]], count: int
            ) -> tuple[int, ...] | None:
    """Exponents e with size = c · Π x^e in every run, or None."""
    powers: list[int | None] = [None] * count
    for factors, value in seen:
        if base == 0 or value == 0:
            return None
        ratio = Fraction(value, base)
        for k, factor in enumerate(factors):
            if factor == 1:
                continue
            exponent = 0
            while ratio.numerator % factor == 0:
                ratio /= factor
                exponent += 1
            while ratio.denominator % factor == 0:
                ratio *= factor
                exponent -= 1
            if powers[k] is not None and powers[k] != exponent:
                return None
            powers[k] = exponent
        if ratio != 1:
            return None
    result = tuple(p or 0 for p in powers)
    return result if any(result) else None


def _offset(base: int, seen: list[tuple[tuple[int, ...], int]], sizes: list[int]
            ) -> _Form | None:
    """size = a · x + b for one variable x (a decoding step's positions: S + 4096)."""
    for k in range(len(sizes)):
        slope: Fraction | None = None
        for factors, value in seen:
            if factors[k] == 1:
                if value != base:
                    break
                continue
            step = Fraction(value - base, sizes[k] * (factors[k] - 1))
            if step <= 0 or (slope is not None and step != slope):
                break
            slope = step
        else:
            if slope is None or slope.denominator != 1:
                continue
            offset = base - int(slope) * sizes[k]
            powers = tuple(1 if j == k else 0 for j in range(len(sizes)))
            return _Form(powers, slope, offset)
    return None


def _constant(form: _Form | None) -> bool:
    return form is not None and not any(form.powers)


def _format(form: _Form, names: list[str]) -> str:
    """``B·S``, ``S·2``, ``H/2``, ``S+4096``; "" for a constant or an unnamed variable."""
    if not any(form.powers) or any(e and not names[k] for k, e in enumerate(form.powers)):
        return ""
    factors = []
    for k in sorted(range(len(names)), key=lambda j: _NAME_ORDER.get(names[j], 99)):
        exponent = form.powers[k]
        if exponent > 0:
            factors.append(names[k] + ("" if exponent == 1 else _superscript(exponent)))
    if not factors or any(e < 0 for e in form.powers):
        return ""
    text = "·".join(factors)
    c = form.coefficient
    if c.denominator == 1 and c != 1:
        text += f"·{c.numerator}"
    elif c.numerator == 1 and c.denominator != 1:
        text += f"/{c.denominator}"
    elif c != 1:
        return ""
    if form.offset:
        text += f"{'+' if form.offset > 0 else '-'}{abs(form.offset)}"
    return text


_NAME_ORDER = {"B": 0, "S": 1, "T": 2, "H": 3, "W": 4}


def _superscript(exponent: int) -> str:
    return "".join("⁰¹²³⁴⁵⁶⁷⁸⁹"[int(d)] for d in str(exponent))


def _variable_names(graph: Graph, variables: list[_Variable],
                    forms: dict[str, list[_Form | None]]) -> list[str]:
    """A name for each variable: S meets itself in one tensor, B is an input's first
    dimension, the rest by position."""
    names = [""] * len(variables)
    followed = {k for per_dim in forms.values() for f in per_dim if f is not None
                for k, e in enumerate(f.powers) if e}
    meets_itself = set()
    for per_dim in forms.values():
        single = [f.powers.index(1) for f in per_dim if f is not None and sum(f.powers) == 1
                  and max(f.powers) == 1 and f.offset == 0]
        meets_itself.update(k for k in single if single.count(k) > 1)
    if meets_itself:
        names[min(meets_itself)] = "S"
    used = set(names)
    for k, variable in enumerate(variables):
        if names[k] or k not in followed:  # a size the model fixes stays a number
            continue
        _, rank, axis = variable.positions[0]
        guesses = ["B"] if axis == 0 and rank > 1 else []
        if rank == 4 and axis in (2, 3):
            guesses = ["H" if axis == 2 else "W"]
        guesses += ["S", "T", "U", "V"]
        names[k] = next((g for g in guesses if g not in used), f"n{k}")
        used.add(names[k])
    return names


def _width(graph: Graph, forms: dict[str, list[_Form | None]], names: list[str]) -> int | None:
    """The model width: the fixed last dimension of the first float tensor whose other
    dimensions are the batch and the sequence (only for models with a sequence)."""
    if "S" not in names:
        return None
    for tensor_id, per_dim in forms.items():
        tensor = graph.tensors[tensor_id]
        if not tensor.dtype.startswith(("float", "bfloat")) or len(per_dim) < 2:
            continue
        *leading, last = per_dim
        if _constant(last) and all(f is not None and sum(f.powers) == 1 and
                                   f.coefficient == 1 and f.offset == 0 for f in leading):
            return tensor.shape[-1]
    return None
