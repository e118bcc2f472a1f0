"""The Triton FP8 kernels against the pure-torch reference, on random inputs.

On a CUDA GPU these run the real kernels. Otherwise, or when TRITON_INTERPRET=1 is set, they
run on CPU tensors in Triton's interpreter, which must be switched on before the kernels are
first built in the process: `test_kernels.py::test_triton_kernels_in_interpreter` runs this
module in a fresh process with TRITON_INTERPRET=1. Collected directly on a machine without a
GPU, it is skipped.
"""

import os

import pytest
import torch

pytest.importorskip("triton")

INTERPRETER_REQUESTED = os.environ.get("TRITON_INTERPRET") == "1"
DEVICE = torch.device("cuda" if torch.cuda.is_available() and not INTERPRETER_REQUESTED else "cpu")
if DEVICE.type == "cpu" and not INTERPRETER_REQUESTED:
    pytest.skip(
        "no GPU and TRITON_INTERPRET is not 1: run through "
        "test_kernels.py::test_triton_kernels_in_interpreter",
        allow_module_level=True,
    )

from model_zoo.deepseek_v3.kernels import (  # noqa: E402
    act_quant,
    fp8_gemm,
    reference,
    triton_kernels,
    weight_dequant,
    weight_quant,
)

if DEVICE.type == "cpu" and not triton_kernels.INTERPRETING:
    pytest.skip(
        "the kernels were built before TRITON_INTERPRET=1 was set in this process",
        allow_module_level=True,
    )

ON_GPU = DEVICE.type == "cuda"
"""Larger shapes on a GPU; the interpreter runs each program in numpy, so keep them small there."""


