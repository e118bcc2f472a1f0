"""Time build-time layout and rendering, and size what a page ships.

    python benchmarks/render.py                 # every case below
    python benchmarks/render.py --skip-671b     # without tracing the 671B model (about 15 s)
    python benchmarks/render.py --repeat 5

(from the repository root, with the project installed or PYTHONPATH=plugin:.)

For each graph and opening depth it prints the best of ``--repeat`` runs of: building the view
tree, laying out every open group with graphviz-pure, drawing the static SVG, and encoding the
view data, with the view data's size raw and gzipped. Then the site-wide viewer assets, raw
and gzipped. Graphs:

- ``deepseek-v3 671B``: the fence ``model: deepseek-v3``, ``config: 671B`` traced as the
  plugin traces it (meta device, the zoo's 128 tokens, folded); tracing time is printed
  separately and not counted;
- ``ds-v3 2L unfolded``: the same widths with 2 layers (one dense, one MoE), ``fold: false``:
  every called expert drawn;
- ``encoder xN``: ``nn.TransformerEncoder`` with N layers, traced unfolded;
- ``synthetic Nk``: a generated nested graph of about N thousand ops (blocks of attention- and
  MLP-like modules), for sizes no real model here reaches.

Then graphviz-pure on single random groups (``random_group``: a chain plus 30% long edges) of
20 to 300 boxes, with splines and with ``splines=line; nslimit=1`` (what ``layout`` uses above
``BIG_GROUP`` boxes); ``benchmarks/browser.py`` times dagre on the same groups.
"""

from __future__ import annotations

import argparse
import gzip
import json
import random
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from importlib import resources
from typing import Any

import torch
from torch import nn

from model_trace import layout as layout_module
from model_trace import trace
from model_trace import view_tree as view_tree_module
from model_trace.graph import Edge, Graph, ModuleCall, Node, Stats, Tensor
from model_trace.layout import layout
from model_trace.pipeline import trace_spec
from model_trace.render_html import view_json
from model_trace.render_svg import render_svg
from model_trace.spec import parse_spec
from model_trace.view_data import encode_view
from model_trace.view_tree import ViewTree, expanded_groups


@dataclass
class Timing:
    tree_s: float
    layout_s: float
    svg_s: float
    data_s: float
    boxes: int
    svg_bytes: int
    data_bytes: int
    data_gzip: int

    @property
    def total_s(self) -> float:
        return self.tree_s + self.layout_s + self.svg_s + self.data_s


def measure(graph: Graph, depth: int | None) -> Timing:
    """One build of a figure: view tree, layout, SVG, view data (``depth`` None: all open)."""
    start = time.perf_counter()
    tree = ViewTree.from_graph(graph)
    opened = expanded_groups(tree, 10_000 if depth is None else depth)
    tree_done = time.perf_counter()
    placed = layout(tree, opened)
    layout_done = time.perf_counter()
    svg = render_svg(tree, placed, "bench")
    svg_done = time.perf_counter()
    data = view_json(encode_view(tree, placed))
    data_done = time.perf_counter()
    return Timing(tree_done - start, layout_done - tree_done, svg_done - layout_done,
                  data_done - svg_done, len(placed.boxes), len(svg), len(data),
                  len(gzip.compress(data.encode())))


def best_of(repeat: int, graph: Graph, depth: int | None) -> Timing:
    return min((measure(graph, depth) for _ in range(repeat)), key=lambda t: t.total_s)


def deepseek_v3(fence: str = "") -> tuple[Graph, float]:
    """DeepSeek-V3 671B traced as the fence ``model: deepseek-v3`` / ``config: 671B`` (plus
    the YAML lines in ``fence``) traces it: the zoo's default inputs (128 tokens), on meta;
    and the tracing time."""
    spec = parse_spec("model: deepseek-v3\nconfig: 671B\n" + fence)
    start = time.perf_counter()
    graph = trace_spec(spec)
    return graph, time.perf_counter() - start


TWO_LAYERS = "overrides: {n_layers: 2, n_dense_layers: 1}\n"
"""The 671B widths with one dense and one MoE layer."""


def encoder(layers: int) -> Graph:
    layer = nn.TransformerEncoderLayer(64, 4, dim_feedforward=256, batch_first=True)
    model = nn.TransformerEncoder(layer, num_layers=layers, enable_nested_tensor=False)
    options: dict[str, Any] = {}
    import inspect

    if "fold" in inspect.signature(trace).parameters:
        options["fold"] = False
    with torch.device("meta"):
        return trace(model.to("meta"), torch.empty(2, 16, 64, device="meta"), **options)


