"""The attention view: one map large (queries down, keys across), and a layer × head grid of
thumbnails with each layer's head average, every map on one colour scale from 0 to 1.

Without scripts each cell's ``<title>`` says its weight, and where the large map's cells are
big enough the weights of 0.1 and more are written in them (two decimals, black or white for
contrast); the page's script lets a click on a thumbnail show that map large, a click on a
token highlight its row and column, and the pointer read weights out under the figure.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from model_trace.dataviews.attention import AttentionMap
from model_trace.dataviews.palette import LIGHT, PALETTE, heat, heat_text, level
from model_trace.dataviews.svg import (
    MUTED,
    Drawn,
    esc,
    frame,
    heat_paths,
    label,
    legend_bar,
    num,
    svg_document,
    text_width,
)
from model_trace.errors import SpecError

MARGIN = 8.0
LABEL_SIZE = 11.0
DETAIL_SIDE = 360.0
"""About how wide the large map is (cells between 8 and 22 px)."""
THUMB = 44.0
GAP = 6.0
MAX_TOKENS = 128
"""The most tokens an attention view draws (a map of 128 × 128 cells)."""
VALUE_CELL = 18.0
"""The least cell size (px) of the large map that has its weights written in."""
VALUE_LEAST = 0.1
"""The least weight written in a cell: the smaller ones would only be noise of "0.0x"."""


@dataclass(frozen=True)
class Panel:
    """One map of the figure: a head of a layer, or a layer's mean over its heads."""

    layer: int
    head: int | None
    """None for the mean over the layer's heads."""
    path: str
    weights: torch.Tensor
    """[queries, keys]."""

    @property
    def label(self) -> str:
        what = f"head {self.head}" if self.head is not None else "mean of the heads"
        return f"Layer {self.layer}, {what}"


def select_panels(maps: list[AttentionMap], layers: tuple[int, ...] | None,
                  heads: tuple[int, ...] | None) -> list[list[Panel]]:
    """The rows of the grid: per chosen layer, its chosen heads, then (with more than one
    head) their mean. ``SpecError`` for a layer or head the model does not have."""
    layer_ids = list(layers) if layers is not None else list(range(len(maps)))
    _check_indices(layer_ids, len(maps), "layers", "attention layers")
    rows = []
    for index in layer_ids:
        weights = maps[index].weights
        head_ids = list(heads) if heads is not None else list(range(weights.shape[0]))
        _check_indices(head_ids, weights.shape[0], "heads", f"heads in layer {index}")
        row = [Panel(index, h, maps[index].path, weights[h]) for h in head_ids]
        if len(head_ids) > 1:
            row.append(Panel(index, None, maps[index].path, weights[head_ids].mean(0)))
        rows.append(row)
    return rows


def _check_indices(chosen: list[int], count: int, field: str, what: str) -> None:
    wrong = [i for i in chosen if i >= count]
    if wrong:
        raise SpecError(f"{field} names {wrong[0]}, but the model has {count} {what} "
                        f"(0–{count - 1})", field=field)


def draw_attention(rows: list[list[Panel]], tokens: list[str], prefix: str,
                   note: str = "") -> Drawn:
    """The figure of the panels ``rows`` over ``tokens``; ``note`` (seeded random weights)
    goes into the caption."""
    n = len(tokens)
    panels = [p for row in rows for p in row]
    first = panels[0]
    cell = max(8.0, min(22.0, DETAIL_SIDE / n))
    label_w = max(text_width(t, LABEL_SIZE) for t in tokens) + 6
    x0 = MARGIN + label_w
    y0 = MARGIN + 36 + label_w
    side = n * cell
    parts = [label(MARGIN, MARGIN + 12, first.label, 13, bold=True, cls="mt-dv-heading"),
             label(MARGIN, MARGIN + 26, f"{first.path} · rows: queries, columns: keys",
                   muted=True)]
    parts.append(_token_labels(tokens, x0, y0, cell))
    parts.append(_detail_cells(first, tokens, x0, y0, cell))
    if cell >= VALUE_CELL:
        parts.append(_detail_values(first, x0, y0, cell))
    parts.append(frame(x0, y0, side, side))
    width = max(x0 + side, text_width(first.label, 13, True) + MARGIN,
                text_width(first.path, 10) + 160) + MARGIN
    bottom = y0 + side + 14
    parts.append(legend_bar(x0, bottom + 12, min(side, 200.0), "0", "1", "attention weight"))
    bottom += 36
    if len(panels) > 1:
        grid, grid_w, bottom = _grid(rows, n, bottom + 14)
        parts.append(grid)
        width = max(width, grid_w)
    svg = svg_document("".join(parts), width, bottom + MARGIN,
                       f"Attention weights: {first.label}", prefix, "attention")
    data = {"tokens": tokens, "maps": [_map_data(p, cell >= VALUE_CELL) for p in panels],
            "palette": list(PALETTE), "ink": list(LIGHT.heat_text)}
    written = (f"; weights of {VALUE_LEAST} and more are written in the cells"
               if cell >= VALUE_CELL else "")
    caption = (f"Attention weights over {n} tokens"
               f"{', ' + note if note else ''}: each row is one query token, its weights over "
               f"the keys sum to 1{written}.")
    return Drawn("attention", svg, data, caption)


