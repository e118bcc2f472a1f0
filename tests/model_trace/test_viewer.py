"""The viewer in headless Chromium, on real sites built once per module (Material with instant
navigation, and the default mkdocs theme): the first view, expansion and its integrity, the
wheel and touch, selection and its connections, search, the URL state, themes, keyboard and
focus, downloads, escaping, and no requests to other origins."""

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

from model_trace.integrity import Report, check_figure
from model_trace.view_data import decode_graph
from model_trace.view_tree import ViewTree

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
DEEPSEEK = "```model-trace\nmodel: deepseek-v3\nconfig: tiny\ndepth: 1\n```\n"
LONG_TEXT = "\n\n".join(["Some text to scroll past. " * 12] * 12)


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
        "deep.md": "# DeepSeek\n\n" + LONG_TEXT[:600] + "\n\n" + DEEPSEEK + "\n\n" + LONG_TEXT,
        "overlay.md": "# Coloured\n\n" + SMALL.replace("depth: 1", "depth: 1\noverlay: flops")
                      + "\n" + LONG_TEXT,
        "shown.md": "# Shown only\n\n" + SMALL.replace("depth: 1", "depth: 1\ndownloads: false"),
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
    assert page.get_attribute(f"#{figure}", "data-mt-ready") != "failed"


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


def _click(locator: Any, **options: Any) -> None:
    """Click an item, after focusing it: the viewer pans a focused item into view."""
    locator.focus()
    locator.locator("rect").first.click(**options)


def _tree(page: Any, figure: str = "model-trace-1") -> ViewTree:
    """The figure's view tree, rebuilt in Python from the view data the page carries."""
    data = json.loads(page.evaluate(
        "(f) => document.querySelector(`#${f} template.mt-data`).content.textContent", figure))
    return ViewTree.from_graph(decode_graph(data), show_constants=data["view"]["show_constants"])


def _integrity(page: Any, figure: str = "model-trace-1") -> Report:
    """The integrity checker on the figure's live SVG, as the reader sees it now."""
    tree = _tree(page, figure)
    svg = page.evaluate("(f) => document.querySelector(`#${f} svg.mt-svg`).outerHTML", figure)
    idle = [i for i, item in tree.items.items() if item.kind == "idle"]
    return check_figure(svg, tree.graph, tree.parents(), idle)


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


def _inside(inner: tuple[float, ...], outer: tuple[float, ...]) -> bool:
    return (inner[0] >= outer[0] - 0.5 and inner[1] >= outer[1] - 0.5
            and inner[0] + inner[2] <= outer[0] + outer[2] + 0.5
            and inner[1] + inner[3] <= outer[1] + outer[3] + 0.5)


# ------------------------------------------------------------------ loading and first view

def test_page_hydrates_without_errors_or_foreign_requests(open_page, material_site) -> None:
    page = open_page(material_site)
    for figure in ("model-trace-1", "model-trace-2", "model-trace-3"):
        _ready(page, figure)
    assert page.locator("#model-trace-1 .mt-toolbar button").count() >= 7
    page.problems.assert_clean()


def test_the_request_guard_catches_other_origins(open_page, material_site) -> None:
    """The check every browser test relies on really sees a request to another origin."""
    page = open_page(material_site)
    _ready(page)
    page.evaluate("fetch('https://example.com/x.js').catch(() => null)")  # awaited: aborted
    assert page.problems.foreign_requests == ["https://example.com/x.js"]


def test_the_page_ships_what_the_viewer_draws_byte_for_byte(open_page, material_site) -> None:
    """One engine: the static SVG a build wrote is the viewer's own drawing of that state."""
    page = open_page(material_site)
    _ready(page)
    html = page.evaluate("fetch(location.href).then(r => r.text())")
    for figure in ("model-trace-1", "model-trace-2", "model-trace-3"):
        shipped = re.search(rf'id="{figure}-svg".*?<g class="mt-viewport">(.*?)</g></svg>',
                            html, re.S).group(1)
        drawn = page.evaluate("""(id) => {
            const v = modelTraceViewer.viewers().find(v => v.id === id);
            return modelTrace.renderContent(v.model, v.layout.run(v.initial), v.initial,
                                            {prefix: id});
        }""", figure)
        assert drawn == shipped, figure
    page.problems.assert_clean()


