"""The SVG the engine draws at build time, the figure HTML around it, the view data it carries,
and the files a fence exports."""

from __future__ import annotations

import html.parser
import itertools
import json
import os
import re
import struct
import subprocess
import sys
import xml.etree.ElementTree as ET
from typing import Any

import cairosvg
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from model_trace import trace
from model_trace.details import item_text
from model_trace.engine import DrawOptions, draw, evaluate
from model_trace.graph import Graph
from model_trace.naming import format_count
from model_trace.pipeline import export_files, view_options
from model_trace.render_html import (
    FigureData,
    ViewOptions,
    export_svg,
    render_figure,
    view_json,
)
from model_trace.spec import FIELDS, OVERLAYS, parse_spec
from model_trace.view_data import decode_graph, encode_view
from model_trace.view_tree import ViewTree

SVG = "{http://www.w3.org/2000/svg}"
NASTY = "<script>alert(\"x\")</script>&'"
HEX = re.compile(r"^#[0-9a-f]{6}$")


def tagged(x: torch.Tensor, tag: str) -> torch.Tensor:
    if torch.overrides.has_torch_function((x,)):
        return torch.overrides.handle_torch_function(tagged, (x,), x, tag)
    return x * 1


class Escapes(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.blocks = nn.ModuleDict({NASTY: nn.Linear(8, 8)})

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return tagged(self.blocks[NASTY](x), NASTY)


@pytest.fixture(scope="module")
def encoder() -> Graph:
    layer = nn.TransformerEncoderLayer(32, 4, dim_feedforward=64, batch_first=True)
    return trace(nn.TransformerEncoder(layer, num_layers=2, enable_nested_tensor=False),
                 torch.randn(2, 8, 32))


def _svg(graph: Graph, depth: int, **options: object) -> tuple[str, ViewTree]:
    figure = FigureData.of(graph)
    return draw(figure.json, DrawOptions(depth=depth, prefix="t", **options)).svg, figure.tree


def _items(root: ET.Element) -> dict[str, ET.Element]:
    return {g.get("data-id"): g for g in root.iter(f"{SVG}g") if g.get("data-id")}


@pytest.mark.parametrize("depth", [0, 1, 3])
def test_svg_has_every_label_shape_and_tooltip(encoder: Graph, depth: int) -> None:
    text, tree = _svg(encoder, depth)
    root = ET.fromstring(text)
    items = _items(root)
    assert tree.root in items
    for item_id, g in items.items():
        assert g.find(f"{SVG}text").text == tree.items[item_id].label
        assert g.get("aria-label") == tree.items[item_id].label  # what it says, it is called
        assert g.find(f"{SVG}title").text == item_text(tree, item_id).tooltip()
    edges = [g for g in root.iter(f"{SVG}g") if "mt-edge" in g.get("class", "")]
    assert len(edges) >= depth  # depth 0: the root's children may share no edge
    shapes = {t.text for t in root.iter(f"{SVG}text") if t.get("class") == "mt-shape"}
    for edge in edges:
        title = edge.find(f"{SVG}title")
        assert title is None or "float32" in title.text or \
            title.text.startswith("parameter ")  # a weight read from outside its module
    if depth:
        assert "(2, 8, 32)" in shapes


def test_fully_open_svg_shows_every_op_and_every_tensor(encoder: Graph) -> None:
    text, tree = _svg(encoder, -1)
    root = ET.fromstring(text)
    items = _items(root)
    shown = [node for node in encoder.nodes.values() if node.id in tree.items]
    assert shown and all(items[node.id].find(f"{SVG}text").text == node.name for node in shown)
    titles = "\n".join(g.find(f"{SVG}title").text for g in root.iter(f"{SVG}g")
                       if "mt-edge" in g.get("class", "") and g.find(f"{SVG}title") is not None)
    for edge in encoder.edges:
        tensor = encoder.tensors[edge.tensor]
        assert f"{tensor.shape_label} {tensor.dtype}" in titles, edge


def test_static_tooltips_give_shapes_dtypes_params_and_flops(encoder: Graph) -> None:
    """With no script the <title> is the hover text: it must carry what the viewer's does."""
    text, _ = _svg(encoder, -1)
    titles = {g.get("data-id"): g.find(f"{SVG}title").text for g in _items(ET.fromstring(text))
              .values()}
    for node in encoder.nodes.values():
        if node.id not in titles:
            continue  # a hidden constant
        title = titles[node.id]
        assert title.startswith(f"{node.name}  [{node.category}]")
        for tensor_id in node.outputs:
            tensor = encoder.tensors[tensor_id]
            assert f"{tensor.shape_label} {tensor.dtype}" in title
        assert ("\nFLOPs: " in title) == bool(node.stats.flops)
        assert ("\nparams: " in title) == bool(node.stats.params)
    params = encoder.modules[encoder.root].stats.params
    assert f"params: {format_count(params)}" in titles[encoder.root]
    assert format_count(params) == "17.1K"  # naming's one number style


def test_op_nodes_are_coloured_by_their_kind_in_plain_colours(encoder: Graph) -> None:
    text, _ = _svg(encoder, -1)
    root = ET.fromstring(text)
    fills = set()
    for g in root.iter(f"{SVG}g"):
        if "mt-node" not in (g.get("class") or "").split():
            continue
        node = encoder.nodes[g.get("data-id")]
        assert f"mt-cat-{node.category}" in g.get("class").split()
        fills.add(g.find(f"{SVG}rect").get("fill"))
    assert len(fills) >= 4  # linear, norm, activation, elementwise at least
    for element in root.iter():
        for name in ("fill", "stroke"):
            value = element.get(name)
            if value is not None and value != "none" and not value.startswith("url("):
                assert HEX.match(value), (element.tag, name, value)
    assert "var(" not in text and "color(" not in text


def test_svg_is_deterministic(encoder: Graph) -> None:
    assert _svg(encoder, 2)[0] == _svg(encoder, 2)[0]


RENDER_FROM_JSON = """
import sys
from model_trace.graph import Graph
from model_trace.naming import format_count
from model_trace.render_html import ViewOptions, render_figure
graph = Graph.from_json(sys.stdin.read())
sys.stdout.write(render_figure(graph, ViewOptions(depth=2), "fig"))
"""


def test_figure_is_the_same_in_every_process(encoder: Graph) -> None:
    """Set or hash order must not leak into the page: two hash seeds, one figure."""
    figures = [
        subprocess.run([sys.executable, "-c", RENDER_FROM_JSON], input=encoder.to_json(),
                       capture_output=True, text=True, check=True,
                       env={**os.environ, "PYTHONHASHSEED": seed}).stdout
        for seed in ("1", "2")
    ]
    assert figures[0] == figures[1] and 'class="mt-node' in figures[0]


def test_cairosvg_png_has_the_svg_size(encoder: Graph) -> None:
    text, _ = _svg(encoder, 1, standalone=True)
    root = ET.fromstring(text)
    png = cairosvg.svg2png(bytestring=text.encode(), scale=2)
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", png[16:24])
    assert abs(width - 2 * float(root.get("width"))) <= 2
    assert abs(height - 2 * float(root.get("height"))) <= 2


def test_view_data_round_trips_the_graph_exactly(encoder: Graph) -> None:
    data = json.loads(json.dumps(encode_view(ViewTree.from_graph(encoder))))
    assert decode_graph(data).to_json() == encoder.to_json()


class _Collector(html.parser.HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.texts: list[str] = []

    def handle_starttag(self, tag: str, attrs) -> None:
        self.tags.append(tag)

    def handle_data(self, data: str) -> None:
        self.texts.append(data)


def test_names_and_arguments_are_escaped_in_svg_html_and_json() -> None:
    graph = trace(Escapes(), torch.randn(2, 8))
    figure = render_figure(graph, ViewOptions(depth=2), "fig")
    parser = _Collector()
    parser.feed(figure)
    assert parser.tags.count("script") == 0  # nothing injected (the data is a template)
    assert f"blocks.{NASTY}: Linear" in parser.texts  # parsed back as text, not as markup
    assert any(f"arg1: {NASTY!r}" in text for text in parser.texts)  # the op's tooltip
    data_text = re.search(r'<template class="mt-data">(.*?)</template>', figure, re.S).group(1)
    assert "<" not in data_text and ">" not in data_text and "&" not in data_text
    data = json.loads(data_text)
    assert f"blocks.{NASTY}" in data["strings"] and repr(NASTY) in data["strings"]
    assert decode_graph(data).to_json() == graph.to_json()
    svg = re.search(r"<svg.*</svg>", figure, re.S).group(0)
    labels = [t.text for t in ET.fromstring(svg).iter(f"{SVG}text")]
    assert f"blocks.{NASTY}: Linear" in labels


def test_figure_embeds_view_data_not_the_graph_json(encoder: Graph) -> None:
    figure = render_figure(encoder, ViewOptions(depth=1, overlay="flops", theme="dark",
                                                height=500, caption="A & B",
                                                direction="LR"), "fig")
    assert '"schema_version"' in figure and '"modules":[{' not in figure
    assert 'data-overlay="flops"' in figure and 'data-theme="dark"' in figure
    assert 'data-direction="LR"' in figure
    assert "--mt-height: 500px" in figure and "<figcaption>A &amp; B</figcaption>" in figure
    assert 'class="mt-module mt-heat' in figure or "mt-heat" in figure  # the overlay is drawn


def test_view_options_reject_unknown_values() -> None:
    with pytest.raises(ValueError, match="overlay"):
        ViewOptions(overlay="colour")
    with pytest.raises(ValueError, match="theme"):
        ViewOptions(theme="sepia")
    with pytest.raises(ValueError, match="direction"):
        ViewOptions(direction="RL")


_JSON_TEXT = st.text(alphabet=st.sampled_from("ab<>&'\"/\\\u2028\u2029 \n</script>"), max_size=20)
_JSON_VALUES = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), _JSON_TEXT),
    lambda inner: st.one_of(st.lists(inner, max_size=3),
                            st.dictionaries(_JSON_TEXT, inner, max_size=3)),
    max_leaves=10)