def _token_labels(tokens: list[str], x0: float, y0: float, cell: float) -> str:
    out = []
    for i, token in enumerate(tokens):
        y = y0 + (i + 0.5) * cell + LABEL_SIZE * 0.35
        out.append(label(x0 - 4, y, token, LABEL_SIZE, anchor="end", cls="mt-tok",
                         extra=f'data-t="{i}"'))
        x = x0 + (i + 0.5) * cell + LABEL_SIZE * 0.35
        out.append(label(x, y0 - 4, token, LABEL_SIZE, cls="mt-tok",
                         extra=f'data-t="{i}" transform="rotate(-90 {num(x)} {num(y0 - 4)})"'))
    return f'<g class="mt-tokens">{"".join(out)}</g>'


def _detail_cells(panel: Panel, tokens: list[str], x0: float, y0: float, cell: float) -> str:
    out = []
    for q, row in enumerate(panel.weights.tolist()):
        for k, weight in enumerate(row):
            out.append(f'<rect {heat(level(weight), "mt-cell")} data-q="{q}" data-k="{k}" '
                       f'x="{num(x0 + k * cell)}" y="{num(y0 + q * cell)}" width="{num(cell)}" '
                       f'height="{num(cell)}"><title>{esc(tokens[q])} → {esc(tokens[k])}: '
                       f'{weight:.3f}</title></rect>')
    return f'<g class="mt-detail">{"".join(out)}</g>'


def weight_text(weight: float) -> str:
    """A weight as written in its cell: ``.42``, ``1``; nothing below ``VALUE_LEAST``."""
    if weight < VALUE_LEAST:
        return ""
    return "1" if weight >= 0.995 else f"{weight:.2f}".removeprefix("0")


def _detail_values(panel: Panel, x0: float, y0: float, cell: float) -> str:
    """The weight of every cell of the large map as text in it, one element per cell (empty
    below ``VALUE_LEAST``), so the script can write another map's weights in."""
    size = min(10.0, cell * 0.42)
    out = []
    for q, row in enumerate(panel.weights.tolist()):
        for k, weight in enumerate(row):
            out.append(f'<text {heat_text(level(weight))} x="{num(x0 + (k + 0.5) * cell)}" '
                       f'y="{num(y0 + (q + 0.5) * cell + size * 0.35)}">'
                       f'{weight_text(weight)}</text>')
    return (f'<g class="mt-values" font-size="{num(size)}" text-anchor="middle" '
            f'pointer-events="none">{"".join(out)}</g>')


def _grid(rows: list[list[Panel]], n: int, top: float) -> tuple[str, float, float]:
    """Thumbnails: one row per layer, one column per head and the mean."""
    cell = max(1.0, THUMB / n)
    side = cell * n
    left = MARGIN + 26
    out = [label(MARGIN, top, "Every layer and head (click one to draw it large)", 11,
                 bold=True)]
    top += 18
    index = 0
    for r, row in enumerate(rows):
        y = top + r * (side + GAP)
        out.append(label(MARGIN, y + side / 2 + 4, f"L{row[0].layer}", muted=True))
        for c, panel in enumerate(row):
            x = left + c * (side + GAP)
            if r == 0:
                head = f"H{panel.head}" if panel.head is not None else "mean"
                out.append(label(x + side / 2, top - 4, head, muted=True, anchor="middle"))
            levels = [[level(w) for w in line] for line in panel.weights.tolist()]
            current = " mt-current" if index == 0 else ""
            out.append(f'<g class="mt-thumb{current}" data-map="{index}" tabindex="0" '
                       f'role="button" aria-label="{esc(panel.label)}"><title>{esc(panel.label)}'
                       f'</title><rect {heat(0, "mt-frame")} x="{num(x)}" y="{num(y)}" '
                       f'width="{num(side)}" height="{num(side)}" stroke="{MUTED}" '
                       f'stroke-width="0.5"/>{heat_paths(levels, x, y, cell, cell)}</g>')
            index += 1
    width = left + max(len(row) for row in rows) * (side + GAP) + MARGIN
    return "".join(out), width, top + len(rows) * (side + GAP)


def _map_data(panel: Panel, written: bool) -> dict[str, object]:
    """What the script needs to show a map large: its label, weights (thousandths, row by
    row), heat levels (one hex digit per cell) and, where the large map writes weights in
    its cells (``written``), their texts (comma-separated)."""
    flat = panel.weights.flatten().tolist()
    data: dict[str, object] = {"label": panel.label, "path": panel.path,
                               "w": [round(w * 1000) for w in flat],
                               "lv": "".join(f"{level(w):x}" for w in flat)}
    if written:
        data["t"] = ",".join(weight_text(w) for w in flat)
    return data
