"""Running a model on the meta device with concrete integers: the rules of a meta trace.

Float tensors stay on the meta device (shapes, no data). Integer and boolean tensors, the ones
that decide routing and indexing, carry real values on the CPU, so a model's own
data-dependent code runs unchanged: ``bincount(...).tolist()``, ``where(indices == i)``,
``x[idx]``, ``y[idx] += ...`` and Python branches on the counts. The rules, applied per op:

1. An index-producing op on a meta tensor (``topk``, ``argmax``, ``max(dim)``, ``sort``...)
   gets its indices from the routing policy; after a top-k over (N, G) groups, the next top-k
   over (N, E) experts keeps to the groups chosen, as a group-limited gate does.
2. Ops mixing meta and CPU tensors run on the meta device: CPU tensors move to meta, except
   for indexing ops (``x[idx]``, ``gather``, ``index_put_``, ``embedding``...) that take CPU
   indices as they are.
3. An integer or boolean result computed from meta tensors has no known values: ``*_like``
   and ``new_*`` factories are computed on the CPU (their values do not depend on the input);
   anything else becomes CPU zeros, counted in ``graph.meta["routing"]["assumed_zero"]``.
4. Factories (``zeros``, ``full``, ``arange``...) that would make a float tensor on the CPU
   make it on the meta device instead, so a model never allocates a full-size float buffer;
   integer and boolean ones are made on the CPU even when asked for on the meta device
   (``arange(s, device=x.device)`` keeps its values).
5. ``.to(device)`` of a meta tensor keeps it on meta, and of a concrete integer or boolean
   tensor to the meta device keeps it concrete (only the dtype changes).

Many meta kernels are written in Python (elementwise ops go through ``torch._refs``: 80 us for
a ``mul``), and a large model calls the same op on the same shapes thousands of times, so the
output metadata (shape, stride, dtype) of pure ops on meta tensors is cached per op and
argument signature; a hit makes the outputs with ``torch.empty_strided`` (1 us). An in-place
op on meta tensors that returned its target unchanged in shape, strides and dtype is not run
again for the same signature (it would only check shapes). Views, routing ops, factories and
in-place ops on concrete tensors always run.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from model_trace.tracing.op_info import OpInfo
from model_trace.tracing.routing import RoutingPolicy

Call = Callable[[Any, tuple[Any, ...], dict[str, Any]], Any]


def is_float(tensor: torch.Tensor) -> bool:
    return tensor.dtype.is_floating_point or tensor.dtype.is_complex


def map_tensors(value: Any, fn: Callable[[torch.Tensor], Any]) -> Any:
    """``value`` with every tensor in it (two levels of lists/tuples, dict values) mapped."""
    if isinstance(value, torch.Tensor):
        return fn(value)
    if isinstance(value, list | tuple):
        mapped = [map_tensors(v, fn) if isinstance(v, torch.Tensor | list | tuple) else v
                  for v in value]
        return type(value)(mapped) if not hasattr(value, "_fields") else type(value)(*mapped)
    if isinstance(value, dict):
        return {k: map_tensors(v, fn) for k, v in value.items()}
    return value


def _argument(args: tuple[Any, ...], kwargs: dict[str, Any], index: int, name: str,
              default: Any = None) -> Any:
    if len(args) > index:
        return args[index]
    return kwargs.get(name, default)


def _targets_meta(args: tuple[Any, ...], kwargs: dict[str, Any]) -> bool:
    """Whether a factory's or ``.to``'s device arguments name the meta device."""
    for value in (*args, kwargs.get("device")):
        if isinstance(value, torch.Tensor):
            if value.is_meta:
                return True
        elif isinstance(value, str | torch.device) and torch.device(value).type == "meta":
            return True
    return False


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
        # FLOPs of in-place calls that returned their target with its metadata unchanged:
        # a later call with the same key needs no kernel (it would only check the shapes)
        self.in_place: dict[tuple[Any, ...], int] = {}
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

    def get(self, key: tuple[Any, ...]) -> tuple[Any, int] | None:
        """(outputs, FLOPs) of a cached call, or None."""
        entry = self.entries.get(key)
        if entry is None:
            return None
        self.hits += 1
        kind, outputs, flops = entry
        made = [torch.empty_strided(shape, stride, dtype=dtype, device="meta")
                for shape, stride, dtype in outputs]
        if kind is torch.Tensor:
            return made[0], flops
        return (kind(made) if kind in (tuple, list) else kind(tuple(made))), flops

    def put(self, key: tuple[Any, ...], result: Any, flops: int,
            inputs: list[torch.Tensor]) -> None:
        outputs = [result] if isinstance(result, torch.Tensor) else result
        if not isinstance(outputs, list | tuple) or not outputs:
            return
        described = []
        for value in outputs:
            if (not isinstance(value, torch.Tensor) or not value.is_meta or not is_float(value)
                    or any(value is i for i in inputs)):
                return
            described.append((value.shape, value.stride(), value.dtype))
        kind = torch.Tensor if isinstance(result, torch.Tensor) else type(result)
        self.entries[key] = (kind, tuple(described), flops)


class ConcreteValues:
    """Applies the rules above to one op call; holds the routing policy's state."""

    def __init__(self, policy: RoutingPolicy, force_routing: bool) -> None:
        self.policy = policy
        self.force_routing = force_routing
        self.assumed_zero: dict[str, int] = {}
        self.decisions = 0
        self._groups: tuple[int, int, torch.Tensor] | None = None
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
                return self._factory(func, args, kwargs, call)
            if name == "to" and tensors and not is_float(tensors[0]) \
                    and _targets_meta(args[1:], kwargs):
                return self._stay_on_meta(name, func, args, kwargs, call)
            result = call(func, args, kwargs)
            if self.force_routing and role == "routing" and tensors:
                return self._route(name, args, kwargs, result)
            return result
        if role == "device" and isinstance(args[0], torch.Tensor) and args[0].is_meta:
            return self._stay_on_meta(name, func, args, kwargs, call)
        if has_real and not info.indexing:
            args, kwargs = self._to_meta(args), self._to_meta(kwargs)
        try:
            result = call(func, args, kwargs)
        except RuntimeError as error:
            if not has_real or "device" not in str(error):
                raise
            result = call(func, self._to_meta(args, indices=True),
                          self._to_meta(kwargs, indices=True))
        if role == "routing":
            routed_input = _argument(args, kwargs, 0, "input")
            if isinstance(routed_input, torch.Tensor) and routed_input.is_meta:
                result = self._route(name, args, kwargs, result)
        return self._concretise(info, func, args, kwargs, tensors, result)

    # -- rule 4 and 5 -------------------------------------------------------------------
    @staticmethod
    def _factory(func: Any, args: tuple[Any, ...], kwargs: dict[str, Any], call: Call) -> Any:
        probe = call(func, args, {**kwargs, "device": "meta"})
        if isinstance(probe, torch.Tensor) and is_float(probe):
            return probe
        if _targets_meta((), kwargs):
            kwargs = {**kwargs, "device": "cpu"}
        return call(func, args, kwargs)

    @staticmethod
    def _stay_on_meta(name: str, func: Any, args: tuple[Any, ...], kwargs: dict[str, Any],
                      call: Call) -> Any:
        tensor = args[0]
        if name != "to":
            return tensor
        dtype = kwargs.get("dtype")
        for value in args[1:]:
            if isinstance(value, torch.dtype):
                dtype = value
            elif isinstance(value, torch.Tensor):
                dtype = value.dtype
        return call(func, (tensor,), {"dtype": dtype}) if dtype is not None else tensor

    # -- rule 2 -------------------------------------------------------------------------
    @staticmethod
    def _to_meta(value: Any, indices: bool = False) -> Any:
        def move(tensor: torch.Tensor) -> torch.Tensor:
            if tensor.is_meta:
                return tensor
            if indices and tensor.dtype == torch.bool:
                # a boolean mask indexes by its True positions; meta tensors cannot count them
                return torch.stack(torch.nonzero(tensor, as_tuple=True)).to("meta")
            return tensor.to("meta")

        return map_tensors(value, move)

    # -- rule 1 -------------------------------------------------------------------------
    def _route(self, name: str, args: tuple[Any, ...], kwargs: dict[str, Any],
               result: Any) -> Any:
        source = _argument(args, kwargs, 0, "input")
        if name in ("topk", "sort", "argsort"):
            dim = _argument(args, kwargs, 2 if name == "topk" else 1, "dim", -1)
            if name == "topk":
                k = _argument(args, kwargs, 1, "k")
            else:
                k = source.shape[dim] if source.dim() else 1
            if source.dim() == 0:
                indices = torch.zeros((), dtype=torch.int64)
            else:
                indices = self.indices(source.shape, dim, k)
            if name == "argsort":
                return self._on(indices, source)
            return type(result)((self._values(source, dim, indices, result[0]),
                                 self._on(indices, source)))
        if name in ("argmax", "argmin", "max", "min"):
            dim = _argument(args, kwargs, 1, "dim")
            if not isinstance(dim, int) or isinstance(dim, bool):
                if name in ("max", "min"):
                    return result  # the value of the whole tensor, or an elementwise max
                if dim is not None:
                    return result
                indices = self.indices((source.numel(),), 0, 1).view(())
                return self._on(indices, source)
            keepdim = _argument(args, kwargs, 2, "keepdim", False)
            if source.dim() == 0:
                indices = torch.zeros((), dtype=torch.int64)
                return indices if name in ("argmax", "argmin") else \
                    type(result)((result[0], indices))
            kept = self.indices(source.shape, dim, 1)  # (..., 1, ...), keepdim's shape
            indices = kept if keepdim else kept.squeeze(dim)
            if name in ("argmax", "argmin"):
                return self._on(indices, source)
            values = result[0]
            if not source.is_meta:
                values = self._values(source, dim, kept, values)
                values = values if keepdim else values.squeeze(dim)
            return type(result)((values, self._on(indices, source)))
        if name == "multinomial":
            samples = _argument(args, kwargs, 1, "num_samples")
            choices = source.shape[-1]
            if samples > choices:
                return result
            indices = self.indices(source.shape, -1, samples)
            return self._on(indices, source)
        return result  # kthvalue, mode, median: indices become zeros in _concretise

    def indices(self, shape: torch.Size | tuple[int, ...], dim: int, k: int) -> torch.Tensor:
        """Policy-chosen indices of shape ``shape`` with ``dim`` replaced by ``k``."""
        dim = dim % len(shape)
        choices = shape[dim]
        rows = 1
        for i, size in enumerate(shape):
            if i != dim:
                rows *= size
        allowed = self._allowed(rows, choices)
        chosen = self.policy.choose(rows, choices, k, allowed)
        self.decisions += 1
        if len(shape) == 2 and dim == 1:
            self._groups = (rows, choices, chosen)
        kept = [size for i, size in enumerate(shape) if i != dim]
        return chosen.reshape(*kept, k).movedim(-1, dim)

    def _allowed(self, rows: int, choices: int) -> torch.Tensor | None:
        """The experts of the groups the previous top-k chose, if it chose groups of these."""
        if self._groups is None:
            return None
        group_rows, groups, chosen = self._groups
        if group_rows != rows or choices <= groups or choices % groups:
            return None
        self._groups = None
        kept = torch.zeros(rows, groups, dtype=torch.bool).scatter_(1, chosen, True)
        return kept.repeat_interleave(choices // groups, dim=1)

    @staticmethod
    def _values(source: torch.Tensor, dim: int, indices: torch.Tensor, computed: Any) -> Any:
        if source.is_meta:
            return computed
        return source.gather(dim, indices.to(source.device))

    @staticmethod
    def _on(indices: torch.Tensor, source: torch.Tensor) -> torch.Tensor:
        return indices if source.is_meta else indices.to(source.device)

    # -- rule 3 -------------------------------------------------------------------------
    def _concretise(self, info: OpInfo, func: Any, args: tuple[Any, ...], kwargs: dict[str, Any],
                    inputs: list[torch.Tensor], result: Any) -> Any:
        def concrete(tensor: torch.Tensor) -> torch.Tensor:
            if not tensor.is_meta or is_float(tensor) or any(tensor is i for i in inputs):
                return tensor
            if info.role == "like":
                return self._like_on_cpu(info.name, func, args, kwargs)
            self.assumed_zero[info.name] = self.assumed_zero.get(info.name, 0) + 1
            return torch.zeros(tensor.shape, dtype=tensor.dtype)

        if isinstance(result, torch.Tensor):
            return concrete(result)
        if isinstance(result, tuple | list) and any(isinstance(r, torch.Tensor) for r in result):
            return map_tensors(result, concrete)
        return result

    @staticmethod
    def _like_on_cpu(name: str, func: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
                     ) -> torch.Tensor:
        def stand_in(tensor: torch.Tensor) -> torch.Tensor:
            if not tensor.is_meta:
                return tensor
            shape = tensor.shape if name.endswith("_like") else (0,)
            return torch.empty(shape, dtype=tensor.dtype)

        kwargs = {k: v for k, v in kwargs.items() if k != "device"}
        return func(*map_tensors(args, stand_in), **map_tensors(kwargs, stand_in))
