"""Running a model on the meta device with concrete integers: the rules of a meta trace.

Float tensors stay on the meta device (shapes, no data). Integer and boolean tensors, the ones
that decide routing and indexing, carry real values on the CPU, so a model's own
data-dependent code runs unchanged: ``bincount(...).tolist()``, ``where(indices == i)``,
``x[idx]``, ``y[idx] += ...`` and Python branches on the counts. The rules, applied per op:

1. An index-producing op on a meta tensor (``topk``, ``argmax``, ``max(dim)``, ``sort``...)
   gets its indices from the routing policy (``route_rule``).
2. Ops mixing meta and CPU tensors run on the meta device: CPU tensors move to meta, except
   for indexing ops (``x[idx]``, ``gather``, ``index_put_``, ``embedding``...) that take CPU
   indices as they are, and for integer scalars (0-d), which meta kernels take as numbers:
   a size computed as a tensor (``x.view(b, torch.div(n, w, rounding_mode="trunc"), w)``)
   keeps its value. A write through concrete indices into a meta tensor (``y[mask] = v``,
   ``index_put_``) is checked as a real run checks it, which meta kernels do not: its values
   must broadcast to the elements it writes.
3. An integer or boolean result computed from meta tensors has no known values: ``*_like``
   and ``new_*`` factories are computed on the CPU (their values do not depend on the input);
   anything else becomes CPU zeros, an *assumed* value: ``assumed`` says so to the recorder,
   which marks the op and reports it (``assumptions``).
4. Factories (``zeros``, ``full``, ``arange``, ``tensor``...) that would make a float tensor
   on the CPU make it on the meta device instead, so a model never allocates a full-size
   float buffer;
   integer and boolean ones are made on the CPU even when asked for on the meta device
   (``arange(s, device=x.device)`` keeps its values).
5. ``.to(device)`` of a meta tensor keeps it on meta, and of a concrete integer or boolean
   tensor to the meta device keeps it concrete (only the dtype changes), and so does one
   cast like a meta tensor (``mask.to(x)``, ``mask.type_as(x)``).
6. An op on concrete tensors whose CPU kernel lacks their integer dtype runs on a wider one
   (``widening``); if none has a kernel, its outputs are assumed (zeros, floats on meta).
7. An op without a meta kernel whose results' shapes, and integer and boolean values, depend
   only on its float tensors' shapes (the op table's role ``shapes``: a padding mask's check,
   the CTC loss) runs on the CPU with a stand-in of each meta tensor's shape, one element
   broadcast (no memory): those are exact; its float results, computed from stand-ins, move
   to the meta device.
8. A grouped matrix product (``grouped_mm``, how transformers runs experts by default) of
   float32 or float16 meta tensors, which torch's meta kernel refuses (its CUDA kernel takes
   bfloat16 only, its CPU kernel any float), runs the meta kernel on bfloat16 casts and hands
   on its result in the dtype the CPU kernel gives.
9. The CPU work runs on one thread (``threads.one_thread``): concrete values are indices,
   masks and counts of a few thousand elements, for which starting torch's worker threads
   costs more than the work: 15 ms per ``triu`` or ``histc`` on a busy 2-core machine.

The output metadata of pure meta-kernel calls is cached (``meta_cache``).
"""

from __future__ import annotations

from typing import Any

import torch

from model_trace.tracing.arguments import tensors_in, tensors_out
from model_trace.tracing.known_values import (
    KNOWN_ATTRIBUTE,
    MAX_KNOWN_ELEMENTS,
    attach,
    compute_known,
    forget,
    known,
)
from model_trace.tracing.meta_cache import MetaResults, is_float
from model_trace.tracing.op_info import OpInfo
from model_trace.tracing.route_rule import Call, RoutingRule, argument
from model_trace.tracing.routing import RoutingPolicy
from model_trace.tracing.structures import map_structure
from model_trace.tracing.widening import missing_kernel, run_widened


def _targets_meta(args: tuple[Any, ...], kwargs: dict[str, Any]) -> bool:
    """Whether a factory's or ``.to``'s device arguments name the meta device."""
    for value in (*args, kwargs.get("device")):
        if isinstance(value, torch.Tensor):
            if value.is_meta:
                return True
        elif isinstance(value, str | torch.device) and torch.device(value).type == "meta":
            return True
    return False