class _SyntheticBuilder:
    """Builds a Graph by hand: modules, a chain of ops per module, edges between them."""

    def __init__(self) -> None:
        self.modules: dict[str, ModuleCall] = {}
        self.nodes: dict[str, Node] = {}
        self.tensors: dict[str, Tensor] = {}
        self.edges: list[Edge] = []

    def module(self, path: str, cls: str, parent: str | None) -> str:
        module_id = f"m{len(self.modules)}"
        self.modules[module_id] = ModuleCall(module_id, path, cls, parent)
        if parent is not None:
            self.modules[parent].children.append(module_id)
        return module_id

    def op(self, name: str, category: str, parent: str, inputs: list[str]) -> str:
        node_id, tensor_id = f"n{len(self.nodes)}", f"t{len(self.tensors)}"
        self.nodes[node_id] = Node(node_id, "op", name, category, parent, inputs=inputs,
                                   outputs=[tensor_id], stats=Stats(flops=len(self.nodes)))
        self.modules[parent].children.append(node_id)
        self.tensors[tensor_id] = Tensor(tensor_id, [16, 1024], "bfloat16", "meta", node_id)
        for tensor in inputs:
            self.edges.append(Edge(self.tensors[tensor].producer, node_id, tensor))  # type: ignore[arg-type]
        return tensor_id


