"""End to end: real MkDocs sites built in a temporary folder, their HTML read back."""

from __future__ import annotations

import json
import logging
import os
import re
import subprocess
import sys
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
LINEAR_FENCE = """\
```model-trace
model: torch.nn:Linear
args: {in_features: 8, out_features: 4}
inputs: [[3, 8]]
caption: A linear layer
```
"""


def _indent(text: str, prefix: str) -> str:
    return "".join(prefix + line if line.strip() else line for line in text.splitlines(True))


def _op_labels(html: str) -> list[str]:
    pattern = r'<g class="mt-node[^"]*"[^>]*><title>[^<]*</title><rect[^>]*/><text[^>]*>([^<]+)<'
    return re.findall(pattern, html)


def _ids(html: str) -> list[str]:
    return re.findall(r' id="([^"]+)"', html)


@pytest.mark.parametrize("theme", ["mkdocs", "material"])
def test_encoder_fence_becomes_svg_with_ops_and_shapes(build_site, theme: str) -> None:
    site: Path = build_site({"index.md": "# Encoder\n\n" + ENCODER_FENCE}, theme=theme)
    html = (site / "index.html").read_text(encoding="utf-8")
    assert "<svg" in html and "```model-trace" not in html
    ops = _op_labels(html)
    for expected in ("linear", "multi_head_attention_forward", "layer_norm", "relu", "add"):
        assert expected in ops, f"{expected} missing from {ops}"
    assert ">(2, 16, 64)</text>" in html
    assert ">(2, 16, 2048)</text>" in html  # the feed-forward's inner width
    assert 'data-path="self_attn"' in html and 'data-path="linear1"' in html
    assert (site / "assets/model-trace/viewer.js").is_file()
    assert html.count('src="assets/model-trace/viewer.js"') == 1
    assert html.count('href="assets/model-trace/viewer.css"') == 1


def test_assets_are_linked_once_on_every_page(build_site) -> None:
    site = build_site({"index.md": "# Home\n", "a.md": LINEAR_FENCE, "sub/b.md": LINEAR_FENCE})
    for page, prefix in (("index.html", ""), ("a/index.html", "../"),
                         ("sub/b/index.html", "../../")):
        html = (site / page).read_text(encoding="utf-8")
        assert html.count(f'src="{prefix}assets/model-trace/viewer.js"') == 1, page


def test_fence_renders_inside_admonition_list_item_and_tab(build_site) -> None:
    page = (
        "!!! note \"Inside an admonition\"\n\n"
        + _indent(ENCODER_FENCE, "    ")
        + "\n- a list item\n\n"
        + _indent(ENCODER_FENCE, "    ")
        + '\n=== "First tab"\n\n'
        + _indent(LINEAR_FENCE, "    ")
        + '\n=== "Second tab"\n\n'
        + _indent(LINEAR_FENCE.replace("[[3, 8]]", "[[5, 8]]"), "    ")
    )
    site = build_site({"index.md": page})
    html = (site / "index.html").read_text(encoding="utf-8")
    assert html.count('<figure class="model-trace"') == 4
    assert re.search(r'class="admonition note".*?<figure class="model-trace"', html, re.S)
    assert re.search(r"<li>.*?<figure class=\"model-trace\"", html, re.S)
    assert re.search(r'class="tabbed-block">\s*<figure class="model-trace".*?>\(3, 4\)<', html,
                     re.S)
    assert re.search(r'class="tabbed-block">\s*<figure class="model-trace".*?>\(5, 4\)<', html,
                     re.S)


def test_several_graphs_on_one_page_never_share_an_id(build_site) -> None:
    # the same fence three times: one trace, three figures with their own ids
    site = build_site({"index.md": "\n".join([LINEAR_FENCE, ENCODER_FENCE, LINEAR_FENCE])})
    html = (site / "index.html").read_text(encoding="utf-8")
    ids = _ids(html)
    assert html.count('<figure class="model-trace"') == 3
    assert len(ids) == len(set(ids)), [i for i in ids if ids.count(i) > 1]
    for n in (1, 2, 3):
        assert f'id="model-trace-{n}"' in html
    assert "model-trace-prefix" not in html
    # every in-figure reference points at an id of the same figure
    for prefix, target in re.findall(r'url\(#(model-trace-\d+)(-[\w-]+)\)', html):
        assert f'id="{prefix}{target}"' in html