@settings(max_examples=300, deadline=None)
@given(_JSON_VALUES)
def test_view_json_is_inert_in_html_and_round_trips(value: object) -> None:
    text = view_json({"names": value})
    assert not set(text) & {"<", ">", "&", "\u2028", "\u2029"}
    assert json.loads(text) == {"names": value}


class _Stack(nn.Module):
    """Blocks in a ModuleList (never called itself) and an MoE-like dict of experts."""

    def __init__(self) -> None:
        super().__init__()
        self.layers = nn.ModuleList(nn.Sequential(nn.Linear(4, 4), nn.ReLU()) for _ in range(3))
        self.experts = nn.ModuleDict({"a": nn.Linear(4, 4), "b": nn.Linear(4, 4)})

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            x = layer(x)
        return self.experts["a"](x) + self.experts["b"](x)


def test_boxes_are_named_by_their_path_below_the_enclosing_box() -> None:
    svg, _ = _svg(trace(_Stack(), torch.randn(2, 4)), depth=2)
    labels = {t.text for t in ET.fromstring(svg).iter(f"{SVG}text")}
    assert "layers.0\u20132: Sequential \u00d73" in labels  # a numbered run names its range
    assert "experts.a: Linear \u00d72" in labels  # not numbered: named by its first member
    assert "0: Linear" in labels  # inside a layer, the path below it