def test_first_paint_needs_no_script_and_nothing_jumps(open_page, material_site) -> None:
    """With scripts off the static SVG is the whole figure, themed by the stylesheet alone;
    hydrating keeps every box where it was on the screen."""
    static = open_page(material_site, java_script_enabled=False)
    figure = "#model-trace-1"
    assert static.locator(f"{figure} .mt-toolbar").count() == 0
    node = "#model-trace-3 .mt-node.mt-cat-linear > rect"  # Small: linear and relu ops
    attribute = static.locator(node).first.get_attribute("fill")
    light = _colour(static, node, "fill")
    assert light != _colour(static, "#model-trace-3 .mt-node.mt-cat-activation > rect", "fill")
    static.evaluate("document.body.setAttribute('data-md-color-scheme', 'slate')")
    assert _luminance(_colour(static, node, "fill")) < 0.3 < _luminance(light)
    assert attribute.startswith("#")  # cairosvg's colour stays in the markup
    live = open_page(material_site)
    _ready(live)
    for item in ("model-trace-1", "model-trace-3"):
        static_rects = _screen_rects(static, item)
        live_rects = _screen_rects(live, item)
        assert set(static_rects) == set(live_rects)
        for key, rect in static_rects.items():
            assert live_rects[key] == pytest.approx(rect, abs=2.5), (item, key)
    static.problems.assert_clean()
    live.problems.assert_clean()


@pytest.mark.parametrize(("viewport", "rows"), [({"width": 1280, "height": 800}, 1),
                                             ({"width": 390, "height": 844}, 2)])
@pytest.mark.parametrize("page_name", ["", "deep/"])
def test_every_control_is_in_sight_and_nothing_jumps(open_page, material_site, viewport, rows,
                                                     page_name) -> None:
    """At 1280 px the toolbar is one row in the figure's column, at 390 px two rows (one row
    hid half of its controls sideways); nothing scrolls sideways, the figure is no wider than
    its column, and the page reserves the rows before the script runs."""
    static = open_page(material_site + page_name, viewport=viewport, java_script_enabled=False)
    live = open_page(material_site + page_name, viewport=viewport)
    _ready(live)
    bar = live.evaluate("""() => {
        const f = document.getElementById('model-trace-1'), t = f.querySelector('.mt-toolbar');
        const column = f.parentElement.getBoundingClientRect(), box = f.getBoundingClientRect();
        return {scrolled: t.scrollWidth - t.clientWidth, wider: box.width - column.width,
                controls: [...t.children].filter(c => getComputedStyle(c).display !== 'none')
            .map(c => { const r = c.getBoundingClientRect();
                        return [c.textContent || c.className, r.left - box.left,
                                box.right - r.right, Math.round(r.top)]; })};
    }""")
    assert bar["scrolled"] <= 0 and bar["wider"] <= 0.5, bar
    assert len(bar["controls"]) >= 8
    for name, left, right, _ in bar["controls"]:
        assert left >= -0.5 and right >= -0.5, name
    assert len({top for *_, top in bar["controls"]}) == rows
    static_rects = _screen_rects(static, "model-trace-1")
    for key, rect in _screen_rects(live, "model-trace-1").items():
        assert rect[:2] == pytest.approx(static_rects[key][:2], abs=2.5), key
    live.problems.assert_clean()


def test_a_fence_s_overlay_legend_has_its_strip_before_and_after_the_script(
        open_page, material_site) -> None:
    """A fence that names an overlay gets the legend's strip below the graph in the static page
    already: the frame keeps its height when the viewer takes over, and the legend covers no
    part of the graph."""
    static = open_page(material_site + "overlay/", java_script_enabled=False)
    live = open_page(material_site + "overlay/")
    _ready(live)
    frame = "#model-trace-1 .mt-canvas"
    assert live.locator(frame).bounding_box()["height"] == pytest.approx(
        static.locator(frame).bounding_box()["height"], abs=1.5)
    legend = live.locator("#model-trace-1 .mt-legend")
    assert legend.is_visible() and legend.inner_text().startswith("FLOPs")
    graph = live.locator("#model-trace-1 svg.mt-svg").bounding_box()
    assert legend.bounding_box()["y"] >= graph["y"] + graph["height"] - 0.5
    live.problems.assert_clean()


def _screen_rects(page: Any, figure: str) -> dict[str, list[float]]:
    return page.evaluate("""(f) => {
        const out = {};
        document.querySelectorAll(`#${f} [data-id] > rect`).forEach(r => {
            const b = r.getBoundingClientRect();
            out[r.parentNode.getAttribute('data-id')] = [b.left, b.top, b.width, b.height];
        });
        return out;
    }""", figure)


@pytest.mark.parametrize("viewport", [{"width": 1280, "height": 800},
                                      {"width": 390, "height": 844}])
def test_first_view_shows_the_whole_width_or_readable_text_with_a_minimap(
        open_page, material_site, viewport) -> None:
    page = open_page(material_site + "deep/", viewport=viewport)
    _ready(page)
    view = page.evaluate("""() => {
        const v = modelTraceViewer.viewers()[0], r = v.svg.getBoundingClientRect();
        return {k: v.view.k, x: v.view.x, width: v.placed.width, height: v.placed.height,
                cw: r.width, ch: r.height,
                minimap: getComputedStyle(v.minimap).display !== 'none'};
    }""")
    text_px = 12 * view["k"]
    whole_width = view["width"] * view["k"] <= view["cw"] + 1
    assert whole_width or text_px >= 8 - 1e-6
    assert text_px >= 8 - 1e-6 or whole_width
    if not whole_width:
        assert view["minimap"] and text_px == pytest.approx(8)
    # the frame is no taller than the graph needs, and no taller than its limit
    assert view["ch"] <= min(640, view["height"] * view["k"]) + 2
    page.problems.assert_clean()


