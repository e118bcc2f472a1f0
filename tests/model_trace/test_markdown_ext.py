"""The fence as a plain Python-Markdown extension (no MkDocs involved)."""

from __future__ import annotations

from markdown import Markdown

from model_trace.markdown_ext import ModelTraceExtension, find_fences
from model_trace.session import Settings, TraceSession

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


def test_find_fences_skips_fences_shown_inside_other_fences() -> None:
    lines = ["````markdown", "```model-trace", "model: shown:only", "```", "````",
             "```python", "x = 1", "```", "```model-trace", "model: real:one", "```",
             "```model-tracer", "not: ours", "```"]
    assert find_fences(lines) == [(9, "model: real:one")]


def test_fences_of_a_document_are_submitted_before_the_first_is_drawn() -> None:
    from model_trace.markdown_ext import FenceState

    order: list[str] = []

    class RecordingSession(TraceSession):
        def submit_all(self, fences):
            order.extend(f"submit {origin}" for _, origin in fences)
            return super().submit_all(fences)

        def render(self, spec, prefix, origin, export_base):
            order.append(f"render {origin}")
            return super().render(spec, prefix, origin, export_base)

    state = FenceState(RecordingSession(Settings(isolate=False)))
    state.page = "doc.md"
    md = Markdown(extensions=["pymdownx.superfences", ModelTraceExtension(state=state)])
    md.convert(FENCE + "\ntext\n\n" + FENCE.replace("[[3, 8]]", "[[5, 8]]"))
    assert order[:2] == ["submit doc.md:1", "submit doc.md:9"]
    assert "render doc.md:1" in order and "render doc.md:9" in order


def test_extension_refuses_models_outside_the_allowed_roots() -> None:
    md = Markdown(extensions=["pymdownx.superfences", "model_trace.markdown_ext"])
    md.convert("```model-trace\nmodel: os:getcwd\ninputs: []\n```\n")
    (problem,) = md.model_trace_state.problems
    assert problem.line == 2 and "outside the roots this site allows" in problem.message
