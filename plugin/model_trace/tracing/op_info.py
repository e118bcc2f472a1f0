"""``OpInfo``: what the recorder needs to know about one function it intercepts, worked out
once per function from the op table and the function object itself."""

from __future__ import annotations

import inspect
import types
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch.overrides import resolve_name

from model_trace.tracing.op_table import FlopRule, Made, Role, facts_of


@dataclass(frozen=True, slots=True)
class OpInfo:
    """What the recorder needs to know about a function, computed once per function."""

    name: str
    category: str
    role: Role = ""
    passthrough: bool = False  # returns no tensor: run it, record nothing
    python: bool = False  # a torch Python function the trace can descend into
    flops: FlopRule | str = ""  # the table's rule, or "custom": formula on the op's args
    mutates: str = ""  # "self" (in place), "collective" (writes its first argument)
    cacheable: bool = False  # a pure op whose meta outputs may be cached (see concrete)
    in_place: bool = False  # writes into its first argument: may be cached as "returns self"
    made: Made = ""  # a factory's values: from its arguments, random or uninitialised

    @property
    def view(self) -> bool:
        return self.role == "view"

    @property
    def indexing(self) -> bool:
        """Takes concrete indices as they are (in a meta trace, they stay on the CPU)."""
        return self.role in ("gather", "indexing")

    @property
    def factory(self) -> bool:
        return self.role in ("factory", "like")

    @classmethod
    def of(cls, func: Callable[..., Any]) -> OpInfo:
        name, prop = op_name(func)
        if prop:
            facts = facts_of(name)
            return cls(name, "shape", role="query" if facts.role == "query" else "view",
                       passthrough=facts.role == "query")
        module = getattr(func, "__module__", "") or ""
        distributed = module.startswith("torch.distributed")
        facts = facts_of(name, distributed)
        if facts.role == "query":
            return cls(name, "other", role="query", passthrough=True)
        collective = facts.category == "collective" and distributed
        python = (isinstance(func, types.FunctionType) and module.startswith("torch")
                  and module != "torch._tensor" and not collective)
        if facts.flops in ("linear", "vecdot"):
            flops: str = facts.flops
        elif isinstance(func, torch._ops.OpOverload | torch._ops.OpOverloadPacket):
            flops = "custom"
        elif not facts.known:
            flops = "dispatch"  # an op the table does not know: look for formulas inside
        else:
            flops = facts.flops
        mutates = ""
        if collective:
            mutates = "collective"
        elif writes_in_place(name):
            mutates = "self"
        role = facts.role
        cacheable = not (role in ("view", "routing", "factory", "like", "device") or mutates)
        in_place = mutates == "self" and role not in ("gather", "indexing")
        return cls(name, facts.category, role=role, python=python, flops=flops,
                   mutates=mutates, cacheable=cacheable, in_place=in_place, made=facts.made)


class OpInfos(dict[Any, OpInfo]):
    """``OpInfo`` by function, computed the first time one is asked for (``infos[func]``), for
    a mode's per-op lookup; ``get`` does not compute (the op runner asks it about functions
    the mode may not have seen)."""

    def __missing__(self, func: Any) -> OpInfo:
        info = self[func] = OpInfo.of(func)
        return info


_IN_PLACE_OPERATORS = frozenset(
    f"__i{op}__" for op in ("add", "sub", "mul", "truediv", "floordiv", "mod", "pow", "lshift",
                            "rshift", "and", "or", "xor"))
"""The tensor methods behind augmented assignments (``x |= y``: ``__ior__``), which write
into their first argument; a prefix test would also take ``__invert__`` (``~x``),
``__index__``, ``__int__`` and ``__iter__`` for them. (torch names ``__idiv__`` as
``__itruediv__``, and a tensor has no ``__imatmul__``: ``x @= y`` is ``x = x @ y``.)"""


def op_name(func: Callable[..., Any]) -> tuple[str, bool]:
    """The short name of an op (``linear``, ``add_`` for ``__iadd__``) and whether it is a
    property getter (``x.T``)."""
    if isinstance(func, torch._ops.OpOverloadPacket):  # torch.ops.ns.op called directly
        return func._qualified_op_name.rpartition("::")[2], False
    if isinstance(func, torch._ops.OpOverload):
        return func.name().rpartition("::")[2].split(".")[0], False
    qualified = resolve_name(func) or getattr(func, "__name__", None) or repr(func)
    parts = qualified.split(".")
    if qualified.endswith(".__get__"):  # torch.Tensor.T.__get__
        return parts[-2], True
    short = parts[-1]
    own = getattr(func, "__name__", short)
    if (own != short and isinstance(func, types.BuiltinFunctionType)
            and getattr(torch, own, None) == func == getattr(torch, short, None)):
        short = own  # torch.mm is equal to its alias torch.spmm, which torch names it by
    if short in _IN_PLACE_OPERATORS:
        return short[3:-2] + "_", False
    if (short.startswith("__") and short.endswith("__")
            and facts_of(short).role != "query"):
        return short.strip("_"), False
    return short, False


def writes_in_place(name: str) -> bool:
    """Whether the op of this short name writes into its first argument (``add_``,
    ``setitem``); its output is a new version of that tensor."""
    return name == "setitem" or (name.endswith("_") and not name.startswith("_"))


def function_body(func: types.FunctionType) -> types.FunctionType:
    """A private copy of a torch Python function that skips its ``has_torch_function`` entry
    check, so the tracer can run its body with the mode active and see its inner ops. The
    copy has its own globals; torch itself is not changed."""
    names = dict(func.__globals__)
    for check in ("has_torch_function", "has_torch_function_unary",
                  "has_torch_function_variadic"):
        if check in names:
            names[check] = _never
    body = types.FunctionType(func.__code__, names, func.__name__, func.__defaults__,
                              func.__closure__)
    body.__kwdefaults__ = func.__kwdefaults__
    return body


def argument_names(function: Callable[..., Any]) -> list[str]:
    """Names of a function's positional parameters, ``self`` left out."""
    try:
        parameters = inspect.signature(function).parameters.values()
    except (TypeError, ValueError):
        return []
    names = [p.name for p in parameters
             if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    return names[1:] if names[:1] == ["self"] else names


def _never(*_: Any, **__: Any) -> bool:
    return False