# -- exports: what a fence's `export:` writes follows the fence like the page does

class _WithConstant(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.proj = nn.Linear(4, 4)
        self.register_buffer("scale", torch.ones(4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x) * self.scale


def _exports(graph: Graph, fence: str) -> str:
    spec = parse_spec("model: x:y\nexport: svg\n" + fence).with_defaults(
        depth=1, routing="balanced", export=())
    view = view_options(spec)
    figure = FigureData.of(graph, show_constants=view.show_constants)
    return export_files(figure, spec, view)["svg"].decode("utf-8")


def test_exports_honour_depth_overlay_direction_constants_and_legend() -> None:
    graph = trace(_WithConstant(), torch.randn(2, 4))
    plain = _exports(graph, "")
    assert ET.fromstring(plain).find(f"{SVG}rect").get("fill") == "#ffffff"  # a background
    assert _exports(graph, "depth: 0") != plain
    flops = _exports(graph, "overlay: flops")
    assert "mt-heat" in flops and ">FLOPs</text>" in flops and "(log scale)" in flops
    assert "mt-heat" not in plain and "(log scale)" not in plain
    written = _exports(graph, "overlay: activations")
    assert ">activations written</text>" in written and "memory" not in written
    shown = {g.get("data-id") for g in ET.fromstring(plain).iter(f"{SVG}g")}
    hidden = {g.get("data-id") for g in ET.fromstring(_exports(graph, "show_constants: false"))
              .iter(f"{SVG}g")}
    assert hidden < shown
    assert any(graph.nodes[i].kind in ("buffer", "constant") for i in shown - hidden
               if i in graph.nodes)
    wide = ET.fromstring(_exports(graph, "direction: LR"))
    tall = ET.fromstring(plain)
    assert float(wide.get("width")) / float(wide.get("height")) > \
        float(tall.get("width")) / float(tall.get("height"))


def test_the_overlay_ramp_runs_from_light_yellow_to_dark_red_growing_darker() -> None:
    """A heavier op is never drawn lighter than a lighter one: the ramp's luminance falls
    with the value, from its first stop to its last, out-of-range values clamped."""
    samples = [evaluate("modelTrace.rampColour", k / 40) for k in range(41)]
    assert (samples[0], samples[-1]) == ("#fff7bc", "#521402")
    assert evaluate("modelTrace.rampColour", -1) == samples[0]
    assert evaluate("modelTrace.rampColour", 2) == samples[-1]
    white = [evaluate("modelTrace.contrast", colour, "#ffffff") for colour in samples]
    assert all(a < b for a, b in itertools.pairwise(white)), white


def test_contrast_is_wcag_s_ratio_and_text_takes_the_stronger_colour() -> None:
    """WCAG 2's contrast ratio: 21:1 for black on white, 4.54:1 for #767676 on white (the
    lightest grey that passes AA); text on a fill is black or white, whichever is stronger."""
    assert evaluate("modelTrace.contrast", "#ffffff", "#000000") == pytest.approx(21)
    assert evaluate("modelTrace.contrast", "#767676", "#ffffff") == pytest.approx(4.54, abs=0.01)
    assert evaluate("modelTrace.textOn", "#fff7bc") == "#111111"
    assert evaluate("modelTrace.textOn", "#521402") == "#ffffff"


def test_a_selected_box_marks_the_edges_into_it_and_out_of_it() -> None:
    """The state a reader reaches by clicking a box: its inputs' edges are drawn as ``in``,
    its outputs' as ``out``, every other edge plain, and the box itself selected."""
    model = nn.Sequential(nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 2))
    figure = FigureData.of(trace(model, torch.randn(2, 8)))
    (relu,) = (i for i, item in figure.tree.items.items() if item.label == "1: ReLU")
    svg = draw(figure.json, DrawOptions(depth=0, state=f"s:{relu}")).svg
    edges = re.findall(r'<g class="mt-edge([^"]*)" data-src="([^"]+)" data-dst="([^"]+)"', svg)
    marked = {(src, dst): classes.strip() for classes, src, dst in edges}
    assert {k for k, v in marked.items() if v == "mt-in"} == {(k[0], relu) for k in marked
                                                              if k[1] == relu}
    assert {k for k, v in marked.items() if v == "mt-out"} == {(relu, k[1]) for k in marked
                                                               if k[0] == relu}
    assert sum(v == "" for v in marked.values()) == len(marked) - 2
    assert re.search(rf'class="[^"]*mt-selected[^"]*" data-id="{relu}"', svg)
    plain = draw(figure.json, DrawOptions(depth=0)).svg
    assert "mt-selected" not in plain and 'class="mt-edge mt-in"' not in plain


def test_an_edge_is_straight_where_its_points_line_up_and_curves_between_ranks() -> None:
    """Path data through route points: a straight piece where two points share the cross
    axis, else a cubic that leaves and reaches each point along the rank axis (halfway)."""
    route = "modelTrace.routePath"
    assert evaluate(route, [[0, 0], [0, 10], [6, 30]], False) == "M0,0 L0,10 C0,20 6,20 6,30"
    assert evaluate(route, [[0, 0], [10, 0], [30, 6]], True) == "M0,0 L10,0 C20,0 20,6 30,6"
    assert evaluate(route, [[0, 0], [0.04, 10]], False) == "M0,0 L0,10"  # within 0.05 px


def test_an_unfolded_repeat_draws_its_members_as_calls_of_the_run() -> None:
    """Unfolded, a run's members are drawn as members (dashed, no expand control of their
    own, no module path of their own to link); the representative stays a module, no
    longer marked folded."""
    model = nn.Sequential(*(nn.Sequential(nn.Linear(8, 8), nn.ReLU()) for _ in range(3)))
    figure = FigureData.of(trace(model, torch.randn(2, 8)))
    (repeat,) = (i for i, item in figure.tree.items.items() if item.label.endswith("×3"))
    members = sorted(i for i, item in figure.tree.items.items() if item.kind == "member")
    svg = draw(figure.json, DrawOptions(depth=0, state=f"u:{repeat}")).svg
    groups = {item: tag for tag, item in re.findall(
        r'<g (class="mt-module[^"]*" data-id="([^"]+)"[^>]*)>', svg)}
    for member in members:
        tag = groups[member]
        assert "mt-kind-member" in tag and "aria-expanded" not in tag and "data-path" not in tag
        assert 'stroke-dasharray="4 3"' in svg.split(f'data-id="{member}"')[1].split("</g>")[0]
    assert "mt-folded" not in groups[repeat] and 'aria-expanded="false"' in groups[repeat]
    folded = draw(figure.json, DrawOptions(depth=0)).svg
    assert "mt-folded" in folded and not any(f'data-id="{m}"' in folded for m in members)


def test_inputs_and_outputs_are_pills_and_every_closed_label_is_centred() -> None:
    """Tensors entering and leaving the model are drawn round-ended (rx half their height),
    ops as boxes with small corners; a closed box's label sits in its middle."""
    model = nn.Sequential(nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 2))
    figure = FigureData.of(trace(model, torch.randn(2, 8)))
    svg = draw(figure.json, DrawOptions(depth=-1)).svg
    items = re.findall(r'<g class="(mt-node|mt-module)([^"]*)"[^>]*>(?:<title>[^<]*</title>)?'
                       r'<rect x="([\d.]+)" y="([\d.]+)" width="([\d.]+)" height="([\d.]+)" '
                       r'rx="([\d.]+)"[^>]*/>(<text x="([\d.]+)" y="([\d.]+)")?', svg)
    kinds = {}
    for family, classes, x, y, w, h, rx, _, tx, ty in items:
        x, y, w, h = float(x), float(y), float(w), float(h)
        if family == "mt-node":
            kinds.setdefault("io" if re.search(r"mt-kind-(input|output)", classes) else "op",
                             set()).add(float(rx))
        if tx and "mt-open" not in classes:
            assert abs(float(tx) - (x + w / 2)) <= 0.1 and y < float(ty) < y + h, classes
    assert kinds == {"io": {13.0}, "op": {4.0}}


