"""What a reader sees in the SVG the engine draws (``assets/viewer/3-render.js``): the colours
of both themes and of the overlays, the classes and attributes the stylesheet and the viewer
rely on, labels, bars when zoomed out, edges with their arrowheads or port dots, the margin
and legend of an exported file."""

from __future__ import annotations

import html
import json
import math
import re
import xml.etree.ElementTree as ET
from importlib import resources
from typing import Any

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from test_layout import wide_graph
from torch import nn

from model_trace import trace
from model_trace.engine import DrawOptions, draw, evaluate, place
from model_trace.render_html import FigureData

SVG = "{http://www.w3.org/2000/svg}"
READABLE, FONT = 8, 12
"""The smallest text size the first view allows, and the labels' size (px)."""

RENDER = """(function (data, options, extra) {
  var MT = modelTrace, model = new MT.ViewModel(JSON.parse(data));
  var state = MT.initialState(model, options), placed = new MT.Layout(model).run(state);
  var refs = function (ids) { return new Set((ids || []).map(function (id) {
    return model.byId.get(id); })); };
  var decor = MT.decorate(model, placed, state, { matches: refs(extra.matches),
                                                  holders: refs(extra.holders) });
  return MT.renderContent(model, placed, state, { prefix: "t", decor: decor,
                                                  bars: !!extra.bars });
})"""
"""The viewer's own call (``5-interaction.js``): a state's items and edges, with the search's
matches and the boxes holding them, as text labels or, zoomed out, as bars."""


def _palettes() -> dict[str, dict[str, Any]]:
    return evaluate("(function () { return modelTrace.PALETTES; })")


def _rgb(colour: str) -> tuple[int, ...]:
    return tuple(int(colour[i:i + 2], 16) for i in (1, 3, 5))


def _mix(colour: str, background: str, share: float) -> tuple[int, ...]:
    """CSS's ``color-mix(in srgb, colour share, background)``, rounded as a browser does."""
    return tuple(math.floor(c * share + b * (1 - share) + 0.5)
                 for c, b in zip(_rgb(colour), _rgb(background), strict=True))


def _close(a: tuple[int, ...], b: tuple[int, ...]) -> bool:
    return all(abs(x - y) <= 1 for x, y in zip(a, b, strict=True))


def _classes(element: ET.Element) -> list[str]:
    return (element.get("class") or "").split()


def _items(root: ET.Element) -> dict[str, ET.Element]:
    return {g.get("data-id"): g for g in root.iter(f"{SVG}g") if g.get("data-id")}


def _depths(placed: dict[str, Any]) -> dict[str, int]:
    """How many boxes hold each box."""
    boxes = placed["boxes"]

    def depth(item: str) -> int:
        parent = boxes[item]["parent"]
        return 0 if parent is None else 1 + depth(parent)

    return {item: depth(item) for item in boxes}


