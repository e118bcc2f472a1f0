"""FP8 kernels: the reference arithmetic by hand, the custom ops, and the Triton interpreter run."""

import math
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from torch.overrides import TorchFunctionMode
from torch.utils._python_dispatch import TorchDispatchMode

from model_zoo.deepseek_v3.kernels import (
    FP8_DTYPE,
    act_quant,
    fp8_gemm,
    ops,
    reference,
    triton_available,
    weight_dequant,
    weight_quant,
)

REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def bfloat16_default() -> Iterator[None]:
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.bfloat16)
    yield
    torch.set_default_dtype(previous)


def _random(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed))


# --- reference semantics, checked by hand ---------------------------------------------------


def test_act_quant_scales_each_block_by_its_amax() -> None:
    x = torch.zeros(1, 384)
    x[0, :4] = torch.tensor([896.0, -448.0, 224.0, 1.0])  # amax 896 -> s = 2
    x[0, 128:130] = torch.tensor([3e-5, -5e-5])  # amax below the 1e-4 floor
    # x[0, 256:] stays zero: floored too.
    y, s = reference.act_quant(x)
    floor_scale = torch.tensor(1e-4) / 448
    assert s.dtype == torch.float32 and s.shape == (1, 3)
    torch.testing.assert_close(s, torch.stack([torch.tensor(2.0), floor_scale, floor_scale])[None])
    assert y.dtype == FP8_DTYPE
    assert y[0, :4].float().tolist() == [448.0, -224.0, 112.0, 0.5]
    torch.testing.assert_close(
        y[0, 128:130].float(), (x[0, 128:130] / floor_scale).to(FP8_DTYPE).float()
    )
    assert not y[0, 256:].float().any()


def test_act_quant_keeps_leading_dims_and_reads_bfloat16() -> None:
    x = _random(2, 3, 256).to(torch.bfloat16)
    y, s = reference.act_quant(x)
    assert y.shape == (2, 3, 256) and s.shape == (2, 3, 2)
    assert y.float().abs().amax().item() == 448.0  # each block's largest value lands on 448


@pytest.mark.parametrize("exponent", [-20, -3, 0, 5])
def test_ue8m0_rounds_scales_up_to_a_power_of_two(exponent: int) -> None:
    # Block maxima at, and a few float32 steps above, 448 * 2**exponent; log2 of the latter
    # rounds to the integer in float32, which the reference must not be fooled by.
    amax = torch.tensor([448 * 2.0**exponent * (1 + j * 2.0**-23) for j in range(6)])
    plain = reference.scale_from_amax(amax, None)
    rounded = reference.scale_from_amax(amax, "ue8m0")
    expected = [2.0 ** math.ceil(math.log2(s)) for s in plain.double().tolist()]
    assert rounded.tolist() == expected
    assert (rounded >= plain).all()


def test_ue8m0_act_quant_stays_in_range() -> None:
    x = _random(4, 512, seed=1) * 37
    y, s = reference.act_quant(x, scale_fmt="ue8m0")
    mantissa, _ = torch.frexp(s)
    assert (mantissa == 0.5).all()
    assert y.float().abs().max().item() <= 448.0
    assert not y.float().isnan().any()


def test_weight_dequant_uses_the_tile_of_each_element() -> None:
    x = torch.ones(130, 200).to(FP8_DTYPE)  # 2 x 2 tiles, the last row and column partial
    s = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    y = reference.weight_dequant(x, s, dtype=torch.float32)
    assert y.shape == (130, 200)
    assert [y[127, 127], y[127, 128], y[128, 127], y[129, 199]] == [1.0, 2.0, 3.0, 4.0]


def test_fp8_gemm_by_hand_with_a_partial_scale_tile() -> None:
    a = torch.ones(1, 256).to(FP8_DTYPE)
    a_s = torch.tensor([[1.0, 2.0]])
    b = torch.ones(130, 256).to(FP8_DTYPE)  # N = 130: the second row of b_s covers 2 rows
    b_s = torch.tensor([[1.0, 0.5], [3.0, 0.25]])
    c = reference.fp8_gemm(a, a_s, b, b_s, torch.float32)
    # c[n] = 128 * 1 * b_s[n // 128, 0] + 128 * 2 * b_s[n // 128, 1]
    assert c.shape == (1, 130)
    assert [c[0, 0], c[0, 127], c[0, 128], c[0, 129]] == [256.0, 256.0, 448.0, 448.0]