# -- the figure a page ships: the options a fence gives, the SVG the viewer hydrates, the data

def _config_choice(option: str) -> Any:
    from model_trace.mkdocs.config import ModelTraceConfig

    return dict(ModelTraceConfig._schema)[option]


def test_every_overlay_direction_and_theme_a_fence_may_ask_for_is_drawn(encoder: Graph) -> None:
    """Whatever the fence's fields (and the plugin's ``theme`` option) allow, the renderer
    takes, and the figure tells the viewer."""
    figure = FigureData.of(encoder)
    asked = [("overlay", v) for v in FIELDS["overlay"].choices or ()]
    asked += [("direction", v) for v in FIELDS["direction"].choices or ()]
    asked += [("theme", v) for v in _config_choice("theme").choices]
    assert len(asked) == 12
    for name, value in asked:
        html = render_figure(figure, ViewOptions(**{name: value}), "f")
        assert f'data-{name}="{value}"' in html, (name, value)


def test_a_fence_that_says_nothing_of_its_view_gets_the_documented_defaults(
        encoder: Graph) -> None:
    """The fields' reference (``FIELDS``) and the plugin's options say what a fence without
    view fields shows: depth 1 (the plugin's default), op kinds, top to bottom, constants
    drawn, the page's theme, downloads offered, no caption and the stylesheet's height."""
    view = view_options(parse_spec("model: x:y"))
    assert view == ViewOptions()
    assert view.depth == _config_choice("depth").default
    assert view.theme == _config_choice("theme").default
    assert (view.overlay, view.direction) == (FIELDS["overlay"].default,
                                              FIELDS["direction"].default)
    assert view.show_constants is (FIELDS["show_constants"].default == "true")
    html = render_figure(FigureData.of(encoder), view, "f")
    assert 'data-depth="1"' in html and 'data-overlay="none"' in html
    assert 'data-direction="TB"' in html and 'data-theme="auto"' in html
    assert "data-downloads" not in html and "--mt-height" not in html
    assert "<figcaption>" not in html