class Nested(nn.Module):
    """Boxes four levels deep, a weight read from outside its module, and an idle module."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Sequential(nn.Sequential(nn.Linear(8, 8), nn.ReLU())),
                                  nn.LayerNorm(8))
        self.head = nn.Linear(8, 4)
        self.spare = nn.Sequential(nn.Linear(8, 8), nn.ReLU())  # never called: idle

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x)) + self.head.weight.sum()


@pytest.fixture(scope="module")
def nested() -> FigureData:
    return FigureData.of(trace(Nested(), torch.randn(2, 8)))


@pytest.fixture(scope="module")
def heavy() -> FigureData:
    """Ops of microseconds (est. time), apart by up to ten times."""
    model = nn.Sequential(nn.Linear(2048, 2048), nn.ReLU(), nn.Linear(2048, 16))
    return FigureData.of(trace(model, torch.randn(256, 2048)))


def _svg(figure: FigureData, depth: int, **options: Any) -> ET.Element:
    return ET.fromstring(draw(figure.json, DrawOptions(depth=depth, prefix="t", **options)).svg)


# -- colours ------------------------------------------------------------------------------
def _stylesheet() -> str:
    return (resources.files("model_trace") / "assets" / "viewer.css").read_text("utf-8")


def _theme(css: str, theme: str) -> dict[str, str]:
    """The stylesheet's colours of a theme: foreground, background, the arrows' in and out,
    the category tint and the share of the foreground in each kind of box."""
    fg, bg = re.search(rf'\[data-theme="{theme}"\] \{{\s*--mt-fg: (#\w+); --mt-bg: (#\w+);',
                       css).groups()
    block = css if theme == "light" else re.search(
        r'\.model-trace\[data-theme="dark"\] \{([^}]*)\}', css).group(1)
    found = {"fg": fg, "bg": bg, "in": re.search(r"--mt-in: (#\w+)", block).group(1),
             "out": re.search(r"--mt-out: (#\w+)", block).group(1),
             "tint": re.search(r"--mt-tint: ([\d.]+)%", block).group(1)}
    for name, selector in (("module", r"\.mt-module:not\(\.mt-heat\) > rect"),
                           ("open", r"\.mt-module\.mt-open > rect"),
                           ("idle", r"\.mt-kind-member:not\(\.mt-heat\) > rect")):
        found[name] = re.search(selector + r" \{\s*fill: color-mix\(in srgb, var\(--mt-fg\) "
                                r"([\d.]+)%", css).group(1)
    return found


@pytest.mark.parametrize("theme", ["light", "dark"])
def test_the_drawing_s_own_colours_are_the_stylesheet_s(theme: str) -> None:
    """An export, a feed reader and a page without its stylesheet show the SVG's plain
    colours; a page shows the stylesheet's. Both are the same theme's: category fills are
    the category colour tinted into the background, boxes the foreground mixed in."""
    css, palette = _stylesheet(), _palettes()[theme]
    colours = _theme(css, theme)
    bg, fg = colours["bg"], colours["fg"]
    assert (palette["bg"], palette["text"]) == (bg, fg)
    assert (palette["input"], palette["output"]) == (colours["in"], colours["out"])
    categories = dict(re.findall(r"--mt-cat-(\w+): (#[0-9a-f]{6});", css))
    assert set(categories) | {"io", "saved"} == set(palette["categories"])
    tint = float(colours["tint"]) / 100
    for name, colour in categories.items():
        assert _close(_rgb(palette["categories"][name]), _mix(colour, bg, tint)), name
    assert palette["categories"]["io"] == bg  # tensors in and out: the page's own colour
    for kind, fill in (("module", palette["modules"][0]), ("open", palette["open"]),
                       ("idle", palette["idle"])):
        assert _close(_rgb(fill), _mix(fg, bg, float(colours[kind]) / 100)), kind


@pytest.mark.parametrize("theme", ["light", "dark"])
def test_every_label_reads_on_its_fill(theme: str) -> None:
    """WCAG AA (4.5:1) for every label on every fill the drawing uses, in both themes."""
    palette = _palettes()[theme]

    def contrast(a: str, b: str) -> float:
        return evaluate("modelTrace.contrast", a, b)

    fills = [*palette["categories"].values(), *palette["modules"], palette["open"],
             palette["chunk"]]
    assert min(contrast(palette["text"], fill) for fill in fills) >= 4.5
    assert contrast(palette["idleText"], palette["idle"]) >= 4.5
    assert contrast(palette["edgeText"], palette["bg"]) >= 4.5
    dark = evaluate("modelTrace.contrast", palette["bg"], "#000000") < \
        evaluate("modelTrace.contrast", palette["bg"], "#ffffff")
    assert dark == (theme == "dark")


def test_a_dark_export_is_drawn_in_the_dark_palette(nested: FigureData) -> None:
    palette = _palettes()["dark"]
    root = _svg(nested, -1, standalone=True, theme="dark")
    assert root.find(f"{SVG}rect").get("fill") == palette["bg"]
    for g in _items(root).values():
        if "mt-node" in _classes(g):
            category = next(c[len("mt-cat-"):] for c in _classes(g) if c.startswith("mt-cat-"))
            assert g.find(f"{SVG}rect").get("fill") == palette["categories"][category]
            assert g.find(f"{SVG}text").get("fill") == palette["text"]


@settings(max_examples=60, deadline=None)
@given(st.text(alphabet=st.sampled_from("ab <>&'\"/\\é\n"), max_size=12))
def test_escaped_text_is_inert_and_reads_back_the_same(text: str) -> None:
    """The viewer builds its panels with ``modelTrace.esc``: no markup gets through, and the
    reader sees exactly the text."""
    escaped = evaluate("modelTrace.esc", text)
    assert not set(escaped) & set("<>\"'")
    assert "&" not in re.sub(r"&(amp|lt|gt|quot|#39);", "", escaped)
    assert html.unescape(escaped) == text


# -- overlays -----------------------------------------------------------------------------
def _column(figure: FigureData, name: str) -> dict[str, str]:
    """A text column of the view data's items (``path``, ``label``...), by item id."""
    data = json.loads(figure.json)
    items, strings = data["view"]["items"], data["strings"]
    return {strings[i]: strings[k] for i, k in zip(items["id"], items[name], strict=True)}


