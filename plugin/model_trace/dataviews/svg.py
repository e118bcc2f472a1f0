"""What every data view's drawing shares: the heat palette, text widths, number text, the
figure's HTML around the SVG.

A data view is drawn once, here in Python, as static SVG markup with plain colours (readable
without scripts, in print, in cairosvg and rsvg-convert); the page's script only adds
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

from model_trace.engine import evaluate
from model_trace.render_html import script_safe_json

FONTS = "Helvetica, Arial, sans-serif"
"""The graph figure's font stack (``3-render.js``)."""
TEXT = "#1f2328"
MUTED = "#57606a"
HEAT_STOPS = ("#ffffff", "#deebf7", "#c6dbef", "#9ecae1", "#6baed6", "#4292c6", "#2171b5",
              "#08519c", "#08306b")
"""A sequential scale from white (0) to dark blue (1): ink only where there is weight."""
LEVELS = 16
"""Colours a heat map uses: values are binned, so a map is a few paths, one per colour."""
GROUP_COLOURS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf", "#8c564b",
                 "#e377c2", "#7f7f7f", "#bcbd22")
"""Colours of the groups of a scatter plot, in the order the groups come."""

_ENVIRONMENT = Environment(loader=PackageLoader("model_trace", "templates"),
                           autoescape=select_autoescape(default=True, default_for_string=True),
                           trim_blocks=True)


def _mix(a: str, b: str, t: float) -> str:
    ca = [int(a[i:i + 2], 16) for i in (1, 3, 5)]
    cb = [int(b[i:i + 2], 16) for i in (1, 3, 5)]
    return "#" + "".join(f"{round(x + (y - x) * t):02x}" for x, y in zip(ca, cb, strict=True))


def _palette() -> tuple[str, ...]:
    colours = []
    for level in range(LEVELS):
        at = level / (LEVELS - 1) * (len(HEAT_STOPS) - 1)
        low = min(int(at), len(HEAT_STOPS) - 2)
        colours.append(_mix(HEAT_STOPS[low], HEAT_STOPS[low + 1], at - low))
    return tuple(colours)


PALETTE = _palette()
"""The colour of each level, 0 (white) to ``LEVELS - 1``."""


def level(value: float, top: float = 1.0) -> int:
    """The palette level of ``value`` on a scale from 0 to ``top``."""
    if top <= 0:
        return 0
    return max(0, min(LEVELS - 1, round(value / top * (LEVELS - 1))))


def text_on(colour: str) -> str:
    """Black or white text, whichever contrasts more with ``colour``."""
    r, g, b = (int(colour[i:i + 2], 16) / 255 for i in (1, 3, 5))
    luminance = sum(w * (c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4)
                    for w, c in zip((0.2126, 0.7152, 0.0722), (r, g, b), strict=True))
    return "#000000" if (luminance + 0.05) / 0.05 >= 1.05 / (luminance + 0.05) else "#ffffff"


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


def heat_paths(levels: list[list[int]], x0: float, y0: float, w: float, h: float,
               extra: str = "") -> str:
    """A heat map of ``levels[row][column]`` as one path per colour (level 0 left blank)."""
    by_level: dict[int, list[tuple[int, int]]] = {}
    for r, row in enumerate(levels):
        for c, value in enumerate(row):
            if value:
                by_level.setdefault(value, []).append((r, c))
    return "".join(f'<path{extra} fill="{PALETTE[lv]}" d="{cells_path(cells, x0, y0, w, h)}"/>'
                   for lv, cells in sorted(by_level.items()))


def legend_bar(x: float, y: float, width: float, low: str, high: str, title: str) -> str:
    """A colour bar from level 0 to the top one, labelled at both ends."""
    step = width / LEVELS
    rects = "".join(f'<rect x="{num(x + i * step)}" y="{num(y)}" width="{num(step + 0.3)}" '
                    f'height="8" fill="{c}"/>' for i, c in enumerate(PALETTE))
    return (f'<g class="mt-legend-bar">{rects}<rect x="{num(x)}" y="{num(y)}" '
            f'width="{num(width)}" height="8" fill="none" stroke="{MUTED}" stroke-width="0.5"/>'
            f'<text x="{num(x)}" y="{num(y + 20)}" font-size="10" fill="{MUTED}">{esc(low)}</text>'
            f'<text x="{num(x + width)}" y="{num(y + 20)}" font-size="10" fill="{MUTED}" '
            f'text-anchor="end">{esc(high)}</text><text x="{num(x)}" y="{num(y - 4)}" '
            f'font-size="10" fill="{MUTED}">{esc(title)}</text></g>')


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

    def figure_html(self, prefix: str) -> str:
        """The figure that replaces the fence: the SVG, its numbers, its caption."""
        data = script_safe_json(json.dumps(self.data, separators=(",", ":"),
                                           ensure_ascii=False))
        return _ENVIRONMENT.get_template("dataview.html.j2").render(
            prefix=prefix, kind=self.kind, svg=self.svg, data=data, caption=self.caption)
