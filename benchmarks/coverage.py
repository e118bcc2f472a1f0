"""The coverage matrix: every architecture of ``model_zoo.published`` at its published full
size on the meta device, built and traced (folding included) in this process, one after the
other, with the 671B DeepSeek-V3 of the zoo (tokens (1, 32), as the language models here) as
the reference measured first in the same run.

    python benchmarks/coverage.py            # the whole table
    python benchmarks/coverage.py "Mixtral 8x7B" "Llama 3 8B"
    python benchmarks/coverage.py --moe      # every MoE family of transformers (defaults)
    python benchmarks/coverage.py --moe dbrx mixtral

``--moe``: every mixture-of-experts family the installed transformers ships
(``model_zoo.transformers_moe``), built from transformers' default config, traced unfolded
as its test traces it; the families not covered are listed with the reason.

Columns: parameters, activated parameters per token, FLOPs of one forward over the inputs
(32 tokens for language models, one 224 x 224 image for vision models), op nodes recorded
before folding, seconds to build the model on the meta device and to trace it, and the trace
time as a ratio to the reference's build + trace. Target: every trace <= 10 s on a 2-core
machine.

A row whose package does not import says so and is not run. torchvision's wheels need the
torch they were built with: run its rows with the interpreter of a virtual environment that
has both (``.ci/run`` makes one: ``torch==2.14.1 torchvision==0.29.1``).
"""

from __future__ import annotations

import importlib
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

TARGET_SECONDS = 10.0


def _count(value: float) -> str:
    for unit, size in (("T", 1e12), ("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if value >= size:
            return f"{value / size:.3g}{unit}"
    return f"{value:g}"


def _reference_seconds() -> float:
    """Build and trace the zoo's 671B DeepSeek-V3 on the meta device, tokens (1, 32)."""
    import torch

    from model_trace.tracing import trace
    from model_zoo.deepseek_v3 import RuntimeOptions, Transformer, load_config
    from model_zoo.published import TOKENS

    start = time.perf_counter()
    with torch.device("meta"):
        model = Transformer(load_config("671B"), RuntimeOptions(world_size=1, rank=0))
    trace(model, torch.empty(1, TOKENS, dtype=torch.int64, device="meta"))
    return time.perf_counter() - start


def _missing(package: str) -> str:
    try:
        importlib.import_module(package)
    except ImportError as error:
        return f"not run: {package} does not import ({error})"
    return ""


@dataclass(frozen=True)
class Row:
    """One model of a table: how to build it, what to feed it, whether to fold."""

    name: str
    family: str
    package: str
    build: Callable[[], Any]
    inputs: Callable[[], dict[str, Any]]
    fold: bool = True


def _published_rows(names: list[str]) -> list[Row]:
    from model_zoo.published import ARCHITECTURES

    return [Row(name, a.family, a.package, a.build, a.inputs)
            for name in names or list(ARCHITECTURES) for a in [ARCHITECTURES[name]]]


def _moe_rows(names: list[str]) -> list[Row]:
    from model_zoo.transformers_moe import (
        NOT_COVERED,
        build_family,
        family_inputs,
        moe_families,
    )

    families = moe_families()
    for folder in names or families:
        if folder in NOT_COVERED:
            print(f"{folder:30s} not covered: {NOT_COVERED[folder]}")
    return [Row(folder, families[folder].model_class, "transformers",
                partial(build_family, folder), partial(family_inputs, folder), fold=False)
            for folder in names or families if folder not in NOT_COVERED]


def main(argv: list[str]) -> None:
    warnings.filterwarnings("ignore")
    import torch
    import transformers

    from model_trace.tracing import trace

    transformers.logging.set_verbosity_error()
    moe = argv[:1] == ["--moe"]
    names = argv[1:] if moe else argv
    reference = _reference_seconds()
    print(f"torch {torch.__version__}, transformers {transformers.__version__}; reference: "
          f"the zoo's DeepSeek-V3 671B, build + trace {reference:.2f} s")
    rows = _moe_rows(names) if moe else _published_rows(names)
    print(f"{'model':30s} {'family':26s} {'params':>8s} {'active':>8s} {'FLOPs':>8s} "
          f"{'nodes':>7s} {'build s':>8s} {'trace s':>8s} {'/ ref':>6s}")
    slowest, over = 0.0, []
    for row in rows:
        missing = _missing(row.package)
        if missing:
            print(f"{row.name:30s} {row.family:26s} {missing}", flush=True)
            continue
        start = time.perf_counter()
        with torch.device("meta"):
            model = row.build()
        built = time.perf_counter() - start
        start = time.perf_counter()
        graph = trace(model, fold=row.fold, **row.inputs())
        traced = time.perf_counter() - start
        slowest = max(slowest, traced)
        if traced > TARGET_SECONDS:
            over.append(row.name)
        totals = graph.meta["totals"]
        nodes = graph.meta["folded"]["before"]["nodes"] if row.fold else len(graph.nodes)
        print(f"{row.name:30s} {row.family[:26]:26s} {_count(totals['params']):>8s} "
              f"{_count(totals['activated_params']):>8s} {_count(totals['flops']):>8s} "
              f"{nodes:>7,} {built:8.2f} {traced:8.2f} {traced / reference:6.2f}", flush=True)
        del model, graph
    verdict = "meets" if not over else f"MISSES ({', '.join(over)})"
    print(f"slowest trace {slowest:.2f} s ({slowest / reference:.2f} x the reference): "
          f"{verdict} the target (<= {TARGET_SECONDS:g} s)")


if __name__ == "__main__":
    main(sys.argv[1:])