def _overlay(figure: FigureData, overlay: str) -> tuple[dict[str, float], dict[str, str]]:
    """Each item's value by an overlay, and the value as the tooltips and legend write it."""
    data = json.loads(figure.json)
    items, strings = data["view"]["items"], data["strings"]
    ids = [strings[k] for k in items["id"]]
    return (dict(zip(ids, items["overlay"][overlay], strict=True)),
            {i: strings[k] for i, k in zip(ids, items["overlay_text"][overlay], strict=True)})


@pytest.mark.parametrize(("model", "overlay"), [
    ("nested", "params"), ("nested", "flops"), ("nested", "activations"), ("nested", "time"),
    ("heavy", "time")])
def test_an_overlay_colours_each_closed_box_by_its_value_on_a_log_scale(
        request: pytest.FixtureRequest, model: str, overlay: str) -> None:
    """The heaviest closed box takes the ramp's darkest colour, a box of zero its lightest,
    the others their place on a log axis (seconds counted in microseconds); open boxes keep
    their plain fill, and every label takes the stronger of black or white."""
    nested = request.getfixturevalue(model)
    values, _ = _overlay(nested, overlay)
    scale = 1e6 if overlay == "time" else 1
    for depth in (1, -1):
        root = _svg(nested, depth, overlay=overlay)
        placed = place(nested.json, DrawOptions(depth=depth, overlay=overlay))
        closed = [i for i, b in placed["boxes"].items() if not b["open"]]
        top = max(values[i] for i in closed)
        assert top > 0
        for item, g in _items(root).items():
            fill = g.find(f"{SVG}rect").get("fill")
            if placed["boxes"][item]["open"]:
                assert "mt-heat" not in _classes(g) and fill == _palettes()["light"]["open"]
                continue
            assert "mt-heat" in _classes(g)
            where = math.log1p(values[item] * scale) / math.log1p(top * scale)
            assert _close(_rgb(fill), _rgb(evaluate("modelTrace.rampColour", where))), item
            if values[item] == top:
                assert fill == "#521402"
            assert g.find(f"{SVG}text").get("fill") == evaluate("modelTrace.textOn", fill)
        assert any(values[i] < top for i in closed)


def test_an_overlay_without_any_value_draws_no_legend() -> None:
    """No parameters anywhere: every box is the ramp's lightest and the file gets no
    legend (a scale from 0 to 0 says nothing)."""
    figure = FigureData.of(trace(nn.Sequential(nn.ReLU(), nn.Tanh()), torch.randn(2, 4)))
    root = _svg(figure, 1, overlay="params", standalone=True)
    assert root.find(f".//{SVG}g[@class='mt-legend-svg']") is None
    heated = [g for g in _items(root).values() if "mt-heat" in _classes(g)]
    assert heated and {g.find(f"{SVG}rect").get("fill") for g in heated} == {"#fff7bc"}


