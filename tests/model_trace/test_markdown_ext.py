"""The fence as a plain Python-Markdown extension (no MkDocs involved)."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from markdown import Extension, Markdown

from model_trace.errors import MESSAGE_CHARS
from model_trace.markdown_ext import (
    FenceErrors,
    FenceState,
    ModelTraceExtension,
    find_fences,
    superfences_entry,
)
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


BAD = "intro\n\n```model-trace\nmodel: [unclosed\n```\n"


def test_problems_fail_the_conversion_by_default_naming_page_and_line(caplog) -> None:
    md = Markdown(extensions=["pymdownx.superfences", "toc", "model_trace.markdown_ext"])
    with pytest.raises(FenceErrors) as raised:
        md.convert("# Heading\n\n" + BAD)
    (problem,) = raised.value.problems
    assert problem.line == 6 and "invalid YAML" in problem.message
    assert [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR] == [
        f"model-trace: <markdown>:6: {problem.message}"]  # once, though toc runs postprocessors


@pytest.mark.parametrize(("on_error", "level"), [("warn", logging.WARNING), ("record", None)])
def test_problems_are_logged_or_only_recorded(caplog, on_error: str, level: int | None) -> None:
    md = Markdown(extensions=["pymdownx.superfences", "model_trace.markdown_ext"],
                  extension_configs={"model_trace.markdown_ext": {"on_error": on_error}})
    html = md.convert(BAD)
    assert "model-trace-error" in html
    (problem,) = md.model_trace_state.problems
    assert problem.line == 4 and "invalid YAML" in problem.message
    logged = [r.levelno for r in caplog.records if r.name == "model_trace"]
    assert logged == ([level] if level else [])


def test_superfences_alone_still_reports_and_fails(caplog) -> None:
    """Only SuperFences' custom_fences names the formatter: no line for this document, but
    the problem is named, logged and fails the run; the next document has lines."""
    md = Markdown(extensions=["pymdownx.superfences"], extension_configs={
        "pymdownx.superfences": {"custom_fences": [superfences_entry()]}})
    with pytest.raises(FenceErrors, match=r"add `model_trace\.markdown_ext`"):
        md.convert(BAD)
    with pytest.raises(FenceErrors) as raised:
        md.convert(BAD)
    assert raised.value.problems[0].line == 4


def test_a_fence_whose_body_no_fence_has_gets_no_wrong_line() -> None:
    state = FenceState()
    state.fences = [(3, "model: a:b"), (9, "model: c:d")]
    assert state.claim_line("model: x:y") is None and len(state.fences) == 2
    assert state.claim_line("\tmodel: c:d  \n") == 9


def test_fences_in_block_quotes_have_their_lines() -> None:
    lines = ["> quote", ">", "> ```model-trace", "> model: torch.nn:Linear", "> colour: red",
             "> ```"]
    assert find_fences(lines) == [(3, "model: torch.nn:Linear\ncolour: red")]


def test_a_zensical_page_is_named_and_its_files_written(tmp_path: Path) -> None:
    """Zensical makes a Markdown instance per page with a preprocessor holding the page and
    the site's configuration; the extension names the page after it and writes the export
    files and the viewer's files into the site's output."""
    from markdown.preprocessors import Preprocessor

    class Context(Preprocessor):  # the shape of zensical.extensions.context
        def __init__(self, md: Markdown) -> None:
            super().__init__(md)
            self.page = SimpleNamespace(path="guide/page.md", url="guide/page/")
            self.config = {"root_dir": str(tmp_path), "site_dir": "site"}

        def run(self, lines: list[str]) -> list[str]:
            return lines

    class ContextExtension(Extension):
        def extendMarkdown(self, md: Markdown) -> None:
            md.preprocessors.register(Context(md), "rendering_context", 0)

    md = Markdown(extensions=[ContextExtension(), "pymdownx.superfences",
                              "model_trace.markdown_ext"])
    md.convert(FENCE.replace("inputs:", "export: [svg]\ninputs:"))
    site = tmp_path / "site"
    assert (site / "guide/page/model-trace-1.svg").read_bytes().startswith(b"<svg")
    assert (site / "assets/model-trace/viewer.js").is_file()
    with pytest.raises(FenceErrors, match=r"guide/page\.md:4"):
        Markdown(extensions=[ContextExtension(), "pymdownx.superfences",
                             "model_trace.markdown_ext"]).convert(BAD)


def test_markdown_instances_with_the_same_options_share_one_session() -> None:
    first, second = (Markdown(extensions=["model_trace.markdown_ext"]) for _ in range(2))
    assert first.model_trace_state.session is second.model_trace_state.session


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
    md = Markdown(extensions=["pymdownx.superfences", "model_trace.markdown_ext"],
                  extension_configs={"model_trace.markdown_ext": {"on_error": "record"}})
    md.convert("```model-trace\nmodel: os:getcwd\ninputs: []\n```\n")
    (problem,) = md.model_trace_state.problems
    assert problem.line == 2 and "outside the roots this site allows" in problem.message


# -- whatever a page says, the whole path (parse, prepare, key, worker) ends in a figure or in
# -- one line naming page:line ---------------------------------------------------------------
_MODELS = st.sampled_from(["torch.nn:Linear", "torch.nn:ReLU", "torch.nn:Embedding",
                           "torch.nn:Linaer", "torch:os.system", "torch.utils.collect_env:run",
                           "deepseek-v4", "nowhere:Model", "torch.nn", ":", "torch.nn:Module"])
_NUMBERS = st.one_of(st.integers(-3, 70), st.sampled_from([2**40, 2**63, 10**30]))
_VALUES = st.recursive(
    st.one_of(st.none(), st.booleans(), _NUMBERS, st.floats(allow_nan=False),
              st.text(max_size=8)),
    lambda inner: st.one_of(st.lists(inner, max_size=3),
                            st.dictionaries(st.text(max_size=6), inner, max_size=3)),
    max_leaves=6)
_ARGS = st.dictionaries(st.sampled_from(["in_features", "out_features", "num_embeddings",
                                         "embedding_dim", "bias", "infeatures"]),
                        st.one_of(st.integers(-2, 9), st.booleans(), _VALUES), max_size=3)
_SHAPES = st.lists(st.lists(st.integers(-1, 9), max_size=3), max_size=2)
_FIELDS = st.fixed_dictionaries(
    {"model": _MODELS},
    optional={"args": _ARGS, "inputs": st.one_of(_SHAPES, _VALUES), "depth": _VALUES,
              "routing": _VALUES, "overlay": _VALUES, "height": _NUMBERS,
              "inptus": _VALUES, "export": st.sampled_from([["svg"], ["pdf"], "json"])})


def _body(fields: dict, mangle: int) -> str:
    text = yaml.safe_dump(fields, default_flow_style=None, sort_keys=False)
    if mangle == 1:  # a careless edit: a line duplicated
        lines = text.splitlines()
        text = "\n".join([*lines, lines[0]])
    elif mangle == 2:  # a broken bracket
        text = text.replace("]", "", 1)
    return text


@pytest.fixture(scope="module")
def worker_state() -> Iterator[FenceState]:
    session = TraceSession(Settings(jobs=1, timeout_s=60))
    yield FenceState(session)
    session.finish_build(complete=False)


@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(fields=_FIELDS, mangle=st.integers(0, 2))
def test_any_fence_gives_a_figure_or_one_line_naming_page_and_line(
        worker_state: FenceState, fields: dict, mangle: int) -> None:
    worker_state.page = "fuzz.md"
    md = Markdown(extensions=["pymdownx.superfences",
                              ModelTraceExtension(state=worker_state, on_error="record")])
    body = _body(fields, mangle)
    html = md.convert(f"# Fuzz\n\n```model-trace\n{body}\n```\n")
    problems = worker_state.problems
    if not problems:
        assert '<figure class="model-trace"' in html
        return
    (problem,) = problems
    assert problem.line is not None and 3 <= problem.line <= 4 + body.count("\n")
    assert str(problem).startswith(f"fuzz.md:{problem.line}: ")
    assert "\n" not in str(problem) and "Traceback" not in str(problem)
    assert len(problem.message) <= MESSAGE_CHARS