def test_a_short_graph_gets_a_short_frame(open_page, material_site) -> None:
    page = open_page(material_site)
    _ready(page, "model-trace-3")
    frame = _rect(page, "#model-trace-3 .mt-canvas")["height"]
    height = page.evaluate("modelTraceViewer.viewers()[2].placed.height")
    assert frame <= height + 4 and frame < 500  # no empty space, no scrollbar
    page.problems.assert_clean()


# ------------------------------------------------------------------ expanding

def test_expand_shows_children_in_place_and_collapse_hides_them(open_page, material_site) -> None:
    page = open_page(material_site)
    _ready(page)
    before = _boxes(page)
    attention = _module(page, "layers.0.self_attn")
    assert "mt-open" not in attention.get_attribute("class")
    attention.focus()  # pans it into view
    on_screen = attention.locator("rect").bounding_box()
    _click(attention)
    page.wait_for_selector("#model-trace-1 .mt-module.mt-open[data-path='layers.0.self_attn']")
    opened = attention.locator("rect").first.bounding_box()
    # in place: the box grows from where it was on the screen
    assert (opened["x"], opened["y"]) == pytest.approx((on_screen["x"], on_screen["y"]), abs=1)
    assert opened["height"] > on_screen["height"]
    after = _boxes(page)
    module_id = attention.get_attribute("data-id")
    new = set(after) - set(before)
    assert new, "expanding showed no children"
    assert all(_inside(after[item], after[module_id]) for item in new)
    assert _integrity(page).total == 0
    page.locator(f"#model-trace-1 .mt-module[data-id='{module_id}'] > text").click()
    page.wait_for_selector(f"#model-trace-1 .mt-module:not(.mt-open)[data-id='{module_id}']")
    assert set(_boxes(page)) == set(before)
    page.problems.assert_clean()


@pytest.mark.parametrize("page_name", ["", "deep/"])
def test_every_sequence_of_expand_and_collapse_keeps_every_edge_end_to_end(
        open_page, material_site, page_name) -> None:
    """Open and close boxes in a fixed pseudo-random order: after every step each tensor is
    drawn from its producer, through ports, to each consumer, with no end off its box."""
    page = open_page(material_site + page_name)
    _ready(page)
    page.evaluate("window.__seed = 7")
    for _step in range(12):
        page.evaluate("""() => {
            const v = modelTraceViewer.viewers()[0], m = v.model;
            const groups = [...v.placed.boxes.keys()].filter(r => m.isOpenable(r) && r !== m.root);
            window.__seed = (window.__seed * 1103515245 + 12345) % 2147483648;
            v.toggle(groups[window.__seed % groups.length]);
        }""")
        report = _integrity(page)
        assert report.total == 0, str(report)
    page.locator("#model-trace-1 .mt-btn[aria-label='Expand every module']").click()
    assert _integrity(page).total == 0
    page.problems.assert_clean()


def test_opening_a_box_moves_the_rest_no_more_than_its_growth(open_page, material_site) -> None:
    page = open_page(material_site)
    _ready(page)
    for path in ("layers.0.linear1", "layers.1.self_attn", "layers.0.norm1"):
        before = _boxes(page)
        module = _module(page, path)
        module_id = module.get_attribute("data-id")
        _click(module)
        page.wait_for_selector(f"#model-trace-1 .mt-module.mt-open[data-path='{path}']")
        after = _boxes(page)
        grow_w = after[module_id][2] - before[module_id][2]
        grow_h = after[module_id][3] - before[module_id][3]
        assert grow_h > 0
        for item, (x, y, w, h) in before.items():
            if item == module_id or (w, h) != tuple(after[item][2:]):
                continue  # it, or an ancestor grown to hold it
            nx, ny = after[item][:2]
            assert abs(ny - y) <= grow_h + 1, (path, item)
            assert abs(nx - x) <= max(grow_w, 0) + 60, (path, item)
    page.problems.assert_clean()