# -- a file of its own: margin, background, legend ----------------------------------------
def _legend(root: ET.Element) -> tuple[list[ET.Element], ET.Element]:
    legend = root.find(f".//{SVG}g[@class='mt-legend-svg']")
    return legend.findall(f"{SVG}text"), legend.find(f"{SVG}rect")


@pytest.mark.parametrize("overlay", ["none", "params", "flops", "weights", "activations",
                                     "workspace", "time"])
def test_an_exported_file_has_a_margin_a_background_and_the_overlay_s_legend(
        nested: FigureData, overlay: str) -> None:
    drawing = draw(nested.json, DrawOptions(depth=1, overlay=overlay, standalone=True))
    root = ET.fromstring(drawing.svg)
    placed = place(nested.json, DrawOptions(depth=1, overlay=overlay))
    values, texts = _overlay(nested, overlay) if overlay != "none" else ({}, {})
    legend = overlay != "none" and any(values[i] > 0 for i, b in placed["boxes"].items()
                                       if not b["open"])
    width, height = placed["width"] + 16, placed["height"] + 16 + (28 if legend else 0)
    assert (float(root.get("width")), float(root.get("height"))) == (width, height)
    assert root.get("viewBox") == f"-8 -8 {width:g} {height:g}"
    background = root.find(f"{SVG}rect")
    assert (background.get("x"), background.get("y"), background.get("fill")) == \
        ("-8", "-8", "#ffffff")
    assert (float(background.get("width")), float(background.get("height"))) == (width, height)
    if not legend:
        assert root.find(f".//{SVG}g[@class='mt-legend-svg']") is None
        return
    (name, zero, top), ramp = _legend(root)
    bold = evaluate("modelTrace.textWidth", name.text, 11, True)
    assert name.get("font-weight") == "bold" and float(name.get("x")) == 0
    assert float(zero.get("x")) == pytest.approx(bold + 8, abs=0.05)  # 8 px after the name
    assert zero.text == "0" and float(ramp.get("x")) == pytest.approx(float(zero.get("x")) + 12,
                                                                      abs=0.05)
    assert float(ramp.get("width")) == 120 and ramp.get("fill") == "url(#model-trace-ramp)"
    assert float(top.get("x")) == pytest.approx(float(ramp.get("x")) + 126, abs=0.05)
    assert float(ramp.get("y")) >= placed["height"] + 8  # below the graph
    heaviest = max((i for i, b in placed["boxes"].items() if not b["open"]),
                   key=lambda i: values[i])
    assert top.text == f"{texts[heaviest]} (log scale)"
    assert {float(t.get("y")) for t in (name, zero, top)} == {float(ramp.get("y")) + 9}
    stops = [(float(stop.get("offset")), stop.get("stop-color"))
             for stop in root.iter(f"{SVG}stop")]
    assert [offset for offset, _ in stops] == [0, 0.25, 0.5, 0.75, 1]  # the ramp, evenly
    assert all(colour == evaluate("modelTrace.rampColour", offset) for offset, colour in stops)


def test_the_legend_s_scale_starts_as_far_from_every_overlay_s_name() -> None:
    """Long names or short, the ramp keeps the same gap after the bold name."""
    figure = FigureData.of(trace(nn.Sequential(nn.Linear(4, 4), nn.ReLU()), torch.randn(2, 4)))
    gaps = set()
    for overlay in ("params", "flops", "weights", "activations", "time"):
        (name, zero, _), _ = _legend(_svg(figure, 1, overlay=overlay, standalone=True))
        width = evaluate("modelTrace.textWidth", name.text, 11, True)
        gaps.add(round(float(zero.get("x")) - width, 1))
    assert gaps == {8.0}


def test_a_collapsed_root_has_a_legend_of_its_own_value(nested: FigureData) -> None:
    """Everything folded into the root box: the root is the heaviest box shown."""
    root = _svg(nested, 1, overlay="flops", standalone=True, state="e:")
    (_, _, top), _ = _legend(root)
    assert [i for i, g in _items(root).items() if "mt-heat" in _classes(g)] == [nested.tree.root]
    assert top.text.endswith(" (log scale)")


