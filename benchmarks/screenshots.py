"""Screenshots of the built docs as readers see them, and the first view of every figure.

    mkdocs build -d site && python benchmarks/screenshots.py site/          # -> screenshots/
    python benchmarks/screenshots.py site/ --out shots --pages deepseek-v3/

(from the repository root, with the project installed or PYTHONPATH=plugin:.)

Every DeepSeek-V3 page is opened in headless Chromium (Debian's ``chromium``) at 1280×800 and
390×844, in Material's light and dark palettes, its first figure scrolled to just below the
sticky header, and saved as ``<page>-<width>-<theme>.png``. Then, for every figure of the
site at both sizes, the first view is measured: the share of the graph's width on screen,
the size its 12 px labels are drawn at, and whether the minimap is shown. The viewer's rule
is that a figure shows its whole width unless its labels would fall below 8 px, and then
shows them at 8 px with the minimap. Last, how many figures have toolbar controls scrolled out
of sight, or are wider than their column, at each size (the goal: none).
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from browser import serve

SIZES = ((1280, 800), (390, 844))
THEMES = ("light", "dark")
MEASURE = """() => modelTraceViewer.viewers().filter(v => v.figure.isConnected).map(v => {
    const r = v.svg.getBoundingClientRect(), p = v.placed, k = v.view.k;
    return {id: v.id, caption: (v.figure.querySelector('figcaption') || {}).textContent || '',
            width_share: Math.min(1, r.width / (p.width * k)), text_px: 12 * k,
            minimap: getComputedStyle(v.minimap).display !== 'none',
            frame: r.height, graph_height: p.height * k,
            hidden_controls: Math.max(0, v.figure.querySelector('.mt-toolbar').scrollWidth
                                         - v.figure.querySelector('.mt-toolbar').clientWidth),
            too_wide: v.figure.getBoundingClientRect().width
                      > v.figure.parentElement.getBoundingClientRect().width + 0.5};
})"""


def open_page(browser, url: str, width: int, height: int, theme: str):
    page = browser.new_page(viewport={"width": width, "height": height})
    page.goto(url)
    page.wait_for_load_state("networkidle")
    if page.locator("figure.model-trace").count():
        page.wait_for_selector("figure.model-trace[data-mt-ready]")
    if theme == "dark":
        page.evaluate("document.body.setAttribute('data-md-color-scheme', 'slate')")
    return page


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("site", type=Path, help="a built site folder")
    parser.add_argument("--out", type=Path, default=Path("screenshots"))
    parser.add_argument("--pages", default="deepseek-v3/",
                        help="the folder of the pages to photograph")
    args = parser.parse_args()
    chromium = shutil.which("chromium")
    if chromium is None:
        sys.exit("chromium is not installed (apt-get install chromium)")
    args.out.mkdir(parents=True, exist_ok=True)
    base = serve(args.site)
    every = sorted(p.parent.relative_to(args.site).as_posix() for p in
                   args.site.rglob("index.html") if p.parent.name != "search")
    shot = [p for p in every if (p + "/").startswith(args.pages)]
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=chromium, args=["--headless", "--no-sandbox", "--disable-gpu"])
        for path in shot:
            for width, height in SIZES:
                for theme in THEMES:
                    page = open_page(browser, base + path + "/", width, height, theme)
                    page.evaluate("""() => {
                        const f = document.querySelector('figure.model-trace');
                        const header = document.querySelector('.md-header');
                        if (f) window.scrollTo(0, f.getBoundingClientRect().top + window.scrollY
                            - (header ? header.getBoundingClientRect().height : 0) - 12);
                    }""")
                    page.wait_for_timeout(150)
                    name = path.replace("/", "-") or "home"
                    page.screenshot(path=str(args.out / f"{name}-{width}-{theme}.png"))
                    page.close()
        print(f"{len(shot) * len(SIZES) * len(THEMES)} screenshots in {args.out}/")
        print("\nfirst view of every figure: width on screen, label size, minimap")
        print(f"{'page':<34} {'figure':<7} {'1280: width  text  map':<24} "
              f"{'390: width  text  map':<22}")
        rows: dict[tuple[str, str], list[dict]] = {}
        for path in every:
            for width, height in SIZES:
                page = open_page(browser, base + path + "/", width, height, "light")
                for figure in page.evaluate(MEASURE):
                    rows.setdefault((path, figure["id"]), []).append(figure)
                page.close()
        for (path, figure), views in rows.items():
            cells = [f"{v['width_share']:6.0%} {v['text_px']:5.1f}px "
                     f"{'yes' if v['minimap'] else 'no':>4}" for v in views]
            print(f"{path or 'home':<34} {figure.removeprefix('model-trace-'):<7} "
                  + "   ".join(cells))
        for index, (width, _) in enumerate(SIZES):
            views = [v[index] for v in rows.values() if len(v) > index]
            hidden = sum(v["hidden_controls"] > 0 for v in views)
            wide = sum(v["too_wide"] for v in views)
            print(f"{width} px: toolbar controls out of sight in {hidden} of {len(views)} "
                  f"figures; {wide} wider than their column")
        browser.close()


if __name__ == "__main__":
    main()
