"""The coverage matrix: every architecture of ``model_zoo.published`` at its published full
size on the meta device, built and traced (folding included) in this process, one after the
other, with the 671B DeepSeek-V3 of the zoo as the reference measured in the same run.

    python benchmarks/coverage.py            # the whole table
    python benchmarks/coverage.py "Mixtral 8x7B" "Llama 3 8B"

Columns: parameters, activated parameters per token, FLOPs of one forward over the inputs
(32 tokens for language models), op nodes recorded before folding, and seconds to build the
model on the meta device and to trace it. Target: every trace <= 10 s on a 2-core machine.
"""

from __future__ import annotations

import sys
import time
import warnings

TARGET_SECONDS = 10.0


def _count(value: float) -> str:
    for unit, size in (("T", 1e12), ("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if value >= size:
            return f"{value / size:.3g}{unit}"
    return f"{value:g}"


def main(names: list[str]) -> None:
    warnings.filterwarnings("ignore")
    import torch
    import transformers

    from model_trace.tracing import trace
    from model_zoo.published import ARCHITECTURES

    transformers.logging.set_verbosity_error()
    print(f"{'model':30s} {'family':30s} {'params':>8s} {'active':>8s} {'FLOPs':>8s} "
          f"{'nodes':>7s} {'build s':>8s} {'trace s':>8s}")
    slowest = 0.0
    for name in names or list(ARCHITECTURES):
        architecture = ARCHITECTURES[name]
        start = time.perf_counter()
        with torch.device("meta"):
            model = architecture.build()
        built = time.perf_counter() - start
        start = time.perf_counter()
        graph = trace(model, **architecture.inputs())
        traced = time.perf_counter() - start
        slowest = max(slowest, traced)
        totals = graph.meta["totals"]
        print(f"{name:30s} {architecture.family:30s} {_count(totals['params']):>8s} "
              f"{_count(totals['activated_params']):>8s} {_count(totals['flops']):>8s} "
              f"{graph.meta['folded']['before']['nodes']:>7,} {built:8.2f} {traced:8.2f}",
              flush=True)
    verdict = "meets" if slowest <= TARGET_SECONDS else "MISSES"
    print(f"slowest trace {slowest:.2f} s: {verdict} the target (<= {TARGET_SECONDS:g} s)")


if __name__ == "__main__":
    main(sys.argv[1:])