def accumulation_error(k: int) -> float:
    """fp8_gemm's error bound for a K-long dot product, relative to the sum of |terms|.

    On the CPU the interpreter sums each 128-wide K block in float32, scales it (two roundings)
    and adds the K/128 block sums in float32; the reference does the same in another order. The
    first-order worst case of one such sum is (128 + 2 + K/128) units of float32 rounding
    (2^-24) times the sum of |terms|, so two of them differ by at most twice that. A fixed 1e-6
    held for one Triton release's interpreter and not the next (1.05-1.17 times it at K=256).
    On Hopper, tiles of BLOCK_M = 64 use wgmma, whose FP8 products within one 128-wide K block
    are added with fewer mantissa bits than float32 before the kernel scales the block's sum and
    adds it in float32 (DeepSeek-V3's recipe: promote to float32 every 128 values). Measured on
    an H100: up to 8e-4 on these inputs spread over decades, 3e-5 on Gaussian ones; smaller
    tiles 2e-6.
    """
    if ON_GPU:
        return 2**-9
    block = triton_kernels.FP8_GEMM_BLOCK_K
    return 2 * (block + 2 + k // block) * 2**-24


def _random(shape: tuple[int, ...], dtype: torch.dtype, seed: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    # Magnitudes spread over several decades so that blocks have different scales and many
    # values land in FP8's subnormal range.
    magnitude = torch.exp(torch.randn(shape, generator=generator) * 2)
    sign = torch.randn(shape, generator=generator).sign()
    return (magnitude * sign).to(dtype).to(DEVICE)


def _assert_fp8_equal(actual: torch.Tensor, expected: torch.Tensor) -> None:
    mismatches = (actual.view(torch.uint8) != expected.view(torch.uint8)).sum().item()
    assert mismatches == 0, f"{mismatches} of {actual.numel()} FP8 values differ"


ACT_SHAPES = [(1, 128), (3, 5, 384), (7, 256)]
if ON_GPU:
    ACT_SHAPES += [(4096, 7168), (3, 1, 18432)]


@pytest.mark.parametrize("shape", ACT_SHAPES, ids=str)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
@pytest.mark.parametrize("scale_fmt", [None, "ue8m0"])
def test_act_quant_matches_reference(
    shape: tuple[int, ...], dtype: torch.dtype, scale_fmt: str | None
) -> None:
    x = _random(shape, dtype, seed=sum(shape))
    x[..., :128] = 0  # a first block of zeros: the amax floor
    x[..., 128:256] *= 1e-7  # a block below the floor
    y, s = act_quant(x, scale_fmt=scale_fmt, implementation="triton")
    y_ref, s_ref = reference.act_quant(x, scale_fmt=scale_fmt)
    assert y.shape == x.shape and y.dtype == torch.float8_e4m3fn
    torch.testing.assert_close(s, s_ref, rtol=0, atol=0)
    _assert_fp8_equal(y, y_ref)


DEQUANT_SHAPES = [(128, 128), (130, 200), (300, 129)]
if ON_GPU:
    DEQUANT_SHAPES += [(2112, 7168), (18432, 7168)]


@pytest.mark.parametrize("shape", DEQUANT_SHAPES, ids=str)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
def test_weight_dequant_matches_reference(shape: tuple[int, int], dtype: torch.dtype) -> None:
    w_fp8, s = weight_quant(_random(shape, torch.float32, seed=shape[0]))
    y = weight_dequant(w_fp8, s, dtype=dtype, implementation="triton")
    torch.testing.assert_close(y, reference.weight_dequant(w_fp8, s, dtype=dtype), rtol=0, atol=0)


GEMM_SHAPES = [(1, 128, 128), (37, 200, 256), (66, 130, 384)]
"""(M, N, K); N not a multiple of 128 leaves a partial tile of weight scales."""
if ON_GPU:
    GEMM_SHAPES += [(1, 7168, 2048), (128, 24576, 1536), (4096, 7168, 2048)]


def _abs(x: torch.Tensor) -> torch.Tensor:
    return x.float().abs().to(x.dtype)


def _assert_gemm_close(
    c: torch.Tensor, a: torch.Tensor, a_s: torch.Tensor, b: torch.Tensor, b_s: torch.Tensor
) -> None:
    """Within the accumulation error, measured against the sum of the terms' magnitudes."""
    expected = reference.fp8_gemm(a, a_s, b, b_s, torch.float32)
    magnitude = reference.fp8_gemm(_abs(a), a_s, _abs(b), b_s, torch.float32)
    bound = accumulation_error(a.shape[-1]) * magnitude
    if c.dtype == torch.bfloat16:
        bound += 2**-8 * expected.abs()  # plus the final rounding to bfloat16
    excess = (c.float() - expected).abs() / bound.clamp(min=1e-30)
    worst = excess.argmax()
    assert excess.max().item() <= 1, (
        f"{c.flatten()[worst].item()} != {expected.flatten()[worst].item()} at flat index "
        f"{worst.item()}: error {excess.max().item():.2f} times the bound"
    )


@pytest.mark.parametrize(("m", "n", "k"), GEMM_SHAPES, ids=str)
@pytest.mark.parametrize("tile", [None, (16, 32), (64, 128)], ids=str)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
def test_fp8_gemm_matches_reference(
    m: int, n: int, k: int, tile: tuple[int, int] | None, dtype: torch.dtype
) -> None:
    a, a_s = reference.act_quant(_random((m, k), torch.float32, seed=m))
    b, b_s = weight_quant(_random((n, k), torch.float32, seed=n))
    _assert_gemm_close(triton_kernels.fp8_gemm(a, a_s, b, b_s, dtype, tile=tile), a, a_s, b, b_s)


def test_fp8_gemm_op_keeps_leading_dims() -> None:
    a, a_s = reference.act_quant(_random((2, 3, 256), torch.float32, seed=1))
    b, b_s = weight_quant(_random((160, 256), torch.float32, seed=2))
    c = fp8_gemm(a, a_s, b, b_s, dtype=torch.float32, implementation="triton")
    assert c.shape == (2, 3, 160)
    _assert_gemm_close(c, a, a_s, b, b_s)


@pytest.mark.skipif(not ON_GPU, reason="'auto' picks Triton on CUDA tensors only")
def test_auto_uses_triton_on_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    def fail(*args: object) -> None:
        raise AssertionError("the torch reference ran for implementation='auto' on a GPU")

    monkeypatch.setattr(reference, "act_quant", fail)
    y, s = act_quant(_random((4, 256), torch.bfloat16, seed=3))
    assert y.device.type == "cuda" and s.shape == (4, 2)
