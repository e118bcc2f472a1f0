"""The viewer in headless Chromium, on real sites built once per module (Material with instant
navigation, and the default mkdocs theme): expansion, stability, search, source panel, URL
state, themes, keyboard, downloads, escaping, and no requests to other origins."""

from __future__ import annotations

import json
import re
import struct
import sys
import textwrap
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest
import yaml
from mkdocs.commands.build import build
from mkdocs.config import load_config

from model_trace.layout import layout
from model_trace.view_data import decode_graph
from model_trace.view_tree import ViewTree, expanded_groups

pytestmark = pytest.mark.browser

NASTY = "<script>alert(\"x\")</script>&'"
MODELS = textwrap.dedent('''\
    """Models drawn by the viewer tests."""
    import torch
    from torch import nn

    NASTY = {nasty!r}


    def tagged(x, tag):
        if torch.overrides.has_torch_function((x,)):
            return torch.overrides.handle_torch_function(tagged, (x,), x, tag)
        return x * 1


    class Escapes(nn.Module):
        """A module name and an op argument that would break unescaped HTML, SVG or JSON."""

        def __init__(self):
            super().__init__()
            self.blocks = nn.ModuleDict({{NASTY: nn.Linear(8, 8)}})

        def forward(self, x):
            return tagged(self.blocks[NASTY](x), NASTY)


    class Small(nn.Module):
        def __init__(self):
            super().__init__()
            self.first = nn.Linear(8, 16)
            self.second = nn.Linear(16, 4)

        def forward(self, x):
            hidden = torch.relu(self.first(x))  # the source panel test looks for this line
            return self.second(hidden)


    def encoder(layers=2):
        layer = nn.TransformerEncoderLayer(32, 4, dim_feedforward=64, batch_first=True)
        return nn.TransformerEncoder(layer, num_layers=layers, enable_nested_tensor=False)
''').format(nasty=NASTY)

ENCODER = ("```model-trace\nmodel: viewer_models:encoder\ninputs: [[2, 8, 32]]\ndepth: 1\n"
           "fold: false\n```\n")
ESCAPES = "```model-trace\nmodel: viewer_models:Escapes\ninputs: [[2, 8]]\ndepth: 1\n```\n"
SMALL = "```model-trace\nmodel: viewer_models:Small\ninputs: [[3, 8]]\ndepth: 1\n```\n"


def _build(root: Path, pages: dict[str, str], theme: dict[str, Any]) -> Path:
    docs = root / "docs"
    docs.mkdir(parents=True)
    for name, text in pages.items():
        (docs / name).write_text(text, encoding="utf-8")
    config = {
        "site_name": "viewer test",
        "theme": theme,
        "markdown_extensions": ["pymdownx.superfences"],
        "plugins": [{"model-trace": {"own_roots": ["viewer_models"],
                                     "cache": False}}],
    }
    (root / "mkdocs.yml").write_text(yaml.safe_dump(config), encoding="utf-8")
    loaded = load_config(str(root / "mkdocs.yml"))
    build(loaded)
    return Path(loaded.site_dir)


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("models")
    (folder / "viewer_models.py").write_text(MODELS, encoding="utf-8")
    sys.path.insert(0, str(folder))
    yield folder / "viewer_models.py"
    sys.path.remove(str(folder))
    sys.modules.pop("viewer_models", None)


@pytest.fixture(scope="module")
def material_site(models: Path, tmp_path_factory: pytest.TempPathFactory, serve) -> str:
    pages = {
        "index.md": "# Graphs\n\n" + ENCODER + "\n" + ESCAPES + "\n" + SMALL
                    + "\n[Next page](next.md)\n",
        "next.md": "# Next\n\n" + SMALL + "\n" + ENCODER.replace("fold: false", "fold: true"),
    }
    theme = {"name": "material", "font": False, "features": ["navigation.instant"],
             "palette": [{"scheme": "default"}, {"scheme": "slate"}]}
    return serve(_build(tmp_path_factory.mktemp("material"), pages, theme))


@pytest.fixture(scope="module")
def mkdocs_site(models: Path, tmp_path_factory: pytest.TempPathFactory, serve) -> str:
    theme = {"name": "mkdocs", "highlightjs": False, "color_mode": "auto"}
    return serve(_build(tmp_path_factory.mktemp("mkdocs"), {"index.md": "# G\n\n" + SMALL},
                        theme))


def _ready(page: Any, figure: str = "model-trace-1") -> None:
    page.wait_for_selector(f"#{figure}[data-mt-ready]")


