"""FLOPs of ops, from torch's own formulas (``torch.utils.flop_counter.flop_registry``).

torch's registry is keyed by ATen ops, so the tracer counts FLOPs in one of two ways:

- ``F.linear`` and the block-scaled ``fp8_gemm`` custom op, the bulk of a transformer's ops, by
  torch's matrix-multiply formula on their shapes directly (no dispatch round trip), and
  ``linalg.vecdot`` by the dot-product formula (torch runs it as a product and a sum, which
  count 0 by the elementwise convention);
- any other op that may multiply matrices (``matmul``, ``einsum``, convolutions, attention:
  the op table's ``dispatch`` rule) under ``FlopCounter``, a small
  ``TorchDispatchMode`` that adds up the registry's formula for every ATen op inside.

Elementwise ops count 0, as in torch's ``FlopCounterMode``, and so do the ops the op table
lists without a FLOP rule (data movement, indexing, reductions). An op the table does not know
is counted under ``FlopCounter`` too, so a matrix product inside it is never missed. Every
other ATen or custom op that computes floats without a formula is named in the op's cost
(``Cost``), never counted as a silent 0: the recorder lists it on the node and in
``graph.meta["flops_without_formula"]``. ``register_flop_formula`` adds a formula where torch
has none (grouped matrix products, the CPU flash-attention kernel, a bilinear layer's
``_trilinear``, custom ops); products torch
has no entry for (``mv``, ``dot``, ``addbmm``, in-place ``addmm_``) count by its ``mm`` and
``bmm`` formulas on the shapes they multiply.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import bmm_flop, flop_registry, mm_flop, sdpa_flop_count

from model_trace.tracing.arguments import tensors_in, tensors_out
from model_trace.tracing.op_table import without_flops
from model_trace.tracing.structures import map_structure

FlopFormula = Callable[..., int]
"""(*args, out_val=output, **kwargs) -> FLOPs, args as the op received them (tensors)."""

Cost = tuple[int, tuple[str, ...]]
"""An op call's FLOPs, and the ops inside it that computed floats without a formula."""
NO_COST: Cost = (0, ())

_EXTRA_FORMULAS: dict[str, FlopFormula] = {}

def register_flop_formula(op_name: str, formula: FlopFormula) -> None:
    """Count ``op_name`` (``namespace::name``, e.g. ``mylib::gemm``) with ``formula``."""
    _EXTRA_FORMULAS[op_name] = formula


# torch's registry holds mm_flop wrapped to take tensors; the formula itself takes shapes
_mm_formula = getattr(mm_flop, "__wrapped__", mm_flop)
_bmm_formula = getattr(bmm_flop, "__wrapped__", bmm_flop)


def linear_flops(x_shape: torch.Size, weight_shape: torch.Size) -> int:
    """``F.linear``: torch's ``mm`` formula for (M, K) x (K, N), M the leading dims of x."""
    k = weight_shape[-1]
    n = weight_shape[0] if len(weight_shape) == 2 else 1
    m = math.prod(x_shape[:-1])
    return int(_mm_formula((m, k), (k, n)))


def vecdot_flops(x_shape: torch.Size, y_shape: torch.Size) -> int:
    """``linalg.vecdot``: a dot product of length K per output element, 2 K each (``dot``'s
    formula): twice the elements of the operands' broadcast shape, whichever dim it sums."""
    return 2 * math.prod(torch.broadcast_shapes(x_shape, y_shape))


def _fp8_gemm_flops(a: torch.Tensor, a_s: torch.Tensor, b: torch.Tensor, *_: Any,
                    **__: Any) -> int:
    return linear_flops(a.shape, b.shape)


def _cpu_flash_attention_flops(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                               *_: Any, **__: Any) -> int:
    return int(sdpa_flop_count(query.shape, key.shape, value.shape))


def _grouped_mm_flops(a: torch.Tensor, b: torch.Tensor, *_: Any, out_val: torch.Tensor,
                      **__: Any) -> int:
    """A matrix product per group: (M, K) rows split by offsets times (G, K, N), or (G, M, K)
    times (G, K, N), is 2 K per output element; (M, K) times (K, N) with K split by offsets
    (a weight gradient) is one (M, K) x (K, N) product in all."""
    if a.dim() == 2 and b.dim() == 2:
        return 2 * a.shape[0] * a.shape[1] * b.shape[1]
    return 2 * out_val.numel() * a.shape[-1]


def _triangular_solve_flops(a: torch.Tensor, b: torch.Tensor, *_: Any, **__: Any) -> int:
    """Solving A X = B with A (n, n) triangular: per column of B, n(n-1)/2 multiply-adds and
    n divisions, n^2 FLOPs (batch dimensions multiply)."""
    n = a.shape[-1]
    return n * n * math.prod(b.shape[:-2]) * b.shape[-1]


def _summed_batches_flops(out: torch.Tensor, batch1: torch.Tensor, batch2: torch.Tensor,
                          *_: Any, **__: Any) -> int:
    """``addbmm``: the batch of products (B, M, K) x (B, K, N) summed into one (M, N):
    torch's ``bmm`` formula, the sum over the batch being part of each multiply-add."""
    return int(_bmm_formula(batch1.shape, batch2.shape))


def _matrix_vector_flops(matrix: torch.Tensor, vector: torch.Tensor, *_: Any,
                         **__: Any) -> int:
    """``mv``: (M, K) x (K,) is torch's ``mm`` formula with one column, 2 M K (as a linear
    layer with a 1-D weight)."""
    return int(_mm_formula(matrix.shape, (vector.shape[0], 1)))


