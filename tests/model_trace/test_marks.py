"""Marks over the figure (``3-marks.js``): an author's highlights and notes and a comparison's
differences, each drawn on the item that shows the marked item in the state drawn: the item
itself, or the closed box that holds it (there thin and dashed, its notes gathered)."""

from __future__ import annotations

import functools
import xml.etree.ElementTree as ET
from collections.abc import Callable

import pytest
import torch
from torch import nn

from model_trace import trace
from model_trace.annotate import Annotations
from model_trace.engine import DrawOptions, draw, evaluate
from model_trace.graph import Graph
from model_trace.render_html import FigureData
from model_trace.spec import COLOURS
from model_trace.view_tree import Mark, ViewTree

SVG = "{http://www.w3.org/2000/svg}"
BLOCK, C, E = "m1", "m4", "m6"
"""The items of ``block``, ``block.c`` and ``block.e`` (see ``test_the_items_are_as_named``)."""


class _Block(nn.Module):
    """Five different calls (no two fold into a run)."""

    def __init__(self) -> None:
        super().__init__()
        self.a, self.b, self.c = nn.Linear(4, 5), nn.Tanh(), nn.Linear(5, 6)
        self.d, self.e = nn.ReLU(), nn.Linear(6, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.e(self.d(self.c(self.b(self.a(x)))))


class _Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.block, self.head = _Block(), nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.block(x))


@functools.cache
def _graph() -> Graph:
    return trace(_Net(), torch.randn(2, 4))


def _annotated(**fields: object) -> FigureData:
    return FigureData.of(_graph(), marks=Annotations(**fields).apply)  # type: ignore[arg-type]


def _marked(marks: dict[str, Mark]) -> FigureData:
    def mark(tree: ViewTree) -> None:
        tree.marks.update(marks)

    return FigureData.of(_graph(), marks=mark)


def _items(figure: FigureData, depth: int) -> dict[str, ET.Element]:
    svg = ET.fromstring(draw(figure.json, DrawOptions(depth=depth)).svg)
    return {g.get("data-id", ""): g for g in svg.iter(f"{SVG}g") if g.get("data-id")}


def _marks(item: ET.Element) -> ET.Element | None:
    return next((g for g in item if g.get("class") == "mt-marks"), None)


def _outlines(item: ET.Element) -> list[dict[str, str]]:
    """The outlines a mark draws around the item's box, innermost first."""
    marks = _marks(item)
    return [] if marks is None else [dict(r.attrib) for r in marks.iter(f"{SVG}rect")]


def _look(outline: dict[str, str]) -> tuple[str, str, str | None]:
    return outline["stroke"], outline["stroke-width"], outline.get("stroke-dasharray")


def _badges(item: ET.Element) -> list[str]:
    marks = _marks(item)
    return [] if marks is None else [t.text or "" for t in marks.iter(f"{SVG}text")]


def test_the_items_are_as_named() -> None:
    items = FigureData.of(_graph()).tree.items
    assert (items[BLOCK].label, items[C].label, items[E].label) == (
        "block: _Block", "c: Linear", "e: Linear")


def test_a_figure_without_marks_draws_none() -> None:
    assert all(_marks(g) is None for g in _items(FigureData.of(_graph()), -1).values())


def test_an_item_s_own_highlight_is_solid_and_one_inside_a_closed_box_thin_and_dashed() -> None:
    figure = _annotated(highlight={"block.c": "red"})
    (own,) = _outlines(_items(figure, 1)[C])
    assert _look(own) == (COLOURS["red"], "2.5", None)
    closed = _items(figure, 0)
    assert C not in closed
    (held,) = _outlines(closed[BLOCK])
    assert _look(held) == (COLOURS["red"], "1.5", "5 3")
    assert all(not _outlines(g) for i, g in closed.items() if i != BLOCK)


@pytest.mark.parametrize("order", [("block", "block.c"), ("block.c", "block")])
def test_a_closed_box_s_own_highlight_wins_over_those_inside_it(
        order: tuple[str, str]) -> None:
    colours = {"block": "blue", "block.c": "red"}
    figure = _annotated(highlight={name: colours[name] for name in order})
    (outline,) = _outlines(_items(figure, 0)[BLOCK])
    assert _look(outline) == (COLOURS["blue"], "2.5", None)
    opened = _items(figure, 1)
    assert [_look(o) for o in _outlines(opened[C])] == [(COLOURS["red"], "2.5", None)]
    assert [_look(o) for o in _outlines(opened[BLOCK])] == [(COLOURS["blue"], "2.5", None)]


def _number(value: str) -> float:
    return float(value)


