"""Data views (issue 16): what each view costs a docs build, each as a ratio to the plain work
it stands on, measured in the same process right beside it, with absolute figures beside.

    python benchmarks/dataviews.py                  # every part but 671b
    python benchmarks/dataviews.py --part attention --runs 7
    python benchmarks/dataviews.py --part 671b      # traces the 671B model twice (minutes)

(from the repository root, with the project and its `views` extra installed.) Torch runs on one
thread, as a docs build's workers do (``tracing.threads.one_thread``). Each part alternates
ours and the reference run by run, after one warm-up of each, and prints medians.

- ``attention``: capturing MiniLM's attention maps of the attention page's two sentences
  through the tracer's op observer (``capture_attention``), against the reference the issue
  names: transformers' own forward with ``output_attentions=True`` (bertviz's input), eager
  attention. Also the largest difference between the two (the issue's bound: 1e-5), and the
  same with ``sdpa`` attention, whose weights we recompute from the kernel's inputs.
- ``embeddings``: the hidden states of the embeddings page's 200 sentences (forward hooks on
  the last block, one text at a time), against the same 200 forward passes with no hook; then
  the projections (PCA, t-SNE) as a ratio to that reference.
- ``execute``: the measured run of ``execute: cpu`` on the measured-time page's input (every
  module call and op timed through a pass-through TorchFunctionMode, the tracer's code path),
  against a plain forward with no mode; and the module calls each one runs for an eval-mode
  ``nn.TransformerEncoder`` of 3 layers (the issue's example: the plain run takes the fused
  fast path and calls 3 modules where the trace draws 19 and more).
- ``sizes``: the bytes the views add to every page of a site (the script and the styles, the
  generated colours included) and the HTML of each view of the "Looking inside" pages.
- ``671b``: tracing the 671B DeepSeek-V3 for ``view: experts`` (routing: random) and drawing
  its 58 x 256 heat map, against tracing it for the plain graph figure (the same trace); the
  drawing's time is the view's own cost.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "docs" / "looking-inside")]
os.environ.setdefault("HF_HUB_OFFLINE", "1")
PARTS = ("attention", "embeddings", "execute", "sizes", "671b")


def alternate(ours: Callable[[], Any], reference: Callable[[], Any], runs: int
              ) -> tuple[float, float]:
    """Median seconds of ``ours`` and ``reference``, run in turn after a warm-up of each."""
    ours(), reference()
    mine, theirs = [], []
    for _ in range(runs):
        for clock, fn in ((mine, ours), (theirs, reference)):
            start = time.perf_counter()
            fn()
            clock.append(time.perf_counter() - start)
    return statistics.median(mine), statistics.median(theirs)


def row(name: str, ours: float, reference: float, what: str) -> None:
    print(f"  {name:<42} {ours * 1e3:10.1f} ms   {reference * 1e3:10.1f} ms   "
          f"{ours / reference:7.3f}x {what}")


def header(title: str) -> None:
    print(f"\n{title}\n  {'':<42} {'ours':>13}   {'reference':>13}   ratio")


def attention_part(runs: int) -> None:
    from model_trace.dataviews.attention import capture_attention
    from model_zoo import minilm

    tokenizer = minilm.load_tokenizer()
    tokenizer.no_padding()
    ids = tokenizer.encode(minilm.SAMPLE_TEXT).ids
    header(f"attention: MiniLM, {len(ids)} tokens, 6 layers x 12 heads")
    for implementation in ("eager", "sdpa"):
        model = minilm.load_model(implementation)
        reference_model = minilm.load_model("eager")
        batch = torch.tensor([ids])

        def reference(model: Any = reference_model, batch: torch.Tensor = batch) -> Any:
            with torch.no_grad():
                return model(batch, output_attentions=True).attentions

        ours, theirs = alternate(lambda model=model: capture_attention(model, ids), reference,
                                 runs)
        row(f"capture ({implementation})", ours, theirs,
            "of transformers' output_attentions=True (eager)")
        maps, expected = capture_attention(model, ids), reference()
        worst = max((m.weights - e[0]).abs().max().item()
                    for m, e in zip(maps, expected, strict=True))
        print(f"  {'':<42} largest difference from transformers: {worst:.1e} (bound 1e-5)")


def embeddings_part(runs: int) -> None:
    from topic_sentences import by_topic

    from model_trace.dataviews.hidden import hidden_states
    from model_trace.dataviews.projection import project
    from model_trace.dataviews.runnable import run_model
    from model_zoo import minilm

    texts = [t for group in by_topic().values() for t in group]
    tokenizer = minilm.load_tokenizer()
    tokenizer.no_padding()
    encoded = [tokenizer.encode(t).ids for t in texts]
    model = minilm.load_model()
    header(f"embeddings: MiniLM, {len(texts)} sentences, the last layer, mean pooling")

    def plain() -> None:
        for ids in encoded:
            run_model(model, ids)

    runs = max(1, runs // 2)
    ours, theirs = alternate(lambda: hidden_states(model, encoded, None, "mean"), plain, runs)
    row("hidden states (200 texts)", ours, theirs, "of 200 plain forward passes")
    vectors = hidden_states(model, encoded, None, "mean")[0]
    for method in ("pca", "tsne"):
        seconds = []
        for _ in range(runs):
            start = time.perf_counter()
            project(vectors, method)
            seconds.append(time.perf_counter() - start)
        row(f"projection {method}", statistics.median(seconds), theirs,
            "of 200 plain forward passes")


def execute_part(runs: int) -> None:
    from model_trace.tracing import trace
    from model_trace.tracing.execution import measure
    from model_zoo import minilm

    model = minilm.load_model()
    (batch,) = minilm.sample_inputs()
    header(f"execute: MiniLM on {tuple(batch.shape)} tokens")

    def plain() -> None:
        with torch.no_grad():
            model(batch)

    def measured() -> float:
        return measure(model, (batch,), {}, "cpu")[0].total_s

    totals: list[float] = []
    _, theirs = alternate(lambda: totals.append(measured()), plain, runs)
    row("measured run (its own clock)", statistics.median(totals[1:]), theirs,
        "of a plain forward (the timing mode's overhead)")
    ours, theirs = alternate(lambda: trace(model, batch, execute="cpu"), plain,
                             max(1, runs // 2))
    row("trace with execute (warm-up, run, trace)", ours, theirs, "of a plain forward")
    layer = torch.nn.TransformerEncoderLayer(32, 4, batch_first=True)
    encoder = torch.nn.TransformerEncoder(layer, 3, enable_nested_tensor=False).eval()
    tokens = torch.randn(1, 8, 32)
    plain_calls: list[str] = []
    hook = torch.nn.modules.module.register_module_forward_hook(
        lambda module, _args, _out: plain_calls.append(type(module).__name__))
    try:
        with torch.no_grad():
            encoder(tokens)
    finally:
        hook.remove()
    graph = trace(encoder, tokens, execute="cpu", fold=False)
    run = graph.meta["execution"]
    print(f"  nn.TransformerEncoder (eval, 3 layers): a plain run calls {len(plain_calls)} "
          f"modules (fast path); the measured run times {run['measured_calls']} of the "
          f"{run['called_modules']} module calls the trace draws, {run['measured_ops']} of "
          f"{run['ops']} ops")


def sizes_part(site: Path) -> None:
    from model_trace.dataviews.palette import stylesheet
    from model_trace.viewer_files import asset_bytes

    assets = REPO / "plugin" / "model_trace" / "assets"
    script = (assets / "viewer" / "6-dataviews.js").read_bytes()
    styles = (assets / "viewer" / "dataviews.css").read_bytes() + stylesheet().encode()
    print("\nsizes: what the data views add to every page's viewer files")
    print(f"  6-dataviews.js {len(script):,} B of viewer.js {len(asset_bytes('viewer.js')):,} B; "
          f"their styles {len(styles):,} B of viewer.css {len(asset_bytes('viewer.css')):,} B")
    pages = site / "looking-inside"
    if not pages.is_dir():
        print(f"  (no {pages}: build the site, `mkdocs build`, for the pages' sizes)")
        return
    for page in sorted(pages.glob("*/index.html")):
        html = page.read_text(encoding="utf-8")
        figures = html.count('class="model-trace-view"')
        print(f"  {page.parent.name:<16} {len(html.encode()):>10,} B of HTML, "
              f"{figures} data view(s)")


def part_671b(runs: int) -> None:
    from model_trace.dataviews.run import draw_experts_view
    from model_trace.pipeline import trace_spec
    from model_trace.spec import parse_spec

    def spec(view: str) -> Any:
        return parse_spec(f"{view}model: deepseek-v3\nconfig: 671B\nrouting: random\n"
                          ).with_defaults(depth=1, routing="balanced", export=())

    experts, graph_spec = spec("view: experts\n"), spec("")
    header("671b: DeepSeek-V3 at 671B, routing random, 128 tokens")
    runs = max(1, runs // 3)
    traced: list[Any] = []
    ours, theirs = alternate(lambda: traced.append(trace_spec(experts)),
                             lambda: trace_spec(graph_spec), runs)
    row("trace for view: experts", ours, theirs, "of the graph figure's trace")
    seconds = []
    for _ in range(3):
        start = time.perf_counter()
        html = draw_experts_view(traced[-1], experts).html
        seconds.append(time.perf_counter() - start)
    row("draw the 58 x 256 heat map", statistics.median(seconds), theirs,
        f"of the trace; {len(html.encode()):,} B of HTML")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--part", choices=PARTS, action="append",
                        help="one part (repeatable); default: all but 671b")
    parser.add_argument("--runs", type=int, default=5, help="timed runs per case (default 5)")
    parser.add_argument("--site", type=Path, default=REPO / "site",
                        help="a built site, for the sizes of its Looking inside pages")
    args = parser.parse_args()
    torch.set_num_threads(1)
    print(f"torch {torch.__version__}, {os.cpu_count()} cores, 1 thread")
    for part in args.part or PARTS[:-1]:
        if part == "attention":
            attention_part(args.runs)
        elif part == "embeddings":
            embeddings_part(args.runs)
        elif part == "execute":
            execute_part(args.runs)
        elif part == "sizes":
            sizes_part(args.site)
        else:
            part_671b(args.runs)


if __name__ == "__main__":
    main()
