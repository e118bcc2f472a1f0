"""Static SVG, PNG through cairosvg, the figure HTML and its compact view data."""

from __future__ import annotations

import gzip
import html.parser
import json
import os
import re
import struct
import subprocess
import sys
import xml.etree.ElementTree as ET

import cairosvg
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from model_trace import trace
from model_trace.graph import Graph
from model_trace.layout import edge_label, layout
from model_trace.render_html import ViewOptions, render_figure, view_json
from model_trace.render_svg import CATEGORY_FILLS, format_count, render_svg
from model_trace.view_data import decode_graph, encode_view
from model_trace.view_tree import ViewTree, expanded_groups

SVG = "{http://www.w3.org/2000/svg}"
NASTY = "<script>alert(\"x\")</script>&'"


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


def _svg(graph: Graph, depth: int) -> tuple[str, ViewTree]:
    tree = ViewTree.from_graph(graph)
    return render_svg(tree, layout(tree, expanded_groups(tree, depth)), "t"), tree


@pytest.mark.parametrize("depth", [0, 1, 3])
def test_svg_is_well_formed_with_every_label_shape_and_title(encoder: Graph, depth: int) -> None:
    text, tree = _svg(encoder, depth)
    root = ET.fromstring(text)
    items = {g.get("data-id"): g for g in root.iter(f"{SVG}g") if g.get("data-id")}
    placed = layout(tree, expanded_groups(tree, depth))
    assert set(items) == set(placed.boxes)
    for item_id, g in items.items():
        assert g.find(f"{SVG}text").text == tree.items[item_id].label
        assert g.find(f"{SVG}title").text  # a tooltip / accessible name for every box
    edges = [g for g in root.iter(f"{SVG}g") if g.get("class") == "mt-edge"]
    assert len(edges) == len(placed.routes)
    for edge, route in zip(edges, placed.routes, strict=True):
        assert edge.find(f"{SVG}text").text == edge_label(tree, route.tensors)
        assert "float32" in edge.find(f"{SVG}title").text


def test_fully_open_svg_has_every_node_label_and_every_edge_shape(encoder: Graph) -> None:
    text, tree = _svg(encoder, 100)
    root = ET.fromstring(text)
    drawn = {g.get("data-id"): g for g in root.iter(f"{SVG}g") if g.get("data-id")}
    shown = [node for node in encoder.nodes.values() if node.id in tree.items]
    assert shown and all(drawn[node.id].find(f"{SVG}text").text == node.name for node in shown)
    titles = {(g.get("data-src"), g.get("data-dst")): g.find(f"{SVG}title").text.split("\n")
              for g in root.iter(f"{SVG}g") if g.get("class") == "mt-edge"}
    carriers: dict[str, list[tuple[str, str]]] = {}
    for links in tree.links.values():
        for link in links:
            for tensor in link.tensors:
                carriers.setdefault(tensor, []).append((link.src, link.dst))
    for edge in encoder.edges:
        tensor = encoder.tensors[edge.tensor]
        wanted = f"{tensor.shape_label} {tensor.dtype}"
        assert any(wanted in titles[pair] for pair in carriers[edge.tensor]), edge


def test_static_tooltips_give_shapes_dtypes_params_and_flops(encoder: Graph) -> None:
    """With no script the <title> is the hover text: it must carry what the viewer's does."""
    root = ET.fromstring(_svg(encoder, 100)[0])
    titles = {g.get("data-id"): g.find(f"{SVG}title").text for g in root.iter(f"{SVG}g")
              if g.get("data-id")}
    for node in encoder.nodes.values():
        if node.id not in titles:
            continue  # a hidden constant
        title = titles[node.id]
        assert title.startswith(f"{node.name}  [{node.category}]")
        for tensor_id in node.outputs:
            tensor = encoder.tensors[tensor_id]
            assert f"{tensor.shape_label} {tensor.dtype}" in title
        assert ("\nFLOPs " in title) == bool(node.stats.flops)
        assert ("\nparams " in title) == bool(node.stats.params)
    for module in encoder.modules.values():
        assert f"\nparams {format_count(module.stats.params)}" in titles[module.id]
    assert any("\nparams " in titles[n] and "\nFLOPs " in titles[n] for n in encoder.nodes)