def test_depth_control_and_expand_and_collapse_all(open_page, material_site) -> None:
    page = open_page(material_site)
    _ready(page)
    tree = _tree(page)
    depth = page.locator("#model-trace-1 .mt-depth")
    assert depth.input_value() == "1"
    for level in (2, 0, 1):
        depth.select_option(str(level))
        wanted = {i for i, item in tree.items.items()
                  if item.is_group and item.children and item.level <= level
                  and item.kind != "idle" and all(tree.items[a].level <= level for a in
                                                  _ancestors(tree, i))}
        page.wait_for_function("(n) => document.querySelectorAll("
                               "'#model-trace-1 .mt-module.mt-open').length === n",
                               arg=len(wanted))
        assert _open_groups(page) == wanted, level
    page.locator("#model-trace-1 .mt-btn[aria-label='Expand every module']").click()
    every_group = {item.id for item in tree.groups() if item.children}
    assert _open_groups(page) == every_group
    leaves = {i for i, item in tree.items.items() if not item.is_group and item.kind != "member"}
    assert set(_boxes(page)) >= leaves  # down to single ops
    page.locator("#model-trace-1 .mt-btn[aria-label^='Collapse to']").click()
    assert _open_groups(page) == {tree.root}
    assert set(_boxes(page)) == {tree.root, *tree.items[tree.root].children}
    page.problems.assert_clean()


def _ancestors(tree: ViewTree, item: str) -> list[str]:
    out, parent = [], tree.items[item].parent
    while parent is not None:
        out.append(parent)
        parent = tree.items[parent].parent
    return out


def test_direction_toggle_lays_the_graph_out_left_to_right(open_page, material_site) -> None:
    page = open_page(material_site)
    _ready(page, "model-trace-3")
    before = page.evaluate("modelTraceViewer.viewers()[2].placed")
    page.locator("#model-trace-3 .mt-btn[aria-label^='Lay the graph out']").click()
    after = page.evaluate("""() => { const p = modelTraceViewer.viewers()[2].placed;
                                     return {width: p.width, height: p.height}; }""")
    assert after["width"] / after["height"] > before["width"] / before["height"]
    assert "d:LR" in page.url
    assert _integrity(page, "model-trace-3").total == 0
    page.problems.assert_clean()


# ------------------------------------------------------------------ wheel, touch, keys

def test_plain_wheel_scrolls_the_page_until_the_figure_is_activated(open_page,
                                                                    material_site) -> None:
    page = open_page(material_site + "deep/")
    _ready(page)
    page.locator("#model-trace-1").scroll_into_view_if_needed()
    box = page.locator("#model-trace-1 svg.mt-svg").bounding_box()
    page.mouse.move(box["x"] + 200, box["y"] + 100)
    view, scrolled = _view(page), page.evaluate("window.scrollY")
    page.mouse.wheel(0, 200)
    page.wait_for_function(f"window.scrollY > {scrolled}")
    assert _view(page) == view  # the page scrolled, the graph did not move
    box = page.locator("#model-trace-1 svg.mt-svg").bounding_box()
    page.mouse.click(box["x"] + 5, box["y"] + 5)  # activates the figure
    assert "mt-active" in page.get_attribute("#model-trace-1", "class")
    scrolled = page.evaluate("window.scrollY")
    page.mouse.move(box["x"] + 200, box["y"] + 100)
    page.mouse.wheel(0, 120)
    page.wait_for_function(f"modelTraceViewer.viewers()[0].view.y < {view[1] - 100}")
    assert page.evaluate("window.scrollY") == scrolled
    # Ctrl+wheel zooms about the pointer, active or not
    point = [box["x"] + 200, box["y"] + 100]
    at = page.evaluate("(p) => modelTraceViewer.viewers()[0].toGraph(p[0], p[1])", point)
    k = _view(page)[2]
    page.keyboard.down("Control")
    page.mouse.wheel(0, -300)
    page.keyboard.up("Control")
    page.wait_for_function(f"modelTraceViewer.viewers()[0].view.k > {k}")
    assert page.evaluate("(p) => modelTraceViewer.viewers()[0].toGraph(p[0], p[1])", point) \
        == pytest.approx(at, abs=0.5)
    page.mouse.click(5, 5)  # outside: the page has the wheel again
    assert "mt-active" not in page.get_attribute("#model-trace-1", "class")
    page.problems.assert_clean()


def _touch(page: Any, kind: str, points: list[tuple[float, float]]) -> None:
    session = page.context.new_cdp_session(page) if not hasattr(page, "_cdp") else page._cdp
    page._cdp = session
    session.send("Input.dispatchTouchEvent", {
        "type": kind, "touchPoints": [{"x": x, "y": y, "id": i} for i, (x, y) in
                                      enumerate(points)]})


