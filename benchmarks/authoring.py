"""What the authoring fields cost: each against the plain trace of the same fence, measured in
the same run, and what a notebook carries per figure.

    python benchmarks/authoring.py                  # 5 runs of each
    python benchmarks/authoring.py --runs 9

(from the repository root, with the project installed or PYTHONPATH=plugin:.)

Each row traces and draws a fence as a docs build does (``pipeline.run_fence``: trace, view
tree, layout and SVG in V8, the page's HTML), in this process, after one warm-up run of
every row; the median of the runs, and its ratio to the row's reference, the same fence
without the field:

- ``dims: auto`` on the tiny DeepSeek-V3's attention and on an encoder layer: traced again
  with the input sizes scaled (the names need a second trace, sometimes one per size); a
  mapping of sizes to names is checked the same way;
- ``graph: backward`` of the encoder layer: the forward trace, the backward run and its graph;
- ``compare`` of naive and absorbed attention (tiny DeepSeek-V3): two traces, the diff, two
  figures and the table, against the two variants drawn as two plain fences;
- annotations (``highlight``, ``labels``, ``notes``, ``hide``) on the encoder layer.

Notebook: the HTML of the first figure a kernel shows (the viewer's script and style inlined)
and of a later one (pointing at them), for the encoder layer.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch

from model_trace import show
from model_trace.pipeline import run_fence
from model_trace.spec import parse_spec

ENCODER = ("model: torch.nn:TransformerEncoderLayer\n"
           "args: {d_model: 64, nhead: 4, dim_feedforward: 256, batch_first: true}\n"
           "inputs: [[2, 16, 64]]\ndepth: 1\n")
ATTENTION = "model: deepseek-v3\nconfig: tiny\nfocus: layers.0.attn\ndepth: 1\n"
ANNOTATIONS = ("highlight: {self_attn: blue, linear1: orange}\n"
               "labels: {linear1: widen, linear2: narrow}\n"
               "notes: {self_attn: Mixes positions., norm1: Post-norm.}\n"
               "hide: [dropout, dropout1, dropout2]\n")
ROWS: list[tuple[str, list[str], list[str]]] = [
    ("dims: auto, tiny DeepSeek-V3 attention", [ATTENTION + "dims: auto\n"], [ATTENTION]),
    ("dims: {1: B, 128: S}, same (checked)", [ATTENTION + "dims: {1: B, 128: S}\n"],
     [ATTENTION]),
    ("dims: auto, encoder layer", [ENCODER + "dims: auto\n"], [ENCODER]),
    ("graph: backward, encoder layer", [ENCODER + "graph: backward\n"], [ENCODER]),
    ("compare naive/absorb, tiny attention",
     [ATTENTION + "compare: {attn_impl: [naive, absorb]}\n"],
     [ATTENTION + "args: {attn_impl: naive}\n", ATTENTION + "args: {attn_impl: absorb}\n"]),
    ("annotations, encoder layer", [ENCODER + ANNOTATIONS], [ENCODER]),
]
"""(what is measured, its fences, the reference fences: the same without the field)."""


def drawn(texts: list[str]) -> Callable[[], None]:
    def run() -> None:
        for text in texts:
            run_fence(parse_spec(text))
    return run


def median_seconds(run: Callable[[], None], runs: int) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def notebook_sizes() -> tuple[int, int]:
    """Bytes of the first figure a kernel displays and of the next one."""
    layer = torch.nn.TransformerEncoderLayer(64, 4, 256, batch_first=True)
    figures = [show(layer, torch.randn(2, 16, 64), depth=1) for _ in range(2)]
    return tuple(len(f._repr_html_().encode("utf-8")) for f in figures)  # type: ignore[return-value]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    for _, measured, reference in ROWS:  # warm up: imports, the zoo, V8
        drawn(measured)()
        drawn(reference)()
    print(f"{'field':<40} {'median':>9} {'reference':>10} {'ratio':>6}   ({args.runs} runs)")
    for name, measured, reference in ROWS:
        field_s = median_seconds(drawn(measured), args.runs)
        reference_s = median_seconds(drawn(reference), args.runs)
        print(f"{name:<40} {field_s:>8.3f}s {reference_s:>9.3f}s {field_s / reference_s:>5.2f}x")
    first, later = notebook_sizes()
    print(f"notebook, encoder layer: first figure {first / 1000:.1f} kB (the viewer inlined), "
          f"a later one {later / 1000:.1f} kB")


if __name__ == "__main__":
    main()
