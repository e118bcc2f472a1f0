"""The FP8 kernels as torch custom ops: `model_zoo::act_quant`, `::weight_dequant`, `::fp8_gemm`.

Registering them as custom ops gives each a name that tracers see (a TorchFunctionMode or
TorchDispatchMode gets `torch.ops.model_zoo.fp8_gemm.default`, not the Triton launch inside),
and a fake implementation that computes only shapes, so a model built on the meta device runs
through them.

Each op takes an `implementation` argument:

- "auto" (default): Triton when the tensors are on a CUDA GPU with FP8 support (compute
  capability 8.9+) and triton is importable; the pure-torch `reference` otherwise.
- "triton": always Triton. On CPU tensors this needs Triton's interpreter, i.e. TRITON_INTERPRET=1
  set before the first Triton call in the process; anything else is an error saying so.
- "torch": always the pure-torch `reference`, on any device.
"""

import importlib.util
from functools import cache
from typing import Literal, get_args

import torch
from torch import Tensor

from . import reference
from .reference import FP8_DTYPE, SCALE_FORMATS

Implementation = Literal["auto", "triton", "torch"]
GEMM_BLOCK = 128
"""Scale block of both `fp8_gemm` operands: 128 values of K, and 128 rows (N) of `b`."""


@cache
def triton_available() -> bool:
    """Whether the triton package can be imported in this environment."""
    return importlib.util.find_spec("triton") is not None


def _use_triton(implementation: str, device: torch.device) -> bool:
    """Resolve `implementation` for tensors on `device`: True for Triton, False for torch."""
    if implementation not in get_args(Implementation):
        raise ValueError(
            f"implementation={implementation!r} is not one of {get_args(Implementation)}"
        )
    if implementation == "torch":
        return False
    on_fp8_gpu = device.type == "cuda" and torch.cuda.get_device_capability(device) >= (8, 9)
    if implementation == "auto":
        return on_fp8_gpu and triton_available()
    if not triton_available():
        raise RuntimeError(
            "implementation='triton' needs the triton package: install it "
            "(pip install 'mkdocs-model-trace[fp8]') or pass implementation='torch'"
        )
    if on_fp8_gpu:
        return True
    from . import triton_kernels

    if device.type == "cpu" and triton_kernels.INTERPRETING:
        return True
    raise RuntimeError(
        f"implementation='triton' cannot run on {device} tensors: Triton's FP8 kernels need a "
        "CUDA GPU of compute capability 8.9 or newer, or CPU tensors with TRITON_INTERPRET=1 "
        "set before triton is first used; pass implementation='auto' or 'torch' instead"
    )


