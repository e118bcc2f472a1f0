"""The ```model-trace fence as a Python-Markdown extension on top of pymdownx.superfences.

SuperFences finds fences anywhere (admonitions, tabs, lists) and calls ``format_fence``. It
swallows exceptions raised by a formatter, so ``format_fence`` never raises: it renders an
error box and records a ``FenceProblem`` (page, line, message). Once the document is converted
the extension reports them as its ``on_error`` option says: ``fail`` (the default) logs each
and raises ``FenceErrors``, so the run fails; ``warn`` logs them; ``record`` only keeps them in
``state.problems`` for a caller that reports them itself (the MkDocs plugin).

Before SuperFences runs, a preprocessor notes the line of every fence of the document and
submits them all to the ``TraceSession``, so the fences of one page trace in parallel while
the formatter collects them in order. The page's name comes from the caller
(``state.start_page``) or from the rendering context of Zensical, which makes a Markdown
instance per page; sessions are shared by every instance with the same settings, so one
build traces each model once.
"""

from __future__ import annotations

import inspect
import logging
import re
import textwrap
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jinja2 import Environment, PackageLoader, select_autoescape
from markdown import Extension, Markdown
from markdown.postprocessors import Postprocessor
from markdown.preprocessors import Preprocessor

from model_trace.cache import user_cache_dir, write_atomic
from model_trace.errors import ModelTraceError, SpecError, readable
from model_trace.loader import DEFAULT_ALLOWED_ROOTS
from model_trace.session import Settings, TraceSession, put_on_sys_path
from model_trace.spec import FenceSpec, parse_spec
from model_trace.viewer_files import write_assets

log = logging.getLogger("model_trace")
UNNAMED_PAGE = "<markdown>"
ON_ERROR = ("fail", "warn", "record")

FENCE_NAME = "model-trace"
_FENCE = re.compile(r"^(?P<indent>[ \t]*(?:>[ \t]?)*)(?P<fence>`{3,}|~{3,})[ \t]*(?P<info>.*)$")
_MODEL_TRACE_INFO = re.compile(r"^\{?[ \t]*\.?" + re.escape(FENCE_NAME) + r"(?![\w-])")
_ENVIRONMENT = Environment(
    loader=PackageLoader("model_trace", "templates"),
    autoescape=select_autoescape(default=True, default_for_string=True),
)


@dataclass(frozen=True)
class FenceProblem:
    """A fence that could not be drawn: where it is and what to do about it (one line)."""

    page: str
    line: int | None
    message: str

    @property
    def where(self) -> str:
        return f"{self.page}:{self.line}" if self.line is not None else self.page

    def __str__(self) -> str:
        return f"{self.where}: {self.message}"


class FenceErrors(ModelTraceError):
    """Raised after converting a document whose fences could not all be drawn
    (``on_error: fail``); ``problems`` lists them."""

    def __init__(self, problems: list[FenceProblem]) -> None:
        super().__init__(f"model-trace: {len(problems)} figure(s) could not be drawn: "
                         + "; ".join(map(str, problems)))
        self.problems = problems


@dataclass
class FenceState:
    """The session fences are traced by, and what the formatter keeps between fences of one
    page: where the page's fences are, what went wrong, and the export files to write."""

    session: TraceSession = field(
        default_factory=lambda: shared_session(Settings(isolate=False)))
    page: str = UNNAMED_PAGE
    export_base: Callable[[str], str] = str
    """The file name (without suffix) of a figure's export files, from its id prefix."""
    fences: list[tuple[int, str]] = field(default_factory=list)
    problems: list[FenceProblem] = field(default_factory=list)
    warnings: list[FenceProblem] = field(default_factory=list)
    """Figures drawn from traces that assumed values (``assume: warn``): logged as warnings."""
    files: dict[str, bytes] = field(default_factory=dict)
    rendered: int = 0
    reported: bool = False
    """Whether this document's problems were reported already."""
    lines_known: bool = True
    """False for a document converted before the extension's preprocessor was registered."""
    site_dir: Path | None = None
    page_folder: Path | None = None
    """Where the site's output and this page's files go, when the extension writes them."""

    def start_page(self, page: str, export_base: Callable[[str], str] = str) -> None:
        self.page = page
        self.export_base = export_base
        self.fences = []
        self.problems = []
        self.warnings = []
        self.files = {}
        self.rendered = 0
        self.reported = False

    def claim_line(self, body: str) -> int | None:
        """The page line of the first not-yet-drawn fence with this body (None if no fence
        of the page has it: a wrong line is worse than none)."""
        wanted = _comparable(body)
        for index, (line, text) in enumerate(self.fences):
            if _comparable(text) == wanted:
                del self.fences[index]
                return line
        return None

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