def test_on_a_phone_a_swipe_scrolls_the_page_and_a_tap_activates_the_figure(
        open_page, material_site) -> None:
    page = open_page(material_site + "deep/", viewport={"width": 390, "height": 844},
                     has_touch=True, is_mobile=True)
    _ready(page)
    page.evaluate("document.getElementById('model-trace-1').scrollIntoView({block: 'center'})")
    box = page.locator("#model-trace-1 svg.mt-svg").bounding_box()
    x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    view, scrolled = _view(page), page.evaluate("window.scrollY")
    _touch(page, "touchStart", [(x, y)])
    for step in range(1, 8):
        _touch(page, "touchMove", [(x, y - 30 * step)])
    _touch(page, "touchEnd", [])
    page.wait_for_timeout(400)
    assert page.evaluate("window.scrollY") > scrolled  # the page scrolled
    assert _view(page)[:2] == pytest.approx(view[:2], abs=0.5)
    page.evaluate("document.getElementById('model-trace-1').scrollIntoView({block: 'center'})")
    box = page.locator("#model-trace-1 svg.mt-svg").bounding_box()
    page.touchscreen.tap(box["x"] + 10, box["y"] + 10)
    page.wait_for_selector("#model-trace-1.mt-active")
    x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    view, scrolled = _view(page), page.evaluate("window.scrollY")
    _touch(page, "touchStart", [(x, y)])
    for step in range(1, 6):
        _touch(page, "touchMove", [(x + 10 * step, y + 10 * step)])
    _touch(page, "touchEnd", [])
    page.wait_for_timeout(200)
    assert _view(page)[0] > view[0] + 20  # now the graph pans
    k = _view(page)[2]
    _touch(page, "touchStart", [(x - 40, y), (x + 40, y)])
    for step in range(1, 6):
        _touch(page, "touchMove", [(x - 40 - 15 * step, y), (x + 40 + 15 * step, y)])
    _touch(page, "touchEnd", [])
    page.wait_for_timeout(200)
    assert _view(page)[2] > k * 1.5  # pinch zooms
    page.problems.assert_clean()


def test_keyboard_toggles_selects_zooms_and_searches(open_page, material_site) -> None:
    page = open_page(material_site)
    _ready(page)
    module = _module(page, "layers.0.norm2")
    module.focus()
    page.keyboard.press("Enter")
    page.wait_for_selector("#model-trace-1 .mt-module.mt-open[data-path='layers.0.norm2']")
    assert page.evaluate("document.activeElement.getAttribute('data-path')") == "layers.0.norm2"
    page.keyboard.press(" ")  # Space selects
    page.wait_for_selector("#model-trace-1 .mt-module.mt-selected[data-path='layers.0.norm2']")
    page.keyboard.press("Enter")
    page.wait_for_selector("#model-trace-1 .mt-module:not(.mt-open)[data-path='layers.0.norm2']")
    x, y, k = _view(page)
    page.keyboard.press("+")
    assert _view(page)[2] == pytest.approx(k * 1.25)
    x, y, k = _view(page)
    page.keyboard.press("ArrowLeft")
    page.keyboard.press("Shift+ArrowUp")
    assert _view(page) == pytest.approx((x + 40, y + 200, k))
    page.keyboard.press("/")
    assert page.evaluate("document.activeElement.classList.contains('mt-search')")
    page.problems.assert_clean()


def test_tab_follows_reading_order_and_labels_are_what_boxes_say(open_page,
                                                                 material_site) -> None:
    page = open_page(material_site)
    _ready(page)
    items = page.evaluate("""() => [...document.querySelectorAll(
        '#model-trace-1 .mt-viewport [tabindex="0"]')].map(g => {
            const r = g.querySelector('rect'), t = g.querySelector('text');
            return {id: g.getAttribute('data-id'), label: g.getAttribute('aria-label'),
                    text: t && t.textContent, x: +r.getAttribute('x'), y: +r.getAttribute('y'),
                    parent: modelTraceViewer.viewers()[0].placed.boxes.get(
                        modelTraceViewer.viewers()[0].model.byId.get(g.getAttribute('data-id'))).parent};
        })""")
    assert all(item["label"] == item["text"] for item in items)
    siblings: dict[Any, list[dict[str, Any]]] = {}
    for item in items:
        siblings.setdefault(item["parent"], []).append(item)
    for group in siblings.values():  # inside each box: top to bottom, then left to right
        keys = [(round(i["y"]), i["x"]) for i in group]
        assert keys == sorted(keys)
    page.locator("#model-trace-1 .mt-toolbar > :last-child").focus()
    page.keyboard.press("Tab")  # from the toolbar straight into the graph, its first box
    assert page.evaluate("document.activeElement.getAttribute('data-id')") == items[0]["id"]
    page.problems.assert_clean()


def test_a_focused_box_is_not_hidden_under_the_sticky_header(open_page, material_site) -> None:
    page = open_page(material_site + "deep/")
    _ready(page)
    page.evaluate("window.scrollTo(0, document.getElementById('model-trace-1')"
                  ".getBoundingClientRect().bottom + window.scrollY - 40)")
    first = page.locator("#model-trace-1 .mt-viewport [tabindex='0']").first
    first.focus()
    page.wait_for_timeout(200)
    header = _rect(page, ".md-header")["bottom"]
    box = first.locator("rect").bounding_box()
    assert box["y"] >= header
    page.problems.assert_clean()


# ------------------------------------------------------------------ selection and panel