def test_export_files_are_written_next_to_the_page_and_linked(build_site) -> None:
    fence = LINEAR_FENCE.replace("caption:", "export: [svg, json, png]\ncaption:")
    site = build_site({"index.md": fence, "guide/page.md": fence},
                      extra={"use_directory_urls": False})
    root = (site / "index.html").read_text(encoding="utf-8")
    assert 'href="model-trace-1.svg"' in root and 'href="model-trace-1.png"' in root
    assert (site / "model-trace-1.svg").read_text().startswith("<svg")
    assert (site / "model-trace-1.png").read_bytes().startswith(b"\x89PNG")
    assert '"nodes"' in (site / "model-trace-1.json").read_text()
    guide = (site / "guide/page.html").read_text(encoding="utf-8")
    assert 'href="page-model-trace-1.json"' in guide
    assert (site / "guide/page-model-trace-1.json").is_file()


def test_plugin_export_option_is_the_default_for_every_fence(build_site) -> None:
    site = build_site({"index.md": LINEAR_FENCE}, plugin={"export": ["json"]})
    assert (site / "model-trace-1.json").is_file()
    assert not (site / "model-trace-1.svg").exists()


def _build_error(build_site, caplog, pages: dict[str, str], **options: object) -> str:
    """Build, expect the build to abort, and return the error lines MkDocs logged."""
    with pytest.raises((Abort, PluginError)) as raised:
        build_site(pages, **options)
    logged = [r.getMessage() for r in caplog.records if r.levelname in ("ERROR", "WARNING")]
    return "\n".join([*logged, str(raised.value)])


def test_yaml_error_fails_strict_build_with_page_and_line(build_site, caplog) -> None:
    page = "# Broken\n\ntext\n\n```model-trace\nmodel: torch.nn:Linear\n"
    page += "args: {in_features: 4\n```\n"
    message = _build_error(build_site, caplog, {"broken.md": page}, strict=True)
    assert "broken.md:" in message and "invalid YAML" in message
    line = int(re.search(r"broken\.md:(\d+)", message).group(1))
    assert line in (7, 8)  # the unclosed mapping is reported on or just after its line
    assert "Traceback" not in message


def test_unknown_field_names_page_line_field_and_allowed_fields(build_site, caplog) -> None:
    page = "# T\n\n```model-trace\nmodel: torch.nn:Linear\ndeep: 3\n```\n"
    message = _build_error(build_site, caplog, {"index.md": page})
    assert "index.md:5" in message and "unknown field 'deep'" in message
    assert "depth" in message and "trace_depth" in message  # the allowed fields are listed


def test_wrong_value_names_field_and_allowed_values_in_nested_fence(build_site, caplog) -> None:
    fence = LINEAR_FENCE.replace("caption: A linear layer", "routing: smart")
    page = "# T\n\n!!! note\n\n" + _indent(fence, "    ")
    message = _build_error(build_site, caplog, {"nested.md": page})
    assert "nested.md:9" in message and "field 'routing'" in message
    assert "balanced" in message  # the allowed values


def test_model_outside_allowed_roots_is_refused_naming_the_option(build_site, caplog) -> None:
    page = "```model-trace\nmodel: os:system\ninputs: [[1]]\n```\n"
    message = _build_error(build_site, caplog, {"index.md": page})
    assert "index.md:2" in message and "'os'" in message
    assert "allowed_roots" in message and "mkdocs.yml" in message


def test_allowed_roots_option_lets_a_package_in(build_site, tiny_models) -> None:
    page = "```model-trace\nmodel: tiny_models:Tiny\ninputs: [[3, 8]]\n```\n"
    site = build_site({"index.md": page},
                      plugin={"allowed_roots": ["tiny_models"]})
    assert ">relu</text>" in (site / "index.html").read_text(encoding="utf-8")


def test_model_error_reports_the_field_line(build_site, caplog, tiny_models) -> None:
    page = "# T\n\n```model-trace\nmodel: tiny_models:Tiny\nargs: {depth: 3}\n"
    page += "inputs: [[3, 8]]\n```\n"
    message = _build_error(build_site, caplog, {"index.md": page},
                           plugin={"allowed_roots": ["tiny_models"]})
    assert "index.md:5" in message and "depth" in message


