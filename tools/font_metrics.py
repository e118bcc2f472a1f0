"""Write ``assets/viewer/0-metrics.js``: the advance widths the figure engine measures text with.

    python tools/font_metrics.py LiberationSans-Regular.ttf LiberationSans-Bold.ttf \\
        DejaVuSans.ttf DejaVuSans-Bold.ttf

The SVG names ``Helvetica, Arial, sans-serif``: Helvetica on macOS, Arial on Windows (the two
share their widths, and Liberation Sans, free, has Arial's), DejaVu Sans on a Linux without
them, about 10% wider. Each character's width is the widest of the regular fonts (and of the
bold ones for bold text), in thousandths of an em, so a label measured here fits its box in
whichever of them the reader's system picks. Needs ``fonttools`` (a tool, not a dependency).
"""

from __future__ import annotations

import sys
from pathlib import Path

from fontTools.ttLib import TTFont

CHARACTERS = "".join(chr(c) for c in range(32, 127)) + "×–—…µ·›‹≤≥→←°±²³éèüöäß·∑"
"""Printable ASCII and the other characters labels use; anything else measures as ``M``."""
TARGET = Path(__file__).resolve().parents[1] / "plugin" / "model_trace" / "assets" / "viewer" / \
    "0-metrics.js"


def widths(path: str) -> dict[str, int]:
    font = TTFont(path)
    scale = 1000 / font["head"].unitsPerEm
    cmap = font.getBestCmap()
    metrics = font["hmtx"].metrics
    fallback = metrics[cmap[ord("M")]][0]
    return {c: round(metrics[cmap[ord(c)]][0] * scale) if ord(c) in cmap else
            round(fallback * scale) for c in CHARACTERS}


def main() -> None:
    regular = [widths(p) for p in sys.argv[1:] if "Bold" not in p]
    bold = [widths(p) for p in sys.argv[1:] if "Bold" in p]
    rows = []
    for name, fonts in (("regular", regular), ("bold", bold)):
        values = [max(f[c] for f in fonts) for c in CHARACTERS]
        rows.append(f"    {name}: [{','.join(map(str, values))}]")
    chars = CHARACTERS.replace("\\", "\\\\").replace('"', '\\"')
    TARGET.write_text(
        "/* model-trace: text widths for laying out labels (written by tools/font_metrics.py"
        " from\n   Liberation Sans and DejaVu Sans: the widest of the two per character, in"
        " 1/1000 em). */\n"
        "(function (MT) {\n  \"use strict\";\n"
        f"  var CHARS = \"{chars}\";\n"
        "  var WIDTHS = {\n" + ",\n".join(rows) + "\n  };\n"
        "  var INDEX = {};\n"
        "  for (var i = 0; i < CHARS.length; i++) INDEX[CHARS[i]] = i;\n"
        "  var M = INDEX.M;\n"
        "  // Width in px of `text` at `size` px; bold for group titles.\n"
        "  MT.textWidth = function (text, size, bold) {\n"
        "    var table = bold ? WIDTHS.bold : WIDTHS.regular, total = 0;\n"
        "    for (var k = 0; k < text.length; k++) {\n"
        "      var at = INDEX[text[k]];\n"
        "      total += table[at === undefined ? M : at];\n"
        "    }\n"
        "    return total * size / 1000;\n"
        "  };\n"
        "})(globalThis.modelTrace = globalThis.modelTrace || {});\n", encoding="utf-8")
    print(f"wrote {TARGET}")


if __name__ == "__main__":
    main()