def _boxes(page: Any, figure: str = "model-trace-1") -> dict[str, tuple[float, ...]]:
    """Every drawn box of a figure by its item id: (x, y, width, height) in graph units."""
    return page.evaluate("""(figure) => {
        const out = {};
        document.querySelectorAll(`#${figure} [data-id] > rect`).forEach(rect => {
            out[rect.parentNode.getAttribute('data-id')] =
                ['x', 'y', 'width', 'height'].map(a => parseFloat(rect.getAttribute(a)));
        });
        return out;
    }""", figure)


def _module(page: Any, path: str, figure: str = "model-trace-1") -> Any:
    return page.locator(f"#{figure} .mt-module[data-path='{path}']")


def _click(locator: Any) -> None:
    """Click an item, after focusing it: the viewer pans a focused item into view."""
    locator.focus()
    locator.click()


def _inside(inner: tuple[float, ...], outer: tuple[float, ...]) -> bool:
    return (inner[0] >= outer[0] - 0.5 and inner[1] >= outer[1] - 0.5
            and inner[0] + inner[2] <= outer[0] + outer[2] + 0.5
            and inner[1] + inner[3] <= outer[1] + outer[3] + 0.5)


def _tree(page: Any, figure: str = "model-trace-1") -> ViewTree:
    """The figure's view tree, rebuilt in Python from the view data the page carries."""
    data = json.loads(page.evaluate(
        "(f) => document.querySelector(`#${f} template.mt-data`).content.textContent", figure))
    return ViewTree.from_graph(decode_graph(data), show_constants=data["view"]["show_constants"])


def _open_groups(page: Any, figure: str = "model-trace-1") -> set[str]:
    return set(page.evaluate("""(figure) => [...document.querySelectorAll(
        `#${figure} .mt-module.mt-open`)].map(g => g.getAttribute('data-id'))""", figure))


def _view(page: Any, figure: str = "model-trace-1") -> tuple[float, float, float]:
    """The pan and zoom of a figure: (x, y, scale) of its viewport transform."""
    transform = page.locator(f"#{figure} .mt-viewport").get_attribute("transform")
    x, y, k = (float(v) for v in re.findall(r"-?[\d.]+", transform))
    return x, y, k


def _rect(page: Any, selector: str) -> dict[str, float]:
    return page.evaluate("""(s) => {
        const r = document.querySelector(s).getBoundingClientRect();
        return {left: r.left, top: r.top, right: r.right, bottom: r.bottom,
                width: r.width, height: r.height};
    }""", selector)


def _contains(outer: dict[str, float], inner: dict[str, float]) -> bool:
    return (inner["left"] >= outer["left"] - 1 and inner["top"] >= outer["top"] - 1
            and inner["right"] <= outer["right"] + 1 and inner["bottom"] <= outer["bottom"] + 1)


def test_page_hydrates_without_errors_or_foreign_requests(open_page, material_site) -> None:
    page = open_page(material_site)
    for figure in ("model-trace-1", "model-trace-2", "model-trace-3"):
        _ready(page, figure)
    assert page.locator("#model-trace-1 .mt-toolbar button").count() >= 8
    page.wait_for_function("!!window.dagre")  # preloaded from this site when idle
    page.problems.assert_clean()


def test_the_request_guard_catches_other_origins(open_page, material_site) -> None:
    """The check every browser test relies on really sees a request to another origin."""
    page = open_page(material_site)
    _ready(page)
    page.evaluate("fetch('https://example.com/x.js').catch(() => null)")  # awaited: aborted
    assert page.problems.foreign_requests == ["https://example.com/x.js"]


def test_first_paint_needs_no_script(open_page, material_site) -> None:
    """With scripts off the static SVG is the whole figure, themed by the stylesheet alone,
    and it is the very picture the viewer hydrates: nothing jumps when the script runs."""
    static = open_page(material_site, java_script_enabled=False)
    figure = "#model-trace-1"
    assert static.locator(f"{figure} .mt-toolbar").count() == 0
    svg = _rect(static, f"{figure} svg.mt-svg")
    assert svg["width"] > 200 and svg["height"] > 200
    boxes = _boxes(static)
    tree = _tree(static)
    assert set(boxes) == set(layout(tree, expanded_groups(tree, 1)).boxes)
    node = "#model-trace-3 .mt-node.mt-cat-linear > rect"  # Small: linear and relu ops
    attribute = static.locator(node).first.get_attribute("fill")
    light = _colour(static, node, "fill")
    assert light != _colour(static, "#model-trace-3 .mt-node.mt-cat-activation > rect", "fill")
    static.evaluate("document.body.setAttribute('data-md-color-scheme', 'slate')")
    assert _luminance(_colour(static, node, "fill")) < 0.3 < _luminance(light)
    assert attribute.startswith("#")  # cairosvg's colour stays in the markup
    live = open_page(material_site)
    _ready(live)
    hydrated = _boxes(live)
    assert set(hydrated) == set(boxes)
    for item, rect in boxes.items():
        assert hydrated[item] == pytest.approx(rect, abs=0.11), item
    static.problems.assert_clean()
    live.problems.assert_clean()


