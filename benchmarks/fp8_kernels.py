"""Time the FP8 kernels (Triton and the torch reference) on DeepSeek-V3's linear-layer shapes.

    python benchmarks/fp8_kernels.py                  # CUDA if there is a GPU, else CPU
    python benchmarks/fp8_kernels.py --device cpu --tokens 1 16

(from the repository root, with the project installed or PYTHONPATH=.)

Prints one row per (op, shape, implementation): the median time, the throughput (TFLOP/s for
fp8_gemm, GB/s of memory traffic for act_quant and weight_dequant) and, for Triton, the largest
difference from the torch reference (relative to the reference's largest magnitude; 0 means
bit-identical). On a GPU, a bfloat16 `F.linear` on the same shape is timed for comparison.
On CPU only the torch implementation runs (Triton needs a GPU), on fewer and smaller shapes.
"""

import argparse
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import torch
import torch.nn.functional as F

from model_zoo.deepseek_v3.kernels import (
    Implementation,
    act_quant,
    fp8_gemm,
    triton_available,
    weight_dequant,
    weight_quant,
)

LINEAR_SHAPES = {
    "wq_a": (1536, 7168),
    "wq_b": (24576, 1536),
    "wkv_b": (32768, 512),
    "wo": (7168, 16384),
    "dense w1": (18432, 7168),
    "dense w2": (7168, 18432),
    "expert w1": (2048, 7168),
    "expert w2": (7168, 2048),
}
"""(N, K) = (out_features, in_features) of the 671B model's FP8 linear layers."""
CPU_LINEAR_SHAPES = ("wq_a", "expert w1", "expert w2")


@dataclass
class Row:
    op: str
    shape: str
    implementation: str
    milliseconds: float
    throughput: str
    max_error: str


def measure(fn: Callable[[], object], device: torch.device, budget_s: float) -> float:
    """Time per call of `fn` in milliseconds: the median of 5 batches of back-to-back calls.

    Calls within a batch are not synchronised one by one, so on a GPU a small kernel's time is
    its launch cost (the Python dispatch) when that exceeds the kernel's run time.
    """
    synchronize = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    fn()  # warm-up: compilation, autotuning, allocator
    synchronize()
    start = time.perf_counter()
    fn()
    synchronize()
    calls = max(1, min(1000, int(budget_s / 5 / max(time.perf_counter() - start, 1e-6))))
    batches = []
    for _ in range(5):
        start = time.perf_counter()
        for _ in range(calls):
            fn()
        synchronize()
        batches.append((time.perf_counter() - start) / calls)
    return statistics.median(batches) * 1e3


def relative_error(actual: torch.Tensor, expected: torch.Tensor) -> str:
    """Largest |actual - expected| over the largest |expected|, as text."""
    difference = (actual.float() - expected.float()).abs().max().item()
    return f"{difference / max(expected.float().abs().max().item(), 1e-30):.1e}"


def implementations(device: torch.device) -> list[Implementation]:
    if device.type == "cuda" and triton_available():
        return ["triton", "torch"]
    return ["torch"]


def bench(
    rows: list[Row],
    op: str,
    shape: str,
    device: torch.device,
    budget_s: float,
    run: Callable[[Implementation], torch.Tensor],
    throughput: Callable[[float], str],
) -> None:
    """Time `run` for each implementation on `device`; check Triton's output against torch's."""
    expected = run("torch")
    for implementation in implementations(device):
        ms = measure(partial(run, implementation), device, budget_s)
        error = relative_error(run("triton"), expected) if implementation == "triton" else ""
        rows.append(Row(op, shape, implementation, ms, throughput(ms), error))


def gigabytes_per_second(n_bytes: int) -> Callable[[float], str]:
    return lambda ms: f"{n_bytes / ms / 1e6:.3g} GB/s"


def teraflops(flops: int) -> Callable[[float], str]:
    return lambda ms: f"{flops / ms / 1e9:.3g} TFLOP/s"


