"""End to end: real MkDocs sites built in a temporary folder, their HTML read back."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from mkdocs.exceptions import Abort, PluginError

ENCODER_FENCE = """\
```model-trace
model: torch.nn:TransformerEncoderLayer
args: {d_model: 64, nhead: 4, batch_first: true}
inputs: [[2, 16, 64]]
```
"""


def _indent(text: str, prefix: str) -> str:
    return "".join(prefix + line if line.strip() else line for line in text.splitlines(True))


def _op_labels(html: str) -> list[str]:
    pattern = r'<g class="mt-node[^"]*"[^>]*><title>[^<]*</title><rect[^>]*/><text[^>]*>([^<]+)<'
    return re.findall(pattern, html)


def test_encoder_fence_becomes_svg_with_ops_and_shapes(build_site) -> None:
    site: Path = build_site({"index.md": "# Encoder\n\n" + ENCODER_FENCE})
    html = (site / "index.html").read_text(encoding="utf-8")
    assert "<svg" in html and "```model-trace" not in html
    ops = _op_labels(html)
    for expected in ("linear", "multi_head_attention_forward", "layer_norm", "dropout", "add"):
        assert expected in ops, f"{expected} missing from {ops}"
    assert ">(2, 16, 64)</text>" in html
    assert ">(2, 16, 2048)</text>" in html  # the feed-forward's inner width
    assert 'data-path="self_attn"' in html and 'data-path="linear1"' in html
    assert (site / "assets/model-trace/viewer.js").is_file()
    assert "assets/model-trace/viewer.css" in html


def test_fence_renders_inside_admonition_and_list_item(build_site) -> None:
    page = (
        "!!! note \"Inside an admonition\"\n\n"
        + _indent(ENCODER_FENCE, "    ")
        + "\n- a list item\n\n"
        + _indent(ENCODER_FENCE, "    ")
    )
    site = build_site({"index.md": page})
    html = (site / "index.html").read_text(encoding="utf-8")
    assert html.count('<figure class="model-trace"') == 2
    assert re.search(r'class="admonition note".*?<figure class="model-trace"', html, re.S)
    assert re.search(r"<li>.*?<figure class=\"model-trace\"", html, re.S)
    # two graphs on one page never share an id
    ids = re.findall(r' id="([^"]+)"', html)
    assert len(ids) == len(set(ids))


def _build_error(build_site, caplog, pages: dict[str, str], **options: object) -> str:
    """Build, expect the build to abort, and return the error lines MkDocs logged."""
    with pytest.raises((Abort, PluginError)):
        build_site(pages, **options)
    return "\n".join(r.getMessage() for r in caplog.records if r.levelname == "ERROR")


def test_yaml_error_fails_strict_build_with_page_and_line(build_site, caplog) -> None:
    page = "# Broken\n\ntext\n\n```model-trace\nmodel: torch.nn:Linear\n"
    page += "args: {in_features: 4\n```\n"
    message = _build_error(build_site, caplog, {"broken.md": page}, strict=True)
    assert "broken.md:" in message and "invalid YAML" in message
    line = int(re.search(r"broken\.md:(\d+)", message).group(1))
    assert line in (7, 8)  # the unclosed mapping is reported on or just after its line
    assert "Traceback" not in message


def test_unknown_field_names_field_and_line(build_site, caplog) -> None:
    page = "```model-trace\nmodel: torch.nn:Linear\ndeep: 3\n```\n"
    message = _build_error(build_site, caplog, {"index.md": page})
    assert "index.md:3" in message and "unknown field 'deep'" in message
    assert "depth" in message  # the allowed fields are listed


def test_warn_mode_logs_and_keeps_building(build_site, caplog) -> None:
    page = "```model-trace\nmodel: no.such.module:Model\n```\n"
    site = build_site(
        {"index.md": page}, extra_config="plugins:\n  - model-trace:\n      on_error: warn\n"
    )
    html = (site / "index.html").read_text(encoding="utf-8")
    assert "model-trace-error" in html and "no.such.module" in html
    assert any("index.md:1" in r.getMessage() for r in caplog.records)
