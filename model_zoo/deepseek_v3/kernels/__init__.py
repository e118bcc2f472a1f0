"""Block-scaled FP8 kernels for DeepSeek-V3: Triton on GPUs, plain torch everywhere else.

- `act_quant(x)`: activations (..., K) -> FP8 values and one float32 scale per 128 values.
- `weight_quant(w)` / `weight_dequant(w_fp8, s)`: weights (M, N) <-> FP8 values and one
  float32 scale per 128 x 128 tile.
- `fp8_gemm(a, a_s, b, b_s)`: `a @ b.T` from FP8 operands and their scales.

`act_quant`, `weight_dequant` and `fp8_gemm` are torch custom ops (`model_zoo::...`) that pick
Triton or torch per call (see `ops`); `weight_quant` is plain torch. The modules: `reference`
(the arithmetic in torch, the test oracle), `triton_kernels` (the kernels; imported only when
used, so this package imports without triton), `ops` (the custom-op registration and dispatch).
"""

from .ops import Implementation, act_quant, fp8_gemm, triton_available, weight_dequant
from .reference import FP8_DTYPE, FP8_MAX, weight_quant

__all__ = [
    "FP8_DTYPE",
    "FP8_MAX",
    "Implementation",
    "act_quant",
    "fp8_gemm",
    "triton_available",
    "weight_dequant",
    "weight_quant",
]