@pytest.mark.parametrize("scripts", [True, False])
def test_print_shows_the_whole_graph_within_the_page(open_page, material_site, scripts) -> None:
    """Printed, the figure is the whole current view scaled to the page width, no controls."""
    page = open_page(material_site, java_script_enabled=scripts,
                     viewport={"width": 480, "height": 900})
    figure = "#model-trace-1"
    if scripts:
        _ready(page)
        _click(_module(page, "layers.0.self_attn"))
        page.wait_for_selector(f"{figure} .mt-module.mt-open[data-path='layers.0.self_attn']")
        page.locator(f"{figure} .mt-btn[aria-label='Zoom in (+)']").click()
    page.emulate_media(media="print")
    page.wait_for_function(f"""() => !{str(scripts).lower()} ||
        document.querySelector('{figure} svg.mt-svg').hasAttribute('viewBox')""")
    page_width = page.evaluate("document.documentElement.clientWidth")
    svg = _rect(page, f"{figure} svg.mt-svg")
    assert svg["left"] > 0 and svg["right"] <= page_width
    assert _contains(svg, _rect(page, f"{figure} .mt-viewport"))  # nothing cut off
    assert svg["height"] == pytest.approx(svg["width"] * _svg_aspect(page, figure), rel=0.01)
    natural = float(page.locator(f"{figure} svg.mt-svg").get_attribute("width"))
    assert natural > page_width  # so it really was scaled down to fit
    if scripts:
        assert not page.locator(f"{figure} .mt-toolbar").is_visible()
        page.emulate_media(media="screen")
        page.wait_for_function(
            f"!document.querySelector('{figure} svg.mt-svg').hasAttribute('viewBox')")
        assert page.locator(f"{figure} .mt-toolbar").is_visible()
        assert _view(page)[2] == pytest.approx(1.25)  # the reader's zoom is back
    page.problems.assert_clean()


def _svg_aspect(page: Any, figure: str) -> float:
    width, height = page.evaluate(f"""() => {{
        const svg = document.querySelector('{figure} svg.mt-svg');
        return [parseFloat(svg.getAttribute('width')), parseFloat(svg.getAttribute('height'))];
    }}""")
    return height / width


def test_expand_shows_children_and_collapse_hides_them(open_page, material_site) -> None:
    page = open_page(material_site)
    _ready(page)
    before = _boxes(page)
    attention = _module(page, "layers.0.self_attn")
    assert "mt-open" not in attention.get_attribute("class")
    attention.focus()  # pans it into view
    on_screen = attention.locator("rect").bounding_box()
    attention.click()
    page.wait_for_selector("#model-trace-1 .mt-module.mt-open[data-path='layers.0.self_attn']")
    opened = attention.locator("rect").bounding_box()
    # in place: the box grows from where it was on the screen
    assert (opened["x"], opened["y"]) == pytest.approx((on_screen["x"], on_screen["y"]), abs=1)
    assert opened["height"] > on_screen["height"]
    after = _boxes(page)
    module_id = attention.get_attribute("data-id")
    new = set(after) - set(before)
    assert new, "expanding showed no children"
    assert all(_inside(after[item], after[module_id]) for item in new)
    assert page.locator("#model-trace-1 .mt-node", has_text="multi_head_attention_forward") \
        .count() == 1
    page.locator(f"#model-trace-1 .mt-module[data-id='{module_id}'] > text").click()
    page.wait_for_selector(f"#model-trace-1 .mt-module:not(.mt-open)[data-id='{module_id}']")
    assert set(_boxes(page)) == set(before)
    page.problems.assert_clean()