def test_op_nodes_are_coloured_by_their_kind(encoder: Graph) -> None:
    root = ET.fromstring(_svg(encoder, 100)[0])
    fills = set()
    for g in root.iter(f"{SVG}g"):
        if "mt-node" not in (g.get("class") or "").split():
            continue
        node = encoder.nodes[g.get("data-id")]
        assert f"mt-cat-{node.category}" in g.get("class").split()
        fill = g.find(f"{SVG}rect").get("fill")
        assert fill == CATEGORY_FILLS.get(node.category, CATEGORY_FILLS["other"])
        fills.add(fill)
    assert len(fills) >= 4  # linear, norm, activation, elementwise at least


def test_svg_is_deterministic(encoder: Graph) -> None:
    assert _svg(encoder, 2)[0] == _svg(encoder, 2)[0]


RENDER_FROM_JSON = """
import sys
from model_trace.graph import Graph
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


def test_svg_keeps_presentation_attributes_for_cairosvg(encoder: Graph) -> None:
    root = ET.fromstring(_svg(encoder, 1)[0])
    for rect in root.iter(f"{SVG}rect"):
        assert rect.get("fill", "").startswith("#") and rect.get("stroke", "").startswith("#")
    assert "var(" not in _svg(encoder, 1)[0]


def test_cairosvg_png_has_the_svg_size(encoder: Graph) -> None:
    text, _ = _svg(encoder, 1)
    root = ET.fromstring(text)
    png = cairosvg.svg2png(bytestring=text.encode(), scale=2)
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", png[16:24])
    assert abs(width - 2 * float(root.get("width"))) <= 2
    assert abs(height - 2 * float(root.get("height"))) <= 2


def test_view_data_round_trips_the_graph_exactly(encoder: Graph) -> None:
    tree = ViewTree.from_graph(encoder)
    data = json.loads(json.dumps(encode_view(tree, layout(tree, expanded_groups(tree, 1)))))
    assert decode_graph(data).to_json() == encoder.to_json()


def test_view_data_is_smaller_than_the_graph_json_for_a_deep_model() -> None:
    layer = nn.TransformerEncoderLayer(32, 4, dim_feedforward=64, batch_first=True)
    graph = trace(nn.TransformerEncoder(layer, num_layers=12, enable_nested_tensor=False),
                  torch.randn(2, 8, 32), **_unfolded())
    tree = ViewTree.from_graph(graph)
    data = json.dumps(encode_view(tree, layout(tree, expanded_groups(tree, 1))),
                      separators=(",", ":"))
    assert len(gzip.compress(data.encode())) < 0.8 * len(gzip.compress(graph.to_json().encode()))


def _unfolded() -> dict[str, bool]:
    import inspect

    return {"fold": False} if "fold" in inspect.signature(trace).parameters else {}


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
    assert any(f"= {NASTY!r}" in text for text in parser.texts)  # the op argument's tooltip
    data_text = re.search(r'<template class="mt-data">(.*?)</template>',
                          figure, re.S).group(1)
    assert "<" not in data_text and ">" not in data_text and "&" not in data_text
    data = json.loads(data_text)
    assert f"blocks.{NASTY}" in data["strings"] and repr(NASTY) in data["strings"]
    assert decode_graph(data).to_json() == graph.to_json()
    svg = re.search(r"<svg.*</svg>", figure, re.S).group(0)
    labels = [t.text for t in ET.fromstring(svg).iter(f"{SVG}text")]
    assert f"blocks.{NASTY}: Linear" in labels
    titles = [t.text for t in ET.fromstring(svg).iter(f"{SVG}title")]
    assert any(f"= {NASTY!r}" in title for title in titles)


def test_figure_embeds_view_data_not_the_graph_json(encoder: Graph) -> None:
    figure = render_figure(encoder, ViewOptions(depth=1, overlay="flops", theme="dark",
                                                height=500, caption="A & B"), "fig")
    assert '"schema_version"' in figure and '"modules":[{' not in figure
    assert 'data-overlay="flops"' in figure and 'data-theme="dark"' in figure
    assert "--mt-height: 500px" in figure and "<figcaption>A &amp; B</figcaption>" in figure


def test_view_options_reject_unknown_values() -> None:
    with pytest.raises(ValueError, match="overlay"):
        ViewOptions(overlay="colour")
    with pytest.raises(ValueError, match="theme"):
        ViewOptions(theme="sepia")


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
    labels = {t.text for t in ET.fromstring(svg).iter("{http://www.w3.org/2000/svg}text")}
    assert "layers.0\u20132: Sequential \u00d73" in labels  # a numbered run names its range
    assert "experts.a: Linear \u00d72" in labels  # not numbered: named by its first member
    assert "0: Linear" in labels  # inside a layer, the path below it
