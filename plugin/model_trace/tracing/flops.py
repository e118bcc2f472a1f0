"""FLOPs of ops, from torch's own formulas (``torch.utils.flop_counter.flop_registry``).

torch's registry is keyed by ATen ops, so the tracer counts FLOPs in one of two ways:

- ``F.linear`` and the block-scaled ``fp8_gemm`` custom op, the bulk of a transformer's ops, by
  torch's matrix-multiply formula on their shapes directly (no dispatch round trip);
- any other op that may multiply matrices (``matmul``, ``einsum``, convolutions, attention:
  the op table's ``dispatch`` rule) under ``FlopCounter``, a small
  ``TorchDispatchMode`` that adds up the registry's formula for every ATen op inside.

Elementwise ops count 0, as in torch's ``FlopCounterMode``. ``register_flop_formula`` adds a
formula where torch has none (the CPU flash-attention kernel, custom ops).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import flop_registry, mm_flop, sdpa_flop_count

FlopFormula = Callable[..., int]
"""(*args, out_val=output, **kwargs) -> FLOPs, args as the op received them (tensors)."""

_EXTRA_FORMULAS: dict[str, FlopFormula] = {}

def register_flop_formula(op_name: str, formula: FlopFormula) -> None:
    """Count ``op_name`` (``namespace::name``, e.g. ``mylib::gemm``) with ``formula``."""
    _EXTRA_FORMULAS[op_name] = formula


# torch's registry holds mm_flop wrapped to take tensors; the formula itself takes shapes
_mm_formula = getattr(mm_flop, "__wrapped__", mm_flop)


def linear_flops(x_shape: torch.Size, weight_shape: torch.Size) -> int:
    """``F.linear``: torch's ``mm`` formula for (M, K) x (K, N), M the leading dims of x."""
    k = weight_shape[-1]
    n = weight_shape[0] if len(weight_shape) == 2 else 1
    m = math.prod(x_shape[:-1])
    return int(_mm_formula((m, k), (k, n)))


def _fp8_gemm_flops(a: torch.Tensor, a_s: torch.Tensor, b: torch.Tensor, *_: Any,
                    **__: Any) -> int:
    return linear_flops(a.shape, b.shape)


def _cpu_flash_attention_flops(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                               *_: Any, **__: Any) -> int:
    return int(sdpa_flop_count(query.shape, key.shape, value.shape))


register_flop_formula("aten::_scaled_dot_product_flash_attention_for_cpu",
                      _cpu_flash_attention_flops)
register_flop_formula("model_zoo::fp8_gemm", _fp8_gemm_flops)


def formula_for(op: Any) -> FlopFormula | None:
    """torch's registry formula for an op (an overload such as ``torch.ops.aten.mm.default``
    or a packet such as ``torch.ops.aten.mm``), or a registered extra one."""
    packet = op if isinstance(op, torch._ops.OpOverloadPacket) else getattr(
        op, "_overloadpacket", None)
    formula = flop_registry.get(packet) if packet is not None else None
    if formula is not None:
        return formula
    name = packet._qualified_op_name if packet is not None else ""
    return _EXTRA_FORMULAS.get(name)


def op_flops(op: Any, args: tuple[Any, ...], kwargs: dict[str, Any], out: Any) -> int:
    """FLOPs of one ATen (or custom) op call, 0 where no formula applies."""
    formula = formula_for(op)
    if formula is None:
        return 0
    return int(formula(*args, **kwargs, out_val=out))


class FlopCounter(TorchDispatchMode):
    """Adds up the FLOPs of every ATen op run while it is active."""

    def __init__(self) -> None:
        super().__init__()
        self.flops = 0
        self._formulas: dict[Any, FlopFormula | None] = {}
        self._composite: dict[Any, bool] = {}  # ops without a formula that decompose

    def __torch_dispatch__(self, func: Any, types: Any, args: tuple[Any, ...] = (),
                           kwargs: dict[str, Any] | None = None) -> Any:
        kwargs = kwargs or {}
        formula = self._formulas.get(func, 0)
        if formula == 0:
            formula = self._formulas[func] = formula_for(func)
            self._composite[func] = formula is None and func._can_decompose()
        if formula is None:
            if self._composite[func]:
                # Under inference mode, composite ops (einsum, matmul) reach the mode whole:
                # decompose them so their matrix products are counted.
                with self:
                    decomposed = func.decompose(*args, **kwargs)
                if decomposed is not NotImplemented:
                    return decomposed
            return func(*args, **kwargs)
        out = func(*args, **kwargs)
        self.flops += int(formula(*args, **kwargs, out_val=out))
        return out