def _shape_stand_ins(value: Any) -> Any:
    """``value`` with each meta tensor replaced by a CPU tensor of its shape and dtype whose
    elements are one, broadcast (rule 7)."""
    return map_structure(value, lambda t: torch.zeros((), dtype=t.dtype).expand(t.shape)
                         if t.is_meta else t)


_CASTS_LIKE = frozenset({"to", "type_as"})
"""Casts that may take another tensor's dtype and device: a concrete integer or boolean
tensor cast like a meta one stays concrete, in the dtype the meta kernel gives (rule 5)."""
_INDEX_WRITES = frozenset({"setitem", "index_put_", "index_put"})
"""Writes through an index (its argument 1; the values, argument 2)."""


def _check_index_write(name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    """Raise as a real run would if the values of a write through concrete indices into a
    meta tensor do not broadcast to the elements it writes (rule 2)."""
    target = argument(args, kwargs, 0, "input")
    index = argument(args, kwargs, 1, "indices")
    value = argument(args, kwargs, 2, "values")
    if not (isinstance(target, torch.Tensor) and target.is_meta
            and isinstance(value, torch.Tensor)):
        return
    if name != "setitem":  # index_put's indices: a tensor or None (all of a dim) per dim
        index = tuple(slice(None) if i is None else i for i in index)
    parts = index if isinstance(index, tuple) else (index,)
    indices = [i for i in parts if isinstance(i, torch.Tensor)]
    if not indices or any(i.is_meta for i in indices):  # slices: the meta kernel checks
        return
    written = target[index].shape
    try:
        torch.broadcast_shapes(value.shape, written)
    except RuntimeError:
        raise RuntimeError(f"shape mismatch: value tensor of shape {list(value.shape)} cannot "
                           f"be broadcast to indexing result of shape {list(written)}"
                           ) from None


_BFLOAT16_ON_META = frozenset({"grouped_mm", "_grouped_mm"})
"""Ops whose meta kernel takes bfloat16 floats only (rule 8)."""


def _refused_dtype(tensors: list[torch.Tensor]) -> torch.dtype | None:
    """The dtype of the first meta float tensor that is not bfloat16, if any (rule 8)."""
    for tensor in tensors:
        if tensor.is_meta and tensor.dtype in (torch.float32, torch.float16, torch.float64):
            return tensor.dtype
    return None


def _in_bfloat16(func: Any, args: tuple[Any, ...], kwargs: dict[str, Any], call: Call,
                 dtype: torch.dtype) -> Any:
    """Run ``func``'s meta kernel on bfloat16 casts of its meta floats; its result in
    ``dtype`` (rule 8)."""
    def cast(tensor: torch.Tensor) -> torch.Tensor:
        return tensor.to(torch.bfloat16) if tensor.is_meta and is_float(tensor) else tensor

    result = call(func, map_structure(args, cast), map_structure(kwargs, cast))
    return map_structure(result, lambda t: t.to(dtype) if is_float(t) else t)


def _elements(result: Any) -> int:
    return sum(t.numel() for t in tensors_out(result))


class ConcreteValues:
    """Applies the rules above to one op call; holds the routing rule's state.

    ``assumed`` is set to what was assumed when an op's values had to be (rule 3 and 6); the
    recorder reads it after each op and clears it."""

    def __init__(self, policy: RoutingPolicy) -> None:
        self.routing = RoutingRule(policy)
        self.results = MetaResults()
        self.assumed = ""
        self.knowing = False  # some meta tensor carries known values (``known_values``)

    def describe(self) -> dict[str, Any]:
        """What goes into ``graph.meta["routing"]``."""
        return self.routing.describe()

    def release(self) -> None:
        """Drop the cached meta outputs (the trace is over)."""
        self.results = MetaResults()

    # -- the entry point ----------------------------------------------------------------
    def run(self, info: OpInfo, func: Any, args: tuple[Any, ...], kwargs: dict[str, Any],
            tensors: list[torch.Tensor], call: Call) -> Any:
        name, role = info.name, info.role
        has_meta = has_real = False
        for tensor in tensors:
            if tensor.is_meta:
                has_meta = True
            else:
                has_real = True
        if not has_meta:
            if role in ("factory", "like"):
                return self._factory(info, func, args, kwargs, call)
            if name == "to" and tensors and not is_float(tensors[0]) \
                    and _targets_meta(args[1:], kwargs):
                return self._stay_on_meta(name, func, args, kwargs, call)
            try:
                return call(func, args, kwargs)
            except (RuntimeError, NotImplementedError) as error:
                if not missing_kernel(error):
                    raise
                return self._without_kernel(info, func, args, kwargs, call, error)
        if role == "device" and isinstance(args[0], torch.Tensor) and args[0].is_meta:
            return self._stay_on_meta(name, func, args, kwargs, call)
        if name in _CASTS_LIKE and isinstance(args[0], torch.Tensor) \
                and not args[0].is_meta and not is_float(args[0]):
            result = call(func, self._to_meta(args), self._to_meta(kwargs))
            return args[0].to(result.dtype) if isinstance(result, torch.Tensor) else result
        if name in _INDEX_WRITES:
            _check_index_write(name, args, kwargs)
        if role == "shapes":
            return map_structure(call(func, _shape_stand_ins(args), _shape_stand_ins(kwargs)),
                                 lambda t: t.to("meta") if is_float(t) else t)
        values = None
        if self.knowing and role != "routing":
            for tensor in tensors:  # inlined known_values.known: every op
                if tensor.is_meta and getattr(tensor, KNOWN_ATTRIBUTE, None) is None:
                    break
            else:
                values = compute_known(func, args, kwargs, tensors)
            if values is None and info.mutates == "self" and isinstance(args[0], torch.Tensor):
                forget(args[0])
        if has_real and not info.indexing:
            args, kwargs = self._to_meta(args), self._to_meta(kwargs)
        if name in _BFLOAT16_ON_META:
            dtype = _refused_dtype(tensors)
            if dtype is not None:
                return _in_bfloat16(func, args, kwargs, call, kwargs.get("out_dtype") or dtype)
        try:
            result = call(func, args, kwargs)
        except RuntimeError as error:
            if not has_real or "device" not in str(error).lower():  # "...meta Device"
                raise
            result = call(func, self._to_meta(args, indices=True),
                          self._to_meta(kwargs, indices=True))
        if role == "routing":
            routed_input = argument(args, kwargs, 0, "input")
            if isinstance(routed_input, torch.Tensor):  # on meta: any real one was moved
                result = self.routing.route(name, args, kwargs, result)
        if values is None and role == "like" and info.made == "args" \
                and _elements(result) <= MAX_KNOWN_ELEMENTS:
            made = self._like_on_cpu(name, func, args, kwargs)
            values = [made] if made is not None else None
        return self._concretise(info, func, args, kwargs, tensors, result, values)

    # -- rule 6 -------------------------------------------------------------------------
    def _without_kernel(self, info: OpInfo, func: Any, args: tuple[Any, ...],
                        kwargs: dict[str, Any], call: Call, error: BaseException) -> Any:
        widened = run_widened(func, args, kwargs, call, in_place=info.mutates == "self")
        if widened is not None:
            return widened[0]
        try:
            outputs = func(*self._to_meta(args), **self._to_meta(kwargs))
        except (RuntimeError, NotImplementedError, ValueError):
            raise error from None
        self.assumed = "kernel"
        return map_structure(outputs, lambda t: t if is_float(t) else
                           torch.zeros(t.shape, dtype=t.dtype))

    # -- rule 4 and 5 -------------------------------------------------------------------
    def _factory(self, info: OpInfo, func: Any, args: tuple[Any, ...], kwargs: dict[str, Any],
                 call: Call) -> Any:
        probe = call(func, args, {**kwargs, "device": "meta"})
        on_cpu = {**kwargs, "device": "cpu"} if _targets_meta((), kwargs) else kwargs
        if isinstance(probe, torch.Tensor) and is_float(probe):
            if info.made == "args" and probe.numel() <= MAX_KNOWN_ELEMENTS:
                attach(probe, func(*args, **on_cpu))
                self.knowing = True
            return probe
        return call(func, args, on_cpu)

    def _stay_on_meta(self, name: str, func: Any, args: tuple[Any, ...],
                      kwargs: dict[str, Any], call: Call) -> Any:
        tensor = args[0]
        if name != "to":
            return tensor
        dtype = kwargs.get("dtype")
        for value in args[1:]:
            if isinstance(value, torch.dtype):
                dtype = value
            elif isinstance(value, torch.Tensor):
                dtype = value.dtype
        if dtype is None:
            return tensor
        result = call(func, (tensor,), {"dtype": dtype})
        values = known(tensor)  # only meta tensors carry known values
        if values is None:
            return result
        if is_float(result):  # the known values travel with the cast
            attach(result, values.to(dtype))
            return result
        return values.to(dtype)  # integers of known floats: concrete (a mask's .to(bool))

    # -- rule 2 -------------------------------------------------------------------------
    @staticmethod
    def _to_meta(value: Any, indices: bool = False) -> Any:
        def move(tensor: torch.Tensor) -> torch.Tensor:
            if tensor.is_meta:
                return tensor
            if not indices and tensor.dim() == 0 and not is_float(tensor):
                return tensor  # an integer scalar: a number to a meta kernel
            if indices and tensor.dtype == torch.bool:
                # a boolean mask indexes by its True positions; meta tensors cannot count them
                return torch.stack(torch.nonzero(tensor, as_tuple=True)).to("meta")
            return tensor.to("meta")

        return map_structure(value, move)

    # -- rule 3 -------------------------------------------------------------------------
    def _concretise(self, info: OpInfo, func: Any, args: tuple[Any, ...], kwargs: dict[str, Any],
                    inputs: list[torch.Tensor], result: Any,
                    values: list[torch.Tensor] | None) -> Any:
        """Integer results of meta tensors made concrete: from the known values of the
        inputs where there are some, else assumed zeros; float results carry their known
        values."""
        if values is None and isinstance(result, torch.Tensor) and (
                result.dtype.is_floating_point or not result.is_meta):
            return result  # most ops: one float result, nothing known about it
        known_values: dict[int, torch.Tensor] = {}
        if values is not None:
            outputs = tensors_out(result)
            if len(values) == len(outputs):
                known_values = {id(o): v for o, v in zip(outputs, values, strict=True)}

        def concrete(tensor: torch.Tensor) -> torch.Tensor:
            if not tensor.is_meta:
                return tensor
            if tensor.dtype.is_floating_point or tensor.dtype.is_complex:
                if known_values:
                    value = known_values.get(id(tensor))
                    if value is not None:
                        attach(tensor, value)
                        self.knowing = True
                return tensor
            for given in inputs:
                if tensor is given:
                    return tensor
            value = known_values.get(id(tensor))
            if value is not None and value.shape == tensor.shape:
                return value.to(tensor.dtype)
            made = self._like_on_cpu(info.name, func, args, kwargs) \
                if info.role == "like" else None
            if made is not None:
                return made
            self.assumed = "zeros" if any(t.is_meta and is_float(t) for t in inputs) \
                else "buffer"  # integers held on meta: a buffer of a model built there
            return torch.zeros(tensor.shape, dtype=tensor.dtype)

        if isinstance(result, torch.Tensor):
            return concrete(result)
        if isinstance(result, tuple | list) and any(isinstance(r, torch.Tensor) for r in result):
            return map_structure(result, concrete)
        return result

    @staticmethod
    def _like_on_cpu(name: str, func: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
                     ) -> torch.Tensor | None:
        """The values of an op made from its arguments (``zeros_like``, ``new_ones``), run on
        the CPU with a stand-in for its meta template: of the template's shape for a
        ``*_like`` op, empty for a ``new_*`` op (whose size is an argument), so that a
        stand-in's own values never pass for a result's. None when another argument is a
        meta tensor (``x.new_tensor(y)``): its values are nobody's to copy."""
        if any(tensor.is_meta for tensor in tensors_in(args, kwargs)[1:]):
            return None

        def stand_in(tensor: torch.Tensor) -> torch.Tensor:
            if not tensor.is_meta:
                return tensor
            shape = tensor.shape if name.endswith("_like") else (0,)
            return torch.empty(shape, dtype=tensor.dtype)

        kwargs = {k: v for k, v in kwargs.items() if k != "device"}
        return func(*map_structure(args, stand_in), **map_structure(kwargs, stand_in))
