"""The figure engine's layout, run as a build runs it (V8): boxes nest and do not overlap, titles
and labels fit and do not overlap, every edge runs from border to border (through ports on open
boxes), equal groups are laid out once, large groups are chunked, idle modules wait in a grid,
both directions work, and the result is deterministic."""

from __future__ import annotations

import itertools
import re
from typing import Any

import pytest
import torch
from figure_geometry import first_pieces_through_boxes, left_bands
from figure_models import FIGURE_MODELS
from torch import nn

from model_trace import trace
from model_trace.engine import DrawOptions, draw, evaluate, place
from model_trace.graph import Edge, Graph, ModuleCall, Node, Tensor
from model_trace.render_html import FigureData
from model_trace.view_tree import CHUNK_LIMIT, CHUNK_SIZE, ViewTree

PAD = 8  # an open box's padding (MT.LAYOUT.pad)


@pytest.fixture(scope="module")
def encoder() -> Graph:
    layer = nn.TransformerEncoderLayer(32, 4, dim_feedforward=64, batch_first=True)
    model = nn.TransformerEncoder(layer, num_layers=2, enable_nested_tensor=False).eval()
    with torch.no_grad():
        return trace(model, torch.randn(2, 8, 32), fold=False)


def wide_graph(children: int) -> Graph:
    """A root module calling ``children`` small modules in a chain (like experts in a loop)."""
    modules = {"m0": ModuleCall("m0", "", "Wide", None)}
    nodes: dict[str, Node] = {}
    tensors: dict[str, Tensor] = {}
    edges: list[Edge] = []
    previous = None
    for i in range(children):
        module_id, node_id, tensor_id = f"m{i + 1}", f"n{i}", f"t{i}"
        modules[module_id] = ModuleCall(module_id, f"experts.{i}", "Expert", "m0",
                                        children=[node_id])
        modules["m0"].children.append(module_id)
        nodes[node_id] = Node(node_id, "op", "linear", "linear", module_id,
                              inputs=[previous] if previous else [], outputs=[tensor_id])
        tensors[tensor_id] = Tensor(tensor_id, [4, 8], "float32", "meta", node_id)
        if previous:
            edges.append(Edge(f"n{i - 1}", node_id, previous))
        previous = tensor_id
    return Graph(root="m0", modules=modules, nodes=nodes, tensors=tensors, edges=edges)


def _place(graph: Graph, depth: int, direction: str = "TB") -> dict[str, Any]:
    return place(FigureData.of(graph).json, DrawOptions(depth=depth, direction=direction))


def _overlap(a: dict[str, float], b: dict[str, float]) -> bool:
    return (a["x"] < b["x"] + b["w"] - 0.5 and b["x"] < a["x"] + a["w"] - 0.5
            and a["y"] < b["y"] + b["h"] - 0.5 and b["y"] < a["y"] + a["h"] - 0.5)


@pytest.mark.parametrize("direction", ["TB", "LR"])
@pytest.mark.parametrize("depth", [0, 1, 2, 3])
def test_children_sit_inside_their_box_and_siblings_do_not_overlap(
        encoder: Graph, depth: int, direction: str) -> None:
    placed = _place(encoder, depth, direction)
    boxes = placed["boxes"]
    children: dict[str, list[str]] = {}
    for item, box in boxes.items():
        if box["parent"] is not None:
            children.setdefault(box["parent"], []).append(item)
    assert children, "nothing is open"
    for parent, kids in children.items():
        outer = boxes[parent]
        assert outer["open"]
        for kid in kids:
            inner = boxes[kid]
            assert outer["x"] <= inner["x"] and outer["y"] <= inner["y"]
            assert inner["x"] + inner["w"] <= outer["x"] + outer["w"] + 0.01
            assert inner["y"] + inner["h"] <= outer["y"] + outer["h"] + 0.01
        for a, b in itertools.combinations(kids, 2):
            assert not _overlap(boxes[a], boxes[b]), (a, b)


def test_titles_and_labels_fit_their_boxes(encoder: Graph) -> None:
    placed = _place(encoder, 3)
    for box in placed["boxes"].values():
        bold = box["open"]
        width = evaluate("modelTrace.textWidth", box["label"], 12, bold)
        assert box["w"] >= width + (2 * PAD if bold else 8), box


def test_edge_labels_overlap_neither_each_other_nor_boxes(encoder: Graph) -> None:
    placed = _place(encoder, 3)
    labels = [{"x": lab["x"], "y": lab["y"] - 8, "w": lab["width"], "h": 10}
              for lab in placed["labels"]]
    assert len(labels) > 10
    for a, b in itertools.combinations(labels, 2):
        assert not _overlap(a, b), (a, b)
    closed = [b for b in placed["boxes"].values() if not b["open"]]
    for label in labels:
        assert not any(_overlap(label, box) for box in closed), label


