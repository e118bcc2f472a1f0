"""Triton kernels for block-scaled FP8: the same arithmetic as `reference`, one launch each.

Importing this module imports triton, so only `ops` imports it, and only when a call asks for
Triton. The kernels run on CUDA GPUs with FP8 support (compute capability 8.9 or newer) and, for
testing, on CPU tensors under Triton's interpreter: set TRITON_INTERPRET=1 before this module
is first imported (the `@triton.jit` decorator reads it).

The functions here take tensors already checked by `ops` (shapes, dtypes, a power-of-two
`block_size`) and return new tensors on the inputs' device.

Accuracy, against `reference` (on an H100 and in the interpreter): `act_quant` and
`weight_dequant` are bit-identical. `fp8_gemm` adds the scaled sums of the 128-wide K blocks
in float32, but on Hopper a tile of BLOCK_M = 64 runs on wgmma, which adds the FP8 products
inside a block with fewer mantissa bits than float32 (DeepSeek-V3's own recipe: promote to
float32 every 128 values); measured, up to 8e-4 of the sum of the terms' magnitudes on inputs
spread over decades, 3e-5 on Gaussian ones. Smaller tiles accumulate in float32 throughout.

The interpreter needs triton >= 3.9 when numpy >= 2.5 is installed: older interpreters turn
the GEMM's runtime loop bound into an int in a way numpy 2.5 rejects.
"""

import torch
import triton
import triton.language as tl
from torch import Tensor
from triton.runtime.jit import JITFunction

from .reference import AMAX_FLOOR, FP8_DTYPE, FP8_MAX

FP8_GEMM_BLOCK_K = 128
"""K step of `fp8_gemm`: one scale block of both operands per step."""
INTERPRETER_GEMM_TILE = (32, 64)
"""(BLOCK_M, BLOCK_N) of `fp8_gemm` under the interpreter, which cannot time configs to tune."""
ACT_QUANT_BLOCKS_PER_PROGRAM = 16
# Kernels can read module globals only when they are constexpr.
_AMAX_FLOOR = tl.constexpr(AMAX_FLOOR)
_FP8_MAX = tl.constexpr(FP8_MAX)


@triton.jit
def _round_nearest_even(x, dtype: tl.constexpr):
    """float32 `x` rounded to nearest-even at the precision of `dtype`, still float32.

    Only the interpreter needs this: its float32 -> bfloat16 cast truncates and its float32 ->
    float8 cast mishandles carries (124.3 becomes 64), but it casts exactly representable values
    exactly. Covers bfloat16 and float8e4nv with |x| <= 448; other dtypes pass through.
    """
    if dtype == tl.bfloat16:
        bits = x.to(tl.int32, bitcast=True)
        bits = (bits + 0x7FFF + ((bits >> 16) & 1)) >> 16 << 16
        return bits.to(tl.float32, bitcast=True)
    elif dtype == tl.float8e4nv:
        magnitude = tl.abs(x)
        bits = magnitude.to(tl.int32, bitcast=True)
        normal = ((bits + 0x7FFFF + ((bits >> 20) & 1)) >> 20 << 20).to(tl.float32, bitcast=True)
        # Below 2**-6 float8e4nv is subnormal, a multiple of 2**-9: the float32 ulp at 2**14.
        subnormal = (magnitude + 16384.0) - 16384.0
        rounded = tl.where(magnitude < 0.015625, subnormal, normal)
        return tl.where(x < 0, -rounded, rounded)
    else:
        return x


INTERPRETING = not isinstance(_round_nearest_even, JITFunction)
"""Whether this module's kernels were built for Triton's CPU interpreter (TRITON_INTERPRET=1)."""


@triton.jit
def _cast(x, dtype: tl.constexpr, SOFTWARE_ROUNDING: tl.constexpr):
    """float32 `x` cast to `dtype`, rounding to nearest-even (in software when asked)."""
    if SOFTWARE_ROUNDING:
        x = _round_nearest_even(x, dtype)
    return x.to(dtype)


