"""Annotations: highlight, labels, notes and hide, resolved against real traces and drawn by
the engine in the static SVG (the browser side is in test_authoring_browser.py)."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

import pytest
import torch
from figure_models import FIGURE_MODELS
from torch import nn

from model_trace.annotate import Annotations, find
from model_trace.engine import DrawOptions, draw
from model_trace.errors import SpecError
from model_trace.integrity import check_figure
from model_trace.pipeline import draw as draw_fence
from model_trace.render_html import FigureData
from model_trace.spec import COLOURS, parse_spec
from model_trace.tracing.backward import trace_backward
from model_trace.view_tree import ViewTree

SVG = "{http://www.w3.org/2000/svg}"


def _figure(name: str, **marks: object) -> FigureData:
    annotations = Annotations(**marks)  # type: ignore[arg-type]
    return FigureData.of(FIGURE_MODELS[name](), marks=annotations.apply)


def _items(svg: str) -> dict[str, ET.Element]:
    return {g.get("data-id", ""): g for g in ET.fromstring(svg).iter(f"{SVG}g")
            if g.get("data-id")}


def _marks(group: ET.Element) -> ET.Element | None:
    return next((g for g in group if g.get("class") == "mt-marks"), None)


def test_targets_name_paths_classes_ops_and_kinds_in_that_order() -> None:
    tree = ViewTree.from_graph(FIGURE_MODELS["deepseek-v3 tiny, focus layers.0"]())
    graph = tree.graph
    path = {m.path: m.id for m in graph.modules.values()}
    assert find(tree, "attn.wkv_b", "highlight") == [path["layers.0.attn.wkv_b"]]
    assert find(tree, "layers.0.attn.wkv_b", "highlight") == [path["layers.0.attn.wkv_b"]]
    norms = find(tree, "RMSNorm", "highlight")
    assert [graph.modules[i].cls for i in norms] == ["RMSNorm"] * len(norms) and len(norms) >= 3
    einsums = find(tree, "einsum", "highlight")
    assert einsums and all(graph.nodes[i].name == "einsum" for i in einsums)
    assert find(tree, "einsum#2", "highlight") == [einsums[1]]
    inside = find(tree, "attn/einsum", "highlight")
    assert set(inside) == set(einsums)  # every einsum of the block is in its attention
    shapes = find(tree, "shape", "hide")
    assert shapes and {graph.nodes[i].category for i in shapes} == {"shape"}
    assert find(tree, "ffn/linear", "highlight") and not set(find(tree, "ffn/linear",
                                                                  "highlight")) & set(einsums)


def test_a_target_that_matches_nothing_names_the_nearest_items() -> None:
    tree = ViewTree.from_graph(FIGURE_MODELS["deepseek-v3 tiny, focus layers.0"]())
    with pytest.raises(SpecError) as error:
        find(tree, "attn.wkv_c", "notes")
    assert error.value.field == "notes"
    assert "'attn.wkv_c' matches no module path" in str(error.value)
    assert "'attn.wkv_b'" in str(error.value) and "'attn.wkv_a'" in str(error.value)
    with pytest.raises(SpecError, match="asks for match 99"):
        find(tree, "einsum#99", "highlight")
    with pytest.raises(SpecError, match="inside 'attn'"):
        find(tree, "attn/topk", "highlight")


def test_the_modules_listed_for_an_unmatched_target_are_each_named_once() -> None:
    """A backward graph calls ``self_attn`` for several gradient ops: the error lists it once."""
    graph = trace_backward(nn.TransformerEncoderLayer(32, 4, 64, batch_first=True),
                           torch.randn(2, 8, 32))
    with pytest.raises(SpecError, match="modules here: ") as error:
        find(ViewTree.from_graph(graph), "zzzz", "hide")
    listed = str(error.value).partition("modules here: ")[2].split(", ")
    assert "self_attn" in listed and len(listed) == len(set(listed))


def test_a_path_inside_a_folded_run_names_its_representative() -> None:
    tree = ViewTree.from_graph(FIGURE_MODELS["deepseek-v3 tiny"]())
    found = find(tree, "layers.2.ffn", "highlight")
    assert [tree.graph.modules[i].path for i in found] == ["layers.1.ffn"]


def test_marks_are_drawn_in_the_static_svg() -> None:
    figure = _figure("encoder layer", highlight={"self_attn": "blue", "linear": "#123456"},
                     labels={"linear2": "project back"}, notes={"norm1": "first", "add": "sum"})
    svg = draw(figure.json, DrawOptions(depth=1)).svg
    items = _items(svg)
    graph = figure.tree.graph
    by_path = {m.path: m.id for m in graph.modules.values()}
    attention = _marks(items[by_path["self_attn"]])
    assert attention is not None
    assert attention.find(f"{SVG}rect").get("stroke") == COLOURS["blue"]
    # at depth 0 the linear ops are inside closed boxes: those get a thin dashed outline
    closed = _items(draw(figure.json, DrawOptions(depth=0)).svg)
    holder = _marks(closed[by_path["linear1"]])
    assert holder is not None and holder.find(f"{SVG}rect").get("stroke-dasharray")
    linear = next(n.id for n in graph.nodes.values() if n.name == "linear")
    assert _marks(items[linear]).find(f"{SVG}rect").get("stroke") == "#123456"
    # a label replaces the text on the box (and its aria-label); the tooltip keeps the name
    linear2 = items[by_path["linear2"]]
    assert linear2.get("aria-label") == "project back"
    assert next(t.text for t in linear2.iter(f"{SVG}text")) == "project back"
    assert linear2.find(f"{SVG}title").text.startswith("linear2: Linear")
    # note 1 on norm1, note 2 on both adds (two matches, one number)
    numbers = {i: [t.text for t in _marks(g).iter(f"{SVG}text")] for i, g in items.items()
               if _marks(g) is not None}
    assert numbers[by_path["norm1"]] == ["1"]
    adds = [n.id for n in graph.nodes.values() if n.name == "add"]
    assert len(adds) == 2 and all(numbers[a] == ["2"] for a in adds)
    report = check_figure(svg, graph, figure.tree.parents())
    assert report.total == 0, report


def test_notes_are_listed_under_the_figure_in_order_with_their_items() -> None:
    spec = parse_spec("model: torch.nn:TransformerEncoderLayer\n"
                      "args: {d_model: 64, nhead: 4, batch_first: true}\ninputs: [[2, 16, 64]]\n"
                      "notes: {norm2: 'Second <norm>.', self_attn: Attention first.}\n"
                      ).with_defaults(depth=1, routing="balanced", export=())
    graph = FIGURE_MODELS["encoder layer"]()
    html = draw_fence(graph, spec).html
    listed = re.findall(r'<li value="(\d)"><span class="mt-note-number"[^>]*>\d</span> '
                        r'<button[^>]*data-item="(m\d+)"[^>]*>([^<]+)</button> ([^<]+)</li>', html)
    by_path = {m.path: m.id for m in graph.modules.values()}
    assert listed == [("1", by_path["norm2"], "norm2: LayerNorm", "Second &lt;norm&gt;."),
                      ("2", by_path["self_attn"], "self_attn: MultiheadAttention",
                       "Attention first.")]


@pytest.mark.parametrize(("name", "hide"), [
    ("encoder layer", ("shape", "dropout1", "Dropout")),
    ("deepseek-v3 tiny, focus layers.0", ("shape", "attn/index")),
    ("resnet-like", ("shape", "BatchNorm2d")),
])
def test_hidden_ops_are_bridged_and_every_depth_stays_whole(name: str,
                                                            hide: tuple[str, ...]) -> None:
    figure = _figure(name, hide=hide)
    tree = figure.tree
    graph = tree.graph
    hidden = [n for n in graph.nodes.values() if n.kind == "op" and n.category == "shape"]
    assert hidden and not any(n.id in tree.items for n in hidden)
    assert not any(m.cls in hide and m.id in tree.items for m in graph.modules.values())
    # a flow that passed through a hidden op runs from its producer to its consumer
    shown = {(f.src, f.dst) for f in tree.flows}
    for node in hidden:
        for edge in graph.edges:
            if edge.src == node.id and edge.dst in tree.items:
                producers = [e.src for e in graph.edges if e.dst == node.id]
                assert any((p, edge.dst) in shown for p in producers if p in tree.items) or (
                    not any(p in tree.items for p in producers))
    idle = [i for i, item in tree.items.items() if item.kind == "idle"]
    for depth in [*range(tree.deepest_level() + 1), -1]:
        svg = draw(figure.json, DrawOptions(depth=depth)).svg
        assert not {h.id for h in hidden} & set(_items(svg))
        report = check_figure(svg, graph, tree.parents(), idle)
        assert report.total == 0, f"{name}, depth {depth}: {report}"


def test_the_integrity_checker_wants_the_bridge_of_a_hidden_op() -> None:
    """A figure that hides an op but draws no edge around it fails the check."""
    figure = _figure("encoder layer", hide=("relu",))
    tree = figure.tree
    relu = next(n.id for n in tree.graph.nodes.values() if n.name == "relu")
    svg = draw(figure.json, DrawOptions(depth=-1)).svg
    assert check_figure(svg, tree.graph, tree.parents()).total == 0
    producer = next(e.src for e in tree.graph.edges if e.dst == relu)
    consumer = next(e.dst for e in tree.graph.edges if e.src == relu)
    cut = re.sub(r'<g class="mt-edge[^"]*" data-src="[^"]*" data-dst="[^"]*(' + consumer +
                 r'|:in:[^"]*)">.*?</g>', "", svg)
    assert cut != svg
    report = check_figure(cut, tree.graph, tree.parents())
    assert report.missing, f"{producer}->{consumer} should be missing"