def test_warn_mode_logs_and_keeps_building(build_site, caplog) -> None:
    page = "```model-trace\nmodel: torch.no_such_module:Model\n```\n"
    site = build_site({"index.md": page}, plugin={"on_error": "warn"})
    html = (site / "index.html").read_text(encoding="utf-8")
    assert "model-trace-error" in html and "torch.no_such_module" in html
    assert any("index.md:2" in r.getMessage() for r in caplog.records
               if r.levelname == "WARNING")


def test_warn_mode_still_fails_a_strict_build(build_site, caplog) -> None:
    page = "```model-trace\nmodel: torch.no_such_module:Model\n```\n"
    message = _build_error(build_site, caplog, {"index.md": page}, strict=True,
                           plugin={"on_error": "warn"})
    assert "index.md:2" in message and "torch.no_such_module" in message


def test_a_failed_build_logs_each_problem_once_and_no_empty_line(build_site, caplog) -> None:
    pages = {"a.md": "```model-trace\nmodel: torch.nn:Linear\ncolour: red\n```\n",
             "b.md": "```model-trace\nmodel: torch.nn:Linear\nheight: 10\n```\n"}
    with pytest.raises((Abort, PluginError)):
        build_site(pages)
    logged = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert not any(m.startswith("Error reading page") for m in logged), logged
    assert sum("a.md:3: unknown field 'colour'" in m for m in logged) == 1
    assert sum("b.md:3: field 'height'" in m for m in logged) == 1  # the next page too
    assert any("2 figure(s) could not be drawn" in m for m in logged)


def test_every_problem_of_a_page_is_reported(build_site, caplog) -> None:
    page = "```model-trace\nmodel: torch.nn:Linear\ncolour: red\n```\n\n"
    page += "```model-trace\nmodel: torch.nn:Linear\nheight: 10\n```\n"
    message = _build_error(build_site, caplog, {"index.md": page})
    assert "index.md:3" in message and "index.md:8" in message
    assert "at least 100" in message


def test_fences_that_differ_only_in_the_view_share_one_trace(build_site, tiny_models) -> None:
    fence = "```model-trace\nmodel: tiny_models:Tiny\ninputs: [[3, 8]]\n{extra}\n```\n"
    pages = {"a.md": fence.format(extra="depth: 0"),
             "b.md": fence.format(extra="caption: Same model, other view") + "\n"
             + fence.format(extra="focus: proj"),
             "c.md": fence.format(extra="args: {width: 8}")}  # another trace: args differ
    site = build_site(pages, plugin={"allowed_roots": ["tiny_models"]})
    assert tiny_models.builds() == ["Tiny 8", "Tiny 8"]
    assert "Same model, other view" in (site / "b/index.html").read_text()


def test_focus_draws_one_submodule_with_its_inputs_and_outputs(build_site) -> None:
    fence = ENCODER_FENCE[:-4] + "focus: self_attn\ndepth: 1\n```\n"
    site = build_site({"index.md": fence})
    html = (site / "index.html").read_text(encoding="utf-8")
    ops = _op_labels(html)
    assert "multi_head_attention_forward" in ops
    assert "layer_norm" not in ops and "linear" not in ops  # outside self_attn
    assert "self_attn (TransformerEncoderLayer › MultiheadAttention)" in html  # its context


def test_focus_on_a_missing_module_lists_the_ones_there(build_site, caplog) -> None:
    fence = ENCODER_FENCE[:-4] + "focus: self_atn\n```\n"
    message = _build_error(build_site, caplog, {"index.md": "# T\n\n" + fence})
    assert "index.md:7" in message and "'self_atn'" in message
    assert "self_attn" in message and "linear1" in message


def test_summary_table_has_exact_counts_from_the_trace(build_site) -> None:
    fence = LINEAR_FENCE[:-4] + "summary: 1\n```\n"
    site = build_site({"index.md": fence})
    html = (site / "index.html").read_text(encoding="utf-8")
    table = html[html.index('<div class="model-trace-breakdown">'):]
    assert "<th>parameters</th>" in table
    assert re.search(r"<td[^>]*>36</td>", table)  # 8 * 4 weights + 4 biases
    assert "<strong>36</strong> parameters" in table


def _figure_data(html: str) -> dict:
    data = re.search(r'<template class="mt-data">(.*?)</template>', html, re.S)
    return json.loads(data.group(1))


