"""Authoring fences in a real MkDocs site, driven in headless Chromium: marks and notes in
the viewer through expand and collapse, a comparison's figures and table, named dimensions."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from model_trace.annotate import Annotations
from model_trace.integrity import check_figure
from model_trace.view_data import decode_graph
from model_trace.view_tree import ViewTree

ANNOTATED = """\
```model-trace
model: torch.nn:TransformerEncoderLayer
args: {d_model: 32, nhead: 4, dim_feedforward: 64, batch_first: true}
inputs: [[2, 8, 32]]
depth: 0
dims: {2: B, 8: S, 32: d_model}
highlight: {self_attn: blue, relu: red}
labels: {linear2: back to d_model}
notes: {self_attn: Attention mixes the positions., linear1: The feed-forward widens.}
hide: [dropout1, dropout2]
```
"""
COMPARE = """\
```model-trace
model: deepseek-v3
config: tiny
focus: layers.0.attn
depth: 1
compare: {attn_impl: [naive, absorb]}
notes: {wkv_b: Naive calls it; absorb reads its weight.}
caption: MLA, naive and absorbed
```
"""


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory, serve) -> tuple[Path, str]:
    import yaml
    from mkdocs.commands.build import build
    from mkdocs.config import load_config

    root = tmp_path_factory.mktemp("authoring")
    (root / "docs").mkdir()
    (root / "docs" / "index.md").write_text("# Marks\n\n" + ANNOTATED, encoding="utf-8")
    (root / "docs" / "compare.md").write_text("# Compare\n\n" + COMPARE, encoding="utf-8")
    config = {"site_name": "authoring", "markdown_extensions": ["pymdownx.superfences"],
              "theme": {"name": "material", "font": False},
              "plugins": [{"model-trace": {"cache": False}}]}
    (root / "mkdocs.yml").write_text(yaml.safe_dump(config), encoding="utf-8")
    loaded = load_config(str(root / "mkdocs.yml"), strict=True)
    build(loaded)
    folder = Path(loaded.site_dir)
    return folder, serve(folder)


def _svg(page: Any, figure: str) -> str:
    return page.evaluate("(f) => document.querySelector(`#${f} svg.mt-svg`).outerHTML", figure)


def _tree(page: Any, figure: str) -> ViewTree:
    """The figure's view tree as the build made it, annotations included."""
    import json

    data = json.loads(page.evaluate(
        "(f) => document.querySelector(`#${f} template.mt-data`).content.textContent", figure))
    tree = ViewTree.from_graph(decode_graph(data), show_constants=data["view"]["show_constants"])
    Annotations(hide=("dropout1", "dropout2")).apply(tree)
    return tree


def test_marks_and_notes_follow_the_reader_through_expand_and_collapse(site, open_page) -> None:
    _, url = site
    page = open_page(url)
    page.wait_for_selector("#model-trace-1[data-mt-ready]")
    figure = page.locator("#model-trace-1")
    attention = figure.locator(".mt-module[data-path='self_attn']")
    outline = attention.locator(":scope > .mt-marks > rect")
    assert outline.get_attribute("stroke") == "#0969da"
    badges = figure.locator(".mt-note-badge text")
    assert sorted(badges.all_text_contents()) == ["1", "2"]
    # the two residual dropouts are gone (their tensors drawn past them), the third stays
    svg = _svg(page, "model-trace-1")
    assert 'data-path="dropout1"' not in svg and 'data-path="dropout2"' not in svg
    assert 'data-path="dropout"' in svg
    assert figure.locator(".mt-module[data-path='linear2'] > text").text_content() == \
        "back to d_model"
    assert ">(B, S, d_model)</text>" in _svg(page, "model-trace-1")
    # open self_attn: its outline and badge stay on it, and the figure stays whole
    attention.focus()
    attention.locator("rect").first.click()
    figure.locator(".mt-module[data-path='self_attn'][aria-expanded='true']").wait_for()
    assert figure.locator(".mt-module[data-path='self_attn'] > .mt-marks .mt-note-badge") \
        .count() == 1
    tree = _tree(page, "model-trace-1")
    report = check_figure(_svg(page, "model-trace-1"), tree.graph, tree.parents())
    assert report.total == 0, report
    # a note under the figure opens the figure at its item and selects it
    page.locator("#model-trace-1 .mt-note-ref", has_text="linear1").click()
    figure.locator(".mt-module[data-path='linear1'].mt-selected").wait_for()
    assert "Dimensions: B = 2, S = 8, d_model = 32" in figure.locator(".mt-dims").inner_text()
    page.problems.assert_clean()


def test_a_comparison_shows_both_variants_marked_and_a_table(site, open_page) -> None:
    folder, url = site
    html = (folder / "compare" / "index.html").read_text(encoding="utf-8")
    assert html.count('<figure class="model-trace"') == 2
    assert "MLA, naive and absorbed" in html and 'class="mt-compare-table"' in html
    page = open_page(url + "compare/")
    for figure in ("model-trace-1-1", "model-trace-1-2"):
        page.wait_for_selector(f"#{figure}[data-mt-ready]")
        assert page.get_attribute(f"#{figure}", "data-mt-ready") == ""
    naive = page.locator("#model-trace-1-1")
    marked = naive.locator(".mt-node:has(> .mt-marks)")
    assert marked.count() >= 10
    # an op only the naive branch runs says so in its panel
    cat = naive.locator(".mt-node", has=page.locator("text", has_text=re.compile("^cat$"))).last
    cat.focus()
    page.keyboard.press("Enter")
    panel = naive.locator(".mt-panel")
    panel.wait_for()
    assert "only in" in panel.inner_text() and "attn_impl: naive" in panel.inner_text()
    rows = page.locator(".mt-compare-table tr.mt-differs th").all_inner_texts()
    assert "FLOPs" in rows and "ops: matmul" in rows
    page.problems.assert_clean()