def _comparable(body: str) -> str:
    """A fence body as SuperFences and ``find_fences`` both see it: tabs expanded, common
    indentation and trailing spaces removed."""
    lines = [line.expandtabs(4).rstrip() for line in body.strip("\n").splitlines()]
    return textwrap.dedent("\n".join(lines))


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
        closing = re.compile(rf"^[ \t>]*{re.escape(fence[0])}{{{len(fence)},}}[ \t]*$")
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

    def __init__(self, md: Markdown, state: FenceState, paths: list[str] | None = None) -> None:
        super().__init__(md)
        self.state = state
        self.paths = paths or []

    def run(self, lines: list[str]) -> list[str]:
        root = _follow_site_context(self.md, self.state)
        put_on_sys_path(self.paths, root or Path.cwd())
        self.state.problems = []
        self.state.warnings = []
        self.state.reported = False
        self.state.fences = find_fences(lines)
        self.state.prefetch({self.state.page: self.state.fences})
        return lines


def export_namer(stem: str) -> Callable[[str], str]:
    """How the export files of a page whose output file is ``stem``.html are named, from a
    figure's id prefix: ``model-trace-1.svg`` beside an index page, else
    ``stem-model-trace-1.svg``."""
    return lambda prefix: prefix if stem == "index" else f"{stem}-{prefix}"


def _follow_site_context(md: Markdown, state: FenceState) -> Path | None:
    """Name the page a site generator is rendering, and where its output goes, where the
    generator says so: Zensical registers a preprocessor holding the page (``.page.path``,
    ``.page.url``) and the site's configuration (``root_dir``, ``site_dir``). Returns the
    site's root folder, if known."""
    for processor in md.preprocessors:
        page = getattr(processor, "page", None)
        path, url = getattr(page, "path", None), getattr(page, "url", None)
        config = getattr(processor, "config", None)
        if not isinstance(path, str) or not path:
            continue
        state.start_page(path, state.export_base)
        if isinstance(url, str) and isinstance(config, dict) and config.get("site_dir"):
            site_dir = Path(config.get("root_dir") or ".") / str(config["site_dir"])
            destination = url + "index.html" if url in ("", "/") or url.endswith("/") else url
            folder, _, file_name = destination.lstrip("/").rpartition("/")
            stem = file_name.rpartition(".")[0] or file_name
            state.start_page(path, export_namer(stem))
            state.site_dir, state.page_folder = site_dir, site_dir / folder
        root = config.get("root_dir") if isinstance(config, dict) else None
        return Path(root) if isinstance(root, str) and root else None
    return None


class _DocumentEnd(Postprocessor):
    """Once per document: writes its export files and the viewer's files where the site's
    output is known (Zensical), and reports its fence problems as ``on_error`` says.

    Postprocessors also run on fragments (the table of contents renders headings with them),
    but every fence has been formatted before the first run."""

    def __init__(self, md: Markdown, state: FenceState, on_error: str) -> None:
        super().__init__(md)
        self.state = state
        self.on_error = on_error

    def run(self, text: str) -> str:
        if self.state.reported or self.on_error == "record":
            return text
        self.state.reported = True
        if self.state.page_folder is not None and self.state.site_dir is not None:
            for name, data in self.state.files.items():
                write_atomic(self.state.page_folder / name, data)
            if self.state.rendered:
                write_assets(self.state.site_dir)
        for warning in self.state.warnings:
            log.warning(f"model-trace: {warning}")
        problems = self.state.problems
        for problem in problems:
            (log.error if self.on_error == "fail" else log.warning)(f"model-trace: {problem}")
        if problems and self.on_error == "fail":
            raise FenceErrors(list(problems))
        return text


def format_fence(
    source: str, language: str, class_name: str, options: dict[str, Any], md: Markdown,
    **_: Any,
) -> str:
    """SuperFences formatter: the figure for one fence, or an error box (never raises)."""
    state: FenceState | None = getattr(md, "model_trace_state", None)
    if state is None:  # only SuperFences' custom_fences names us: report problems all the same
        state = _attach_state(md)
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
    state.warnings.extend(FenceProblem(state.page, line, w) for w in rendered.warnings)
    return rendered.html


def _error_line(fence_line: int | None, spec: FenceSpec | None, error: Exception) -> int | None:
    """The page line of the field an error is about, else of the fence."""
    if fence_line is None or not isinstance(error, SpecError):
        return fence_line
    body_line = error.line if error.line is not None else (
        spec.line_of(error.field) if spec is not None else None)
    return fence_line + body_line if body_line is not None else fence_line


def _problem(state: FenceState, line: int | None, message: str) -> str:
    if line is None and not state.lines_known:
        message += (" (no line: add `model_trace.markdown_ext` to the Markdown extensions to "
                    "have each fence's line)")
    problem = FenceProblem(state.page, line, readable(message))
    state.problems.append(problem)
    return _ENVIRONMENT.get_template("error.html.j2").render(where=problem.where,
                                                             message=problem.message)


_ATTACH_LOCK = threading.RLock()


def _attach_state(md: Markdown) -> FenceState:
    """The state of a Markdown instance whose SuperFences got our fence without the
    extension: problems are still named by page and reported (this document has no lines;
    the next ones will)."""
    with _ATTACH_LOCK:
        state = getattr(md, "model_trace_state", None)
        if state is None:
            extension = ModelTraceExtension(register_fence=False, paths=[])
            extension.extendMarkdown(md)
            state = extension.state
            state.lines_known = False
            _follow_site_context(md, state)
    return state