def test_nothing_outside_the_expanded_module_moves_more_than_its_growth(
    open_page, material_site
) -> None:
    page = open_page(material_site)
    _ready(page)
    for path in ("layers.0.linear1", "layers.1.self_attn", "layers.0.norm1"):
        before = _boxes(page)
        module = _module(page, path)
        module_id = module.get_attribute("data-id")
        runs = page.evaluate("modelTraceViewer.viewers()[0].layouts.dagreRuns")
        _click(module)
        page.wait_for_selector(f"#model-trace-1 .mt-module.mt-open[data-path='{path}']")
        # only the opened module may be laid out; its ancestors make room
        assert page.evaluate("modelTraceViewer.viewers()[0].layouts.dagreRuns") <= runs + 1
        after = _boxes(page)
        grow_w = after[module_id][2] - before[module_id][2]
        grow_h = after[module_id][3] - before[module_id][3]
        assert grow_w >= 0 and grow_h > 0
        for item, (x, y, w, h) in before.items():
            if item == module_id:
                continue
            nx, ny, nw, nh = after[item]
            if (nw, nh) != (w, h):
                continue  # an ancestor, grown to hold it
            assert abs(nx - x) <= grow_w + 0.5 and abs(ny - y) <= grow_h + 0.5, (path, item)
    page.problems.assert_clean()


def test_browser_layouts_use_the_build_time_box_sizes(open_page, material_site) -> None:
    """A group laid out by dagre in the page gets the boxes dot gets at build time."""
    page = open_page(material_site)
    _ready(page)
    tree = _tree(page)
    module = _module(page, "layers.0.self_attn")
    module_id = module.get_attribute("data-id")
    _click(module)
    page.wait_for_selector(f"#model-trace-1 .mt-open[data-id='{module_id}']")
    drawn = _boxes(page)
    built = layout(tree, expanded_groups(tree, 1) | {module_id}).boxes
    assert tree.items[module_id].children
    for child in tree.items[module_id].children:
        assert drawn[child][2:] == pytest.approx((built[child].width, built[child].height))
    page.problems.assert_clean()


def test_equal_groups_share_one_browser_layout(open_page, material_site) -> None:
    """Like equal dot inputs at build time, equal groups the reader opens cost one dagre run."""
    page = open_page(material_site)
    _ready(page)
    before = _open_groups(page)
    runs = page.evaluate("modelTraceViewer.viewers()[0].layouts.dagreRuns")
    page.locator("#model-trace-1 .mt-btn", has_text="Expand all").click()
    page.wait_for_selector("#model-trace-1 .mt-open[data-path='layers.1.self_attn']")
    opened = _open_groups(page) - before
    assert page.evaluate("modelTraceViewer.viewers()[0].layouts.dagreRuns") - runs \
        <= len(opened) // 2  # the two layers' modules pair up
    boxes, tree = _boxes(page), _tree(page)
    ids = [_module(page, f"layers.{i}.self_attn").get_attribute("data-id") for i in (0, 1)]
    shapes = [[(round(boxes[c][0] - boxes[g][0], 1), round(boxes[c][1] - boxes[g][1], 1),
                *boxes[c][2:]) for c in tree.items[g].children] for g in ids]
    assert shapes[0] == shapes[1]
    page.problems.assert_clean()


def test_depth_control_and_expand_and_collapse_all(open_page, material_site) -> None:
    page = open_page(material_site)
    _ready(page)
    tree = _tree(page)
    depth = page.locator("#model-trace-1 .mt-depth")
    assert depth.input_value() == "1"
    for level in (2, 0, 1):
        depth.select_option(str(level))
        built = layout(tree, expanded_groups(tree, level))
        page.wait_for_function("(n) => document.querySelectorAll("
                               "'#model-trace-1 .mt-module.mt-open').length === n",
                               arg=len(built.groups))
        assert _open_groups(page) == set(built.groups), level
        assert set(_boxes(page)) == set(built.boxes)
    page.locator("#model-trace-1 .mt-btn", has_text="Expand all").click()
    every_group = {item.id for item in tree.groups() if item.children}
    page.wait_for_function("(n) => document.querySelectorAll("
                           "'#model-trace-1 .mt-module.mt-open').length === n",
                           arg=len(every_group))
    assert _open_groups(page) == every_group
    leaves = {item.id for item in tree.items.values() if not item.is_group}
    assert set(_boxes(page)) >= leaves  # down to single ops
    assert depth.input_value() == str(max(tree.depth_of(g) for g in every_group))
    page.locator("#model-trace-1 .mt-btn", has_text="Collapse all").click()
    page.wait_for_function("document.querySelectorAll('#model-trace-1 .mt-open').length === 1")
    assert _open_groups(page) == {tree.root}
    assert set(_boxes(page)) == {tree.root, *tree.items[tree.root].children}
    page.problems.assert_clean()


