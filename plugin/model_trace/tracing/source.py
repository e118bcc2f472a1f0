"""Where things come from in the model's code: op call sites and module class spans.

Both are looked up once per process and cached (per code object and line, per class), because
the tracer asks for a call site on every op and a 671B model runs a quarter of a million of
them.
"""

from __future__ import annotations

import ast
import inspect
import linecache
import os
import sys
import weakref
from types import CodeType, FrameType
from typing import Any

import torch

from model_trace.graph import SourceLocation, SourceSpan

_TORCH_DIR = os.path.dirname(torch.__file__) + os.sep
_TORCH_MODULES_DIR = os.path.join(_TORCH_DIR, "nn", "modules") + os.sep
_PACKAGE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep


def relative_source_path(path: str) -> str:
    """A stable, machine-independent name for a source file: relative to its sys.path root."""
    path = os.path.abspath(path)
    roots = sorted((os.path.abspath(p) for p in sys.path if p), key=len, reverse=True)
    for root in roots:
        if path.startswith(root + os.sep):
            return os.path.relpath(path, root).replace(os.sep, "/")
    return os.path.basename(path)


def is_model_code(code: CodeType) -> bool:
    """Code a reader wants an op to point at: anything but torch internals and model-trace.

    torch's own ``nn.modules`` count as model code, so an op inside ``nn.Linear.forward``
    points at that line rather than at the caller of the module.
    """
    file = code.co_filename
    if file.startswith("<") or file.startswith(_PACKAGE_DIR):
        return False
    return not file.startswith(_TORCH_DIR) or file.startswith(_TORCH_MODULES_DIR)


def is_tracer_code(code: CodeType) -> bool:
    return code.co_filename.startswith(_PACKAGE_DIR)


PASS_THROUGH: set[CodeType] = set()
"""The tracer's own code that runs a model's code (``replay``'s stand-in for a module's
``forward``): a call site is looked for above it, as if it were not there."""


# torch's dispatch machinery: never the place an op "comes from", even inside a traced function.
_DISPATCH_FILES = tuple(
    os.path.join(_TORCH_DIR, name) for name in ("overrides.py", "_ops.py", "_tensor.py", "utils")
)


def is_traced_torch_code(code: CodeType) -> bool:
    """Code of a torch Python function the tracer descends into (``trace_depth`` > 0)."""
    file = code.co_filename
    return file.startswith(_TORCH_DIR) and not file.startswith(_DISPATCH_FILES)


_CLASS_SPANS: weakref.WeakKeyDictionary[Any, SourceSpan | None] = weakref.WeakKeyDictionary()
"""Source span of each class (or function) seen by any trace of this process."""


class _SiteCaches:
    """Call sites found by any trace of this process: a small model's trace meets each of
    its lines a few times only, and finding one (its line, text and file name) costs
    several microseconds. A location names its file relative to a ``sys.path`` folder, so
    the caches are emptied when ``sys.path`` has changed since they were filled (a site's
    folders put on it)."""

    def __init__(self) -> None:
        self.path: list[str] = []
        # per code object: None (not model code) or its call sites by bytecode offset
        self.model_code: dict[int, tuple[CodeType, dict[int, SourceLocation] | None]] = {}
        self.locations: dict[tuple[int, int], tuple[CodeType, SourceLocation]] = {}
        self.files: dict[str, str] = {}

    def current(self) -> _SiteCaches:
        """These caches, new ones if ``sys.path`` changed (a trace still running keeps
        those it was given)."""
        if self.path != sys.path:
            self.path = list(sys.path)
            self.model_code, self.locations, self.files = {}, {}, {}
        return self


_SITES = _SiteCaches()