# -- boxes --------------------------------------------------------------------------------
def test_boxes_carry_the_classes_and_attributes_the_stylesheet_and_viewer_read(
        nested: FigureData) -> None:
    tree, palette, paths = nested.tree, _palettes()["light"], _column(nested, "path")
    assert any(paths.values())
    for depth in (0, 1, 2, -1):
        root = _svg(nested, depth)
        placed = place(nested.json, DrawOptions(depth=depth))
        for item_id, g in _items(root).items():
            item, box, classes = tree.items[item_id], placed["boxes"][item_id], _classes(g)
            rect, text = g.find(f"{SVG}rect"), g.find(f"{SVG}text")
            assert (g.get("role"), g.get("tabindex"), g.get("aria-label")) == \
                ("button", "0", item.label)
            assert [float(rect.get(k)) for k in ("x", "y", "width", "height")] == \
                [box["x"], box["y"], box["w"], box["h"]]
            if item.kind not in ("module", "chunk", "idle"):
                assert classes[:3] == ["mt-node", f"mt-cat-{item.category}",
                                       f"mt-kind-{item.kind}"]
                continue
            idle = item.category == "idle"
            assert classes[0] == "mt-module"
            assert ("mt-open" in classes) == box["open"]
            assert ("mt-idle" in classes) == idle
            assert g.get("aria-expanded") == str(box["open"]).lower()
            assert g.get("data-path") == (paths[item_id] or None)
            assert (rect.get("stroke-dasharray") == "4 3") == idle
            assert rect.get("fill") == (palette["open"] if box["open"] else
                                        palette["idle"] if idle else rect.get("fill"))
            assert text.get("fill") == (palette["idleText"] if idle else palette["text"])
            if box["open"]:  # a title in the top-left corner, bold, left-aligned
                assert text.get("font-weight") == "bold" and text.get("text-anchor") is None
                assert box["x"] < float(text.get("x")) <= box["x"] + 16
                assert box["y"] + FONT <= float(text.get("y")) <= box["y"] + 2 * FONT
            else:
                assert text.get("text-anchor") == "middle" and text.get("font-weight") is None
    assert any("mt-idle" in _classes(g) for g in _items(_svg(nested, -1)).values())


def test_every_closed_label_sits_in_the_middle_of_its_box(nested: FigureData) -> None:
    """Centred across, and its baseline 4 px below the middle, so 12 px text is centred
    up and down."""
    root = _svg(nested, -1)
    placed = place(nested.json, DrawOptions(depth=-1))
    for item_id, g in _items(root).items():
        box, text = placed["boxes"][item_id], g.find(f"{SVG}text")
        if box["open"]:
            continue
        assert float(text.get("x")) == pytest.approx(box["x"] + box["w"] / 2, abs=0.05)
        assert float(text.get("y")) == pytest.approx(box["y"] + box["h"] / 2 + 4, abs=0.05)


def test_nested_closed_boxes_alternate_two_shades(nested: FigureData) -> None:
    """A closed box is told from the open box around it by its shade: boxes one level apart
    differ, two levels apart match."""
    shades: dict[int, set[str]] = {}
    for depth in range(4):
        root = _svg(nested, depth)
        depths = _depths(place(nested.json, DrawOptions(depth=depth)))
        for item_id, g in _items(root).items():
            classes = _classes(g)
            if classes[0] == "mt-module" and "mt-open" not in classes and \
                    "mt-idle" not in classes:
                shades.setdefault(depths[item_id], set()).add(g.find(f"{SVG}rect").get("fill"))
    assert {1, 2, 3} <= set(shades) and all(len(s) == 1 for s in shades.values())
    assert shades[1] != shades[2] and shades[1] == shades[3]


def test_a_chunk_is_a_dashed_box_of_its_own_shade() -> None:
    figure = FigureData.of(wide_graph(200))
    root = _svg(figure, 0, state="e:m0")
    chunks = [g for g in _items(root).values() if "mt-chunk" in _classes(g)]
    assert len(chunks) == 4
    for g in chunks:
        rect = g.find(f"{SVG}rect")
        assert rect.get("fill") == _palettes()["light"]["chunk"]
        assert rect.get("stroke-dasharray") == "4 3" and g.get("data-path") is None