def test_hover_shows_shapes_dtypes_params_and_flops(open_page, material_site) -> None:
    page = open_page(material_site)
    _ready(page, "model-trace-3")  # Small: first (Linear 8->16), relu, second (Linear 16->4)
    tooltip = page.locator("#model-trace-3 .mt-tooltip")
    page.locator("#model-trace-3 .mt-module[data-path='first'] > text").hover()
    tooltip.wait_for(state="visible")
    assert "first: Linear" in tooltip.inner_text()
    assert "params 144" in tooltip.inner_text() and "FLOPs 768" in tooltip.inner_text()
    page.locator("#model-trace-3 .mt-node", has_text="relu").hover()
    page.wait_for_function("document.querySelector('#model-trace-3 .mt-tooltip')"
                           ".textContent.startsWith('relu')")
    assert "in:  (3, 16) float32" in tooltip.inner_text()
    assert "out: (3, 16) float32" in tooltip.inner_text()
    page.locator("#model-trace-3 .mt-edge .mt-shape", has_text="(3, 4)").hover()
    page.wait_for_function("document.querySelector('#model-trace-3 .mt-tooltip')"
                           ".textContent === '(3, 4) float32'")
    page.locator("#model-trace-3 .mt-node", has_text="linear").first.hover()
    page.wait_for_function("document.querySelector('#model-trace-3 .mt-tooltip')"
                           ".textContent.startsWith('linear')")
    assert "params 144" in tooltip.inner_text() and "FLOPs 768" in tooltip.inner_text()
    page.mouse.move(1, 1)
    tooltip.wait_for(state="hidden")
    page.problems.assert_clean()


def test_pan_zoom_fit_and_fullscreen(open_page, material_site) -> None:
    page = open_page(material_site)
    _ready(page)
    opened = _open_groups(page)
    box = page.locator("#model-trace-1 svg.mt-svg").bounding_box()
    x0, y0, k0 = _view(page)
    start = (box["x"] + 200, box["y"] + 200)
    page.mouse.move(*start)
    page.mouse.down()
    page.mouse.move(start[0] + 120, start[1] + 60, steps=6)
    page.mouse.up()
    x1, y1, k1 = _view(page)
    assert (x1 - x0, y1 - y0, k1) == pytest.approx((120, 60, k0), abs=0.2)
    assert _open_groups(page) == opened  # a drag is not a click
    page.mouse.wheel(0, 300)  # a plain wheel scrolls the page, it does not zoom
    assert _view(page)[2] == k1
    page.evaluate("window.scrollTo(0, 0)")
    box = page.locator("#model-trace-1 svg.mt-svg").bounding_box()
    page.mouse.move(box["x"] + 300, box["y"] + 150)
    before = page.evaluate("(p) => modelTraceViewer.viewers()[0].toGraph(p[0], p[1])",
                           [box["x"] + 300, box["y"] + 150])
    page.keyboard.down("Control")
    page.mouse.wheel(0, -300)
    page.keyboard.up("Control")
    page.wait_for_function(f"!document.querySelector('#model-trace-1 .mt-viewport')"
                           f".getAttribute('transform').endsWith('scale({k1:g})')")
    assert _view(page)[2] > k1
    after = page.evaluate("(p) => modelTraceViewer.viewers()[0].toGraph(p[0], p[1])",
                          [box["x"] + 300, box["y"] + 150])
    assert after == pytest.approx(before, abs=0.5)  # zoomed about the pointer
    page.locator("#model-trace-1 .mt-btn", has_text="Fit").click()
    assert _contains(_rect(page, "#model-trace-1 svg.mt-svg"),
                     _rect(page, "#model-trace-1 .mt-viewport"))
    canvas = _rect(page, "#model-trace-1 .mt-canvas")["height"]
    page.locator("#model-trace-1 .mt-btn", has_text="Full screen").click()
    page.wait_for_function("""() => document.fullscreenElement ===
        document.getElementById('model-trace-1') ||
        document.getElementById('model-trace-1').classList.contains('mt-maximized')""")
    page.wait_for_function(f"document.querySelector('#model-trace-1 .mt-canvas')"
                           f".getBoundingClientRect().height > {canvas + 100}")
    assert _contains(_rect(page, "#model-trace-1 svg.mt-svg"),
                     _rect(page, "#model-trace-1 .mt-viewport"))  # fitted to the screen
    page.locator("#model-trace-1 .mt-btn", has_text="Full screen").click()
    page.wait_for_function("""() => !document.fullscreenElement &&
        !document.getElementById('model-trace-1').classList.contains('mt-maximized')""")
    page.problems.assert_clean()