def _cdiv(a: int, b: int) -> int:
    return -(-a // b)


def _check_act_quant(x: Tensor, block_size: int, scale_fmt: str | None) -> None:
    if not x.is_floating_point() or x.dim() == 0:
        raise ValueError(f"act_quant: x must be a float tensor (..., K), got {x.dtype} {x.shape}")
    if block_size <= 0 or x.shape[-1] % block_size:
        raise ValueError(
            f"act_quant: the last dimension of x ({x.shape[-1]}) must be a multiple of "
            f"block_size ({block_size})"
        )
    if scale_fmt not in SCALE_FORMATS:
        raise ValueError(f"act_quant: scale_fmt={scale_fmt!r} is not one of {SCALE_FORMATS}")


def _check_weight_dequant(x: Tensor, s: Tensor, block_size: int) -> None:
    if x.dtype != FP8_DTYPE or x.dim() != 2:
        raise ValueError(f"weight_dequant: x must be (M, N) {FP8_DTYPE}, got {x.dtype} {x.shape}")
    expected = (_cdiv(x.shape[0], block_size), _cdiv(x.shape[1], block_size))
    if tuple(s.shape) != expected:
        raise ValueError(
            f"weight_dequant: s must be (ceil(M/{block_size}), ceil(N/{block_size})) = "
            f"{expected} for x {tuple(x.shape)}, got {tuple(s.shape)}"
        )


def _check_fp8_gemm(a: Tensor, a_s: Tensor, b: Tensor, b_s: Tensor) -> None:
    if a.dtype != FP8_DTYPE or b.dtype != FP8_DTYPE or a.dim() == 0 or b.dim() != 2:
        raise ValueError(
            f"fp8_gemm: a must be (..., K) and b (N, K), both {FP8_DTYPE}; got a {a.dtype} "
            f"{tuple(a.shape)}, b {b.dtype} {tuple(b.shape)}"
        )
    n, k = b.shape
    if a.shape[-1] != k or k % GEMM_BLOCK:
        raise ValueError(
            f"fp8_gemm: a (..., K) and b (N, K) must share K, a multiple of {GEMM_BLOCK}; "
            f"got a {tuple(a.shape)}, b {tuple(b.shape)}"
        )
    expected_a_s = (*a.shape[:-1], k // GEMM_BLOCK)
    expected_b_s = (_cdiv(n, GEMM_BLOCK), k // GEMM_BLOCK)
    if tuple(a_s.shape) != expected_a_s or tuple(b_s.shape) != expected_b_s:
        raise ValueError(
            f"fp8_gemm: scales must be a_s {expected_a_s} and b_s {expected_b_s} for a "
            f"{tuple(a.shape)}, b {tuple(b.shape)}; got a_s {tuple(a_s.shape)}, "
            f"b_s {tuple(b_s.shape)}"
        )


def _check_triton_block_size(block_size: int) -> None:
    if block_size & (block_size - 1):
        raise ValueError(
            f"block_size={block_size}: the Triton kernels need a power of two; "
            "pass implementation='torch' for other sizes"
        )


@torch.library.custom_op("model_zoo::act_quant", mutates_args=())
def _act_quant_op(
    x: Tensor, block_size: int, scale_fmt: str | None, implementation: str
) -> tuple[Tensor, Tensor]:
    _check_act_quant(x, block_size, scale_fmt)
    if _use_triton(implementation, x.device):
        from . import triton_kernels

        _check_triton_block_size(block_size)
        return triton_kernels.act_quant(x, block_size, scale_fmt)
    return reference.act_quant(x, block_size, scale_fmt)


@_act_quant_op.register_fake
def _act_quant_fake(
    x: Tensor, block_size: int, scale_fmt: str | None, implementation: str
) -> tuple[Tensor, Tensor]:
    _check_act_quant(x, block_size, scale_fmt)
    scales_shape = (*x.shape[:-1], x.shape[-1] // block_size)
    return torch.empty_like(x, dtype=FP8_DTYPE), x.new_empty(scales_shape, dtype=torch.float32)


@torch.library.custom_op("model_zoo::weight_dequant", mutates_args=())
def _weight_dequant_op(
    x: Tensor, s: Tensor, block_size: int, dtype: torch.dtype, implementation: str
) -> Tensor:
    _check_weight_dequant(x, s, block_size)
    if _use_triton(implementation, x.device):
        from . import triton_kernels

        _check_triton_block_size(block_size)
        return triton_kernels.weight_dequant(x, s, block_size, dtype)
    return reference.weight_dequant(x, s, block_size, dtype)


@_weight_dequant_op.register_fake
def _weight_dequant_fake(
    x: Tensor, s: Tensor, block_size: int, dtype: torch.dtype, implementation: str
) -> Tensor:
    _check_weight_dequant(x, s, block_size)
    return torch.empty_like(x, dtype=dtype)


@torch.library.custom_op("model_zoo::fp8_gemm", mutates_args=())
def _fp8_gemm_op(
    a: Tensor, a_s: Tensor, b: Tensor, b_s: Tensor, dtype: torch.dtype, implementation: str
) -> Tensor:
    _check_fp8_gemm(a, a_s, b, b_s)
    if _use_triton(implementation, a.device):
        from . import triton_kernels

        return triton_kernels.fp8_gemm(a, a_s, b, b_s, dtype)
    return reference.fp8_gemm(a, a_s, b, b_s, dtype)


@_fp8_gemm_op.register_fake
def _fp8_gemm_fake(
    a: Tensor, a_s: Tensor, b: Tensor, b_s: Tensor, dtype: torch.dtype, implementation: str
) -> Tensor:
    _check_fp8_gemm(a, a_s, b, b_s)
    return a.new_empty((*a.shape[:-1], b.shape[0]), dtype=dtype)


def act_quant(
    x: Tensor,
    block_size: int = 128,
    scale_fmt: str | None = None,
    *,
    implementation: Implementation = "auto",
) -> tuple[Tensor, Tensor]:
    """Quantise activations to FP8 with one float32 scale per `block_size` values.

    x: (..., K), K a multiple of `block_size`, any float dtype. Returns y: (..., K)
    float8_e4m3fn and s: (..., K / block_size) float32. Per block: amax = max |x| floored at
    1e-4; s = amax / 448, rounded up to a power of two when `scale_fmt` is "ue8m0"; y = x / s.
    Op `model_zoo::act_quant`; `implementation` as in this module's docstring.
    """
    return _act_quant_op(x, block_size, scale_fmt, implementation)


def weight_dequant(
    x: Tensor,
    s: Tensor,
    block_size: int = 128,
    *,
    dtype: torch.dtype | None = None,
    implementation: Implementation = "auto",
) -> Tensor:
    """Dequantise a block-scaled FP8 weight: `y[i, j] = x[i, j] * s[i // b, j // b]`.

    x: (M, N) float8_e4m3fn; s: (ceil(M / b), ceil(N / b)) float32 for b = `block_size`, the
    last row and column of tiles possibly partial. Returns (M, N) in `dtype` (default: torch's
    default dtype at call time). Op `model_zoo::weight_dequant`; `implementation` as in this
    module's docstring.
    """
    dtype = dtype or torch.get_default_dtype()
    return _weight_dequant_op(x, s, block_size, dtype, implementation)


def fp8_gemm(
    a: Tensor,
    a_s: Tensor,
    b: Tensor,
    b_s: Tensor,
    *,
    dtype: torch.dtype | None = None,
    implementation: Implementation = "auto",
) -> Tensor:
    """`a @ b.T` for block-scaled FP8 operands, accumulated in float32.

    a: (..., K) float8_e4m3fn, a_s: (..., K / 128) float32 (from `act_quant`); b: (N, K)
    float8_e4m3fn, b_s: (ceil(N / 128), K / 128) float32 (from `weight_quant`). Returns
    (..., N) in `dtype` (default: torch's default dtype at call time):
    `c[m, n] = sum_kb (a[m, kb] · b[n, kb]) * a_s[m, kb] * b_s[n // 128, kb]` over 128-wide
    blocks kb of K. Op `model_zoo::fp8_gemm`; `implementation` as in this module's docstring.
    """
    dtype = dtype or torch.get_default_dtype()
    return _fp8_gemm_op(a, a_s, b, b_s, dtype, implementation)
