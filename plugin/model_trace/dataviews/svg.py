"""What every data view's drawing shares: text and its widths, outlines, heat maps and their
legend, number text, the figure's HTML around the SVG.

A data view is drawn once, here in Python, as static SVG markup with the light colours as
attributes (readable without scripts, in print, in cairosvg and rsvg-convert) and classes
that the site's stylesheet colours in the page's scheme (``palette``); the page's script only adds
behaviour to the elements it finds (``assets/viewer/6-dataviews.js``). Text widths come from
the viewer's own font-metrics table (run in the build-time engine), so labels are measured
as the graph figure measures them.
"""

from __future__ import annotations

import html
import json
from dataclasses import dataclass, field
from typing import Any

from jinja2 import Environment, PackageLoader, select_autoescape

from model_trace.dataviews.palette import LEVELS, heat
from model_trace.engine import evaluate
from model_trace.render_html import script_safe_json

FONTS = "Helvetica, Arial, sans-serif"
"""The graph figure's font stack (``3-render.js``)."""
TEXT = "#1f2328"
MUTED = "#57606a"
"""Text and secondary text on a light ground (the stylesheet's ``--mt-fg``, ``--mt-muted`` on
a page)."""

_ENVIRONMENT = Environment(loader=PackageLoader("model_trace", "templates"),
                           autoescape=select_autoescape(default=True, default_for_string=True),
                           trim_blocks=True)


def text_width(text: str, size: float, bold: bool = False) -> float:
    """The width of ``text`` in px, by the viewer's font-metrics table."""
    return float(evaluate("modelTrace.textWidth", text, size, bold))


def esc(text: Any) -> str:
    return html.escape(str(text), quote=True)


def num(value: float) -> str:
    """A coordinate: at most two decimals, no trailing zeros."""
    text = f"{value:.2f}".rstrip("0").rstrip(".")
    return "0" if text == "-0" else text


def cells_path(cells: list[tuple[int, int]], x0: float, y0: float, w: float, h: float) -> str:
    """One path drawing the cells ``(row, column)`` of a grid at (x0, y0), runs of
    neighbours in a row merged."""
    parts = []
    cells = sorted(cells)
    i = 0
    while i < len(cells):
        row, col = cells[i]
        end = col
        while i + 1 < len(cells) and cells[i + 1] == (row, end + 1):
            i += 1
            end += 1
        parts.append(f"M{num(x0 + col * w)} {num(y0 + row * h)}h{num((end - col + 1) * w)}"
                     f"v{num(h)}h{num(-(end - col + 1) * w)}z")
        i += 1
    return "".join(parts)


def label(x: float, y: float, text: str, size: float = 10, *, muted: bool = False,
          bold: bool = False, anchor: str = "", cls: str = "", extra: str = "") -> str:
    """A ``<text>`` of the figure: the ground's text colour (``muted``: the secondary one),
    ``anchor`` ``middle`` or ``end``, ``cls`` more classes, ``extra`` more attributes."""
    classes = " ".join(filter(None, (cls, "mt-mu" if muted else "")))
    attributes = [f'class="{classes}"'] if classes else []
    attributes += [f'x="{num(x)}"', f'y="{num(y)}"', f'font-size="{num(size)}"']
    if bold:
        attributes.append('font-weight="bold"')
    if anchor:
        attributes.append(f'text-anchor="{anchor}"')
    attributes.append(f'fill="{MUTED if muted else TEXT}"')
    if extra:
        attributes.append(extra)
    return f'<text {" ".join(attributes)}>{esc(text)}</text>'


def frame(x: float, y: float, width: float, height: float, extra: str = "") -> str:
    """A thin outline (a map's, a plot's) in the ground's line colour."""
    return (f'<rect class="mt-frame" x="{num(x)}" y="{num(y)}" width="{num(width)}" '
            f'height="{num(height)}" fill="none" stroke="{MUTED}" stroke-width="0.5"{extra}/>')


def heat_paths(levels: list[list[int]], x0: float, y0: float, w: float, h: float) -> str:
    """A heat map of ``levels[row][column]`` as one path per colour (level 0 left blank), with
    crisp edges: antialiasing would draw seams between neighbouring cells of one colour."""
    by_level: dict[int, list[tuple[int, int]]] = {}
    for r, row in enumerate(levels):
        for c, value in enumerate(row):
            if value:
                by_level.setdefault(value, []).append((r, c))
    return "".join(f'<path {heat(lv)} shape-rendering="crispEdges" '
                   f'd="{cells_path(cells, x0, y0, w, h)}"/>'
                   for lv, cells in sorted(by_level.items()))


def legend_bar(x: float, y: float, width: float, low: str, high: str, title: str) -> str:
    """A colour bar from level 0 to the top one, labelled at both ends."""
    step = width / LEVELS
    rects = "".join(f'<rect x="{num(x + i * step)}" y="{num(y)}" width="{num(step + 0.3)}" '
                    f'height="8" {heat(i)}/>' for i in range(LEVELS))
    return (f'<g class="mt-legend-bar">{rects}{frame(x, y, width, 8)}'
            f'{label(x, y + 20, low, muted=True)}'
            f'{label(x + width, y + 20, high, muted=True, anchor="end")}'
            f'{label(x, y - 4, title, muted=True)}</g>')


def svg_document(body: str, width: float, height: float, title: str, prefix: str,
                 kind: str) -> str:
    """The SVG element of a data view (its own file when exported)."""
    return (f'<svg xmlns="http://www.w3.org/2000/svg" class="mt-dataview-svg" '
            f'data-view="{esc(kind)}" width="{num(width)}" height="{num(height)}" '
            f'viewBox="0 0 {num(width)} {num(height)}" font-family="{FONTS}" role="img" '
            f'aria-labelledby="{esc(prefix)}-title"><title id="{esc(prefix)}-title">'
            f'{esc(title)}</title><rect class="mt-dv-bg" width="{num(width)}" '
            f'height="{num(height)}" fill="#ffffff"/>{body}</svg>')


@dataclass(frozen=True)
class Drawn:
    """A data view drawn: the SVG, the numbers the page's script reads, the caption."""

    kind: str
    svg: str
    data: dict[str, Any] = field(default_factory=dict)
    caption: str = ""

    def figure_html(self, prefix: str, theme: str = "auto") -> str:
        """The figure that replaces the fence: the SVG, its numbers, its caption; ``theme``
        light or dark fixes its colours, auto follows the page."""
        data = script_safe_json(json.dumps(self.data, separators=(",", ":"),
                                           ensure_ascii=False))
        return _ENVIRONMENT.get_template("dataview.html.j2").render(
            prefix=prefix, kind=self.kind, svg=self.svg, data=data, caption=self.caption,
            theme=theme)