def test_fp8_gemm_equals_the_blockwise_sum() -> None:
    a, a_s = reference.act_quant(_random(3, 5, 384, seed=2))
    b, b_s = weight_quant(_random(200, 384, seed=3))
    c = reference.fp8_gemm(a, a_s, b, b_s, torch.float64)
    blockwise = torch.zeros(3, 5, 200, dtype=torch.float64)
    for kb in range(3):
        k = slice(kb * 128, (kb + 1) * 128)
        partial = a[..., k].double() @ b[:, k].double().T
        b_scale = b_s[:, kb].double().repeat_interleave(128)[:200]
        blockwise += partial * a_s[..., kb, None].double() * b_scale
    # The reference sums in float32: equal up to float32 rounding of the largest outputs.
    torch.testing.assert_close(c, blockwise, rtol=0, atol=1e-6 * blockwise.abs().max().item())


@pytest.mark.parametrize("scale_fmt", [None, "ue8m0"])
def test_weight_quant_round_trip_error(scale_fmt: str | None) -> None:
    w = _random(300, 200, seed=4) * torch.logspace(-3, 1, 200)  # columns of different sizes
    w_fp8, s = weight_quant(w, scale_fmt=scale_fmt)
    assert w_fp8.dtype == FP8_DTYPE and s.shape == (3, 2)
    error = (reference.weight_dequant(w_fp8, s, dtype=torch.float32) - w).abs()
    # Half an FP8 step: 2**-4 relative for normal values, 2**-10 * s below 2**-6 * s.
    tile_scales = s.repeat_interleave(128, dim=0).repeat_interleave(128, dim=1)[:300, :200]
    bound = w.abs() * 2**-4 + tile_scales * 2**-10
    assert (error <= bound).all()
    assert error.max().item() < 0.07 * w.abs().max().item()


def test_act_quant_round_trip_error() -> None:
    x = _random(8, 1024, seed=5) * 3
    y, s = reference.act_quant(x)
    error = (y.float() * s.repeat_interleave(128, dim=-1) - x).abs()
    assert (error <= x.abs() * 2**-4 + s.repeat_interleave(128, dim=-1) * 2**-10).all()


# --- the custom ops -------------------------------------------------------------------------


def _fp8_operands(device: str = "cpu") -> tuple[torch.Tensor, ...]:
    a, a_s = act_quant(_random(2, 3, 256, seed=6), implementation="torch")
    b, b_s = weight_quant(_random(130, 256, seed=7))
    return tuple(t.to(device) for t in (a, a_s, b, b_s))


def test_ops_default_to_the_reference_on_cpu() -> None:
    x = _random(4, 256, seed=8)
    got, want = act_quant(x, scale_fmt="ue8m0"), reference.act_quant(x, 128, "ue8m0")
    for got_tensor, want_tensor in zip(got, want, strict=True):
        assert torch.equal(got_tensor.view(torch.uint8), want_tensor.view(torch.uint8))
    a, a_s, b, b_s = _fp8_operands()
    assert torch.equal(weight_dequant(b, b_s), reference.weight_dequant(b, b_s))
    assert torch.equal(fp8_gemm(a, a_s, b, b_s), reference.fp8_gemm(a, a_s, b, b_s))


def test_outputs_take_the_default_dtype_at_call_time(bfloat16_default: None) -> None:
    a, a_s, b, b_s = _fp8_operands()
    assert weight_dequant(b, b_s).dtype == torch.bfloat16
    assert fp8_gemm(a, a_s, b, b_s).dtype == torch.bfloat16
    assert fp8_gemm(a, a_s, b, b_s, dtype=torch.float32).dtype == torch.float32


def test_ops_run_on_the_meta_device() -> None:
    y, s = act_quant(torch.empty(2, 5, 7168, device="meta", dtype=torch.bfloat16))
    assert (y.device.type, y.shape, y.dtype) == ("meta", (2, 5, 7168), FP8_DTYPE)
    assert (s.shape, s.dtype) == ((2, 5, 56), torch.float32)
    w = torch.empty(1000, 7168, device="meta", dtype=FP8_DTYPE)
    w_s = torch.empty(8, 56, device="meta")
    dense = weight_dequant(w, w_s, dtype=torch.bfloat16)
    assert (dense.device.type, dense.shape, dense.dtype) == ("meta", (1000, 7168), torch.bfloat16)
    c = fp8_gemm(y, s, w, w_s, dtype=torch.bfloat16)
    assert (c.device.type, c.shape, c.dtype) == ("meta", (2, 5, 1000), torch.bfloat16)


def test_weight_quant_runs_on_the_meta_device() -> None:
    w_fp8, s = weight_quant(torch.empty(300, 200, device="meta"))
    assert (w_fp8.shape, w_fp8.dtype, s.shape, s.dtype) == (
        (300, 200),
        FP8_DTYPE,
        (3, 2),
        torch.float32,
    )


