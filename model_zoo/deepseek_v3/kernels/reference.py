"""Block-scaled FP8 arithmetic in plain torch: the meaning of every kernel, and the test oracle.

FP8 here is float8_e4m3fn (largest finite value 448) with one float32 scale per block of
values: a block of 128 consecutive values along the last axis for activations, a 128 x 128 tile
for weights. A stored value `q` with scale `s` stands for `q * s`.

These functions run on any device, the meta device included, and are what `ops` uses wherever
Triton is not.
"""

import torch
from torch import Tensor

FP8_DTYPE = torch.float8_e4m3fn
FP8_MAX = 448.0
"""Largest finite float8_e4m3fn value: a block's largest magnitude is scaled onto it."""
AMAX_FLOOR = 1e-4
"""Smallest block maximum used for a scale, so an all-zero block gets a finite, nonzero scale."""
SCALE_FORMATS = (None, "ue8m0")
"""`None`: any float32 scale. `"ue8m0"`: scales rounded up to a power of two (exponent only)."""


def scale_from_amax(amax: Tensor, scale_fmt: str | None) -> Tensor:
    """Scale that maps a block whose largest magnitude is `amax` onto the FP8 range.

    `s = max(amax, 1e-4) / 448`, rounded up to `2 ** ceil(log2 s)` when `scale_fmt` is "ue8m0".
    Same shape as `amax`, float32.
    """
    amax = amax.float().clamp(min=AMAX_FLOOR)
    # Divide by a tensor: on CUDA, torch turns division by a Python number into multiplication
    # by its reciprocal, which can differ in the last bit from the Triton kernel's division.
    scale = amax / torch.full_like(amax, FP8_MAX)
    if scale_fmt == "ue8m0":
        # frexp is exact where exp2(ceil(log2(s))) is not: log2 of a value just above a power
        # of two can round down to the integer, which would shrink the scale and overflow FP8.
        mantissa, exponent = torch.frexp(scale)  # scale = mantissa * 2**exponent, 0.5 <= m < 1
        exponent = torch.where(mantissa == 0.5, exponent - 1, exponent)
        scale = torch.ldexp(torch.ones_like(scale), exponent)
    return scale


def act_quant(
    x: Tensor, block_size: int = 128, scale_fmt: str | None = None
) -> tuple[Tensor, Tensor]:
    """Quantise activations to FP8 with one scale per `block_size` values along the last axis.

    x: (..., K) with K a multiple of `block_size`, any float dtype.
    Returns y: (..., K) float8_e4m3fn and s: (..., K / block_size) float32 with
    `y * s ≈ x` block by block.
    """
    blocks = x.float().unflatten(-1, (-1, block_size))  # (..., K / block_size, block_size)
    scale = scale_from_amax(blocks.abs().amax(dim=-1), scale_fmt)
    y = (blocks / scale.unsqueeze(-1)).to(FP8_DTYPE).flatten(-2)
    return y, scale


def _to_tiles(w: Tensor, block_size: int) -> Tensor:
    """(M, N) -> (ceil(M / b), b, ceil(N / b), b) float32 tiles, the partial ones zero-padded."""
    rows, cols = w.shape
    pad_rows, pad_cols = -rows % block_size, -cols % block_size
    padded = torch.nn.functional.pad(w.float(), (0, pad_cols, 0, pad_rows))
    return padded.unflatten(0, (-1, block_size)).unflatten(2, (-1, block_size))


def _from_tiles(tiles: Tensor, shape: torch.Size) -> Tensor:
    """Inverse of `_to_tiles`: drop the padding, back to `shape` (M, N)."""
    rows, cols = shape
    return tiles.flatten(2, 3).flatten(0, 1)[:rows, :cols]


def weight_dequant(
    x: Tensor, s: Tensor, block_size: int = 128, dtype: torch.dtype | None = None
) -> Tensor:
    """Multiply each `block_size` x `block_size` tile of an FP8 weight by its scale.

    x: (M, N) float8_e4m3fn; s: (ceil(M / block_size), ceil(N / block_size)) float32; the last
    row and column of tiles may be partial. Returns (M, N) in `dtype` (default: torch's default
    dtype), computed as `float32(x) * s` and then rounded once.
    """
    dtype = dtype or torch.get_default_dtype()
    tiles = _to_tiles(x, block_size) * s.float()[:, None, :, None]
    return _from_tiles(tiles, x.shape).to(dtype)


def weight_quant(
    w: Tensor, block_size: int = 128, scale_fmt: str | None = None
) -> tuple[Tensor, Tensor]:
    """Quantise a weight to FP8 with one scale per `block_size` x `block_size` tile.

    w: (M, N), any float dtype. Returns w_fp8: (M, N) float8_e4m3fn and s:
    (ceil(M / block_size), ceil(N / block_size)) float32, so that
    `weight_dequant(w_fp8, s) ≈ w`. Partial edge tiles take their scale from the values they
    hold (the zero padding does not change a maximum magnitude).
    """
    tiles = _to_tiles(w, block_size)  # (row tiles, b, column tiles, b)
    scale = scale_from_amax(tiles.abs().amax(dim=(1, 3)), scale_fmt)
    w_fp8 = _from_tiles(tiles / scale[:, None, :, None], w.shape).to(FP8_DTYPE)
    return w_fp8, scale


def fp8_gemm(
    a: Tensor, a_s: Tensor, b: Tensor, b_s: Tensor, dtype: torch.dtype | None = None
) -> Tensor:
    """`a @ b.T` for block-scaled FP8 operands, accumulated in float32.

    a: (..., K) float8_e4m3fn with a_s: (..., K / 128) float32 (as from `act_quant`);
    b: (N, K) float8_e4m3fn with b_s: (ceil(N / 128), K / 128) float32 (as from
    `weight_quant`). Returns (..., N) in `dtype` (default: torch's default dtype):
    `c[m, n] = sum_kb (a[m, kb] · b[n, kb]) * a_s[m, kb] * b_s[n // 128, kb]` over the
    128-wide blocks kb of K. Here both operands are dequantised to float32 and multiplied once,
    which is the same sum in a different rounding order.
    """
    dtype = dtype or torch.get_default_dtype()
    a_scaled = a.float() * a_s.float().repeat_interleave(128, dim=-1)
    b_scaled = weight_dequant(b, b_s, 128, torch.float32)
    return (a_scaled @ b_scaled.T).to(dtype)
