"""Time build-time layout and drawing, size what a page ships, and compare layout engines.

    python benchmarks/render.py                 # every case below
    python benchmarks/render.py --skip-671b     # without tracing the 671B model (about 15 s)
    python benchmarks/render.py --repeat 5
    python benchmarks/render.py --dagre dagre.min.js   # also time dagre on the same groups

(from the repository root, with the project installed or PYTHONPATH=plugin:.)

For each graph and opening depth it prints the best of ``--repeat`` runs of: building the view
tree and its view data (Python), and laying out and drawing the figure with the JavaScript
engine in V8 (``engine.draw``, as a build does; the V8 context is made once, before timing),
with the SVG's size and the view data's size raw and gzipped. Then the site-wide assets, raw
and gzipped. Graphs:

- ``deepseek-v3 671B``: the fence ``model: deepseek-v3``, ``config: 671B`` traced as the
  plugin traces it (meta device, the zoo's 128 tokens, folded); tracing time is printed
  separately and not counted;
- ``ds-v3 2L unfolded``: the same widths with 2 layers (one dense, one MoE), ``fold: false``:
  every called expert drawn;
- ``encoder xN``: ``nn.TransformerEncoder`` with N layers, traced unfolded;
- ``synthetic Nk``: a generated nested graph of about N thousand ops (blocks of attention- and
  MLP-like modules), for sizes no real model here reaches.

Then the engine's layered layout on single random groups (``random_group``: a chain plus 30%
long edges, far more tangled than a real model's) of 20 to 300 boxes, in V8: time and edge
crossings; with ``--dagre``, dagre (the layout library the viewer used before, given as a
path to its ``dagre.min.js``) on the same groups in the same V8, for the design page's choice.
"""

from __future__ import annotations

import argparse
import gzip
import json
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from model_trace import trace
from model_trace.engine import DrawOptions, draw, evaluate
from model_trace.graph import Edge, Graph, ModuleCall, Node, Stats, Tensor
from model_trace.pipeline import trace_spec
from model_trace.render_html import FigureData
from model_trace.spec import parse_spec
from model_trace.viewer_files import asset_bytes, asset_names


@dataclass
class Timing:
    data_s: float
    draw_s: float
    boxes: int
    svg_bytes: int
    data_bytes: int
    data_gzip: int

    @property
    def total_s(self) -> float:
        return self.data_s + self.draw_s


def measure(graph: Graph, depth: int | None) -> Timing:
    """One build of a figure: view tree and view data, then layout and SVG in V8
    (``depth`` None: all open)."""
    start = time.perf_counter()
    figure = FigureData.of(graph)
    data_done = time.perf_counter()
    drawing = draw(figure.json, DrawOptions(depth=-1 if depth is None else depth))
    draw_done = time.perf_counter()
    return Timing(data_done - start, draw_done - data_done, drawing.svg.count("data-id="),
                  len(drawing.svg), len(figure.json), len(gzip.compress(figure.json.encode())))


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
"""Boxes in the single groups the engine and dagre lay out side by side."""
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


COMPARE = """
globalThis.__compare = function (data, useDagre) {
  var MT = modelTrace, model = new MT.ViewModel(JSON.parse(data));
  var state = MT.initialState(model, {depth: 0});
  var start = Date.now(), placed = new MT.Layout(model).run(state), ours = Date.now() - start;
  var result = {ours_ms: ours, ours_crossings: crossings(placed.routes)};
  if (useDagre && globalThis.dagre) {
    var g = new dagre.graphlib.Graph();
    g.setGraph({rankdir: "TB", nodesep: 14, ranksep: 20});
    g.setDefaultEdgeLabel(function () { return {}; });
    placed.boxes.forEach(function (b, ref) {
      if (ref !== model.root) g.setNode(String(ref), {width: b.w, height: b.h});
    });
    var flows = model.flows;
    for (var f = 0; f < flows.length; f += 3) {
      var label = model.keyLabel[flows[f + 2]];
      g.setEdge(String(flows[f]), String(flows[f + 1]),
                {width: MT.textWidth(label, 10, false) + 4, height: 14, labelpos: "c"});
    }
    start = Date.now();
    dagre.layout(g);
    result.dagre_ms = Date.now() - start;
    result.dagre_crossings = crossings(g.edges().map(function (e) {
      return {pts: g.edge(e).points.map(function (p) { return [p.x, p.y]; })};
    }));
  }
  return result;
};
// Pairs of routes whose polylines cross (segments between their points).
function crossings(routes) {
  var segs = [];
  routes.forEach(function (r, i) {
    for (var k = 1; k < r.pts.length; k++) segs.push([i, r.pts[k - 1], r.pts[k]]);
  });
  var count = 0, seen = {};
  for (var a = 0; a < segs.length; a++) for (var b = a + 1; b < segs.length; b++) {
    var s = segs[a], t = segs[b];
    if (s[0] === t[0] || seen[s[0] + "," + t[0]]) continue;
    if (cross(s[1], s[2], t[1], t[2])) { seen[s[0] + "," + t[0]] = 1; count++; }
  }
  return count;
}
function cross(p, q, r, s) {
  function side(a, b, c) { return (b[0] - a[0]) * (c[1] - a[1]) - (b[1] - a[1]) * (c[0] - a[0]); }
  var d1 = side(r, s, p), d2 = side(r, s, q), d3 = side(p, q, r), d4 = side(p, q, s);
  return ((d1 > 0 && d2 < 0) || (d1 < 0 && d2 > 0)) && ((d3 > 0 && d4 < 0) || (d3 < 0 && d4 > 0));
}
"""


