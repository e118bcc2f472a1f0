"""Run the viewer's own layout and rendering at build time, in an embedded V8 (``mini-racer``).

The figure engine is JavaScript (``assets/viewer/0-metrics.js`` to ``3-render.js``): the same
code lays out and draws the first view a page ships, every state the reader opens in the
browser, and the SVG files a fence or ``model-trace render`` exports, so the three can never
disagree. Python hands it the view data (``view_data``) and the state to draw. One V8 context
per process, made on first use and closed at exit (an isolate left open can hang the
interpreter's shutdown).
"""

from __future__ import annotations

import atexit
import json
import os
import threading
from dataclasses import dataclass
from importlib import resources
from typing import Any

from model_trace.errors import ModelTraceError

ENGINE_SCRIPTS = ("0-metrics.js", "1-state.js", "2-layout.js", "3-marks.js", "3-render.js")
"""The viewer's modules that need no page: text widths, state, layout, marks, rendering."""


@dataclass(frozen=True)
class Drawing:
    """An SVG the engine drew, with the graph's size in px (without export margins)."""

    svg: str
    width: float
    height: float


@dataclass(frozen=True)
class DrawOptions:
    """Which state to draw, and how."""

    depth: int
    """Module levels open (-1: every box, the groups of idle modules too)."""
    overlay: str = "none"
    direction: str = "TB"
    prefix: str = "model-trace"
    standalone: bool = False
    """A file of its own (background, margin, legend) instead of the figure a page ships."""
    theme: str = "light"
    """The palette of a standalone file: light or dark."""
    legend: bool = True
    state: str = ""
    """A state the reader can reach, as the page's address encodes it (``e:<open ids>;
    u:<unfolded repeats>;s:<selected>``, ``1-state.js``), over the one ``depth`` opens."""


class _Engine:
    """One V8 context with the engine's scripts loaded."""

    def __init__(self) -> None:
        try:
            from py_mini_racer import MiniRacer
        except ImportError as error:  # pragma: no cover - a dependency of the package
            raise ModelTraceError(
                "model-trace draws figures with mini-racer (an embedded V8), which is not "
                "installed; install it with `pip install mini-racer`") from error
        self.context = MiniRacer()
        atexit.register(self.context.close)
        folder = resources.files("model_trace") / "assets" / "viewer"
        for name in ENGINE_SCRIPTS:
            self.context.eval(folder.joinpath(name).read_text(encoding="utf-8"))
        self.lock = threading.Lock()

    def call(self, function: str, *args: Any) -> Any:
        with self.lock:
            return self.context.call(function, *args)


_ENGINE: _Engine | None = None
_ENGINE_PID = 0


def _engine() -> _Engine:
    global _ENGINE, _ENGINE_PID
    if _ENGINE is None or os.getpid() != _ENGINE_PID:
        _ENGINE, _ENGINE_PID = _Engine(), os.getpid()
    return _ENGINE


def draw(view_data: dict[str, Any] | str, options: DrawOptions) -> Drawing:
    """The figure of ``view_data`` in the state ``options`` names, drawn by the JS engine."""
    text = view_data if isinstance(view_data, str) else json.dumps(view_data)
    result = _engine().call("modelTrace.drawFigure", text, {
        "depth": options.depth, "overlay": options.overlay, "direction": options.direction,
        "prefix": options.prefix, "state": options.state,
        "standalone": options.standalone, "theme": options.theme, "legend": options.legend})
    return Drawing(result["svg"], float(result["width"]), float(result["height"]))


def place(view_data: dict[str, Any] | str, options: DrawOptions) -> dict[str, Any]:
    """Where the engine puts every box, route and edge label of a state (absolute px):
    ``boxes`` by item id (x, y, w, h, open, label, parent), ``routes`` (src, dst, points),
    ``labels`` (text, x, y, width), ``order`` (reading order), ``runs`` (groups laid out)."""
    text = view_data if isinstance(view_data, str) else json.dumps(view_data)
    return _engine().call("modelTrace.placeFigure", text, {
        "depth": options.depth, "overlay": options.overlay, "direction": options.direction,
        "state": options.state})


def evaluate(function: str, *args: Any) -> Any:
    """Call any function of the engine (``modelTrace.<name>``); for tests and benchmarks."""
    return _engine().call(function, *args)
