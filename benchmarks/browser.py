"""Time the viewer in headless Chromium (Debian's ``chromium``, driven by Playwright).

    python benchmarks/browser.py               # every case, 5 runs each, medians printed
    python benchmarks/browser.py --runs 10

(from the repository root, with the project installed or PYTHONPATH=plugin:.)

Each graph is traced in this process, drawn with ``render_figure`` into a bare page next to the
site's ``viewer.js`` and ``viewer.css``, and served from 127.0.0.1. Every measurement opens a
fresh page (cold JavaScript, warm HTTP cache as for a reader's second page). Timings are taken
inside the page with ``performance.now()`` and include the frame that paints the result; each
is printed beside its budget (issue 10) and as a ratio to it:

- ``interactive``: from navigation start until the figure is hydrated (``data-mt-ready``):
  view data parsed, the first view laid out, controls attached (budget 300 ms);
- ``open one MLA`` / ``open one MoE``: opening ``layers.0.attn`` / ``layers.3.ffn`` of the
  671B overview as the DeepSeek-V3 page opens it (depth 1): the box laid out, its ancestors
  laid out again, redrawn, painted (budget 100 ms each);
- ``expand all``: the "Open all" button on the same page (budget 400 ms); also on a 2-layer
  DeepSeek-V3 unfolded (every called expert drawn) and a synthetic 10k-op graph, which have
  no budget.
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
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from render import TWO_LAYERS, deepseek_v3, synthetic

from model_trace.graph import Graph
from model_trace.render_html import ViewOptions, render_figure
from model_trace.viewer_files import asset_bytes, asset_names

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
BUDGETS_MS = {"interactive": 300, "open one MLA": 100, "open one MoE": 100, "expand all": 400}


def write_page(folder: Path, name: str, graph: Graph, depth: int = 1) -> None:
    figure = render_figure(graph, ViewOptions(depth=depth), "model-trace-1")
    (folder / f"{name}.html").write_text(
        '<!doctype html><html><head><meta charset="utf-8"><title>bench</title>'
        '<link rel="stylesheet" href="viewer.css"></head><body style="max-width: 760px">'
        f"{figure}<script src=\"viewer.js\"></script></body></html>", encoding="utf-8")


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
    return page


def interactive(browser, url: str) -> float:
    page = open_ready(browser, url)
    value = page.evaluate("window.__mtReady")
    page.close()
    return value


def open_path(browser, url: str, path: str) -> float:
    page = open_ready(browser, url)
    value = page.evaluate("""async ([path, nextFrame]) => {
        const v = modelTraceViewer.viewers()[0], ref = v.model.path.indexOf(path);
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
            .find(b => b.getAttribute('aria-label') === 'Expand every module');
        const start = performance.now();
        button.click();
        await eval(nextFrame);
        return [performance.now() - start, v.placed.boxes.size];
    }""", NEXT_FRAME)
    page.close()
    return value[0], value[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    chromium = shutil.which("chromium")
    if chromium is None:
        sys.exit("chromium is not installed (apt-get install chromium)")
    folder = Path(tempfile.mkdtemp(prefix="model-trace-bench-"))
    for name in asset_names():
        (folder / name).write_bytes(asset_bytes(name))
    print("tracing ...", flush=True)
    pages = {
        "671b": deepseek_v3()[0],
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
        expand_all(browser, base + "671b.html")  # warm up the HTTP cache and the JIT

        def report(name: str, values: list[float], extra: str = "") -> None:
            middle = statistics.median(values)
            budget = BUDGETS_MS.get(name.removeprefix("671B "))
            ratio = f"{middle / budget:5.2f} of its {budget} ms budget" if budget else ""
            print(f"{name:<34} {middle:7.1f} ms (min {min(values):.1f}, max {max(values):.1f})"
                  f"  {ratio}{extra}")

        print(f"\nmedian of {args.runs} runs, each on a fresh page")
        report("671B interactive", [interactive(browser, base + "671b.html")
                                    for _ in range(args.runs)])
        report("671B open one MLA", [open_path(browser, base + "671b.html", "layers.0.attn")
                                     for _ in range(args.runs)])
        report("671B open one MoE", [open_path(browser, base + "671b.html", "layers.3.ffn")
                                     for _ in range(args.runs)])
        for name in ("671b", "two-layer-unfolded", "synthetic-10k"):
            runs = [expand_all(browser, base + f"{name}.html") for _ in range(args.runs)]
            label = "671B expand all" if name == "671b" else f"{name} expand all"
            report(label, [r[0] for r in runs], f"  ({runs[0][1]} boxes)")
        browser.close()
    shutil.rmtree(folder)


if __name__ == "__main__":
    main()
