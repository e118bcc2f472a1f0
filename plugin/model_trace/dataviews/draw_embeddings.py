"""The embeddings view: one dot per text in the projected plane, coloured by its group, with
a legend; each dot's ``<title>`` is its text, and the page's script reads it out on hover and
dims the other groups when a legend entry is clicked."""

from __future__ import annotations

from model_trace.dataviews.palette import group
from model_trace.dataviews.projection import Projection
from model_trace.dataviews.svg import (
    Drawn,
    esc,
    frame,
    label,
    num,
    svg_document,
    text_width,
)

PLOT_W = 520.0
PLOT_H = 380.0
MARGIN = 8.0
RADIUS = 4.0


def draw_embeddings(projection: Projection, texts: list[str], groups: list[str],
                    group_names: list[str], prefix: str, about: str) -> Drawn:
    """A scatter plot of ``projection`` (one point per text, ``groups[i]`` its group);
    ``about`` says what was projected (model, layer, pooling) for the caption."""
    xs = [p[0] for p in projection.points]
    ys = [p[1] for p in projection.points]
    x_low, x_high = min(xs), max(xs)
    y_low, y_high = min(ys), max(ys)
    left, top = MARGIN + 16, MARGIN + 8

    def sx(x: float) -> float:
        return left + RADIUS + (x - x_low) / ((x_high - x_low) or 1) * (PLOT_W - 2 * RADIUS)

    def sy(y: float) -> float:
        return top + RADIUS + (y_high - y) / ((y_high - y_low) or 1) * (PLOT_H - 2 * RADIUS)

    parts = [frame(left, top, PLOT_W, PLOT_H),
             label(left + PLOT_W / 2, top + PLOT_H + 16, projection.axes[0], 11, muted=True,
                   anchor="middle"),
             label(MARGIN + 10, top + PLOT_H / 2, projection.axes[1], 11, muted=True,
                   anchor="middle", extra=f'transform="rotate(-90 {num(MARGIN + 10)} '
                   f'{num(top + PLOT_H / 2)})"')]
    dots = []
    for i, ((x, y), text, name) in enumerate(zip(projection.points, texts, groups, strict=True)):
        index = group_names.index(name)
        dots.append(f'<circle {group(index, "mt-dot")} data-i="{i}" data-g="{index}" '
                    f'cx="{num(sx(x))}" cy="{num(sy(y))}" r="{num(RADIUS)}" fill-opacity="0.8" '
                    f'stroke="#ffffff" stroke-width="0.75"><title>{esc(text)} ({esc(name)})'
                    '</title></circle>')
    parts.append(f'<g class="mt-dots">{"".join(dots)}</g>')
    legend_x = left + PLOT_W + 14
    legend = []
    for i, name in enumerate(group_names):
        y = top + 8 + i * 18
        count = groups.count(name)
        legend.append(f'<g class="mt-group" data-g="{i}" tabindex="0" role="button" '
                      f'aria-label="{esc(name)}"><circle {group(i)} cx="{num(legend_x + 5)}" '
                      f'cy="{num(y)}" r="5"/>{label(legend_x + 14, y + 4, f"{name} ({count})", 11)}'
                      '</g>')
    parts.append(f'<g class="mt-groups">{"".join(legend)}</g>')
    legend_w = max(text_width(f"{n} ({groups.count(n)})", 11) for n in group_names) + 24
    width = legend_x + legend_w + MARGIN
    height = top + PLOT_H + 24 + MARGIN
    title = f"{projection.method} of {len(texts)} texts: {about}"
    svg = svg_document("".join(parts), width, height, title, prefix, "embeddings")
    data = {"texts": texts, "groups": group_names,
            "group": [group_names.index(g) for g in groups]}
    caption = (f"{projection.method} of the hidden states of {len(texts)} texts ({about}), "
               "one dot per text, coloured by group: texts the model reads alike lie close.")
    return Drawn("embeddings", svg, data, caption)