def test_search_highlights_matches_and_enter_reveals_them(open_page, material_site) -> None:
    page = open_page(material_site)
    _ready(page)
    search = page.locator("#model-trace-1 .mt-search")
    search.fill("linear2")
    page.wait_for_selector("#model-trace-1 .mt-match")
    matches = page.locator("#model-trace-1 .mt-match")
    assert matches.count() == 2  # layers.0.linear2 and layers.1.linear2, both visible
    assert all("linear2" in matches.nth(i).get_attribute("data-path")
               for i in range(matches.count()))
    search.fill("multi_head_attention_forward")  # inside closed modules: their holders glow
    page.wait_for_selector("#model-trace-1 .mt-holds-match")
    search.press("Enter")
    page.wait_for_selector("#model-trace-1 .mt-node.mt-match.mt-selected")
    assert "1 of 2" in page.locator("#model-trace-1 .mt-count").inner_text()
    page.problems.assert_clean()


def test_source_panel_shows_the_file_line_and_code(open_page, material_site, models) -> None:
    page = open_page(material_site)
    _ready(page, "model-trace-3")
    lines = models.read_text(encoding="utf-8").splitlines()
    line = next(i for i, text in enumerate(lines, 1) if "torch.relu" in text)
    page.locator("#model-trace-3 .mt-node", has_text="relu").click()
    panel = page.locator("#model-trace-3 .mt-panel")
    panel.wait_for(state="visible")
    assert f"viewer_models.py:{line}" in panel.inner_text()
    assert "torch.relu(self.first(x))" in panel.locator("pre code").inner_text()
    page.problems.assert_clean()


def test_url_hash_restores_expansion_and_selection(open_page, material_site) -> None:
    page = open_page(material_site)
    _ready(page)
    _click(_module(page, "layers.1.self_attn"))
    page.wait_for_selector("#model-trace-1 .mt-module.mt-open[data-path='layers.1.self_attn']")
    _click(page.locator("#model-trace-1 .mt-node", has_text="multi_head_attention_forward"))
    page.locator("#model-trace-1 .mt-panel").wait_for(state="visible")
    page.locator("#model-trace-1 .mt-overlay").select_option("params")
    url = page.url
    assert "#model-trace-1=" in url and "o:params" in url
    expected = _boxes(page)
    again = open_page(url)
    _ready(again)
    again.wait_for_selector("#model-trace-1 .mt-module.mt-open[data-path='layers.1.self_attn']")
    assert _boxes(again) == expected
    assert "multi_head_attention_forward" in again.locator("#model-trace-1 .mt-panel").inner_text()
    assert again.locator("#model-trace-1 .mt-overlay").input_value() == "params"
    assert again.locator("#model-trace-1 .mt-legend").is_visible()
    again.problems.assert_clean()


def _colour(page: Any, selector: str, prop: str) -> str:
    return page.evaluate("([s, p]) => getComputedStyle(document.querySelector(s))[p]",
                         [selector, prop])


def _luminance(colour: str) -> float:
    """Of ``rgb(r, g, b)`` or, from ``color-mix``, ``color(srgb r g b)`` with 0..1 parts."""
    r, g, b = (float(v) for v in re.findall(r"[\d.]+", colour)[:3])
    scale = 1 if colour.startswith("color(") else 255
    return (0.2126 * r + 0.7152 * g + 0.0722 * b) / scale


def test_material_dark_scheme_switches_colours(open_page, material_site) -> None:
    page = open_page(material_site)
    _ready(page)
    node = "#model-trace-1 .mt-node.mt-cat-elementwise > rect"
    light = (_colour(page, "#model-trace-1 .mt-canvas", "backgroundColor"),
             _colour(page, node, "fill"), _colour(page, "#model-trace-1 .mt-node text", "fill"))
    page.evaluate("document.body.setAttribute('data-md-color-scheme', 'slate')")
    dark = (_colour(page, "#model-trace-1 .mt-canvas", "backgroundColor"),
            _colour(page, node, "fill"), _colour(page, "#model-trace-1 .mt-node text", "fill"))
    assert all(a != b for a, b in zip(light, dark, strict=True))
    assert _luminance(dark[0]) < 0.3 < _luminance(light[0])
    assert _luminance(dark[2]) > 0.6  # light text on the dark boxes
    page.problems.assert_clean()


