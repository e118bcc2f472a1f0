"""Notebooks: ``model_trace.show`` and ``Graph._repr_html_`` run in a real Jupyter kernel
(nbclient), their outputs put in one page as a notebook front end does and driven in
headless Chromium: interactive figures, offline; ``save`` writes each format."""

from __future__ import annotations

import json
import os
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import torch

import model_trace
from model_trace.errors import SpecError

CELLS = [
    "import torch, model_trace\n"
    "from torch import nn\n"
    "model = nn.TransformerEncoderLayer(32, 4, dim_feedforward=64, batch_first=True).eval()\n"
    "x = torch.randn(2, 8, 32)",
    "model_trace.show(model, x, depth=1, highlight={'self_attn': 'blue'},\n"
    "                 notes={'norm1': 'The residual stream is normalised here.'})",
    "model_trace.show(model, x, dims='auto', depth=0)",
    "graph = model_trace.trace(nn.Sequential(nn.Linear(4, 8), nn.ReLU()), torch.randn(3, 4))\n"
    "graph",
]


@pytest.fixture(scope="module")
def outputs(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    """The text/html of each displayed figure, from a notebook run in a real kernel."""
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    notebook = nbformat.v4.new_notebook()
    notebook.cells = [nbformat.v4.new_code_cell(source) for source in CELLS]
    folder = tmp_path_factory.mktemp("notebook")
    client = nbclient.NotebookClient(notebook, timeout=300, kernel_name="python3",
                                     resources={"metadata": {"path": str(folder)}})
    # the kernel imports model_trace from the tree under test
    root = Path(model_trace.__file__).resolve().parents[1]
    before = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(root), str(root.parent), before)
                                               if p)
    try:
        client.execute()
    finally:
        if before is None:
            os.environ.pop("PYTHONPATH")
        else:
            os.environ["PYTHONPATH"] = before
    found = []
    for cell in notebook.cells:
        for output in cell.get("outputs", []):
            assert output.get("output_type") != "error", output
            html = output.get("data", {}).get("text/html")
            if html:
                found.append(html)
    return found


def test_each_figure_is_html_and_the_viewer_comes_once(outputs: list[str]) -> None:
    assert len(outputs) == 3
    assert all('<figure class="model-trace"' in html for html in outputs)
    assert "modelTraceViewer" in outputs[0] and "<style>" in outputs[0]
    for later in outputs[1:]:
        assert "<style>" not in later and len(later) < len(outputs[0]) / 3
        assert "window.modelTraceViewer.hydrate(document)" in later
    ids = [html.split('id="', 1)[1].split('"', 1)[0] for html in outputs]
    assert len(set(ids)) == 3  # one page, three figures: no two share an id
    assert "The residual stream is normalised here." in outputs[0]
    assert "Dimensions: B = 2, S = 8, d_model = 32" in outputs[1]


def test_the_outputs_are_interactive_in_chromium_and_offline(outputs: list[str], tmp_path: Path,
                                                             open_page, serve) -> None:
    page_html = ("<!DOCTYPE html><html><head><meta charset='utf-8'></head><body>"
                 + "".join(f"<div class='output'>{html}</div>" for html in outputs)
                 + "</body></html>")
    (tmp_path / "notebook.html").write_text(page_html, encoding="utf-8")
    page = open_page(serve(tmp_path) + "notebook.html")
    figures = page.locator("figure.model-trace")
    assert figures.count() == 3
    for index in range(3):
        figure = figures.nth(index)
        figure.locator("xpath=self::*[@data-mt-ready]").wait_for()
        assert figure.get_attribute("data-mt-ready") == ""
        assert figure.locator(".mt-toolbar").count() == 1
    # a click opens a box in the second figure (the viewer of the first drives it)
    second = figures.nth(1)
    closed = second.locator(".mt-module[data-path='self_attn']")
    assert closed.get_attribute("aria-expanded") == "false"
    item = closed.get_attribute("data-id")
    closed.focus()  # the viewer brings a focused item into view
    closed.locator("rect").first.click()
    second.locator(f".mt-module[data-id='{item}'][aria-expanded='true']").wait_for()
    # the note under the first figure opens the figure at its item
    first = figures.nth(0)
    first.locator(".mt-note-ref").click()
    first.locator(".mt-panel:not([hidden])").wait_for()
    assert "norm1" in first.locator(".mt-panel h4").inner_text()
    page.problems.assert_clean()


def test_save_writes_each_format(tmp_path: Path) -> None:
    figure = model_trace.show(torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU()),
                              torch.randn(3, 4), depth=1, caption="Tiny")
    page = figure.save(tmp_path / "fig.html").read_text(encoding="utf-8")
    assert page.startswith("<!DOCTYPE html>") and "<script>" in page and "Tiny" in page
    svg = figure.save(tmp_path / "fig.svg").read_text(encoding="utf-8")
    assert ET.fromstring(svg).tag.endswith("svg")
    assert figure.save(tmp_path / "fig.png").read_bytes().startswith(b"\x89PNG")
    data = json.loads(figure.graph.save(tmp_path / "graph.json").read_text())
    assert data["root"] == figure.graph.root
    with pytest.raises(model_trace.ModelTraceError, match="suffix"):
        figure.save(tmp_path / "fig.pdf")


def test_options_are_checked_as_fence_fields() -> None:
    model, x = torch.nn.Linear(4, 2), torch.randn(3, 4)
    with pytest.raises(SpecError, match="unknown option 'dpeth'"):
        model_trace.show(model, x, dpeth=2)
    with pytest.raises(SpecError, match="field 'overlay'"):
        model_trace.show(model, x, overlay="heat")
    backward = model_trace.show(model, x, graph="backward", loss=lambda y: y.pow(2).mean())
    assert "PowBackward0" in backward.html(viewer=False)