def test_selection_colours_inputs_and_outputs_through_every_level(open_page,
                                                                  material_site) -> None:
    page = open_page(material_site)
    _ready(page)
    _click(_module(page, "layers.0.self_attn"))
    page.wait_for_selector("#model-trace-1 .mt-open[data-path='layers.0.self_attn']")
    node = page.locator("#model-trace-1 .mt-node", has_text="transpose").last
    _click(node)  # its input comes from inside, its output leaves the box
    page.wait_for_selector("#model-trace-1 .mt-node.mt-selected")
    ins = page.locator("#model-trace-1 .mt-edge.mt-in")
    outs = page.locator("#model-trace-1 .mt-edge.mt-out")
    assert ins.count() >= 1 and outs.count() >= 2
    # the output chain leaves the open box through its port and goes on outside
    sources = [outs.nth(i).get_attribute("data-src") for i in range(outs.count())]
    assert any(":out:" in s for s in sources)
    assert _colour(page, "#model-trace-1 .mt-edge.mt-in path", "stroke") != \
        _colour(page, "#model-trace-1 .mt-edge.mt-out path", "stroke")
    panel = page.locator("#model-trace-1 .mt-panel")
    text = panel.inner_text().lower()
    assert "inputs (1)" in text and "outputs (1)" in text and "dropout1: dropout" in text
    assert "(2, 8, 32) float32" in panel.inner_text() or "(8, 2, 32) float32" in \
        panel.inner_text()
    page.problems.assert_clean()


def test_a_reveal_button_opens_centres_and_selects_the_producer(open_page,
                                                                material_site) -> None:
    page = open_page(material_site)
    _ready(page)
    _click(page.locator("#model-trace-1 .mt-node.mt-kind-output"))
    panel = page.locator("#model-trace-1 .mt-panel")
    panel.wait_for(state="visible")
    panel.locator(".mt-reveal").first.click()
    selected = page.locator("#model-trace-1 .mt-selected")
    selected.wait_for()
    assert selected.get_attribute("data-id") in page.evaluate(
        "[...modelTraceViewer.viewers()[0].placed.boxes.keys()].map(r => "
        "modelTraceViewer.viewers()[0].model.ids[r])")
    canvas, box = _rect(page, "#model-trace-1 .mt-canvas"), selected.locator("rect").bounding_box()
    centre = (box["x"] + box["width"] / 2, box["y"] + min(box["height"], 200) / 2)
    assert canvas["left"] < centre[0] < canvas["right"]
    assert canvas["top"] < centre[1] < canvas["bottom"]
    page.problems.assert_clean()


def test_zoomed_out_labels_become_bars(open_page, material_site) -> None:
    page = open_page(material_site)
    _ready(page)
    assert page.locator("#model-trace-1 .mt-bar").count() == 0
    for _ in range(6):
        page.locator("#model-trace-1 .mt-btn[aria-label='Zoom out (-)']").click()
    assert _view(page)[2] * 12 < 8
    assert page.locator("#model-trace-1 .mt-bar").count() > 10
    assert page.locator("#model-trace-1 .mt-node > text").count() == 0
    page.problems.assert_clean()


def test_hover_shows_shapes_dtypes_params_and_flops(open_page, material_site) -> None:
    page = open_page(material_site)
    _ready(page, "model-trace-3")  # Small: first (Linear 8->16), relu, second (Linear 16->4)
    tooltip = page.locator("#model-trace-3 .mt-tooltip")
    page.locator("#model-trace-3 .mt-module[data-path='first'] > text").hover()
    tooltip.wait_for(state="visible")
    assert "first: Linear" in tooltip.inner_text()
    assert "params: 144" in tooltip.inner_text() and "FLOPs: 768" in tooltip.inner_text()
    # the SVG's own <title> is put aside meanwhile: no second, native tooltip
    assert page.locator("#model-trace-3 .mt-module[data-path='first'] > title").count() == 0
    page.locator("#model-trace-3 .mt-node", has_text="relu").hover()
    page.wait_for_function("document.querySelector('#model-trace-3 .mt-tooltip')"
                           ".textContent.startsWith('relu')")
    assert "in: (3, 16) float32" in tooltip.inner_text()
    assert "out: (3, 16) float32" in tooltip.inner_text()
    assert page.locator("#model-trace-3 .mt-module[data-path='first'] > title").count() == 1
    page.mouse.move(1, 1)
    tooltip.wait_for(state="hidden")
    page.problems.assert_clean()


def test_search_highlights_matches_and_enter_reveals_them(open_page, material_site) -> None:
    page = open_page(material_site)
    _ready(page)
    search = page.locator("#model-trace-1 .mt-search")
    search.fill("linear2")
    page.wait_for_selector("#model-trace-1 .mt-match")
    matches = page.locator("#model-trace-1 .mt-match")
    assert matches.count() == 2  # layers.0.linear2 and layers.1.linear2, both visible
    search.fill("multi_head_attention_forward")  # inside closed modules: their holders glow
    page.wait_for_selector("#model-trace-1 .mt-holds-match")
    search.press("Enter")
    page.wait_for_selector("#model-trace-1 .mt-node.mt-match.mt-selected")
    assert "1 of 2" in page.locator("#model-trace-1 .mt-count").first.inner_text()
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


