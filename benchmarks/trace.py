"""Tracing speed: the full-size DeepSeek-V3 on the meta device, and model-trace beside
torchvista and torchview on the same models.

    python benchmarks/trace.py                      # both parts
    python benchmarks/trace.py --part 671b --runs 3
    python benchmarks/trace.py --part compare --rounds 5

(from the repository root, with the project and the `bench` extra installed:
`pip install -e ".[bench]"`.)

Part 1, `671b`: the zoo's 671B config (61 layers, 256 experts, fp8 weights, absorb
attention), tokens (1, 128). Every run is a fresh Python process that imports torch, the zoo
and model-trace, then times building the model on the meta device and tracing it, folding
included (its last step, timed inside it). Peak RSS is the process's ru_maxrss at the end,
imports included (what a docs build pays). Target: build + trace + fold <= 10 s and <= 1.5 GB.

Part 2, `compare`: each tool traces the same model object, with real weights on the CPU (the
only way torchvista and torchview can run), into its in-memory graph, with no drawing:

- model-trace: `model_trace.trace(model, *inputs)` (folding included);
- torchvista: `torchvista.engine.process_graph` with fresh tables, then the ancestor map,
  which is what `trace_model` does before it renders into a notebook cell; with
  `forced_module_tracing_depth=100`, so it too records inside torch's own modules;
- torchview: `draw_graph(..., depth=inf, save_graph=False)`, which builds the graphviz
  object without rendering it.

Models: `nn.TransformerEncoder` with 12 layers, 200 x (Linear + ReLU), and the zoo's
DeepSeek-V3 default config (`ModelArgs()`) cut to 2 layers, tokens (2, 128). All cases run in
one fresh process per model, the tools interleaved round by round (so machine load hits them
alike) after one warm-up round each; the table shows the median and the ratio to ours.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Callable
from typing import Any

TARGET_SECONDS = 10.0
TARGET_RSS_MB = 1536.0
MODELS = ("encoder-12", "linear-relu-200", "deepseek-default-2")
TOOLS = ("model-trace", "torchvista", "torchview")
FULL_DEPTH = 100
"""torchvista's ``forced_module_tracing_depth``: trace inside every module, torch's own
included, as model-trace and torchview (``depth=inf``) do; by default it draws torch's
built-in modules as leaves."""


# -- part 1: the 671B model on the meta device ---------------------------------------------
def measure_671b() -> dict[str, float]:
    """Build, trace and fold the 671B model once in this (fresh) process."""
    import gc
    import resource

    import torch

    from model_trace.tracing import api, trace
    from model_zoo.deepseek_v3 import RuntimeOptions, Transformer, load_config

    # trace() folds as its last step, as a docs build runs it; the fold's share is timed
    # inside (folding after trace(fold=False) would also time a garbage collection over the
    # unfolded graph, which a docs build never runs)
    fold_seconds: list[float] = []
    fold_repeats = api.fold_repeats

    def timed_fold(graph: Any) -> Any:
        start = time.perf_counter()
        folded = fold_repeats(graph)
        fold_seconds.append(time.perf_counter() - start)
        return folded

    api.fold_repeats = timed_fold
    rss_after_imports = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    gc.collect()
    start = time.perf_counter()
    with torch.device("meta"):
        model = Transformer(load_config("671B"), RuntimeOptions(world_size=1, rank=0))
    built = time.perf_counter()
    graph = trace(model, torch.empty(1, 128, dtype=torch.int64, device="meta"))
    traced = time.perf_counter()
    before = graph.meta["folded"]["before"]
    return {
        "build_s": built - start,
        "trace_s": traced - built - fold_seconds[0],
        "fold_s": fold_seconds[0],
        "total_s": traced - start,
        "rss_after_imports_mb": rss_after_imports,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "module_calls": before["modules"],
        "nodes": before["nodes"],
        "folded_modules": len(graph.modules),
        "folded_nodes": len(graph.nodes),
    }


def report_671b(runs: int) -> bool:
    results = [_in_fresh_process(["--measure-671b"]) for _ in range(runs)]
    first = results[0]
    print(f"DeepSeek-V3 671B on the meta device, tokens (1, 128): {runs} fresh processes")
    print(f"  recorded {first['module_calls']:,} module calls and {first['nodes']:,} nodes, "
          f"folded to {first['folded_modules']} and {first['folded_nodes']}")
    print(f"  {'run':<6}{'build s':>9}{'trace s':>9}{'fold s':>8}{'total s':>9}"
          f"{'imports MB':>12}{'peak MB':>9}")
    for index, run in enumerate(results, 1):
        print(f"  {index:<6}{run['build_s']:>9.2f}{run['trace_s']:>9.2f}{run['fold_s']:>8.2f}"
              f"{run['total_s']:>9.2f}{run['rss_after_imports_mb']:>12.0f}"
              f"{run['peak_rss_mb']:>9.0f}")
    total = statistics.median(r["total_s"] for r in results)
    peak = max(r["peak_rss_mb"] for r in results)
    ok = total <= TARGET_SECONDS and peak <= TARGET_RSS_MB
    print(f"  median total {total:.2f} s, peak {peak:.0f} MB: "
          f"{'meets' if ok else 'MISSES'} the target (<= {TARGET_SECONDS:.0f} s, "
          f"<= {TARGET_RSS_MB:.0f} MB)")
    return ok


# -- part 2: model-trace beside torchvista and torchview ---------------------------------
def build_case(name: str) -> tuple[Any, tuple[Any, ...]]:
    """The model (eval mode, real weights on the CPU) and its positional inputs."""
    import torch

    torch.manual_seed(0)
    if name == "encoder-12":
        layer = torch.nn.TransformerEncoderLayer(d_model=256, nhead=8, dim_feedforward=1024,
                                                 batch_first=True)
        model = torch.nn.TransformerEncoder(layer, num_layers=12, enable_nested_tensor=False)
        return model.eval(), (torch.randn(2, 64, 256),)
    if name == "linear-relu-200":
        pairs = [m for _ in range(200) for m in (torch.nn.Linear(64, 64), torch.nn.ReLU())]
        return torch.nn.Sequential(*pairs).eval(), (torch.randn(8, 64),)
    if name == "deepseek-default-2":
        from model_zoo.deepseek_v3 import ModelArgs, RuntimeOptions, Transformer, init_weights

        args = ModelArgs(n_layers=2, max_batch_size=2)
        model = init_weights(Transformer(args, RuntimeOptions(world_size=1, rank=0)), seed=0)
        tokens = torch.randint(0, args.vocab_size, (2, 128),
                               generator=torch.Generator().manual_seed(0))
        return model.eval(), (tokens,)
    raise ValueError(f"unknown model {name!r}; choose one of {', '.join(MODELS)}")


def tracers(model: Any, inputs: tuple[Any, ...]) -> dict[str, Callable[[], int]]:
    """Each tool's trace of the model, returning the size of the graph it built."""

    def ours() -> int:
        from model_trace.tracing import trace

        graph = trace(model, *inputs)
        return graph.meta["folded"]["before"]["nodes"]

    def torchvista() -> int:
        from torchvista.engine import process_graph
        from torchvista.graph_transforms import build_immediate_ancestor_map

        adj_list: dict[str, Any] = {}
        node_to_ancestors: defaultdict[str, list[str]] = defaultdict(list)
        process_graph(model, inputs if len(inputs) > 1 else inputs[0], adj_list, {}, {}, {},
                      defaultdict(list), {}, {}, {}, node_to_ancestors, set(), {},
                      show_non_gradient_nodes=True, forced_module_tracing_depth=FULL_DEPTH)
        build_immediate_ancestor_map(node_to_ancestors, adj_list)
        return len(adj_list)

    def torchview() -> int:
        from torchview import draw_graph

        graph = draw_graph(model, input_data=list(inputs), depth=math.inf, device="cpu",
                           save_graph=False)
        return len(graph.visual_graph.body)

    return {"model-trace": ours, "torchvista": torchvista, "torchview": torchview}