@pytest.mark.parametrize("name", [n for n in FIGURE_MODELS if "671B" not in n])
def test_no_open_box_keeps_an_empty_band_down_its_left_side(name: str) -> None:
    """Content sits against the box's left wall (or beside its title): before, a wide first
    rank beside the title pushed whole groups right, 460 px in the tiny DeepSeek block."""
    figure = FigureData.of(FIGURE_MODELS[name]())
    for depth in range(figure.tree.deepest_level() + 1):
        bands = left_bands(place(figure.json, DrawOptions(depth=depth)))
        assert all(band <= 0.2 for band in bands.values()), (depth, bands)


@pytest.mark.parametrize("name", [n for n in FIGURE_MODELS if "671B" not in n])
def test_an_edge_leaves_a_short_box_straight_down_past_its_rank(name: str) -> None:
    """Beside a tall open box (attn_norm), an edge from a short one (mask, freqs_cis) ran
    under the tall box to its next point; it now runs down past the rank first."""
    figure = FigureData.of(FIGURE_MODELS[name]())
    for depth in range(figure.tree.deepest_level() + 1):
        placed = place(figure.json, DrawOptions(depth=depth))
        assert first_pieces_through_boxes(placed) == [], depth


def test_layout_is_deterministic(encoder: Graph) -> None:
    assert _place(encoder, 2) == _place(encoder, 2)


def test_equal_groups_are_laid_out_once(encoder: Graph) -> None:
    """The two unfolded encoder layers open to the same groups: one layout each."""
    placed = _place(encoder, 10)
    open_boxes = [b for b in placed["boxes"].values() if b["open"]]
    assert placed["runs"] <= len(open_boxes) - 4


