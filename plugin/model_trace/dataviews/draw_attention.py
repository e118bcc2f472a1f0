"""The attention view: one map large (queries down, keys across), and a layer × head grid of
thumbnails with each layer's head average, every map on one colour scale from 0 to 1.

Without scripts each cell's ``<title>`` says its weight; the page's script lets a click on a
thumbnail show that map large, a click on a token highlight its row and column, and the
pointer read weights out under the figure.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from model_trace.dataviews.attention import AttentionMap
from model_trace.dataviews.svg import (
    MUTED,
    PALETTE,
    TEXT,
    Drawn,
    esc,
    heat_paths,
    legend_bar,
    level,
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
    parts = [f'<text class="mt-dv-heading" x="{num(MARGIN)}" y="{num(MARGIN + 12)}" '
             f'font-size="13" font-weight="bold" fill="{TEXT}">{esc(first.label)}</text>',
             f'<text class="mt-dv-sub" x="{num(MARGIN)}" y="{num(MARGIN + 26)}" font-size="10" '
             f'fill="{MUTED}">{esc(first.path)} · rows: queries, columns: keys</text>']
    parts.append(_token_labels(tokens, x0, y0, cell))
    parts.append(_detail_cells(first, tokens, x0, y0, cell))
    parts.append(f'<rect x="{num(x0)}" y="{num(y0)}" width="{num(side)}" height="{num(side)}" '
                 f'fill="none" stroke="{MUTED}" stroke-width="0.5"/>')
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
    data = {"tokens": tokens, "maps": [_map_data(p) for p in panels], "palette": list(PALETTE)}
    caption = (f"Attention of {first.path.rsplit('.', 3)[0] or 'the model'} over {n} tokens"
               f"{', ' + note if note else ''}: each row is one query token, its weights over "
               "the keys sum to 1.")
    return Drawn("attention", svg, data, caption)


def _token_labels(tokens: list[str], x0: float, y0: float, cell: float) -> str:
    out = []
    for i, token in enumerate(tokens):
        y = y0 + (i + 0.5) * cell + LABEL_SIZE * 0.35
        out.append(f'<text class="mt-tok" data-t="{i}" x="{num(x0 - 4)}" y="{num(y)}" '
                   f'font-size="{num(LABEL_SIZE)}" text-anchor="end" fill="{TEXT}">'
                   f'{esc(token)}</text>')
        x = x0 + (i + 0.5) * cell + LABEL_SIZE * 0.35
        out.append(f'<text class="mt-tok" data-t="{i}" x="{num(x)}" y="{num(y0 - 4)}" '
                   f'font-size="{num(LABEL_SIZE)}" fill="{TEXT}" '
                   f'transform="rotate(-90 {num(x)} {num(y0 - 4)})">{esc(token)}</text>')
    return f'<g class="mt-tokens">{"".join(out)}</g>'


def _detail_cells(panel: Panel, tokens: list[str], x0: float, y0: float, cell: float) -> str:
    out = []
    for q, row in enumerate(panel.weights.tolist()):
        for k, weight in enumerate(row):
            out.append(f'<rect class="mt-cell" data-q="{q}" data-k="{k}" '
                       f'x="{num(x0 + k * cell)}" y="{num(y0 + q * cell)}" width="{num(cell)}" '
                       f'height="{num(cell)}" fill="{PALETTE[level(weight)]}"><title>'
                       f'{esc(tokens[q])} → {esc(tokens[k])}: {weight:.3f}</title></rect>')
    return f'<g class="mt-detail">{"".join(out)}</g>'


def _grid(rows: list[list[Panel]], n: int, top: float) -> tuple[str, float, float]:
    """Thumbnails: one row per layer, one column per head and the mean."""
    cell = max(1.0, THUMB / n)
    side = cell * n
    left = MARGIN + 26
    out = [f'<text x="{num(MARGIN)}" y="{num(top)}" font-size="11" font-weight="bold" '
           f'fill="{TEXT}">Every layer and head (click one to draw it large)</text>']
    top += 18
    index = 0
    for r, row in enumerate(rows):
        y = top + r * (side + GAP)
        out.append(f'<text x="{num(MARGIN)}" y="{num(y + side / 2 + 4)}" font-size="10" '
                   f'fill="{MUTED}">L{row[0].layer}</text>')
        for c, panel in enumerate(row):
            x = left + c * (side + GAP)
            if r == 0:
                head = f"H{panel.head}" if panel.head is not None else "mean"
                out.append(f'<text x="{num(x + side / 2)}" y="{num(top - 4)}" font-size="10" '
                           f'fill="{MUTED}" text-anchor="middle">{head}</text>')
            levels = [[level(w) for w in line] for line in panel.weights.tolist()]
            current = " mt-current" if index == 0 else ""
            out.append(f'<g class="mt-thumb{current}" data-map="{index}" tabindex="0" '
                       f'role="button" aria-label="{esc(panel.label)}"><title>{esc(panel.label)}'
                       f'</title><rect x="{num(x)}" y="{num(y)}" width="{num(side)}" '
                       f'height="{num(side)}" fill="#ffffff" stroke="{MUTED}" '
                       f'stroke-width="0.5"/>{heat_paths(levels, x, y, cell, cell)}</g>')
            index += 1
    width = left + max(len(row) for row in rows) * (side + GAP) + MARGIN
    return "".join(out), width, top + len(rows) * (side + GAP)


def _map_data(panel: Panel) -> dict[str, object]:
    """What the script needs to show a map large: its label, weights (thousandths, row by
    row) and palette levels (one hex digit per cell)."""
    flat = panel.weights.flatten().tolist()
    return {"label": panel.label, "path": panel.path,
            "w": [round(w * 1000) for w in flat],
            "lv": "".join(f"{level(w):x}" for w in flat)}