def superfences_entry() -> dict[str, Any]:
    """The ``custom_fences`` entry that teaches SuperFences the model-trace fence."""
    return {"name": FENCE_NAME, "class": FENCE_NAME, "format": format_fence}


class ModelTraceExtension(Extension):
    """Python-Markdown extension: ``Markdown(extensions=["pymdownx.superfences", "model_trace"])``.

    It adds the fence to an already loaded SuperFences (or loads SuperFences itself), and keeps
    a ``FenceState`` on the Markdown instance as ``md.model_trace_state``. Its options (also
    given by name, as ``extension_configs`` or a site generator's ``markdown_extensions``
    entry): ``on_error`` (``fail``, ``warn``, ``record``), ``allowed_roots``, ``own_roots``,
    ``cache_dir``, ``shared_cache``, ``paths``. Fences trace in this process; every instance
    with the same options shares one session, and so one in-memory cache. Pass
    ``state=FenceState(TraceSession(Settings(...)))`` for worker processes or anything else
    ``Settings`` holds.
    """

    def __init__(self, state: FenceState | None = None, register_fence: bool = True,
                 **kwargs: Any) -> None:
        self.config = {
            "on_error": ["fail", "fail: log each fence that cannot be drawn and raise "
                         "FenceErrors after the document, so the run fails; warn: log them; "
                         "record: only keep them in md.model_trace_state.problems"],
            "allowed_roots": [list(DEFAULT_ALLOWED_ROOTS), "libraries whose public nn.Module "
                              "classes a fence may build"],
            "own_roots": [[], "the site's own packages: any class or function in them"],
            "cache_dir": ["", "a folder for traced figures between runs ('' for none)"],
            "shared_cache": [True, "share traces with the other sites of this machine, in the "
                             "user's cache folder ($MODEL_TRACE_CACHE_DIR, else "
                             "$XDG_CACHE_HOME/model-trace/traces)"],
            "paths": [["."], "folders put at the front of sys.path, so a site's own models "
                      "import: relative to the site's root (Zensical's) or the working folder"],
        }
        super().__init__(**kwargs)
        on_error = self.getConfig("on_error")
        if on_error not in ON_ERROR:
            raise ValueError(f"model_trace.markdown_ext: on_error is {on_error!r}; use one of "
                             f"{', '.join(ON_ERROR)}")
        self.on_error: str = on_error
        if state is None:
            cache_dir = self.getConfig("cache_dir")
            state = FenceState(shared_session(Settings(
                allowed_roots=tuple(self.getConfig("allowed_roots")),
                own_roots=tuple(self.getConfig("own_roots")),
                cache_dir=Path(cache_dir) if cache_dir else None,
                shared_dir=user_cache_dir() if self.getConfig("shared_cache") else None,
                isolate=False)))
        self.state = state
        self.register_fence = register_fence
        self.paths: list[str] = list(self.getConfig("paths"))

    def extendMarkdown(self, md: Markdown) -> None:
        md.model_trace_state = self.state  # type: ignore[attr-defined]
        md.preprocessors.register(_FenceCollector(md, self.state, self.paths),
                                  "model_trace_lines", 40)
        md.postprocessors.register(_DocumentEnd(md, self.state, self.on_error),
                                   "model_trace_problems", 0)
        md.registerExtension(self)
        if self.register_fence:
            _add_to_superfences(md)

    def reset(self) -> None:
        self.state.fences = []


_SESSIONS: dict[Settings, TraceSession] = {}


def shared_session(settings: Settings) -> TraceSession:
    """One session per settings in this process, for the Markdown instances a site generator
    makes page by page."""
    with _ATTACH_LOCK:
        session = _SESSIONS.get(settings)
        if session is None:
            session = _SESSIONS[settings] = TraceSession(settings)
        return session


def _add_to_superfences(md: Markdown) -> None:
    from pymdownx.superfences import SuperFencesCodeExtension

    loaded = [e for e in md.registeredExtensions if isinstance(e, SuperFencesCodeExtension)]
    if loaded:
        entry = superfences_entry()
        extend = loaded[-1].extend_super_fences
        callbacks: list[Callable[..., Any]] = [
            lambda src="", language="", options=None, md=None, **kwargs: entry["format"](
                src, language, FENCE_NAME, options or {}, md, **kwargs
            ),
            lambda language, inputs, options, attrs, md: True,
        ]
        if "reset" in inspect.signature(extend).parameters:  # pymdown-extensions 11 and later
            callbacks.append(lambda md: None)
        extend(FENCE_NAME, *callbacks)
    else:
        SuperFencesCodeExtension(custom_fences=[superfences_entry()]).extendMarkdown(md)


def makeExtension(**kwargs: Any) -> ModelTraceExtension:
    """Entry point for ``Markdown(extensions=["model_trace.markdown_ext"])``."""
    return ModelTraceExtension(**kwargs)