def test_plugin_options_set_the_defaults_of_every_fence(build_site, tmp_path: Path) -> None:
    fence = "```model-trace\nmodel: deepseek-v3\nconfig: tiny\n```\n"
    site = build_site({"index.md": fence, "open.md": fence.replace("tiny\n", "tiny\ndepth: 0\n")},
                      plugin={"depth": 2, "routing": "first", "theme": "dark",
                              "cache_dir": "build-cache"})
    html = (site / "index.html").read_text(encoding="utf-8")
    assert 'data-depth="2"' in html and 'data-theme="dark"' in html
    assert _figure_data(html)["meta"]["routing"]["policy"] == "first"
    assert 'data-depth="0"' in (site / "open/index.html").read_text(encoding="utf-8")
    assert (tmp_path / "build-cache/manifest.json").is_file()
    assert not (tmp_path / ".cache").exists()


@pytest.mark.parametrize(("option", "value", "allowed"), [
    ("routing", "smart", "balanced, random, first"),
    ("on_error", "ignore", "'fail', 'warn'"),
    ("theme", "sepia", "'auto', 'light', 'dark'"),
    ("export", ["pdf"], "'png', 'svg', 'json'"),
])
def test_a_wrong_plugin_option_names_the_allowed_values(build_site, caplog, option: str,
                                                        value: object, allowed: str) -> None:
    with pytest.raises(Abort):
        build_site({"index.md": "# T\n"}, plugin={option: value})
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert f"'{option}'" in logged and allowed in logged


def test_the_fence_works_without_superfences_in_the_site_config(build_site) -> None:
    site = build_site({"index.md": LINEAR_FENCE}, extra={"markdown_extensions": []})
    assert '<figure class="model-trace"' in (site / "index.html").read_text(encoding="utf-8")


@pytest.mark.parametrize("theme", ["mkdocs", "material"])
def test_search_indexes_the_caption_not_the_drawing(build_site, theme: str) -> None:
    site = build_site({"index.md": "# Models\n\n" + LINEAR_FENCE}, theme=theme,
                      extra={"plugins": ["search", {"model-trace": {}}]})
    index = json.loads((site / "search/search_index.json").read_text(encoding="utf-8"))
    text = " ".join(doc["text"] for doc in index["docs"])
    assert "A linear layer" in text
    assert "(3, 8)" not in text and "Computation graph" not in text
    assert ">(3, 8)</text>" in (site / "index.html").read_text(encoding="utf-8")  # still drawn


def test_a_model_package_next_to_mkdocs_yml_imports_without_pythonpath(
        build_site, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "path", list(sys.path))  # the plugin adds to it; undone after
    package = tmp_path / "local_models_for_paths"
    package.mkdir()
    (package / "__init__.py").write_text(
        "from torch import nn\n\n\ndef build(width: int = 4) -> nn.Module:\n"
        "    return nn.Sequential(nn.Linear(width, width), nn.Tanh())\n", encoding="utf-8")
    page = ("```model-trace\nmodel: local_models_for_paths:build\ninputs: [[2, 4]]\n```\n")
    site = build_site({"index.md": page}, plugin={"own_roots": ["local_models_for_paths"]})
    assert ">tanh</text>" in (site / "index.html").read_text(encoding="utf-8")
    assert str(tmp_path.resolve()) in sys.path


def test_the_mkdocs_script_builds_without_path(tmp_path: Path) -> None:
    """``venv/bin/mkdocs build`` from a shell where the environment is not activated: nothing
    is looked up on PATH (the workers are this interpreter, the layout runs in-process)."""
    script = Path(sys.executable).with_name("mkdocs")
    if not script.is_file():
        pytest.skip(f"no mkdocs script next to {sys.executable}")
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs/index.md").write_text(LINEAR_FENCE, encoding="utf-8")
    (tmp_path / "mkdocs.yml").write_text("site_name: no path\nplugins:\n  - model-trace\n")
    env = {key: value for key, value in os.environ.items() if key != "PATH"}
    env["PYTHONPATH"] = os.pathsep.join([str(Path(__file__).parents[2] / "plugin"),
                                         os.environ.get("PYTHONPATH", "")])
    result = subprocess.run([str(script), "build", "--strict"], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    assert '<figure class="model-trace"' in (tmp_path / "site/index.html").read_text()