def test_default_theme_follows_prefers_color_scheme(open_page, mkdocs_site) -> None:
    theme_scripts = ("darkmode.js", "bootstrap.bundle.min.js")  # its bugs without highlight.js
    light = open_page(mkdocs_site, color_scheme="light", foreign_scripts_ok=theme_scripts)
    _ready(light)
    dark = open_page(mkdocs_site, color_scheme="dark", foreign_scripts_ok=theme_scripts)
    _ready(dark)
    canvas = "#model-trace-1 .mt-canvas"
    assert _luminance(_colour(light, canvas, "backgroundColor")) > 0.7
    assert _luminance(_colour(dark, canvas, "backgroundColor")) < 0.3
    assert _luminance(_colour(dark, "#model-trace-1 .mt-node text", "fill")) > 0.6
    light.problems.assert_clean()
    dark.problems.assert_clean()


def test_instant_navigation_hydrates_the_next_page(open_page, material_site) -> None:
    page = open_page(material_site)
    _ready(page)
    page.locator("a", has_text="Next page").click()
    page.wait_for_url("**/next/")
    _ready(page)
    assert page.evaluate("document.querySelectorAll('script[src*=\"viewer.js\"]').length") == 1
    page.locator("#model-trace-1 .mt-node", has_text="relu").click()
    page.locator("#model-trace-1 .mt-panel").wait_for(state="visible")
    page.problems.assert_clean()


def test_keyboard_toggles_zooms_and_searches(open_page, material_site) -> None:
    page = open_page(material_site)
    _ready(page)
    module = _module(page, "layers.0.norm2")
    module.focus()
    page.keyboard.press("Enter")
    page.wait_for_selector("#model-trace-1 .mt-module.mt-open[data-path='layers.0.norm2']")
    assert page.evaluate("document.activeElement.getAttribute('data-path')") == "layers.0.norm2"
    page.keyboard.press(" ")
    page.wait_for_selector("#model-trace-1 .mt-module:not(.mt-open)[data-path='layers.0.norm2']")
    x, y, k = _view(page)
    page.keyboard.press("+")
    assert _view(page)[2] == pytest.approx(k * 1.25)
    x, y, k = _view(page)
    page.keyboard.press("ArrowLeft")
    page.keyboard.press("Shift+ArrowUp")
    assert _view(page) == pytest.approx((x + 40, y + 200, k))
    page.keyboard.press("f")
    page.wait_for_function("""() => document.fullscreenElement ||
        document.getElementById('model-trace-1').classList.contains('mt-maximized')""")
    page.keyboard.press("f")
    page.wait_for_function("""() => !document.fullscreenElement &&
        !document.getElementById('model-trace-1').classList.contains('mt-maximized')""")
    page.keyboard.press("/")
    assert page.evaluate("document.activeElement.classList.contains('mt-search')")
    page.locator("#model-trace-1 .mt-toolbar > :last-child").focus()
    page.keyboard.press("Tab")  # from the toolbar straight into the graph
    assert page.evaluate("document.activeElement.closest('#model-trace-1 .mt-viewport') "
                         "!== null && document.activeElement.hasAttribute('data-id')")
    assert page.locator("#model-trace-1 [data-id]:not([tabindex='0'])").count() == 0
    page.problems.assert_clean()


def test_downloads_json_svg_and_png(open_page, material_site) -> None:
    page = open_page(material_site)
    _ready(page)
    data = json.loads(page.evaluate(
        "document.querySelector('#model-trace-1 template.mt-data').content.textContent"))
    with page.expect_download() as json_download:
        page.locator("#model-trace-1 .mt-btn", has_text="JSON").click()
    assert Path(json_download.value.path()).read_text(encoding="utf-8") == \
        decode_graph(data).to_json()
    with page.expect_download() as svg_download:
        page.locator("#model-trace-1 .mt-btn", has_text="SVG").click()
    svg = ET.parse(svg_download.value.path()).getroot()
    texts = {t.text for t in svg.iter("{http://www.w3.org/2000/svg}text")}
    assert "add" in texts and "(2, 8, 32)" in texts and "norm1: LayerNorm" in texts
    with page.expect_download() as png_download:
        page.locator("#model-trace-1 .mt-btn", has_text="PNG").click()
    png = Path(png_download.value.path()).read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", png[16:24])
    assert abs(width - 2 * (float(svg.get("width")))) <= 2
    assert abs(height - 2 * (float(svg.get("height")))) <= 2
    page.problems.assert_clean()