class SourceIndex:
    """Caches of call sites (per code object and instruction) and class spans (per class).

    Code objects are keyed by ``id``: hashing one hashes its whole contents (0.5 us for a
    long function, on every op). Each entry keeps its code object, so an id cannot be
    reused while its entry exists."""

    def __init__(self) -> None:
        sites = _SITES.current()
        self._model_code = sites.model_code
        self._locations = sites.locations
        self._files = sites.files
        self._spans: dict[Any, SourceSpan | None] = {}  # this trace's, from _CLASS_SPANS: a
        # weak dictionary takes 1 us a look-up, and every module call asks

    def call_site(self, frame: FrameType | None, in_torch_function: bool = False
                  ) -> SourceLocation | None:
        """The innermost frame of model code at or above ``frame``, as a location.

        The walk stops at model-trace's own frames: those sit below the traced forward, so
        an op called by the tracer itself (or by torch alone) has no location. Inside a torch
        function the tracer descends into, that function's own lines count as model code.
        A location is looked up by the frame's bytecode offset: a frame's line number
        decodes the line table from the function's start (2 us, deep in a long ``forward``).
        """
        if in_torch_function:
            return self._torch_call_site(frame)
        known = self._model_code
        while frame is not None:
            code = frame.f_code
            entry = known.get(id(code))
            if entry is None:
                if is_tracer_code(code) and code not in PASS_THROUGH:
                    return None
                entry = known[id(code)] = (code, {} if is_model_code(code) else None)
            sites = entry[1]
            if sites is not None:
                location = sites.get(frame.f_lasti)
                if location is None:
                    location = sites[frame.f_lasti] = self._location(code, frame.f_lineno)
                return location
            frame = frame.f_back
        return None

    def _torch_call_site(self, frame: FrameType | None) -> SourceLocation | None:
        while frame is not None:
            code = frame.f_code
            if not is_tracer_code(code) and (is_traced_torch_code(code) or is_model_code(code)):
                return self._location(code, frame.f_lineno)
            frame = frame.f_back
        return None

    def _location(self, code: CodeType, line: int) -> SourceLocation:
        """The location of ``line`` in ``code``, made once per (code, line)."""
        entry = self._locations.get((id(code), line))
        if entry is None:
            file = code.co_filename
            relative = self._files.get(file)
            if relative is None:
                relative = self._files[file] = relative_source_path(file)
            location = SourceLocation(relative, line, linecache.getline(file, line).strip())
            entry = self._locations[(id(code), line)] = (code, location)
        return entry[1]

    def class_span(self, cls: Any) -> SourceSpan | None:
        """Where ``cls`` (a class or function) is defined, or None without Python source."""
        try:
            return self._spans[cls]
        except KeyError:
            span = self._spans[cls] = _class_span(cls)
            return span


def _class_span(cls: Any) -> SourceSpan | None:
    """Where ``cls`` is defined; kept for the whole process, like ``linecache``: finding a
    class in its file parses the file (20 ms for one of transformers' modeling files), which
    would be most of the time of tracing a small model; a file is parsed once for all its
    classes."""
    if cls not in _CLASS_SPANS:
        try:
            lines, start = _class_source(cls) if inspect.isclass(cls) \
                else inspect.getsourcelines(cls)
            file = relative_source_path(inspect.getsourcefile(cls) or "")
            _CLASS_SPANS[cls] = SourceSpan(file, start, start + len(lines) - 1)
        except (OSError, TypeError):
            _CLASS_SPANS[cls] = None
    return _CLASS_SPANS[cls]


_CLASS_STARTS: dict[str, tuple[list[str], dict[str, int]]] = {}
"""Per source file: its lines as ``linecache`` holds them, and the first line (0-based, its
first decorator's) of each class defined in it, by qualified name."""


def _class_source(cls: type) -> tuple[list[str], int]:
    """``inspect.getsourcelines(cls)`` (the class's lines and first line number), from one
    parse of its file however many of its classes are asked for: ``inspect`` parses the
    whole file for each class. A file ``linecache`` reloads (it changed) is parsed again."""
    file = inspect.getsourcefile(cls)
    if not file:
        raise OSError(f"no source file for {cls.__qualname__}")
    linecache.checkcache(file)
    module = sys.modules.get(cls.__module__)
    lines = linecache.getlines(file, module.__dict__ if module is not None else None)
    cached = _CLASS_STARTS.get(file)
    if cached is None or cached[0] is not lines:
        cached = _CLASS_STARTS[file] = (lines, _class_starts("".join(lines)))
    start = cached[1].get(cls.__qualname__)
    if start is None:
        raise OSError(f"no definition of {cls.__qualname__} in {file}")
    return inspect.getblock(lines[start:]), start + 1


def _class_starts(source: str) -> dict[str, int]:
    """The first line (0-based, its first decorator's) of each class in ``source`` by
    qualified name, the first definition of a name winning, as ``inspect`` finds them."""
    starts: dict[str, int] = {}

    def visit(node: ast.AST, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                visit(child, f"{prefix}{child.name}.<locals>.")
            elif isinstance(child, ast.ClassDef):
                name = prefix + child.name
                first = child.decorator_list[0] if child.decorator_list else child
                starts.setdefault(name, first.lineno - 1)
                visit(child, name + ".")
            else:
                visit(child, prefix)

    visit(ast.parse(source), "")
    return starts