def test_the_page_carries_the_svg_the_viewer_hydrates(encoder: Graph) -> None:
    """The figure's SVG is the page's (``svg.mt-svg``, named by the figure's prefix, sized to
    the graph, without the background and margin of an exported file)."""
    html = render_figure(FigureData.of(encoder), ViewOptions(depth=1), "fig-3")
    svg = ET.fromstring(re.search(r"<svg.*</svg>", html, re.S).group(0))
    assert svg.get("class") == "mt-svg" and svg.get("id") == "fig-3-svg"
    assert svg.get("viewBox") == f"0 0 {svg.get('width')} {svg.get('height')}"
    assert svg.find(f"{SVG}rect") is None  # every rect is an item's, inside its <g>


@pytest.mark.parametrize("theme", ["auto", "light", "dark"])
def test_an_exported_file_is_light_unless_the_fence_pins_dark(encoder: Graph,
                                                              theme: str) -> None:
    """A file cannot follow a page's theme: ``auto`` exports the light drawing."""
    palettes = evaluate("(function () { return modelTrace.PALETTES; })")
    svg = ET.fromstring(export_svg(FigureData.of(encoder), ViewOptions(theme=theme)))
    background = svg.find(f"{SVG}rect").get("fill")
    assert background == palettes["dark" if theme == "dark" else "light"]["bg"]


def test_the_view_data_keeps_text_as_it_is_and_the_overlays_in_menu_order(
        encoder: Graph) -> None:
    """The figure carries its view data compact: names keep their characters (a label's
    ``×3`` is one character, not a six-byte escape), and the overlays come in the order the
    viewer's menu lists them, the spec's."""
    assert view_json({"label": "layers.0–2: Block ×3 › α"}) == \
        '{"label":"layers.0–2: Block ×3 › α"}'
    html = render_figure(FigureData.of(encoder), ViewOptions(), "f")
    data = re.search(r'<template class="mt-data">(.*?)</template>', html, re.S).group(1)
    menu = evaluate("(function (t) { return new modelTrace.ViewModel(JSON.parse(t)).overlays; })",
                    data)
    assert menu == list(OVERLAYS)
