"""The ```model-trace fence as a Python-Markdown extension on top of pymdownx.superfences.

SuperFences finds fences anywhere (admonitions, tabs, lists) and calls ``format_fence``. It
swallows exceptions raised by a formatter, so ``format_fence`` never raises: it renders an
error box and records a ``FenceProblem`` (page, line, message) that the caller (the MkDocs
plugin, the Sphinx directive, or any tool driving Markdown) reports after conversion.

Before SuperFences runs, a preprocessor notes the line of every fence of the document and
submits them all to the ``TraceSession``, so the fences of one page trace in parallel while
the formatter collects them in order.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from jinja2 import Environment, PackageLoader, select_autoescape
from markdown import Extension, Markdown
from markdown.preprocessors import Preprocessor

from model_trace.errors import ModelTraceError, SpecError
from model_trace.session import Settings, TraceSession
from model_trace.spec import FenceSpec, parse_spec

FENCE_NAME = "model-trace"
_FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,})[ \t]*(?P<info>.*)$")
_MODEL_TRACE_INFO = re.compile(r"^\{?[ \t]*\.?" + re.escape(FENCE_NAME) + r"(?![\w-])")
_ENVIRONMENT = Environment(
    loader=PackageLoader("model_trace", "templates"),
    autoescape=select_autoescape(default=True, default_for_string=True),
)


@dataclass(frozen=True)
class FenceProblem:
    """A fence that could not be drawn: where it is and what to do about it."""

    page: str
    line: int | None
    message: str

    def __str__(self) -> str:
        where = f"{self.page}:{self.line}" if self.line is not None else self.page
        return f"{where}: {self.message}"


@dataclass
class FenceState:
    """The session fences are traced by, and what the formatter keeps between fences of one
    page: where the page's fences are, what went wrong, and the export files to write."""

    session: TraceSession = field(
        default_factory=lambda: TraceSession(Settings(isolate=False)))
    page: str = "<markdown>"
    export_base: Callable[[str], str] = str
    """The file name (without suffix) of a figure's export files, from its id prefix."""
    fences: list[tuple[int, str]] = field(default_factory=list)
    problems: list[FenceProblem] = field(default_factory=list)
    files: dict[str, bytes] = field(default_factory=dict)
    rendered: int = 0

    def start_page(self, page: str, export_base: Callable[[str], str] = str) -> None:
        self.page = page
        self.export_base = export_base
        self.fences = []
        self.problems = []
        self.files = {}
        self.rendered = 0

    def claim_line(self, body: str) -> int | None:
        """The page line of the first not-yet-drawn fence with this body."""
        wanted = body.strip("\n")
        for index, (line, text) in enumerate(self.fences):
            if text == wanted:
                del self.fences[index]
                return line
        return self.fences.pop(0)[0] if self.fences else None

    def prefetch(self, pages: dict[str, list[tuple[int, str]]]) -> None:
        """Start tracing every well-formed fence of these pages (fences by page, as
        ``find_fences`` gives them) at once, so that fences showing the same model share one
        trace; the others are reported when drawn."""
        specs = []
        for page, fences in pages.items():
            for line, body in fences:
                try:
                    specs.append((self.session.prepare(parse_spec(body)), f"{page}:{line}"))
                except ModelTraceError:
                    continue
        self.session.submit_all(specs)


def find_fences(lines: list[str]) -> list[tuple[int, str]]:
    """(1-based line of the opening fence, dedented body) of every model-trace fence.

    Other fenced blocks are skipped whole, so a model-trace fence shown as an example inside a
    longer ````markdown fence is not mistaken for a real one.
    """
    found: list[tuple[int, str]] = []
    index = 0
    while index < len(lines):
        match = _FENCE.match(lines[index])
        if match is None:
            index += 1
            continue
        indent, fence = len(match["indent"]), match["fence"]
        closing = re.compile(rf"^[ \t]*{re.escape(fence[0])}{{{len(fence)},}}[ \t]*$")
        end = index + 1
        while end < len(lines) and not closing.match(lines[end]):
            end += 1
        if _MODEL_TRACE_INFO.match(match["info"]):
            body = "\n".join(line[indent:] for line in lines[index + 1 : end])
            found.append((index + 1, body.strip("\n")))
        index = end + 1
    return found