def synthetic(ops: int) -> Graph:
    """About ``ops`` ops in blocks of attention (q, k, v, o linears and the math between them)
    and MLP modules, with residual adds, like a transformer unfolded layer by layer."""
    b = _SyntheticBuilder()
    root = b.module("", "Synthetic", None)
    x = b.op("embedding", "linear", root, [])
    per_block = 30
    for i in range(max(1, ops // per_block)):
        block = b.module(f"layers.{i}", "Block", root)
        attn = b.module(f"layers.{i}.attn", "Attention", block)
        norm = b.op("rms_norm", "norm", block, [x])
        heads = []
        for name in ("q", "k", "v"):
            proj = b.module(f"layers.{i}.attn.w{name}", "Linear", attn)
            heads.append(b.op("view", "shape", attn, [b.op("linear", "linear", proj, [norm])]))
        scores = b.op("softmax", "activation", attn, [b.op("matmul", "matmul", attn, heads[:2])])
        mixed = b.op("transpose", "shape", attn, [b.op("matmul", "matmul", attn,
                                                       [scores, heads[2]])])
        out = b.module(f"layers.{i}.attn.wo", "Linear", attn)
        x = b.op("add", "elementwise", block, [x, b.op("linear", "linear", out, [mixed])])
        mlp = b.module(f"layers.{i}.mlp", "MLP", block)
        norm = b.op("rms_norm", "norm", block, [x])
        gates = []
        for name in ("w1", "w3"):
            proj = b.module(f"layers.{i}.mlp.{name}", "Linear", mlp)
            gates.append(b.op("linear", "linear", proj, [norm]))
        act = b.op("mul", "elementwise", mlp, [b.op("silu", "activation", mlp, gates[:1]),
                                               gates[1]])
        down = b.module(f"layers.{i}.mlp.w2", "Linear", mlp)
        x = b.op("add", "elementwise", block, [x, b.op("linear", "linear", down, [act])])
        for k in range(per_block - 18):
            x = b.op("mul" if k % 2 else "add", "elementwise", block, [x])
    return Graph(root=root, modules=b.modules, nodes=b.nodes, tensors=b.tensors, edges=b.edges)


GROUP_SIZES = (20, 50, 100, 160, 300)
"""Boxes in the single groups that compare dot's settings here and dagre in the browser."""
_OP_NAMES = ("linear", "add", "rms_norm", "matmul", "silu", "softmax", "view")


def random_group(boxes: int, seed: int = 0) -> Graph:
    """One module holding ``boxes`` ops: a chain plus 30% more edges from a random op to any
    later one (long skips, far more tangled than a real model's), every edge a labelled
    tensor; seeded, so every run sees the same group."""
    rng = random.Random(seed)
    b = _SyntheticBuilder()
    root = b.module("", "Group", None)
    outputs: list[str] = []
    for i in range(boxes):
        inputs = [outputs[-1]] if outputs else []
        outputs.append(b.op(_OP_NAMES[i % len(_OP_NAMES)], "other", root, inputs))
    pairs = {(i, i + 1) for i in range(boxes - 1)}
    for _ in range(int(0.3 * boxes)):
        src = rng.randrange(boxes - 2)
        dst = rng.randrange(src + 2, boxes)
        if (src, dst) not in pairs:
            pairs.add((src, dst))
            b.edges.append(Edge(f"n{src}", f"n{dst}", outputs[src]))
    return Graph(root=root, modules=b.modules, nodes=b.nodes, tensors=b.tensors, edges=b.edges)


@contextmanager
def one_group(splines: bool) -> Iterator[None]:
    """Layout as it is, except: no chunks, and every group routed with splines or straight."""
    saved = view_tree_module.CHUNK_LIMIT, layout_module.BIG_GROUP
    view_tree_module.CHUNK_LIMIT = 10**9
    layout_module.BIG_GROUP = 10**9 if splines else 0
    try:
        yield
    finally:
        view_tree_module.CHUNK_LIMIT, layout_module.BIG_GROUP = saved


def time_dot_groups(repeat: int) -> list[tuple[int, float, float]]:
    """(boxes, seconds with splines, seconds with ``splines=line; nslimit=1``) per group size;
    graphviz-pure's own run, the way ``layout`` calls it."""
    rows = []
    for boxes in GROUP_SIZES:
        times = []
        for splines in (True, False):
            with one_group(splines):
                tree = ViewTree.from_graph(random_group(boxes))
                runs = []
                for _ in range(repeat if boxes < 300 or not splines else 1):
                    start = time.perf_counter()
                    layout(tree, {tree.root})
                    runs.append(time.perf_counter() - start)
                times.append(min(runs))
        rows.append((boxes, times[0], times[1]))
    return rows


def asset_sizes() -> list[tuple[str, int, int]]:
    assets = resources.files("model_trace") / "assets"
    rows = []
    for name in ("viewer.js", "viewer.css", "vendor/dagre.min.js"):
        content = assets.joinpath(*name.split("/")).read_bytes()
        rows.append((name, len(content), len(gzip.compress(content, 9))))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--skip-671b", action="store_true")
    parser.add_argument("--json", help="also write the results to this file")
    args = parser.parse_args()
    cases: list[tuple[str, Callable[[], Graph], list[int | None]]] = []
    if not args.skip_671b:
        graph_671b, trace_s = deepseek_v3()
        print(f"deepseek-v3 671B: traced on meta in {trace_s:.1f} s (not counted below); "
              f"{len(graph_671b.modules)} modules, {len(graph_671b.nodes)} nodes")
        cases.append(("deepseek-v3 671B", lambda: graph_671b, [1, 2, None]))
        two_layers, _ = deepseek_v3(TWO_LAYERS + "fold: false")
        cases.append(("ds-v3 2L unfolded", lambda: two_layers, [1, None]))
    cases += [
        ("encoder x12", lambda: encoder(12), [1, None]),
        ("encoder x48", lambda: encoder(48), [1, None]),
        ("synthetic 2k", lambda: synthetic(2_000), [1, None]),
        ("synthetic 10k", lambda: synthetic(10_000), [1, None]),
    ]
    header = (f"{'graph':<18} {'depth':>5} {'nodes':>6} {'boxes':>6} {'tree':>7} {'layout':>7} "
              f"{'svg':>7} {'data':>7} {'total':>7} {'svg KB':>7} {'data KB':>8} {'gz KB':>6}")
    print(header)
    results = []
    for name, make, depths in cases:
        graph = make()
        for depth in depths:
            t = best_of(args.repeat, graph, depth)
            label = "all" if depth is None else str(depth)
            print(f"{name:<18} {label:>5} {len(graph.nodes):>6} {t.boxes:>6} {t.tree_s:>6.3f}s "
                  f"{t.layout_s:>6.3f}s {t.svg_s:>6.3f}s {t.data_s:>6.3f}s {t.total_s:>6.3f}s "
                  f"{t.svg_bytes / 1024:>7.1f} {t.data_bytes / 1024:>8.1f} "
                  f"{t.data_gzip / 1024:>6.1f}")
            results.append({"graph": name, "depth": label, "nodes": len(graph.nodes),
                            **{k: getattr(t, k) for k in t.__dataclass_fields__}})
    print("\ndot (graphviz-pure) on one random group: splines vs splines=line; nslimit=1")
    dot_rows = time_dot_groups(args.repeat)
    for boxes, curved, straight in dot_rows:
        print(f"  {boxes:>4} boxes  splines {curved * 1000:8.1f} ms   "
              f"line {straight * 1000:7.1f} ms")
    print("\nsite-wide assets (shipped once per site; dagre is loaded on first use)")
    total = 0
    for name, raw, packed in asset_sizes():
        total += packed
        print(f"  {name:<22} {raw / 1024:7.1f} KB  gzip {packed / 1024:6.1f} KB")
    print(f"  {'total':<22} {'':>10}  gzip {total / 1024:6.1f} KB")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as out:
            json.dump({"figures": results, "dot_groups": dot_rows, "assets": asset_sizes()},
                      out, indent=1)


if __name__ == "__main__":
    main()