def test_an_outline_surrounds_its_box_evenly_with_corners_concentric_to_its_own() -> None:
    """Modules (small corners), ops (smaller) and the pills of the model's input and output
    (round ends): the outline keeps one gap all round, so its corners follow the box's; a
    highlight on an item that also differs runs outside the difference's outline."""
    figure = _marked({"m0": Mark(colour="#123456"), "n0": Mark(colour="#123456"),
                      BLOCK: Mark(colour="#123456", diff="changed"),
                      "n6": Mark(diff="only"), "n7": Mark(colour="#123456")})
    items = _items(figure, -1)
    gaps = {}
    for item in ("m0", "n0", BLOCK, "n6", "n7"):
        box = {k: _number(v) for k, v in items[item].find(f"{SVG}rect").attrib.items()
               if k in ("x", "y", "width", "height", "rx")}
        gaps[item] = []
        for outline in _outlines(items[item]):
            gap = box["x"] - _number(outline["x"])
            assert gap > 0
            assert _number(outline["y"]) == pytest.approx(box["y"] - gap)
            assert _number(outline["width"]) == pytest.approx(box["width"] + 2 * gap)
            assert _number(outline["height"]) == pytest.approx(box["height"] + 2 * gap)
            assert _number(outline["rx"]) == pytest.approx(box["rx"] + gap), item
            gaps[item].append(gap)
    assert {len(g) for i, g in gaps.items() if i != BLOCK} == {1}
    inner, outer = gaps[BLOCK]
    assert inner < outer and _look(_outlines(items[BLOCK])[1])[0] == "#123456"


def test_notes_gather_on_the_closed_box_in_number_order() -> None:
    """``d`` is highlighted first, so its mark comes first in the view data: its note (4)
    still comes last."""
    notes = {f"block.{name}": f"note on {name}" for name in "abcd"}
    figure = _annotated(highlight={"block.d": "green"}, notes=notes)
    assert _badges(_items(figure, 0)[BLOCK]) == ["1", "2", "3", "4"]
    opened = _items(figure, 1)
    assert [_badges(opened[f"m{k}"]) for k in (2, 3, 4, 5)] == [["1"], ["2"], ["3"], ["4"]]


def test_five_notes_or_more_show_the_first_three_and_an_ellipsis() -> None:
    notes = {f"block.{name}": f"note on {name}" for name in "abcde"}
    figure = _annotated(notes=notes)
    assert _badges(_items(figure, 0)[BLOCK]) == ["1", "2", "3", "\u2026"]
    assert _badges(_items(figure, 1)[E]) == ["5"]


def _diff_look(status: str) -> Callable[[dict[str, str]], bool]:
    colour = evaluate("(function () { return modelTrace.DIFF_COLOURS; })")[status]
    width, dash = {"only": ("2.5", None), "changed": ("2", "6 3"), "holds": ("2", "2 3")}[status]
    return lambda outline: _look(outline) == (colour, width, dash)


def test_differences_are_outlined_and_a_closed_box_holding_one_is_dotted() -> None:
    """Green for an item only this variant has, amber dashed for one that changed, amber
    dotted for a closed box with a difference inside; a box's own status wins."""
    figure = _marked({C: Mark(diff="only"), E: Mark(diff="changed")})
    opened = _items(figure, 1)
    assert [_diff_look("only")(o) for o in _outlines(opened[C])] == [True]
    assert [_diff_look("changed")(o) for o in _outlines(opened[E])] == [True]
    assert _outlines(opened[BLOCK]) == []
    (holds,) = _outlines(_items(figure, 0)[BLOCK])
    assert _diff_look("holds")(holds)
    for order in ((BLOCK, C), (C, BLOCK)):
        marks = {BLOCK: Mark(diff="changed"), C: Mark(diff="only")}
        (own,) = _outlines(_items(_marked({k: marks[k] for k in order}), 0)[BLOCK])
        assert _diff_look("changed")(own), order


def test_note_badges_hang_in_a_row_from_the_box_s_top_right_corner() -> None:
    """Each badge hangs on the top border (its centre just inside the box), the first at the
    right corner, the next ones to its left in note order without overlapping; each number is
    centred in its circle (bold digits stand about 0.7 of the font size tall)."""
    figure = _annotated(notes={f"block.{name}": name for name in "abcd"})
    block = _items(figure, 0)[BLOCK]
    box = {k: _number(v) for k, v in block.find(f"{SVG}rect").attrib.items()
           if k in ("x", "y", "width", "height")}
    badges = [g for g in _marks(block) if g.get("class") == "mt-note-badge"]
    assert len(badges) == 4
    circles = [{k: _number(v) for k, v in b.find(f"{SVG}circle").attrib.items()
                if k in ("cx", "cy", "r")} for b in badges]
    xs = [c["cx"] for c in circles]
    for circle, badge in zip(circles, badges, strict=True):
        assert box["y"] < circle["cy"] < box["y"] + circle["r"]
        text = badge.find(f"{SVG}text")
        assert _number(text.get("x")) == circle["cx"] and text.get("text-anchor") == "middle"
        middle = _number(text.get("y")) - 0.35 * _number(text.get("font-size"))
        assert middle == pytest.approx(circle["cy"], abs=0.1)
    right = box["x"] + box["width"]
    assert right - circles[0]["r"] < xs[0] <= right
    assert all(a - b >= 2 * c["r"] for a, b, c in zip(xs, xs[1:], circles, strict=False))
