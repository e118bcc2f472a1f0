"""The fence as a plain Python-Markdown extension (no MkDocs involved)."""

from __future__ import annotations

from markdown import Markdown

from model_trace.markdown_ext import find_fences

FENCE = (
    "```model-trace\nmodel: torch.nn:Linear\nargs: {in_features: 8, out_features: 4}\n"
    "inputs: [[3, 8]]\n```\n"
)


def test_plain_markdown_extension_renders_fence() -> None:
    md = Markdown(extensions=["pymdownx.superfences", "model_trace.markdown_ext"])
    html = md.convert("# Title\n\n" + FENCE)
    assert '<figure class="model-trace"' in html
    assert ">linear</text>" in html and ">(3, 4)</text>" in html
    assert md.model_trace_state.problems == []


def test_extension_loads_superfences_itself_when_missing() -> None:
    md = Markdown(extensions=["model_trace.markdown_ext"])
    assert '<figure class="model-trace"' in md.convert(FENCE)


def test_problems_are_recorded_not_raised() -> None:
    md = Markdown(extensions=["pymdownx.superfences", "model_trace.markdown_ext"])
    html = md.convert("intro\n\n```model-trace\nmodel: [unclosed\n```\n")
    assert "model-trace-error" in html
    (problem,) = md.model_trace_state.problems
    assert problem.line == 4 and "invalid YAML" in problem.message


def test_find_fences_reports_lines_and_dedented_bodies() -> None:
    lines = ["text", "", "    ```model-trace", "    model: a:b", "    ```",
             "~~~~ model-trace", "x: 1", "~~~~"]
    assert find_fences(lines) == [(3, "model: a:b"), (6, "x: 1")]
