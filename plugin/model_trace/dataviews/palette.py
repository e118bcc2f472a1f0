"""The data views' colours, light and dark, in one table, and the stylesheet rules that give
each element of a drawn view its colour in the page's scheme.

A data view's SVG carries the light colours as attributes: what an export, print without the
site's stylesheet, cairosvg and rsvg-convert show. Each coloured element also carries a class
naming its role (``mt-h5``: heat level 5; ``mt-v5``: a number written on a level-5 cell;
``mt-g2``: the third group of a scatter plot; ``mt-fg`` and ``mt-mu``: text), and
``stylesheet()``, appended to the site's ``viewer.css``, gives each class its colour through
CSS variables: the light table, or the dark one where the page is dark (Material's ``slate``
scheme, the mkdocs theme's dark mode, the plugin's ``theme: dark``), as the graph figure
follows the page. So every colour is written once, here; the page's script only switches
classes.

On a dark page the heat scale runs from the page's ground to a light blue (more weight, more
light), the mirror of the light scale's white to dark blue. A number written on a cell is
black or white, whichever contrasts more with the cell: at least 4.58:1 for any colour, above
WCAG AA's 4.5:1 for text (``contrast``).
"""

from __future__ import annotations

from dataclasses import dataclass

LEVELS = 16
"""Colours of a heat scale: values are binned, so a map is a few paths, one per colour."""
LIGHT_HEAT = ("#ffffff", "#deebf7", "#c6dbef", "#9ecae1", "#6baed6", "#4292c6", "#2171b5",
              "#08519c", "#08306b")
"""White (no weight) to dark blue: ink only where there is weight."""
DARK_HEAT = ("#1e2029", "#1b2b44", "#1b3a62", "#1d4b80", "#225e9e", "#2f74bb", "#4a8fd3",
             "#79b0e6", "#b9d7f5")
"""The dark page's ground (Material's slate) to light blue: light only where there is weight."""
LIGHT_GROUPS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf", "#8c564b",
                "#e377c2", "#7f7f7f", "#bcbd22")
"""Colours of the groups of a scatter plot, in the order the groups come."""
DARK_GROUPS = ("#5fa8e8", "#f0645f", "#5cc85c", "#b694e0", "#ffa34d", "#3fd3e0", "#c4907f",
               "#f59bd6", "#b0b0b0", "#d8d94a")
"""The same hues, lighter, for a dark ground."""
BLACK, WHITE = "#000000", "#ffffff"


def _mix(a: str, b: str, t: float) -> str:
    ca = [int(a[i:i + 2], 16) for i in (1, 3, 5)]
    cb = [int(b[i:i + 2], 16) for i in (1, 3, 5)]
    return "#" + "".join(f"{round(x + (y - x) * t):02x}" for x, y in zip(ca, cb, strict=True))


def _scale(stops: tuple[str, ...]) -> tuple[str, ...]:
    colours = []
    for index in range(LEVELS):
        at = index / (LEVELS - 1) * (len(stops) - 1)
        low = min(int(at), len(stops) - 2)
        colours.append(_mix(stops[low], stops[low + 1], at - low))
    return tuple(colours)


def luminance(colour: str) -> float:
    """WCAG's relative luminance of ``#rrggbb``."""
    channels = (int(colour[i:i + 2], 16) / 255 for i in (1, 3, 5))
    linear = [c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
    return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]


def contrast(a: str, b: str) -> float:
    """WCAG's contrast ratio of two colours (1 to 21)."""
    high, low = sorted((luminance(a), luminance(b)), reverse=True)
    return (high + 0.05) / (low + 0.05)


def text_on(colour: str) -> str:
    """Black or white, whichever contrasts more with ``colour``."""
    return BLACK if contrast(BLACK, colour) >= contrast(WHITE, colour) else WHITE


@dataclass(frozen=True)
class Scheme:
    """The colours of one page scheme."""

    heat: tuple[str, ...]
    """The colour of each level, 0 (no weight) to ``LEVELS - 1``."""
    groups: tuple[str, ...]
    accent: str
    """A chosen token, the map drawn large: readable on the ground (4.5:1)."""

    @property
    def heat_text(self) -> tuple[str, ...]:
        """The colour of a number written on a cell of each level."""
        return tuple(text_on(c) for c in self.heat)

    def variables(self) -> str:
        """The scheme as CSS custom properties; level 0 is the figure's own ground."""
        values = {"mt-h0": "var(--mt-bg)",
                  **{f"mt-h{i}": c for i, c in enumerate(self.heat) if i},
                  **{f"mt-v{i}": c for i, c in enumerate(self.heat_text)},
                  **{f"mt-g{i}": c for i, c in enumerate(self.groups)},
                  "mt-dv-accent": self.accent}
        return ";".join(f"--{name}:{value}" for name, value in values.items())


LIGHT = Scheme(_scale(LIGHT_HEAT), LIGHT_GROUPS, "#bc4c00")
DARK = Scheme(_scale(DARK_HEAT), DARK_GROUPS, "#f0883e")
PALETTE = LIGHT.heat
"""The light heat scale: the colours a drawn view's attributes carry."""

_LIGHT_PAGES = ('.model-trace-view', '.model-trace-view.model-trace-view[data-theme="light"]')
"""The second outranks the dark selectors: a figure set to ``theme: light`` on a dark page."""
_DARK_PAGES = ('[data-md-color-scheme="slate"] .model-trace-view',
               '[data-bs-theme="dark"] .model-trace-view', '.model-trace-view[data-theme="dark"]')


def level(value: float, top: float = 1.0) -> int:
    """The heat level of ``value`` on a scale from 0 to ``top``."""
    if top <= 0:
        return 0
    return max(0, min(LEVELS - 1, round(value / top * (LEVELS - 1))))


def heat(value_level: int, cls: str = "") -> str:
    """The attributes of a shape of heat level ``value_level``: its classes (``cls`` and the
    level's) and its light fill."""
    return f'class="{cls + " " if cls else ""}mt-h{value_level}" fill="{PALETTE[value_level]}"'


def heat_text(value_level: int) -> str:
    """The attributes of a number written on a cell of heat level ``value_level``."""
    return f'class="mt-val mt-v{value_level}" fill="{LIGHT.heat_text[value_level]}"'


def group(index: int, cls: str = "") -> str:
    """The attributes of a mark of the ``index``-th group: its classes and light fill."""
    slot = index % len(LIGHT_GROUPS)
    return f'class="{cls + " " if cls else ""}mt-g{slot}" fill="{LIGHT_GROUPS[slot]}"'


def stylesheet() -> str:
    """The rules that colour the classes above in the page's scheme (``viewer_files``
    appends them to ``viewer.css``)."""
    rules = [f"{', '.join(_LIGHT_PAGES)} {{{LIGHT.variables()}}}",
             f"{', '.join(_DARK_PAGES)} {{{DARK.variables()}}}"]
    rules += [f".model-trace-view .mt-h{i} {{fill:var(--mt-h{i})}}" for i in range(LEVELS)]
    rules += [f".model-trace-view .mt-v{i} {{fill:var(--mt-v{i})}}" for i in range(LEVELS)]
    rules += [f".model-trace-view .mt-g{i} {{fill:var(--mt-g{i})}}"
              for i in range(len(LIGHT_GROUPS))]
    return ("/* model-trace, data views' colours: generated by dataviews/palette.py */\n"
            + "\n".join(rules) + "\n")