def test_tracers_see_the_named_ops() -> None:
    seen_by_function_mode: list[str] = []
    seen_by_dispatch_mode: list[str] = []

    class FunctionRecorder(TorchFunctionMode):
        def __torch_function__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
            seen_by_function_mode.append(str(func))
            return func(*args, **(kwargs or {}))

    class DispatchRecorder(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
            seen_by_dispatch_mode.append(str(func))
            return func(*args, **(kwargs or {}))

    x = torch.empty(3, 256, device="meta")
    w = torch.empty(130, 256, device="meta", dtype=FP8_DTYPE)
    w_s = torch.empty(2, 2, device="meta")
    for mode in (FunctionRecorder(), DispatchRecorder()):
        with mode:
            a, a_s = act_quant(x)
            fp8_gemm(a, a_s, w, w_s)
            weight_dequant(w, w_s)
    expected = ["model_zoo.act_quant.default", "model_zoo.fp8_gemm.default"]
    expected.append("model_zoo.weight_dequant.default")
    assert seen_by_function_mode == expected
    assert seen_by_dispatch_mode == expected


def test_opcheck() -> None:
    a, a_s, b, b_s = _fp8_operands()
    x = _random(2, 3, 256, seed=9)
    torch.library.opcheck(ops._act_quant_op, (x, 128, "ue8m0", "torch"))
    # opcheck's schema test compares FP8 inputs with an op torch's CPU backend lacks for FP8
    # ("mul_cpu_reduced_float"), so for FP8 inputs it is left out and replaced by checking
    # that the inputs' bytes are unchanged.
    without_schema = ("test_autograd_registration", "test_faketensor", "test_aot_dispatch_dynamic")
    inputs = (a, a_s, b, b_s)
    before = [t.clone() for t in inputs]
    torch.library.opcheck(
        ops._weight_dequant_op, (b, b_s, 128, torch.float32, "torch"), test_utils=without_schema
    )
    torch.library.opcheck(
        ops._fp8_gemm_op, (a, a_s, b, b_s, torch.float32, "torch"), test_utils=without_schema
    )
    for original, now in zip(before, inputs, strict=True):
        assert torch.equal(original.view(torch.uint8), now.view(torch.uint8))


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: act_quant(torch.zeros(2, 100)), "multiple of block_size"),
        (lambda: act_quant(torch.zeros(2, 128), scale_fmt="e8m0"), "scale_fmt"),
        (lambda: act_quant(torch.zeros(2, 128), implementation="cuda"), "implementation"),
        (lambda: weight_dequant(torch.zeros(4, 4), torch.ones(1, 1)), "float8_e4m3fn"),
        (
            lambda: weight_dequant(torch.zeros(130, 4).to(FP8_DTYPE), torch.ones(1, 1)),
            r"\(2, 1\)",
        ),
        (
            lambda: fp8_gemm(*_fp8_operands()[:2], *_fp8_operands()[2:3], torch.ones(1, 2)),
            r"b_s \(2, 2\)",
        ),
    ],
)
def test_bad_arguments_say_what_is_expected(call: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        call()


def test_triton_on_cpu_without_the_interpreter_is_an_error() -> None:
    pytest.importorskip("triton")
    from model_zoo.deepseek_v3.kernels import triton_kernels

    if triton_kernels.INTERPRETING:
        pytest.skip("this process runs Triton's interpreter, so CPU tensors are allowed")
    with pytest.raises(RuntimeError, match="TRITON_INTERPRET=1"):
        act_quant(torch.zeros(1, 128), implementation="triton")


# --- the Triton kernels, in Triton's CPU interpreter ----------------------------------------


def _run_python(args: list[str], env: dict[str, str] | None = None) -> str:
    result = subprocess.run(
        [sys.executable, *args],
        cwd=REPO_ROOT,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT), **(env or {})},
        capture_output=True,
        text=True,
        timeout=600,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    return output


def test_package_imports_without_building_triton_kernels() -> None:
    output = _run_python(
        [
            "-c",
            "import sys, model_zoo.deepseek_v3.kernels; "
            "print('model_zoo.deepseek_v3.kernels.triton_kernels' in sys.modules)",
        ]
    )
    assert output.strip() == "False"


@pytest.mark.skipif(not triton_available(), reason="triton is not installed")
def test_triton_kernels_in_interpreter() -> None:
    """Run test_kernels_triton.py where TRITON_INTERPRET=1 is set before triton builds anything.

    --noconftest: the module needs no shared fixture, and tests/conftest.py imports mkdocs.
    """
    output = _run_python(
        [
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "--noconftest",
            str(Path(__file__).with_name("test_kernels_triton.py")),
        ],
        env={"TRITON_INTERPRET": "1"},
    )
    assert " passed" in output and "failed" not in output, output
