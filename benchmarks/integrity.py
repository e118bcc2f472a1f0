"""Count what figures fail to show: the figure-integrity checker on a set of models at every
depth, and on every figure of a built docs site.

    python benchmarks/integrity.py                  # the model set (traces 671B: ~15 s)
    python benchmarks/integrity.py --site site/     # also every figure of a built site
    python benchmarks/integrity.py --skip-671b

(from the repository root, with the project installed or PYTHONPATH=plugin:.)

The model set is ``tests/model_trace/figure_models.py``: an encoder layer, a ResNet-like conv
net, a GPT-2, DeepSeek-V3 tiny and 671B, whole and focused. Each is drawn as a fence draws it
(constants shown) at every depth from 0 to the deepest, and ``model_trace.integrity`` counts
missing chains, dead ends, unconnected boxes and detached edge ends in each SVG. Beside them
it counts the edge labels that a line runs through, as the lines are drawn (``crossed_labels``
of the layout tests), top to bottom and left to right.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "model_trace"))
from figure_models import FIGURE_MODELS
from layout_properties import crossed_labels

from model_trace.engine import DrawOptions, draw, place
from model_trace.graph import Graph
from model_trace.integrity import Report, check_figure
from model_trace.view_data import decode_graph, encode_view
from model_trace.view_tree import ViewTree


def figure_svgs(graph: Graph) -> list[tuple[int, str, ViewTree]]:
    """The figure's SVG (as a page ships it) at every depth from 0 to the deepest."""
    tree = ViewTree.from_graph(graph, show_constants=True)
    data = encode_view(tree)
    return [(depth, draw(data, DrawOptions(depth=depth)).svg, tree)
            for depth in range(tree.deepest_level() + 1)]


def label_counts(graph: Graph, direction: str) -> tuple[int, int]:
    """(labels crossed by a line, labels) over the figure's depths, laid out in ``direction``."""
    tree = ViewTree.from_graph(graph, show_constants=True)
    data = encode_view(tree)
    crossed = labels = 0
    for depth in range(tree.deepest_level() + 1):
        placed = place(data, DrawOptions(depth=depth, direction=direction))
        crossed += len(crossed_labels(placed, direction))
        labels += len(placed["labels"])
    return crossed, labels


def check(svg: str, graph: Graph, tree: ViewTree) -> Report:
    idle = [item_id for item_id, item in tree.items.items() if item.kind == "idle"]
    return check_figure(svg, graph, tree.parents(), idle)


def site_figures(site: Path) -> list[tuple[str, str, Graph, bool]]:
    """(page, svg, graph, constants shown) for every figure of a built site."""
    found = []
    for page in sorted(site.rglob("index.html")):
        html = page.read_text(encoding="utf-8")
        for match in re.finditer(r'<figure class="model-trace".*?</figure>', html, re.S):
            part = match.group(0)
            data = json.loads(re.search(r'<template class="mt-data">(.*?)</template>',
                                        part, re.S).group(1))
            svg = re.search(r"<svg.*?</svg>", part, re.S).group(0)
            found.append((str(page.relative_to(site).parent), svg, decode_graph(data),
                          data["view"]["show_constants"]))
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--site", type=Path, help="a built site folder to check as well")
    parser.add_argument("--skip-671b", action="store_true")
    args = parser.parse_args()
    grand = Report()
    crossed_total, labels_total = {"TB": 0, "LR": 0}, {"TB": 0, "LR": 0}
    for name, make in FIGURE_MODELS.items():
        if args.skip_671b and "671B" in name:
            continue
        graph = make()
        per_depth = []
        for _depth, svg, tree in figure_svgs(graph):
            report = check(svg, graph, tree)
            per_depth.append(report.total)
            for kind, found in vars(report).items():
                getattr(grand, kind).extend(found)
        print(f"{name:<40} problems at depth 0..{len(per_depth) - 1}: {per_depth}")
        for direction in ("TB", "LR"):
            crossed, labels = label_counts(graph, direction)
            crossed_total[direction] += crossed
            labels_total[direction] += labels
            print(f"{'':<40} {direction}: {crossed} of {labels} edge labels crossed by a line")
    print(f"model set, all depths: {grand.counts()} (total {grand.total})")
    for direction in ("TB", "LR"):
        print(f"model set, all depths, {direction}: {crossed_total[direction]} of "
              f"{labels_total[direction]} edge labels crossed by a line")
    if args.site:
        site_total = Report()
        figures = site_figures(args.site)
        for page, svg, graph, constants in figures:
            report = check(svg, graph, ViewTree.from_graph(graph, show_constants=constants))
            print(f"  {page or 'home':<36} {report.counts()}")
            for kind, found in vars(report).items():
                getattr(site_total, kind).extend(found)
        print(f"site, {len(figures)} figures: {site_total.counts()} (total {site_total.total})")


if __name__ == "__main__":
    main()
