"""Time the viewer in headless Chromium (Debian's ``chromium``, driven by Playwright).

    python benchmarks/browser.py               # every case, 5 runs each, medians printed
    python benchmarks/browser.py --runs 10

(from the repository root, with the project installed or PYTHONPATH=plugin:.)

Each graph is traced in this process, drawn with ``render_figure`` into a bare page next to a
copy of the viewer's assets, and served from 127.0.0.1. Every measurement opens a fresh page
(cold JavaScript, warm HTTP cache as for a reader's second page). Timings are taken inside the
page with ``performance.now()`` and include the frame that paints the result:

- ``interactive``: from navigation start until the figure is hydrated (``data-mt-ready``):
  view data parsed, build-time layouts restored, SVG redrawn, controls attached;
- ``expand MoE``: clicking ``layers.3.ffn`` of the 671B model open (dagre already loaded, as
  it is after the page has been idle for a moment);
- ``expand all``: the "Expand all" button on a 2-layer DeepSeek-V3 (671B widths, one dense
  and one MoE layer), folded as a fence draws it, and unfolded (every called expert drawn);
- ``synthetic 10k``: "Expand all" on the 10k-op generated graph of ``benchmarks/render.py``;
- ``dagre on one group``: the viewer's dagre call alone on the random groups of 20 to 300
  boxes that ``benchmarks/render.py`` gives graphviz-pure.
"""

from __future__ import annotations

import argparse
import functools
import http.server
import shutil
import statistics
import sys
import tempfile
import threading
from importlib import resources
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from render import GROUP_SIZES, TWO_LAYERS, deepseek_v3, one_group, random_group, synthetic

from model_trace.graph import Graph
from model_trace.layout import edge_label, item_size
from model_trace.render_html import ViewOptions, render_figure
from model_trace.view_tree import ViewTree

CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
READY_PROBE = """
new MutationObserver((changes, observer) => {
  for (const change of changes) {
    if (change.attributeName === 'data-mt-ready') {
      window.__mtReady = performance.now();
      observer.disconnect();
    }
  }
}).observe(document, {attributes: true, subtree: true, attributeFilter: ['data-mt-ready']});
"""
NEXT_FRAME = "new Promise(r => requestAnimationFrame(() => setTimeout(r, 0)))"


def write_page(folder: Path, name: str, graph: Graph, depth: int = 1) -> None:
    figure = render_figure(graph, ViewOptions(depth=depth), "model-trace-1")
    (folder / f"{name}.html").write_text(
        '<!doctype html><html><head><meta charset="utf-8"><title>bench</title>'
        '<link rel="stylesheet" href="assets/viewer.css"></head><body>'
        f"{figure}<script src=\"assets/viewer.js\"></script></body></html>", encoding="utf-8")