@triton.jit
def _act_quant_kernel(
    x_ptr,
    y_ptr,
    s_ptr,
    n_blocks,
    BLOCK_SIZE: tl.constexpr,
    BLOCKS_PER_PROGRAM: tl.constexpr,
    POWER_OF_TWO_SCALE: tl.constexpr,
    SOFTWARE_ROUNDING: tl.constexpr,
):
    # Each program quantises BLOCKS_PER_PROGRAM consecutive blocks of BLOCK_SIZE values.
    blocks = tl.program_id(0) * BLOCKS_PER_PROGRAM + tl.arange(0, BLOCKS_PER_PROGRAM)
    offsets = blocks[:, None] * BLOCK_SIZE + tl.arange(0, BLOCK_SIZE)[None, :]
    in_range = blocks < n_blocks
    x = tl.load(x_ptr + offsets, mask=in_range[:, None], other=0.0).to(tl.float32)
    amax = tl.maximum(tl.max(tl.abs(x), axis=1), _AMAX_FLOOR)
    # div_rn: Triton's plain `/` on float32 is not correctly rounded on GPUs; torch's is.
    scale = tl.math.div_rn(amax, _FP8_MAX)
    if POWER_OF_TWO_SCALE:
        # 2**ceil(log2 s) for a positive normal float: carry any mantissa bit into the
        # exponent, then clear the mantissa.
        bits = scale.to(tl.int32, bitcast=True)
        scale = ((bits + 0x7FFFFF) & 0x7F800000).to(tl.float32, bitcast=True)
    y = tl.math.div_rn(x, scale[:, None])
    y = _cast(y, y_ptr.dtype.element_ty, SOFTWARE_ROUNDING)
    tl.store(y_ptr + offsets, y, mask=in_range[:, None])
    tl.store(s_ptr + blocks, scale, mask=in_range)