def test_a_link_restores_open_boxes_selection_overlay_and_the_view(open_page,
                                                                   material_site) -> None:
    page = open_page(material_site)
    _ready(page)
    _click(_module(page, "layers.1.self_attn"))
    page.wait_for_selector("#model-trace-1 .mt-module.mt-open[data-path='layers.1.self_attn']")
    _click(page.locator("#model-trace-1 .mt-node", has_text="multi_head_attention_forward"))
    page.locator("#model-trace-1 .mt-panel").wait_for(state="visible")
    page.locator("#model-trace-1 .mt-overlay").select_option("params")
    page.keyboard.press("Escape")  # back to the figure's keys
    page.locator("#model-trace-1 .mt-btn[aria-label='Zoom in (+)']").click()
    page.wait_for_function("location.hash.includes('v:')")
    page.wait_for_timeout(400)  # the view goes to the URL once it stops changing
    url, view = page.url, _view(page)
    assert "#model-trace-1=" in url and "o:params" in url
    expected = _boxes(page)
    again = open_page(url)
    _ready(again)
    assert _boxes(again) == expected
    assert _view(again) == pytest.approx(view, abs=0.2)
    assert "multi_head_attention_forward" in again.locator("#model-trace-1 .mt-panel").inner_text()
    assert again.locator("#model-trace-1 .mt-overlay").input_value() == "params"
    assert again.locator("#model-trace-1 .mt-legend").is_visible()
    again.problems.assert_clean()


# ------------------------------------------------------------------ themes and overlays

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


@pytest.mark.parametrize(("overlay", "name", "page_name"), [
    ("flops", "FLOPs", ""), ("params", "parameters", ""), ("weights", "weights read", ""),
    ("activations", "activations written", ""), ("workspace", "workspace written", "deep/"),
    ("time", "est. time", "")])
def test_overlay_colours_boxes_by_their_figure_with_readable_text(
        open_page, material_site, overlay: str, name: str, page_name: str) -> None:
    """Each kind of bytes apart, named for what it counts (the workspace of DeepSeek-V3's
    caches and dequantised weights: the encoder writes none)."""
    page = open_page(material_site + page_name)
    _ready(page)
    page.locator("#model-trace-1 .mt-overlay").select_option(overlay)
    legend = page.locator("#model-trace-1 .mt-legend")
    legend.wait_for(state="visible")
    assert legend.inner_text().startswith(name)
    graph = page.locator("#model-trace-1 svg.mt-svg").bounding_box()
    assert legend.bounding_box()["y"] >= graph["y"] + graph["height"] - 0.5, \
        "the legend covers the graph: it belongs in the strip below it"
    if overlay == "time":
        assert re.search(r"\d (ns|µs|ms|s) \(log scale\)", legend.inner_text())
    assert f"o:{overlay}" in page.url
    heat = page.evaluate("""(overlay) => {
        const v = modelTraceViewer.viewers()[0];
        return [...v.figure.querySelectorAll('.mt-heat')].map(g => [
            v.model.overlay[overlay][v.model.byId.get(g.getAttribute('data-id'))],
            g.querySelector('rect').getAttribute('fill'),
            g.querySelector('text').getAttribute('fill'),
            getComputedStyle(g.querySelector('rect')).fill]);
    }""", overlay)
    assert len({fill for _, fill, _, _ in heat}) >= 2
    for _value, fill, text, shown in heat:
        assert page.evaluate("([a, b]) => modelTrace.contrast(a, b)", [fill, text]) >= 4.5
        assert _luminance(shown) == pytest.approx(_luminance(_hex_to_rgb(fill)), abs=0.01)
    by_figure = sorted(heat, key=lambda row: row[0])
    shades = [_luminance(_hex_to_rgb(fill)) for _, fill, _, _ in by_figure]
    assert shades == sorted(shades, reverse=True)  # more is darker
    page.locator("#model-trace-1 .mt-overlay").select_option("none")
    legend.wait_for(state="hidden")
    assert page.locator("#model-trace-1 .mt-heat").count() == 0
    page.problems.assert_clean()


def _hex_to_rgb(colour: str) -> str:
    return "rgb({}, {}, {})".format(*(int(colour[i:i + 2], 16) for i in (1, 3, 5)))


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


# ------------------------------------------------------------------ downloads, printing