def test_groups_with_too_many_children_are_split_into_chunks() -> None:
    count = CHUNK_LIMIT * 2 + 5
    tree = ViewTree.from_graph(wide_graph(count))
    root = tree.items[tree.root]
    assert all(tree.items[c].kind == "chunk" for c in root.children)
    assert len(root.children) == -(-count // CHUNK_SIZE)
    assert tree.items[root.children[0]].label.startswith(f"part 1/{len(root.children)}: ")
    assert "Expert" in tree.items[root.children[0]].label
    members = [m for c in root.children for m in tree.items[c].children]
    assert members == [f"m{i + 1}" for i in range(count)]
    placed = _place(wide_graph(count), 1)
    assert set(placed["boxes"]) >= set(members)  # depth counts modules, not chunks
    # the chain from chunk to chunk is drawn through the chunks' ports
    assert any(r["src"].endswith(":out:t63") for r in placed["routes"])


def test_never_called_submodules_wait_in_one_closed_group_laid_out_as_a_grid() -> None:
    graph = wide_graph(3)
    for i in range(40):  # experts that got no tokens: no ops, no edges
        module_id = f"m{100 + i}"
        graph.modules[module_id] = ModuleCall(module_id, f"experts.{10 + i}", "Expert", "m0",
                                              called=False)
        graph.modules["m0"].children.append(module_id)
    tree = ViewTree.from_graph(graph)
    idle = tree.items["m0/idle"]
    assert tree.items["m0"].children[-1] == "m0/idle" and len(idle.children) == 40
    assert idle.label == "not called: 40 Expert" and idle.kind == "idle"
    placed = _place(graph, 1)
    assert not placed["boxes"]["m0/idle"]["open"]  # its parent is open, it is not
    placed = _place(graph, -1)  # everything open, the idle group too
    grid = placed["boxes"]["m0/idle"]
    assert grid["open"] and grid["w"] < 8 * grid["h"]  # rows, not one rank
    boxes = [placed["boxes"][c] for c in idle.children]
    for a, b in itertools.combinations(boxes, 2):
        assert not _overlap(a, b)


def test_left_to_right_puts_a_chain_in_a_row() -> None:
    placed = _place(wide_graph(4), 1, "LR")
    xs = [placed["boxes"][f"m{i + 1}"]["x"] for i in range(4)]
    ys = [placed["boxes"][f"m{i + 1}"]["y"] for i in range(4)]
    assert xs == sorted(xs) and len(set(xs)) == 4
    assert max(ys) - min(ys) < 5
    top_down = _place(wide_graph(4), 1, "TB")
    tys = [top_down["boxes"][f"m{i + 1}"]["y"] for i in range(4)]
    assert tys == sorted(tys) and len(set(tys)) == 4


def test_routes_start_and_end_on_the_borders_they_name(encoder: Graph) -> None:
    placed = _place(encoder, 2)
    boxes = placed["boxes"]
    assert any(":in:" in r["dst"] for r in placed["routes"])  # edges enter open boxes
    for route in placed["routes"]:
        for end, (x, y), side in ((route["src"], route["pts"][0], "bottom"),
                                  (route["dst"], route["pts"][-1], "top")):
            owner, _, rest = end.partition(":")
            box = boxes[owner]
            assert box["x"] - 0.5 <= x <= box["x"] + box["w"] + 0.5, (end, x)
            if rest.startswith("in:") or (not rest and side == "top"):
                assert y == pytest.approx(box["y"], abs=0.11), end
            else:
                assert y == pytest.approx(box["y"] + box["h"], abs=0.11), end


@pytest.mark.parametrize("direction", ["TB", "LR"])
def test_an_unfolded_repeat_is_a_chain_of_its_members(direction: str) -> None:
    """A reader who unfolds ``blocks.0–3 ×4`` sees the four calls one after another: the
    input enters the first, each feeds the next, the last feeds what came after the run."""
    model = nn.Sequential(nn.Linear(8, 8), *(nn.Sequential(nn.Linear(8, 8), nn.ReLU())
                                             for _ in range(4)), nn.Linear(8, 2))
    figure = FigureData.of(trace(model, torch.randn(2, 8)))
    (repeat,) = (i for i, item in figure.tree.items.items() if item.kind == "module"
                 and item.label.endswith("×4"))
    members = sorted(i for i, item in figure.tree.items.items() if item.kind == "member")
    assert len(members) == 3
    folded = place(figure.json, DrawOptions(depth=0, direction=direction))
    unfolded = place(figure.json, DrawOptions(depth=0, direction=direction,
                                              state=f"u:{repeat}"))
    assert not set(members) & set(folded["boxes"]) and set(members) <= set(unfolded["boxes"])

    def links(placed: dict[str, Any]) -> set[tuple[str, str]]:
        return {(r["src"], r["dst"]) for r in placed["routes"]}

    (before,) = (src for src, dst in links(folded) if dst == repeat)
    (after,) = (dst for src, dst in links(folded) if src == repeat)
    chain = [before, repeat, *members, after]
    assert set(itertools.pairwise(chain)) <= links(unfolded)
    assert (repeat, after) not in links(unfolded)
    # the members stand one after another along the flow
    axis = "y" if direction == "TB" else "x"
    starts = [unfolded["boxes"][i][axis] for i in chain]
    assert starts == sorted(starts) and len(set(starts)) == len(starts)
    # selecting a member marks the link from the one before as its input, to the next as output
    svg = draw(figure.json, DrawOptions(depth=0, direction=direction,
                                        state=f"u:{repeat};s:{members[1]}")).svg
    edges = re.findall(r'<g class="mt-edge (mt-in|mt-out)" data-src="([^"]*)" data-dst="([^"]*)"',
                       svg)
    marked = {f"{src}>{dst}": relation for relation, src, dst in edges}
    assert marked == {f"{members[0]}>{members[1]}": "mt-in", f"{members[1]}>{members[2]}": "mt-out"}


@pytest.mark.parametrize("direction", ["TB", "LR"])
def test_an_input_read_late_waits_beside_its_reader(direction: str) -> None:
    """A source is drawn on the rank just before its first consumer, not at the top with a
    long edge down the whole figure (a residual's second operand, a mask read at the end)."""
    class Late(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.first, self.second = nn.Linear(8, 8), nn.Linear(8, 8)

        def forward(self, x: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
            return self.second(torch.relu(self.first(x))) + bias

    figure = FigureData.of(trace(Late(), torch.randn(2, 8), torch.randn(2, 8)))
    items = figure.tree.items
    (x,) = (i for i, item in items.items() if item.label == "x")
    (bias,) = (i for i, item in items.items() if item.label == "bias")
    (add,) = (i for i, item in items.items() if item.label == "add")
    (first,) = (i for i, item in items.items() if item.label.startswith("first"))
    boxes = place(figure.json, DrawOptions(depth=0, direction=direction))["boxes"]
    axis = "y" if direction == "TB" else "x"
    assert boxes[x][axis] < boxes[first][axis] < boxes[bias][axis] < boxes[add][axis]


def _segments_through_boxes(placed: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(route source, route end, box) for every straight piece between two route points that
    passes through a closed box the route neither starts nor ends at."""
    closed = [(i, b["x"] + 1, b["y"] + 1, b["x"] + b["w"] - 1, b["y"] + b["h"] - 1)
              for i, b in placed["boxes"].items() if not b["open"]]
    found = []
    for route in placed["routes"]:
        ends = {route["src"].split(":")[0], route["dst"].split(":")[0]}
        for (x0, y0), (x1, y1) in itertools.pairwise(route["pts"]):
            samples = [(x0 + (x1 - x0) * k / 16, y0 + (y1 - y0) * k / 16) for k in range(1, 16)]
            for box_id, left, top, right, bottom in closed:
                if (box_id not in ends and max(x0, x1) > left and min(x0, x1) < right
                        and max(y0, y1) > top and min(y0, y1) < bottom
                        and any(left < x < right and top < y < bottom for x, y in samples)):
                    found.append((route["src"], route["dst"], box_id))
    return found


@pytest.mark.parametrize("name", ["encoder layer", "resnet-like", "gpt-2"])
@pytest.mark.parametrize("direction", ["TB", "LR"])
def test_no_edge_runs_through_a_box_it_does_not_join(name: str, direction: str) -> None:
    """Between its points an edge is drawn straight or nearly: a point placed on the wrong
    side of a rank, or a rank too thin for what it holds, sends it through other boxes."""
    figure = FigureData.of(FIGURE_MODELS[name]())
    for depth in [*range(figure.tree.deepest_level() + 1), -1]:
        placed = place(figure.json, DrawOptions(depth=depth, direction=direction))
        assert _segments_through_boxes(placed) == [], depth