def compare_engines(dagre: str | None) -> list[dict[str, Any]]:
    """The engine's layout and (with a path) dagre's on each random group, in one V8."""
    if dagre:
        evaluate("eval", "var structuredClone = function (v) { return JSON.parse("
                 "JSON.stringify(v)); };\n" + Path(dagre).read_text(encoding="utf-8") + "\n1")
    evaluate("eval", COMPARE + "\n1")
    rows = []
    for boxes in GROUP_SIZES:
        data = FigureData.of(random_group(boxes)).json
        evaluate("__compare", data, bool(dagre))  # warm up the JIT
        runs = [evaluate("__compare", data, bool(dagre)) for _ in range(3)]
        best = {key: min(r[key] for r in runs) for key in runs[0]}
        rows.append({"boxes": boxes, **best})
    return rows


def asset_sizes() -> list[tuple[str, int, int]]:
    return [(name, len(content), len(gzip.compress(content, 9)))
            for name, content in ((n, asset_bytes(n)) for n in asset_names())]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--skip-671b", action="store_true")
    parser.add_argument("--json", help="also write the results to this file")
    parser.add_argument("--dagre", help="path to dagre.min.js, to time dagre on the same groups")
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
    draw(FigureData.of(encoder(1)).json, DrawOptions(depth=1))  # the V8 context, once
    header = (f"{'graph':<18} {'depth':>5} {'nodes':>6} {'boxes':>6} {'data':>7} {'draw':>7} "
              f"{'total':>7} {'svg KB':>7} {'data KB':>8} {'gz KB':>6}")
    print(header)
    results = []
    for name, make, depths in cases:
        graph = make()
        for depth in depths:
            t = best_of(args.repeat, graph, depth)
            label = "all" if depth is None else str(depth)
            print(f"{name:<18} {label:>5} {len(graph.nodes):>6} {t.boxes:>6} {t.data_s:>6.3f}s "
                  f"{t.draw_s:>6.3f}s {t.total_s:>6.3f}s {t.svg_bytes / 1024:>7.1f} "
                  f"{t.data_bytes / 1024:>8.1f} {t.data_gzip / 1024:>6.1f}")
            results.append({"graph": name, "depth": label, "nodes": len(graph.nodes),
                            **{k: getattr(t, k) for k in t.__dataclass_fields__}})
    print("\none random group laid out in V8 (best of 3): time and crossing routes")
    engine_rows = compare_engines(args.dagre)
    for row in engine_rows:
        line = (f"  {row['boxes']:>4} boxes  engine {row['ours_ms']:6.0f} ms, "
                f"{row['ours_crossings']:4d} crossings")
        if "dagre_ms" in row:
            line += f"   dagre {row['dagre_ms']:6.0f} ms, {row['dagre_crossings']:4d} crossings"
        print(line)
    print("\nsite-wide assets (shipped once per site)")
    total = 0
    for name, raw, packed in asset_sizes():
        total += packed
        print(f"  {name:<22} {raw / 1024:7.1f} KB  gzip {packed / 1024:6.1f} KB")
    print(f"  {'total':<22} {'':>10}  gzip {total / 1024:6.1f} KB")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as out:
            json.dump({"figures": results, "groups": engine_rows, "assets": asset_sizes()},
                      out, indent=1)


if __name__ == "__main__":
    main()