class _FenceCollector(Preprocessor):
    """Notes where each fence starts (before SuperFences replaces it) and submits them all."""

    def __init__(self, md: Markdown, state: FenceState) -> None:
        super().__init__(md)
        self.state = state

    def run(self, lines: list[str]) -> list[str]:
        self.state.fences = find_fences(lines)
        self.state.prefetch({self.state.page: self.state.fences})
        return lines


def format_fence(
    source: str, language: str, class_name: str, options: dict[str, Any], md: Markdown,
    **_: Any,
) -> str:
    """SuperFences formatter: the figure for one fence, or an error box (never raises)."""
    state: FenceState = getattr(md, "model_trace_state", None) or FenceState()
    line = state.claim_line(source)
    state.rendered += 1
    prefix = f"model-trace-{state.rendered}"
    spec: FenceSpec | None = None
    try:
        spec = parse_spec(source)
        spec = state.session.prepare(spec)
        origin = f"{state.page}:{line}" if line is not None else state.page
        rendered = state.session.render(spec, prefix, origin, state.export_base(prefix))
    except ModelTraceError as error:
        return _problem(state, _error_line(line, spec, error), str(error))
    except Exception as error:  # a model's own bug must not take the whole build down
        return _problem(state, line, f"{type(error).__name__}: {error}")
    state.files.update(rendered.files)
    return rendered.html


def _error_line(fence_line: int | None, spec: FenceSpec | None, error: Exception) -> int | None:
    """The page line of the field an error is about, else of the fence."""
    if fence_line is None or not isinstance(error, SpecError):
        return fence_line
    body_line = error.line if error.line is not None else (
        spec.line_of(error.field) if spec is not None else None)
    return fence_line + body_line if body_line is not None else fence_line


def _problem(state: FenceState, line: int | None, message: str) -> str:
    problem = FenceProblem(state.page, line, message)
    state.problems.append(problem)
    where = f"{problem.page}:{problem.line}" if problem.line is not None else problem.page
    return _ENVIRONMENT.get_template("error.html.j2").render(where=where, message=message)


def superfences_entry() -> dict[str, Any]:
    """The ``custom_fences`` entry that teaches SuperFences the model-trace fence."""
    return {"name": FENCE_NAME, "class": FENCE_NAME, "format": format_fence}


class ModelTraceExtension(Extension):
    """Python-Markdown extension: ``Markdown(extensions=["pymdownx.superfences", "model_trace"])``.

    It adds the fence to an already loaded SuperFences (or loads SuperFences itself), and keeps
    a ``FenceState`` on the Markdown instance as ``md.model_trace_state``; read
    ``state.problems`` after ``convert`` to report fences that failed, and ``state.files`` for
    the export files to write next to the output. By default fences trace in this process
    with no cache; pass ``state=FenceState(TraceSession(Settings(...)))`` for worker
    processes, a cache or other allowed import roots.
    """

    def __init__(self, state: FenceState | None = None, register_fence: bool = True,
                 **kwargs: Any) -> None:
        self.state = state or FenceState()
        self.register_fence = register_fence
        super().__init__(**kwargs)

    def extendMarkdown(self, md: Markdown) -> None:
        md.model_trace_state = self.state  # type: ignore[attr-defined]
        md.preprocessors.register(_FenceCollector(md, self.state), "model_trace_lines", 40)
        md.registerExtension(self)
        if self.register_fence:
            _add_to_superfences(md)

    def reset(self) -> None:
        self.state.fences = []


def _add_to_superfences(md: Markdown) -> None:
    from pymdownx.superfences import SuperFencesCodeExtension

    loaded = [e for e in md.registeredExtensions if isinstance(e, SuperFencesCodeExtension)]
    if loaded:
        entry = superfences_entry()
        loaded[-1].extend_super_fences(
            FENCE_NAME,
            lambda src="", language="", options=None, md=None, **kwargs: entry["format"](
                src, language, FENCE_NAME, options or {}, md, **kwargs
            ),
            lambda language, inputs, options, attrs, md: True,
            lambda md: None,
        )
    else:
        SuperFencesCodeExtension(custom_fences=[superfences_entry()]).extendMarkdown(md)


def makeExtension(**kwargs: Any) -> ModelTraceExtension:
    """Entry point for ``Markdown(extensions=["model_trace.markdown_ext"])``."""
    return ModelTraceExtension(**kwargs)
