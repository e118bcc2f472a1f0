"""The experts view: a layers × experts heat map of tokens per expert, the imbalance figures
over the whole model, and one bar per layer (its max/mean).

Without scripts each layer's row says its figures in a ``<title>``; the page's script reads
out the expert under the pointer and, on a click, opens that expert in the graph figure of
the same page.
"""

from __future__ import annotations

from model_trace.dataviews.experts import ExpertLoad, Imbalance
from model_trace.dataviews.palette import heat, level
from model_trace.dataviews.svg import (
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

MARGIN = 8.0
MAP_W = 560.0
MAP_H = 360.0
BAR_W = 90.0
BAR_LEVEL = 9
"""The heat level the bars are drawn in: a mid blue, visible on either ground."""


def layer_name(container: str) -> str:
    """``layers.3.ffn.experts`` -> ``layers.3``: the row label."""
    parts = container.split(".")
    for i in range(len(parts) - 1, 0, -1):
        if parts[i].isdigit():
            return ".".join(parts[:i + 1])
    return container


def figures(imbalance: Imbalance) -> str:
    return (f"max/mean {imbalance.max_over_mean:.2f} · experts without a token "
            f"{imbalance.idle_share:.1%} · Gini {imbalance.gini:.3f}")


def draw_experts(load: ExpertLoad, prefix: str) -> Drawn:
    """The figure of ``load``."""
    layers, experts = len(load.counts), max(len(row) for row in load.counts)
    cw = max(1.5, min(14.0, MAP_W / experts))
    rh = max(3.0, min(16.0, MAP_H / layers))
    names = [layer_name(c) for c in load.containers]
    label_w = max(text_width(n, 10) for n in names) + 6
    x0, y0 = MARGIN + label_w, MARGIN + 40
    top = max((c for row in load.counts for c in row), default=0)
    overall = load.overall
    heading = (f"Tokens per expert, {layers} layers × {experts} {load.cls} (routing: "
               f"{load.routing})")
    parts = [label(MARGIN, MARGIN + 12, heading, 13, bold=True, cls="mt-dv-heading"),
             label(MARGIN, MARGIN + 28, figures(overall), 11)]
    every = 1 if rh >= 9 else max(1, round(10 / rh))
    rows = []
    for r, (name, row) in enumerate(zip(names, load.counts, strict=True)):
        y = y0 + r * rh
        imbalance = Imbalance.of(row)
        busiest = max(range(len(row)), key=row.__getitem__)
        title = (f"{name}: {sum(row)} token choices, busiest expert {busiest} "
                 f"({row[busiest]}), {figures(imbalance)}")
        row_label = (label(x0 - 4, y + rh / 2 + 3.5, name, muted=True, anchor="end")
                     if r % every == 0 else "")
        rows.append(f'<g class="mt-layer" data-layer="{r}"><title>{esc(title)}</title>{row_label}'
                    f'{heat_paths([[level(c, top) for c in row]], x0, y, cw, rh)}</g>')
    parts.append("".join(rows))
    map_w, map_h = experts * cw, layers * rh
    parts.append(frame(x0, y0, map_w, map_h))
    parts.append(f'<rect class="mt-hit" x="{num(x0)}" y="{num(y0)}" width="{num(map_w)}" '
                 f'height="{num(map_h)}" fill="#ffffff" fill-opacity="0"/>')
    parts.append(_bars(load, x0 + map_w + 12, y0, rh))
    parts.append(label(x0, y0 + map_h + 14, "expert 0", muted=True))
    parts.append(label(x0 + map_w, y0 + map_h + 14, f"expert {experts - 1}", muted=True,
                       anchor="end"))
    parts.append(legend_bar(x0, y0 + map_h + 36, min(map_w, 200.0), "0",
                            f"{top} tokens", "tokens routed to the expert"))
    width = max(x0 + map_w + 12 + BAR_W + 40, text_width(heading, 13, True) + MARGIN,
                text_width(figures(overall), 11) + MARGIN) + MARGIN
    height = y0 + map_h + 60 + MARGIN
    svg = svg_document("".join(parts), width, height,
                       f"Tokens per expert ({load.routing} routing)", prefix, "experts")
    data = {"containers": load.containers, "counts": load.counts,
            "grid": [num(x0), num(y0), num(cw), num(rh)]}
    caption = (f"Tokens each routed expert got, {layers} layers × {experts} experts, routing: "
               f"{load.routing}; {figures(overall)}. A blank cell: no token. The bars: each "
               "layer's max/mean.")
    return Drawn("experts", svg, data, caption)


def _bars(load: ExpertLoad, x: float, y0: float, rh: float) -> str:
    ratios = [Imbalance.of(row).max_over_mean for row in load.counts]
    high = max(ratios) or 1.0
    out = [label(x, y0 - 4, "max/mean", muted=True)]
    for r, ratio in enumerate(ratios):
        y = y0 + r * rh
        out.append(f'<rect {heat(BAR_LEVEL, "mt-bar")} data-layer="{r}" x="{num(x)}" '
                   f'y="{num(y + rh * 0.15)}" width="{num(BAR_W * ratio / high)}" '
                   f'height="{num(rh * 0.7)}"><title>{ratio:.2f}</title></rect>')
    out.append(label(x + BAR_W + 4, y0 + 8, f"{high:.2f}", muted=True))
    return f'<g class="mt-bars">{"".join(out)}</g>'
