"""``model-trace render``: one spec file to a standalone page, an SVG, a PNG or the graph JSON."""

from __future__ import annotations

from pathlib import Path

import pytest

from model_trace.cli import main
from model_trace.graph import Graph

SPEC = """\
model: torch.nn:Linear
args: {in_features: 8, out_features: 4}
inputs: [[3, 8]]
caption: A linear layer
"""


@pytest.fixture
def spec_file(tmp_path: Path) -> Path:
    path = tmp_path / "linear.yml"
    path.write_text(SPEC)
    return path


def test_html_is_standalone_with_assets_inlined(spec_file: Path, tmp_path: Path) -> None:
    out = tmp_path / "linear.html"
    assert main(["render", str(spec_file), "-o", str(out)]) == 0
    page = out.read_text(encoding="utf-8")
    assert page.startswith("<!DOCTYPE html>") and "<title>A linear layer</title>" in page
    assert '<figure class="model-trace" id="model-trace-1"' in page
    assert ">(3, 4)</text>" in page
    assert "<script src=" not in page and "<link " not in page  # nothing to fetch
    viewer = (Path(__file__).parents[2] / "plugin/model_trace/assets/viewer.js").read_text()
    assert viewer.strip().splitlines()[0] in page
    assert page.index("<style>") < page.index("<figure") < page.rindex("<script>")


@pytest.mark.parametrize("suffix", ["svg", "png", "json"])
def test_other_formats(spec_file: Path, tmp_path: Path, suffix: str) -> None:
    out = tmp_path / f"linear.{suffix}"
    assert main(["render", str(spec_file), "-o", str(out)]) == 0
    data = out.read_bytes()
    if suffix == "svg":
        assert data.startswith(b"<svg") and b">linear</text>" in data
    elif suffix == "png":
        assert data.startswith(b"\x89PNG")
    else:
        graph = Graph.from_json(data.decode("utf-8"))
        assert any(node.name == "linear" for node in graph.nodes.values())


def test_errors_are_one_line_and_exit_1(spec_file: Path, tmp_path: Path, capsys) -> None:
    assert main(["render", str(spec_file), "-o", str(tmp_path / "x.pdf")]) == 1
    assert "suffix must be one of .html, .svg, .png, .json" in capsys.readouterr().err
    spec_file.write_text(SPEC + "depth: deep\n")
    assert main(["render", str(spec_file), "-o", str(tmp_path / "x.svg")]) == 1
    assert "field 'depth'" in capsys.readouterr().err