def test_an_unfolded_repeat_s_members_are_drawn_muted_beside_it() -> None:
    """Members are calls of the run, not modules of their own: the idle shade, muted
    text, a dashed outline; the representative stays a plain module."""
    model = nn.Sequential(*(nn.Sequential(nn.Linear(8, 8), nn.ReLU()) for _ in range(3)))
    figure = FigureData.of(trace(model, torch.randn(2, 8)))
    (repeat,) = (i for i, item in figure.tree.items.items() if item.label.endswith("\u00d73"))
    palette = _palettes()["light"]
    items = _items(_svg(figure, 0, state=f"u:{repeat}"))
    members = [g for g in items.values() if "mt-kind-member" in _classes(g)]
    assert len(members) == 2
    for g in [*members, items[repeat]]:
        member = g in members
        rect, text = g.find(f"{SVG}rect"), g.find(f"{SVG}text")
        assert _classes(g)[0] == "mt-module"
        assert rect.get("fill") == (palette["idle"] if member else palette["modules"][1])
        assert text.get("fill") == (palette["idleText"] if member else palette["text"])
        assert (rect.get("stroke-dasharray") == "4 3") == member


def test_search_matches_and_the_boxes_holding_them_are_marked(nested: FigureData) -> None:
    tree = nested.tree
    closed = [i for i, b in place(nested.json, DrawOptions(depth=1))["boxes"].items()
              if not b["open"]]
    matches, holders = closed[:2], [tree.root]
    svg = evaluate(RENDER, nested.json, {"depth": 1}, {"matches": matches,
                                                        "holders": holders})
    root = ET.fromstring(f'<svg xmlns="http://www.w3.org/2000/svg">{svg}</svg>')
    for item_id, g in _items(root).items():
        assert ("mt-match" in _classes(g)) == (item_id in matches)
        assert ("mt-holds-match" in _classes(g)) == (item_id in holders)
        assert "mt-selected" not in _classes(g) and "mt-heat" not in _classes(g)


def test_zoomed_out_labels_become_bars_where_the_text_would_be(nested: FigureData) -> None:
    """Below the readable size each label is a bar as wide as its text (at least 8 px, at
    most the box): centred in a closed box, at the title's place in an open one; edge
    labels are left empty."""
    for depth in (1, -1):
        svg = evaluate(RENDER, nested.json, {"depth": depth}, {"bars": True})
        root = ET.fromstring(f'<svg xmlns="http://www.w3.org/2000/svg">{svg}</svg>')
        text = ET.fromstring(draw(nested.json, DrawOptions(depth=depth)).svg)
        placed = place(nested.json, DrawOptions(depth=depth))
        texts = _items(text)
        for item_id, g in _items(root).items():
            box, bar = placed["boxes"][item_id], g.find(f"{SVG}rect[@class='mt-bar']")
            label = texts[item_id].find(f"{SVG}text")
            assert g.find(f"{SVG}text") is None and bar.get("fill") == label.get("fill")
            width = evaluate("modelTrace.textWidth", box["label"], FONT, box["open"])
            room = box["w"] if box["open"] else box["w"] - 8
            assert float(bar.get("width")) == pytest.approx(max(8, min(room, width)), abs=0.05)
            assert float(bar.get("y")) == pytest.approx(float(label.get("y")) - 8, abs=0.05)
            middle = float(bar.get("x")) + float(bar.get("width")) / 2
            if box["open"]:
                assert float(bar.get("x")) == float(label.get("x"))
            else:
                assert middle == pytest.approx(box["x"] + box["w"] / 2, abs=0.1)
        shapes = [t for t in root.iter(f"{SVG}text") if t.get("class") == "mt-shape"]
        assert shapes and all(not t.text for t in shapes)