def bench_act_quant(rows: list[Row], device: torch.device, tokens: int, budget_s: float) -> None:
    x = torch.randn(tokens, 7168, device=device, dtype=torch.bfloat16)
    traffic = x.numel() * (2 + 1) + x.numel() // 128 * 4  # read bf16, write fp8 and scales

    def run(implementation: Implementation) -> torch.Tensor:
        return act_quant(x, implementation=implementation)[0]

    bench(rows, "act_quant", f"{tokens}x7168", device, budget_s, run, gigabytes_per_second(traffic))


def bench_weight_dequant(rows: list[Row], device: torch.device, name: str, budget_s: float) -> None:
    n, k = LINEAR_SHAPES[name]
    w, s = weight_quant(torch.randn(n, k, device=device))

    def run(implementation: Implementation) -> torch.Tensor:
        return weight_dequant(w, s, dtype=torch.bfloat16, implementation=implementation)

    traffic = gigabytes_per_second(n * k * (1 + 2))  # read fp8, write bf16
    bench(rows, "weight_dequant", f"{name} {n}x{k}", device, budget_s, run, traffic)


def bench_fp8_gemm(
    rows: list[Row], device: torch.device, name: str, tokens: int, budget_s: float
) -> None:
    n, k = LINEAR_SHAPES[name]
    x = torch.randn(tokens, k, device=device, dtype=torch.bfloat16)
    w_bf16 = torch.randn(n, k, device=device, dtype=torch.bfloat16) / k**0.5
    a, a_s = act_quant(x, implementation="torch")
    b, b_s = weight_quant(w_bf16)

    def run(implementation: Implementation) -> torch.Tensor:
        return fp8_gemm(a, a_s, b, b_s, dtype=torch.bfloat16, implementation=implementation)

    shape = f"{name} M={tokens} N={n} K={k}"
    flops = teraflops(2 * tokens * n * k)
    bench(rows, "fp8_gemm", shape, device, budget_s, run, flops)
    if device.type == "cuda":
        ms = measure(lambda: F.linear(x, w_bf16), device, budget_s)
        rows.append(Row("fp8_gemm", shape, "bf16 F.linear", ms, flops(ms), ""))


def print_table(rows: list[Row]) -> None:
    header = ("op", "shape", "implementation", "time (ms)", "throughput", "max rel. error")
    cells = [
        (r.op, r.shape, r.implementation, f"{r.milliseconds:.4f}", r.throughput, r.max_error)
        for r in rows
    ]
    widths = [max(len(str(c)) for c in column) for column in zip(header, *cells, strict=True)]
    for line in (header, tuple("-" * w for w in widths), *cells):
        print("  ".join(str(c).ljust(w) for c, w in zip(line, widths, strict=True)).rstrip())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument(
        "--tokens", type=int, nargs="+", help="rows M of the activations (default by device)"
    )
    parser.add_argument(
        "--budget", type=float, default=0.2, help="seconds of repetitions per measurement"
    )
    args = parser.parse_args()
    device = torch.device(args.device)
    on_gpu = device.type == "cuda"
    tokens = args.tokens or ([1, 16, 128, 4096] if on_gpu else [1, 16, 128])
    names = list(LINEAR_SHAPES) if on_gpu else list(CPU_LINEAR_SHAPES)
    torch.manual_seed(0)
    rows: list[Row] = []
    for m in tokens:
        bench_act_quant(rows, device, m, args.budget)
    for name in names:
        bench_weight_dequant(rows, device, name, args.budget)
    for name in names:
        for m in tokens:
            bench_fp8_gemm(rows, device, name, m, args.budget)
    name = torch.cuda.get_device_name(device) if on_gpu else "CPU"
    print(f"device: {name}, torch {torch.__version__}")
    print_table(rows)


if __name__ == "__main__":
    main()