def test_downloads_json_svg_and_png_of_the_current_view(open_page, material_site) -> None:
    page = open_page(material_site)
    _ready(page)
    data = json.loads(page.evaluate(
        "document.querySelector('#model-trace-1 template.mt-data').content.textContent"))
    with page.expect_download() as json_download:
        page.locator("#model-trace-1 .mt-save").select_option("json")
    assert Path(json_download.value.path()).read_text(encoding="utf-8") == \
        decode_graph(data).to_json()
    _click(_module(page, "layers.0.self_attn"))  # the current view, not the first one
    page.wait_for_selector("#model-trace-1 .mt-open[data-path='layers.0.self_attn']")
    page.evaluate("document.body.setAttribute('data-md-color-scheme', 'slate')")
    with page.expect_download() as svg_download:
        page.locator("#model-trace-1 .mt-save").select_option("svg")
    text = Path(svg_download.value.path()).read_text(encoding="utf-8")
    svg = ET.fromstring(text)
    texts = {t.text for t in svg.iter("{http://www.w3.org/2000/svg}text")}
    assert "multi_head_attention_forward" in texts and "norm1: LayerNorm" in texts
    assert "color(" not in text and "var(" not in text  # plain colours cairosvg can read
    background = svg.find("{http://www.w3.org/2000/svg}rect").get("fill")
    assert _luminance(_hex_to_rgb(background)) < 0.3  # the dark theme the reader sees
    with page.expect_download() as png_download:
        page.locator("#model-trace-1 .mt-save").select_option("png")
    png = Path(png_download.value.path()).read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", png[16:24])
    assert abs(width - 2 * float(svg.get("width"))) <= 2
    assert abs(height - 2 * float(svg.get("height"))) <= 2
    page.problems.assert_clean()


def test_a_fence_without_downloads_has_no_save_menu(open_page, material_site) -> None:
    """``downloads: false``: the figure's toolbar offers no download; everything else (the
    search, the overlay and direction menus) is there, as on a figure with downloads."""
    counts = []
    for path in ("", "shown/"):
        page = open_page(material_site + path)
        _ready(page)
        toolbar = page.locator("#model-trace-1 .mt-toolbar")
        counts.append((toolbar.locator(".mt-save").count(),
                       toolbar.locator("select, input").count()))
        page.problems.assert_clean()
    (saves_with, controls_with), (saves_without, controls_without) = counts
    assert (saves_with, saves_without) == (1, 0)
    assert controls_without == controls_with - 1 > 0


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
    page.emulate_media(media="print")
    page.wait_for_function(f"""() => !{str(scripts).lower()} ||
        document.querySelector('{figure} svg.mt-svg').hasAttribute('viewBox')""")
    page_width = page.evaluate("document.documentElement.clientWidth")
    svg = _rect(page, f"{figure} svg.mt-svg")
    assert svg["left"] > 0 and svg["right"] <= page_width
    assert _contains(svg, _rect(page, f"{figure} .mt-viewport"))  # nothing cut off
    if scripts:
        assert not page.locator(f"{figure} .mt-toolbar").is_visible()
        page.emulate_media(media="screen")
        page.wait_for_function(
            f"!document.querySelector('{figure} svg.mt-svg').hasAttribute('viewBox')")
        assert page.locator(f"{figure} .mt-toolbar").is_visible()
    page.problems.assert_clean()


# ------------------------------------------------------------------ escaping, repeats

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
        page.locator("#model-trace-2 .mt-save").select_option("svg")
    svg = ET.parse(svg_download.value.path()).getroot()  # well-formed, or this raises
    assert f"blocks.{NASTY}: Linear" in {t.text for t in svg.iter("{http://www.w3.org/2000/svg}text")}
    page.problems.assert_clean()


def test_repeats_unfold_into_their_members_and_fold_back(open_page, material_site) -> None:
    page = open_page(material_site + "next/")
    _ready(page, "model-trace-2")
    folded = page.locator("#model-trace-2 .mt-module.mt-folded")
    assert folded.count() == 1
    assert folded.locator("text").text_content() == (
        "layers.0\u20131: TransformerEncoderLayer \u00d72")
    folded.focus()
    folded.locator("rect").first.click(modifiers=["Alt"])
    member = page.locator("#model-trace-2 .mt-kind-member")
    member.wait_for()
    assert member.locator("text").text_content() == "layers.1: TransformerEncoderLayer"
    assert page.locator("#model-trace-2 .mt-module.mt-folded").count() == 0
    assert ";u:" in page.url
    _click(member)  # a member shows its own figures
    assert "2 of 2" in page.locator("#model-trace-2 .mt-panel").inner_text()
    assert _integrity(page, "model-trace-2").total == 0
    representative = page.locator("#model-trace-2 .mt-module[data-path='layers.0']")
    representative.focus()
    page.keyboard.press("u")
    page.wait_for_selector("#model-trace-2 .mt-module.mt-folded")
    assert page.locator("#model-trace-2 .mt-kind-member").count() == 0
    page.problems.assert_clean()