def measure_case(name: str, rounds: int) -> dict[str, Any]:
    """Warm up each tool once, then time ``rounds`` interleaved rounds; failures recorded."""
    import torch

    model, inputs = build_case(name)
    calls = tracers(model, inputs)
    times: dict[str, list[float]] = {tool: [] for tool in TOOLS}
    sizes: dict[str, int] = {}
    errors: dict[str, str] = {}
    with torch.no_grad():
        for round_index in range(rounds + 1):
            for tool in TOOLS:
                if tool in errors:
                    continue
                start = time.perf_counter()
                try:
                    sizes[tool] = calls[tool]()
                except Exception as error:  # a tool that cannot trace this model
                    errors[tool] = f"{type(error).__name__}: {str(error)[:80]}"
                    continue
                if round_index:  # round 0 warms up imports and caches
                    times[tool].append(time.perf_counter() - start)
    return {"times": times, "sizes": sizes, "errors": errors}


def report_compare(rounds: int) -> bool:
    print(f"\nmodel-trace beside torchvista and torchview: real weights on the CPU, median of "
          f"{rounds} rounds after a warm-up")
    print(f"  {'model':<20}{'model-trace s':>14}{'torchvista s':>14}{'torchview s':>13}"
          f"{'torchvista/ours':>17}{'torchview/ours':>16}")
    faster = True
    for name in MODELS:
        result = _in_fresh_process(["--measure-case", name, "--rounds", str(rounds)])
        medians = {tool: statistics.median(t) if t else None
                   for tool, t in result["times"].items()}
        ours = medians["model-trace"]
        cells, ratios = [], []
        for tool in TOOLS:
            value = medians[tool]
            cells.append(f"{value:.3f}" if value is not None else "failed")
            if tool != "model-trace":
                if value is None or ours is None:
                    ratios.append("—")
                else:
                    ratios.append(f"{value / ours:.1f}x")
                    faster = faster and ours < value
        print(f"  {name:<20}{cells[0]:>14}{cells[1]:>14}{cells[2]:>13}{ratios[0]:>17}"
              f"{ratios[1]:>16}")
        for tool, error in result["errors"].items():
            print(f"    {tool} failed: {error}")
    print(f"  model-trace is {'faster than both on every model' if faster else 'NOT faster'} "
          "where they ran")
    return faster


def _in_fresh_process(arguments: list[str]) -> dict[str, Any]:
    result = subprocess.run([sys.executable, __file__, *arguments], capture_output=True,
                            text=True, check=False)
    if result.returncode:
        raise SystemExit(f"benchmark process failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--part", choices=("all", "671b", "compare"), default="all")
    parser.add_argument("--runs", type=int, default=3, help="fresh processes for 671B")
    parser.add_argument("--rounds", type=int, default=3, help="timed rounds per tool")
    parser.add_argument("--measure-671b", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--measure-case", choices=MODELS, help=argparse.SUPPRESS)
    options = parser.parse_args()
    if options.measure_671b:
        print(json.dumps(measure_671b()))
        return
    if options.measure_case:
        print(json.dumps(measure_case(options.measure_case, options.rounds)))
        return
    import os
    import platform

    print(f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, load average "
          f"{', '.join(f'{x:.2f}' for x in os.getloadavg())}, Python "
          f"{platform.python_version()}")
    ok = True
    if options.part in ("all", "671b"):
        ok = report_671b(options.runs) and ok
    if options.part in ("all", "compare"):
        ok = report_compare(options.rounds) and ok
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
