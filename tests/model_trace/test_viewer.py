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

from model_trace.view_data import decode_graph

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
        "plugins": [{"model-trace": {"allowed_roots": ["viewer_models", "torch"],
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


def test_page_hydrates_without_errors_or_foreign_requests(open_page, material_site) -> None:
    page = open_page(material_site)
    for figure in ("model-trace-1", "model-trace-2", "model-trace-3"):
        _ready(page, figure)
    assert page.locator("#model-trace-1 .mt-toolbar button").count() >= 8
    page.wait_for_function("!!window.dagre")  # preloaded from this site when idle
    page.problems.assert_clean()


def test_expand_shows_children_and_collapse_hides_them(open_page, material_site) -> None:
    page = open_page(material_site)
    _ready(page)
    before = _boxes(page)
    attention = _module(page, "layers.0.self_attn")
    assert "mt-open" not in attention.get_attribute("class")
    _click(attention)
    page.wait_for_selector("#model-trace-1 .mt-module.mt-open[data-path='layers.0.self_attn']")
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
        _click(module)
        page.wait_for_selector(f"#model-trace-1 .mt-module.mt-open[data-path='{path}']")
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
    url = page.url
    assert "#model-trace-1=" in url
    expected = _boxes(page)
    again = open_page(url)
    _ready(again)
    again.wait_for_selector("#model-trace-1 .mt-module.mt-open[data-path='layers.1.self_attn']")
    assert set(_boxes(again)) == set(expected)
    assert "multi_head_attention_forward" in again.locator("#model-trace-1 .mt-panel").inner_text()
    again.problems.assert_clean()


def _colour(page: Any, selector: str, prop: str) -> str:
    return page.evaluate("([s, p]) => getComputedStyle(document.querySelector(s))[p]",
                         [selector, prop])


def _luminance(colour: str) -> float:
    r, g, b = (int(v) for v in re.findall(r"[\d.]+", colour)[:3])
    return (0.2126 * r + 0.7152 * g + 0.0722 * b) / 255


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
    transform = page.locator("#model-trace-1 .mt-viewport").get_attribute("transform")
    page.keyboard.press("+")
    assert page.locator("#model-trace-1 .mt-viewport").get_attribute("transform") != transform
    page.keyboard.press("/")
    assert page.evaluate("document.activeElement.classList.contains('mt-search')")
    page.problems.assert_clean()


def test_downloads_json_svg_and_png(open_page, material_site) -> None:
    page = open_page(material_site)
    _ready(page)
    data = json.loads(page.locator("#model-trace-1 script.mt-data").text_content())
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


def test_overlay_colours_boxes_and_shows_a_legend(open_page, material_site) -> None:
    page = open_page(material_site)
    _ready(page)
    page.locator("#model-trace-1 .mt-overlay").select_option("flops")
    legend = page.locator("#model-trace-1 .mt-legend")
    legend.wait_for(state="visible")
    assert "FLOPs" in legend.inner_text()
    fill = page.locator("#model-trace-1 .mt-node.mt-heat > rect").first.get_attribute("style")
    assert fill and fill.startswith("fill:rgb(")
    assert "o:flops" in page.url
    page.problems.assert_clean()


def test_names_and_arguments_are_escaped(open_page, material_site) -> None:
    page = open_page(material_site)
    _ready(page, "model-trace-2")
    label = page.locator("#model-trace-2 .mt-module[data-path] > text").last.text_content()
    assert label.startswith(NASTY)
    assert page.locator("#model-trace-2 script").count() == 1  # only the view data
    page.locator("#model-trace-2 .mt-node", has_text="tagged").click()
    panel = page.locator("#model-trace-2 .mt-panel")
    panel.wait_for(state="visible")
    assert repr(NASTY) in panel.inner_text()
    page.problems.assert_clean()


def test_repeats_unfold_into_their_members_and_fold_back(open_page, material_site) -> None:
    page = open_page(material_site + "next/")
    _ready(page, "model-trace-2")
    folded = page.locator("#model-trace-2 .mt-module.mt-folded")
    assert folded.count() == 1
    assert folded.locator("text").text_content().endswith("\u00d72")
    folded.focus()
    folded.click(modifiers=["Alt"])
    member = page.locator("#model-trace-2 .mt-kind-member")
    member.wait_for()
    assert member.locator("text").text_content() == "1: TransformerEncoderLayer"
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