def _added_matrix_vector_flops(out: torch.Tensor, matrix: torch.Tensor,
                               vector: torch.Tensor, *_: Any, **__: Any) -> int:
    return _matrix_vector_flops(matrix, vector)


def _trilinear_flops(i1: torch.Tensor, i2: torch.Tensor, i3: torch.Tensor,
                     expand1: list[int], expand2: list[int], expand3: list[int],
                     *_: Any, **__: Any) -> int:
    """``_trilinear`` (``F.bilinear``: x1^T W x2 per output): the three operands, unsqueezed
    at their ``expand`` dims, broadcast to one shape and are summed over some of its dims;
    each element of that shape is a multiply-add, 2 FLOPs, as a matrix product counts them
    (2 B O I J for a bilinear layer)."""
    shapes = []
    for tensor, expand in ((i1, expand1), (i2, expand2), (i3, expand3)):
        shape = list(tensor.shape)
        for dim in expand:
            shape.insert(dim, 1)
        shapes.append(shape)
    return 2 * math.prod(max(sizes) for sizes in zip(*shapes, strict=True))


def _dot_flops(a: torch.Tensor, b: torch.Tensor, *_: Any, **__: Any) -> int:
    """``dot``: (K,) x (K,) is torch's ``mm`` formula on (1, K) x (K, 1), 2 K."""
    return int(_mm_formula((1, a.shape[0]), (b.shape[0], 1)))


# In-place forms of products torch has formulas for count by those formulas: the product
# is the same, only where it is written differs (or, for _addmm_activation, what is applied
# to it after: an activation, 0 FLOPs by the elementwise convention).
register_flop_formula("aten::addmm_", flop_registry[torch.ops.aten.addmm])
register_flop_formula("aten::_addmm_activation", flop_registry[torch.ops.aten.addmm])
register_flop_formula("aten::baddbmm_", flop_registry[torch.ops.aten.baddbmm])
register_flop_formula("aten::addbmm", _summed_batches_flops)
register_flop_formula("aten::addbmm_", _summed_batches_flops)
register_flop_formula("aten::mv", _matrix_vector_flops)
register_flop_formula("aten::addmv", _added_matrix_vector_flops)
register_flop_formula("aten::addmv_", _added_matrix_vector_flops)
register_flop_formula("aten::dot", _dot_flops)
register_flop_formula("aten::vdot", _dot_flops)
register_flop_formula("aten::linalg_solve_triangular", _triangular_solve_flops)
register_flop_formula("aten::_trilinear", _trilinear_flops)
register_flop_formula("aten::_scaled_dot_product_flash_attention_for_cpu",
                      _cpu_flash_attention_flops)
register_flop_formula("aten::_grouped_mm", _grouped_mm_flops)
register_flop_formula("aten::_scaled_grouped_mm", _grouped_mm_flops)
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


def op_cost(op: Any, args: tuple[Any, ...], kwargs: dict[str, Any], out: Any) -> Cost:
    """FLOPs of one ATen (or custom) op call by its formula; without one, 0 and the op's
    name if it computed floats and is not known to need no formula."""
    formula = formula_for(op)
    if formula is not None:
        return int(formula(*args, **kwargs, out_val=out)), ()
    if counts_no_flops(op) or not _computes_floats(args, kwargs, out):
        return 0, ()
    decomposes = getattr(op, "_can_decompose", None)
    if decomposes is not None and decomposes():
        # Under inference mode a composite op (linear, einsum) reaches an ATen trace whole:
        # its decomposition, run on meta copies, holds the products to count.
        counter = FlopCounter()
        with counter:
            op.decompose(*map_structure(args, _on_meta), **map_structure(kwargs, _on_meta))
        return counter.flops, tuple(counter.missing)
    return 0, (qualified_name(op),)


def _on_meta(tensor: torch.Tensor) -> torch.Tensor:
    return tensor if tensor.is_meta else tensor.to("meta")


def qualified_name(op: Any) -> str:
    """``aten::mm``, ``mylib::gemm``: an ATen or custom op's name without its overload."""
    packet = op if isinstance(op, torch._ops.OpOverloadPacket) else getattr(
        op, "_overloadpacket", op)
    return getattr(packet, "_qualified_op_name", str(op))


def counts_no_flops(op: Any) -> bool:
    """Whether an ATen op needs no formula: elementwise (torch's ``pointwise`` tag; torch's
    own counter counts those as 0 too), a view, or an op the table lists without a FLOP rule
    (``aten::_softmax`` and ``aten::native_layer_norm`` as ``softmax`` and ``layer_norm``), or
    the gradient of such an op (``aten::native_layer_norm_backward``, ``select_backward``),
    counted by the same convention as its forward."""
    if getattr(op, "is_view", False) or torch.Tag.pointwise in getattr(op, "tags", ()):
        return True
    return without_flops(qualified_name(op).rpartition("::")[2])


def _computes_floats(args: tuple[Any, ...], kwargs: dict[str, Any], out: Any) -> bool:
    return any(t.dtype.is_floating_point or t.dtype.is_complex
               for t in (*tensors_in(args, kwargs), *tensors_out(out)))


class FlopCounter(TorchDispatchMode):
    """Adds up the FLOPs of every ATen op run while it is active; ``missing`` collects the
    names of those that computed floats without a formula (see ``op_cost``)."""

    def __init__(self) -> None:
        super().__init__()
        self.flops = 0
        self.missing: dict[str, None] = {}  # an ordered set
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
            out = func(*args, **kwargs)
            if not counts_no_flops(func) and _computes_floats(args, kwargs, out):
                self.missing[qualified_name(func)] = None
            return out
        out = func(*args, **kwargs)
        self.flops += int(formula(*args, **kwargs, out_val=out))
        return out