@pytest.mark.parametrize(("overlay", "name"), [("flops", "FLOPs"), ("params", "params"),
                                               ("memory", "memory"), ("time", "est. time")])
def test_overlay_colours_boxes_by_their_figure_and_shows_a_legend(
    open_page, material_site, overlay: str, name: str
) -> None:
    page = open_page(material_site)
    _ready(page)
    page.locator("#model-trace-1 .mt-overlay").select_option(overlay)
    legend = page.locator("#model-trace-1 .mt-legend")
    legend.wait_for(state="visible")
    assert legend.inner_text().startswith(name)
    assert f"o:{overlay}" in page.url
    heat = page.evaluate("""(overlay) => {
        const v = modelTraceViewer.viewers()[0];
        return [...v.figure.querySelectorAll('.mt-heat')].map(g => [
            v.model.metric(overlay, v.model.byId.get(g.getAttribute('data-id'))),
            g.querySelector('rect').style.fill]);
    }""", overlay)
    assert len({fill for _, fill in heat}) >= 2
    by_figure = sorted(heat, key=lambda pair: pair[0])
    shades = [_luminance(fill) for _, fill in by_figure]
    assert shades == sorted(shades, reverse=True)  # more is darker
    page.locator("#model-trace-1 .mt-overlay").select_option("none")
    legend.wait_for(state="hidden")
    assert page.locator("#model-trace-1 .mt-heat").count() == 0
    page.problems.assert_clean()


def test_names_and_arguments_are_escaped(open_page, material_site) -> None:
    page = open_page(material_site)
    _ready(page, "model-trace-2")
    label = page.locator("#model-trace-2 .mt-module[data-path] > text").last.text_content()
    assert label.startswith(f"blocks.{NASTY}")  # its path below the model
    assert page.locator("#model-trace-2 script").count() == 0  # nothing injected
    node = page.locator("#model-trace-2 .mt-node", has_text="tagged")
    node.hover()
    page.locator("#model-trace-2 .mt-tooltip").wait_for(state="visible")
    assert repr(NASTY) in page.locator("#model-trace-2 .mt-tooltip").inner_text()
    node.click()
    panel = page.locator("#model-trace-2 .mt-panel")
    panel.wait_for(state="visible")
    assert repr(NASTY) in panel.inner_text()
    with page.expect_download() as svg_download:
        page.locator("#model-trace-2 .mt-btn", has_text="SVG").click()
    svg = ET.parse(svg_download.value.path()).getroot()  # well-formed, or this raises
    assert f"blocks.{NASTY}: Linear" in {t.text for t in svg.iter("{http://www.w3.org/2000/svg}text")}
    titles = [t.text for t in svg.iter("{http://www.w3.org/2000/svg}title")]
    assert any(repr(NASTY) in title for title in titles)
    page.problems.assert_clean()


def test_repeats_unfold_into_their_members_and_fold_back(open_page, material_site) -> None:
    page = open_page(material_site + "next/")
    _ready(page, "model-trace-2")
    folded = page.locator("#model-trace-2 .mt-module.mt-folded")
    assert folded.count() == 1
    # named by its range, as the build-time SVG names it
    assert folded.locator("text").text_content() == (
        "layers.0\u20131: TransformerEncoderLayer \u00d72")
    folded.focus()
    folded.click(modifiers=["Alt"])
    member = page.locator("#model-trace-2 .mt-kind-member")
    member.wait_for()
    assert member.locator("text").text_content() == "layers.1: TransformerEncoderLayer"
    assert page.locator("#model-trace-2 .mt-module.mt-folded").count() == 0
    assert ";u:" in page.url
    _click(member)  # a member shows its own figures
    assert "member 2 of 2" in page.locator("#model-trace-2 .mt-panel").inner_text()
    representative = page.locator("#model-trace-2 .mt-module[data-path='layers.0']")
    representative.focus()
    page.keyboard.press("u")
    page.wait_for_selector("#model-trace-2 .mt-module.mt-folded")
    assert page.locator("#model-trace-2 .mt-kind-member").count() == 0
    page.problems.assert_clean()