# -- edges --------------------------------------------------------------------------------
def test_edges_end_in_an_arrowhead_at_a_box_and_a_dot_at_a_port(nested: FigureData) -> None:
    for depth in (0, 1, -1):
        root = _svg(nested, depth)
        markers = {m.get("id"): m.find(f"{SVG}path").get("fill")
                   for m in root.iter(f"{SVG}marker")}
        palette = _palettes()["light"]
        assert markers == {"t-arrow": palette["edge"], "t-arrow-in": palette["input"],
                           "t-arrow-out": palette["output"]}
        edges = [g for g in root.iter(f"{SVG}g") if "mt-edge" in _classes(g)]
        assert edges
        for g in edges:
            path = g.find(f"{SVG}path")
            assert path.get("stroke") == palette["edge"] and path.get("fill") == "none"
            dot = g.find(f"{SVG}circle")
            if ":" in g.get("data-dst"):
                end = re.findall(r"(-?[\d.]+),(-?[\d.]+)", path.get("d"))[-1]
                assert path.get("marker-end") is None
                assert (dot.get("cx"), dot.get("cy"), dot.get("r")) == (*end, "2.5")
                assert dot.get("fill") == palette["edge"]
            else:
                assert path.get("marker-end") == "url(#t-arrow)" and dot is None


def test_weights_read_from_outside_are_dashed_and_tensors_solid(nested: FigureData) -> None:
    root = _svg(nested, -1)
    edges = [g for g in root.iter(f"{SVG}g") if "mt-edge" in _classes(g)]
    weights = [g for g in edges if g.find(f"{SVG}title") is not None
               and g.find(f"{SVG}title").text.startswith("parameter ")]
    assert weights and len(weights) < len(edges)
    for g in edges:
        param = g in weights
        assert ("mt-param" in _classes(g)) == param
        assert (g.find(f"{SVG}path").get("stroke-dasharray") == "4 3") == param


def test_a_selected_box_s_edges_take_the_arrowheads_of_their_direction(
        nested: FigureData) -> None:
    body = next(i for i, item in nested.tree.items.items() if item.label == "body: Sequential")
    root = _svg(nested, 1, state=f"s:{body}")
    palette = _palettes()["light"]
    seen = set()
    for g in root.iter(f"{SVG}g"):
        classes = _classes(g)
        if "mt-edge" not in classes:
            continue
        path = g.find(f"{SVG}path")
        relation = next((c[3:] for c in classes if c in ("mt-in", "mt-out")), "")
        seen.add(relation)
        colour = {"in": palette["input"], "out": palette["output"], "": palette["edge"]}
        assert path.get("stroke") == colour[relation]
        assert path.get("stroke-width") == ("2" if relation else None)
        if ":" not in g.get("data-dst"):
            suffix = f"-{relation}" if relation else ""
            assert path.get("marker-end") == f"url(#t-arrow{suffix})"
        else:
            assert g.find(f"{SVG}circle").get("fill") == colour[relation]
    assert seen == {"in", "out", ""}


# -- the page's <svg> ---------------------------------------------------------------------
def test_the_page_svg_is_sized_to_the_graph_and_never_shrinks_labels_below_8_px(
        nested: FigureData) -> None:
    drawing = draw(nested.json, DrawOptions(depth=1, prefix="fig"))
    root = ET.fromstring(drawing.svg)
    w, h = f"{drawing.width:g}", f"{drawing.height:g}"
    assert (root.get("width"), root.get("height"), root.get("viewBox")) == \
        (w, h, f"0 0 {w} {h}")
    style = dict(part.split(":") for part in root.get("style").split(";"))
    assert style["max-width"] == f"{w}px"
    assert float(style["min-width"][:-2]) == pytest.approx(drawing.width * READABLE / FONT,
                                                           abs=0.05)
    title = root.find(f"{SVG}title")
    assert root.get("aria-labelledby") == title.get("id") == "fig-title"
    data = json.loads(nested.json)
    assert title.text == data["strings"][data["view"]["title"]] == "Computation graph of Nested"
    assert root.find(f"{SVG}g").get("class") == "mt-viewport"