def serve(folder: Path) -> str:
    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(Quiet, directory=str(folder)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return f"http://127.0.0.1:{server.server_address[1]}/"


def open_ready(browser, url: str):
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.add_init_script(READY_PROBE)
    page.goto(url)
    page.wait_for_selector("figure[data-mt-ready]")
    page.wait_for_function("!!window.dagre")
    return page


def interactive(browser, url: str) -> float:
    page = open_ready(browser, url)
    value = page.evaluate("window.__mtReady")
    page.close()
    return value


def expand_path(browser, url: str, path: str) -> float:
    page = open_ready(browser, url)
    value = page.evaluate("""async ([path, nextFrame]) => {
        const v = modelTraceViewer.viewers()[0], m = v.model;
        const ref = m.order.find(r => r < m.M && m.data.strings[m.data.modules.path[r]] === path);
        const start = performance.now();
        await v.toggle(ref);
        await eval(nextFrame);
        return performance.now() - start;
    }""", [path, NEXT_FRAME])
    page.close()
    return value


def expand_all(browser, url: str) -> tuple[float, int]:
    page = open_ready(browser, url)
    value = page.evaluate("""async (nextFrame) => {
        const v = modelTraceViewer.viewers()[0];
        const button = [...v.figure.querySelectorAll('.mt-btn')]
            .find(b => b.textContent === 'Expand all');
        const start = performance.now();
        button.click();
        while (!v.placed || v.figure.classList.contains('mt-busy')) await eval(nextFrame);
        await eval(nextFrame);
        return [performance.now() - start, v.placed.boxes.size];
    }""", NEXT_FRAME)
    page.close()
    return value[0], value[1]


def dagre_group(browser, url: str, boxes: int, runs: int) -> list[float]:
    """The viewer's own dagre call (``Layouts.runDagre``) on ``render.random_group(boxes)``,
    with the box sizes and shape labels ``layout`` gives dot; milliseconds per run."""
    with one_group(splines=True):
        tree = ViewTree.from_graph(random_group(boxes))
    children = tree.items[tree.root].children
    position = {child: i for i, child in enumerate(children)}
    sizes = [item_size(tree, child, {}) for child in children]
    links = [[position[link.src], position[link.dst], edge_label(tree, link.tensors)]
             for link in tree.links[tree.root]]
    page = open_ready(browser, url)
    times = page.evaluate("""([sizes, links, runs]) => {
        const model = {L: modelTraceViewer.viewers()[0].model.L, linkLabel: l => l.label};
        const kids = sizes.map((_, i) => i), sw = sizes.map(s => s[0]), sh = sizes.map(s => s[1]);
        const edges = links.map(([s, d, label]) => ({s, d, label}));
        const times = [];
        for (let r = 0; r < runs; r++) {
            const start = performance.now();
            modelTraceViewer.Layouts.prototype.runDagre.call({model, dagreRuns: 0}, kids, edges,
                                                              sw, sh);
            times.push(performance.now() - start);
        }
        return times;
    }""", [sizes, links, runs])
    page.close()
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    chromium = shutil.which("chromium")
    if chromium is None:
        sys.exit("chromium is not installed (apt-get install chromium)")
    folder = Path(tempfile.mkdtemp(prefix="model-trace-bench-"))
    shutil.copytree(resources.files("model_trace") / "assets", folder / "assets")
    print("tracing ...", flush=True)
    pages = {
        "671b": deepseek_v3()[0],
        "two-layer": deepseek_v3(TWO_LAYERS)[0],
        "two-layer-unfolded": deepseek_v3(TWO_LAYERS + "fold: false")[0],
        "synthetic-10k": synthetic(10_000),
    }
    for name, graph in pages.items():
        write_page(folder, name, graph, depth=0 if name == "synthetic-10k" else 1)
        size = (folder / f"{name}.html").stat().st_size
        print(f"  {name}: {len(graph.modules)} modules, {len(graph.nodes)} nodes, "
              f"page {size / 1024:.0f} KB")
    base = serve(folder)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        expand_all(browser, base + "two-layer.html")  # warm up the HTTP cache and the JIT

        def median(values: list[float]) -> str:
            middle = statistics.median(values)
            return f"{middle:7.1f} ms (min {min(values):.1f}, max {max(values):.1f})"

        print(f"\nmedian of {args.runs} runs, each on a fresh page")
        print("671B page interactive after load  ",
              median([interactive(browser, base + "671b.html") for _ in range(args.runs)]))
        print("671B expand one MoE layer         ",
              median([expand_path(browser, base + "671b.html", "layers.3.ffn")
                      for _ in range(args.runs)]))
        for name in ("two-layer", "two-layer-unfolded", "synthetic-10k"):
            runs = [expand_all(browser, base + f"{name}.html") for _ in range(args.runs)]
            print(f"{name + ' expand all':<34}", median([r[0] for r in runs]),
                  f"{runs[0][1]} boxes")
        print("\ndagre on one random group (benchmarks/render.py's random_group)")
        for boxes in GROUP_SIZES:
            print(f"  {boxes:>4} boxes" + " " * 21,
                  median(dagre_group(browser, base + "671b.html", boxes, args.runs)))
        browser.close()
    shutil.rmtree(folder)


if __name__ == "__main__":
    main()