def act_quant(x: Tensor, block_size: int, scale_fmt: str | None) -> tuple[Tensor, Tensor]:
    """Triton `reference.act_quant`: x (..., K) -> (y (..., K) fp8, s (..., K / block_size))."""
    x = x.contiguous()
    y = torch.empty_like(x, dtype=FP8_DTYPE)
    s = x.new_empty((*x.shape[:-1], x.shape[-1] // block_size), dtype=torch.float32)
    n_blocks = s.numel()
    if n_blocks == 0:
        return y, s
    grid = (triton.cdiv(n_blocks, ACT_QUANT_BLOCKS_PER_PROGRAM),)
    _act_quant_kernel[grid](
        x,
        y,
        s,
        n_blocks,
        BLOCK_SIZE=block_size,
        BLOCKS_PER_PROGRAM=ACT_QUANT_BLOCKS_PER_PROGRAM,
        POWER_OF_TWO_SCALE=scale_fmt == "ue8m0",
        SOFTWARE_ROUNDING=INTERPRETING,
    )
    return y, s


@triton.jit
def _weight_dequant_kernel(
    x_ptr, s_ptr, y_ptr, M, N, BLOCK_SIZE: tl.constexpr, SOFTWARE_ROUNDING: tl.constexpr
):
    # One program per BLOCK_SIZE x BLOCK_SIZE tile; tiles on the last row/column are partial.
    tile_m = tl.program_id(0)
    tile_n = tl.program_id(1)
    rows = tile_m * BLOCK_SIZE + tl.arange(0, BLOCK_SIZE)
    cols = tile_n * BLOCK_SIZE + tl.arange(0, BLOCK_SIZE)
    offsets = rows[:, None] * N + cols[None, :]
    in_range = (rows[:, None] < M) & (cols[None, :] < N)
    x = tl.load(x_ptr + offsets, mask=in_range).to(tl.float32)
    scale = tl.load(s_ptr + tile_m * tl.cdiv(N, BLOCK_SIZE) + tile_n)
    y = _cast(x * scale, y_ptr.dtype.element_ty, SOFTWARE_ROUNDING)
    tl.store(y_ptr + offsets, y, mask=in_range)


def weight_dequant(x: Tensor, s: Tensor, block_size: int, dtype: torch.dtype) -> Tensor:
    """Triton `reference.weight_dequant`: x (M, N) fp8, s (ceil(M/b), ceil(N/b)) -> (M, N)."""
    x, s = x.contiguous(), s.contiguous()
    rows, cols = x.shape
    y = torch.empty_like(x, dtype=dtype)
    if y.numel() == 0:
        return y
    grid = (triton.cdiv(rows, block_size), triton.cdiv(cols, block_size))
    _weight_dequant_kernel[grid](
        x, s, y, rows, cols, BLOCK_SIZE=block_size, SOFTWARE_ROUNDING=INTERPRETING
    )
    return y


@triton.jit
def _fp8_gemm_kernel(
    a_ptr,
    b_ptr,
    c_ptr,
    a_s_ptr,
    b_s_ptr,
    M,
    N,
    K,
    M_BUCKET,
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_K: tl.constexpr,
    SOFTWARE_ROUNDING: tl.constexpr,
):
    # c[m, n] = sum over K blocks kb of (a[m, kb] . b[n, kb]) * a_s[m, kb] * b_s[n // BLOCK_K, kb]
    # M_BUCKET only keys the autotuner (a decode step and a prefill want different tiles).
    pid_m = tl.program_id(0)
    pid_n = tl.program_id(1)
    k_blocks = tl.cdiv(K, BLOCK_K)
    rows = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    cols = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    ks = tl.arange(0, BLOCK_K)
    row_ok = rows < M
    col_ok = cols < N
    a_ptrs = a_ptr + rows[:, None] * K + ks[None, :]
    b_ptrs = b_ptr + cols[:, None] * K + ks[None, :]
    a_s_ptrs = a_s_ptr + rows * k_blocks
    b_s_ptrs = b_s_ptr + (cols // BLOCK_K) * k_blocks
    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    for kb in range(k_blocks):
        a = tl.load(a_ptrs, mask=row_ok[:, None], other=0.0)
        b = tl.load(b_ptrs, mask=col_ok[:, None], other=0.0)
        a_s = tl.load(a_s_ptrs + kb, mask=row_ok, other=0.0)
        b_s = tl.load(b_s_ptrs + kb, mask=col_ok, other=0.0)
        acc += tl.dot(a, tl.trans(b)) * a_s[:, None] * b_s[None, :]
        a_ptrs += BLOCK_K
        b_ptrs += BLOCK_K
    c_ptrs = c_ptr + rows[:, None] * N + cols[None, :]
    c = _cast(acc, c_ptr.dtype.element_ty, SOFTWARE_ROUNDING)
    tl.store(c_ptrs, c, mask=row_ok[:, None] & col_ok[None, :])


_fp8_gemm_autotuned = triton.autotune(
    configs=[
        triton.Config(
            {"BLOCK_M": block_m, "BLOCK_N": block_n, "BLOCK_K": FP8_GEMM_BLOCK_K},
            num_warps=4,
            num_stages=num_stages,
        )
        for block_m in (16, 32, 64)
        for block_n in (32, 64, 128)
        for num_stages in (3, 4)
    ],
    key=["M_BUCKET", "N", "K"],
)(_fp8_gemm_kernel)


def fp8_gemm(
    a: Tensor,
    a_s: Tensor,
    b: Tensor,
    b_s: Tensor,
    dtype: torch.dtype,
    tile: tuple[int, int] | None = None,
) -> Tensor:
    """Triton `reference.fp8_gemm`: a (..., K), a_s (..., K/128), b (N, K), b_s -> (..., N).

    `tile` fixes (BLOCK_M, BLOCK_N) instead of autotuning over BLOCK_M in {16, 32, 64} and
    BLOCK_N in {32, 64, 128}; under the interpreter it defaults to `INTERPRETER_GEMM_TILE`.
    """
    k = a.shape[-1]
    n = b.shape[0]
    a2 = a.reshape(-1, k).contiguous()
    a_s2 = a_s.reshape(-1, k // FP8_GEMM_BLOCK_K).contiguous()
    b, b_s = b.contiguous(), b_s.contiguous()
    m = a2.shape[0]
    c = a.new_empty((*a.shape[:-1], n), dtype=dtype)
    if c.numel() == 0:
        return c
    if tile is None and INTERPRETING:
        tile = INTERPRETER_GEMM_TILE
    m_bucket = min(triton.next_power_of_2(m), 1024)
    if tile is None:

        def grid(meta: dict[str, int]) -> tuple[int, int]:
            return triton.cdiv(m, meta["BLOCK_M"]), triton.cdiv(n, meta["BLOCK_N"])

        _fp8_gemm_autotuned[grid](
            a2, b, c, a_s2, b_s, m, n, k, m_bucket, SOFTWARE_ROUNDING=INTERPRETING
        )
    else:
        block_m, block_n = tile
        _fp8_gemm_kernel[(triton.cdiv(m, block_m), triton.cdiv(n, block_n))](
            a2,
            b,
            c,
            a_s2,
            b_s,
            m,
            n,
            k,
            m_bucket,
            BLOCK_M=block_m,
            BLOCK_N=block_n,
            BLOCK_K=FP8_GEMM_BLOCK_K,
            SOFTWARE_ROUNDING=INTERPRETING,
        )
    return c
