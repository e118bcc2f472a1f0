"""The layout of one group (``MT.layoutGroup``, the engine's Sugiyama layout) holds the
properties of a good layered drawing on every small graph hypothesis makes, and on shapes whose
best drawing is known: a chain is one straight line, a fork and a join are centred, a tree
has no crossing, a cycle is broken by one edge drawn upward, labels sit beside their lines,
edge ends spread in the order of where they go. See ``layout_properties`` for the checks."""

from __future__ import annotations

import itertools
from typing import Any

import pytest
from figure_models import FIGURE_MODELS
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from layout_properties import (
    Group,
    check_all,
    check_ends,
    check_figure,
    check_labels,
    check_spacing,
    check_spread,
    constants,
    crossings,
    group_of,
)

from model_trace.engine import DrawOptions, evaluate, place
from model_trace.render_html import FigureData

WIDTHS = (44, 58, 90, 136)
LABELS = ("", "[2, 8]", "[2, 8, 32]", "[4, 16, 64, 64]", "x")


def lay_out(layout_input: dict[str, Any]) -> Group:
    return group_of(layout_input, evaluate("modelTrace.layoutGroup", layout_input))


def layout_input(kids: list[dict[str, Any]], links: list[tuple[Any, ...]],
                 direction: str = "TB", ins: tuple[int, ...] = (), outs: tuple[int, ...] = (),
                 title: str = "Block") -> dict[str, Any]:
    """A group's layout input; ``links`` as (from, to, key, label)."""
    return {
        "direction": direction,
        "titleWidth": int(evaluate("modelTrace.textWidth", title, 12, True)) + 1,
        "kids": kids, "ins": list(ins), "outs": list(outs),
        "links": [{"from": a, "to": b, "keys": [key], "label": label}
                  for a, b, key, label in links],
    }


def plain(width: int = 60) -> dict[str, Any]:
    return {"w": width, "h": 26}


@st.composite
def dags(draw: st.DrawFn) -> dict[str, Any]:
    """A small group: plain boxes and open ones (with ports), links from earlier to later
    children (one tensor per producer, labelled or not), the group's own in- and out-ports."""
    n = draw(st.integers(2, 7))
    kids, opened = [], []
    for k in range(n):
        if draw(st.integers(0, 5)) == 0:
            w = draw(st.sampled_from(WIDTHS[2:]))
            kids.append({"w": w, "h": draw(st.sampled_from((60, 96))),
                         "ins": {str(10 + k): w // 3}, "outs": {str(20 + k): 2 * w // 3}})
            opened.append(k)
        else:
            kids.append({"w": draw(st.sampled_from(WIDTHS)), "h": draw(st.sampled_from((26, 30)))})
    label = [draw(st.sampled_from(LABELS)) for _ in range(n)]
    links = []
    for b in range(1, n):
        for a in draw(st.sets(st.integers(0, b - 1), max_size=3)):
            src = f"c{a}:{20 + a}" if a in opened else f"c{a}"
            dst = f"c{b}:{10 + b}" if b in opened else f"c{b}"
            links.append((src, dst, 20 + a if a in opened else a,
                          "" if a in opened else label[a]))
    ins = draw(st.sets(st.integers(0, n - 1), max_size=2))
    for k in sorted(ins):
        links.append((f"i:{100 + k}", f"c{k}:{10 + k}" if k in opened else f"c{k}", 100 + k, ""))
    outs = draw(st.sets(st.integers(0, n - 1), max_size=2))
    for k in sorted(outs):
        links.append((f"c{k}:{20 + k}" if k in opened else f"c{k}", f"o:{200 + k}", 200 + k,
                      ""))
    direction = draw(st.sampled_from(("TB", "TB", "LR")))
    return layout_input(kids, links, direction, tuple(100 + k for k in sorted(ins)),
                        tuple(200 + k for k in sorted(outs)))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(dags())
def test_every_small_graph_is_laid_out_well(graph: dict[str, Any]) -> None:
    assert check_all(lay_out(graph)) == []


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(dags(), st.randoms(use_true_random=False))
def test_boxes_do_not_depend_on_the_order_links_are_listed_in(graph: dict[str, Any],
                                                              random: Any) -> None:
    """Links come in the order flows were recorded; only the call order of the children (and
    their shapes) may decide where they go."""
    shuffled = dict(graph, links=random.sample(graph["links"], len(graph["links"])))
    first = evaluate("modelTrace.layoutGroup", graph)
    second = evaluate("modelTrace.layoutGroup", shuffled)
    assert (first["kids"], first["w"], first["h"]) == (second["kids"], second["w"], second["h"])


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(WIDTHS), st.sampled_from((26, 30))), min_size=9,
                max_size=40),
       st.sampled_from(("Idle", "not called: 250 of 256 Expert modules of model.layers.61.mlp")))
def test_many_unlinked_boxes_wait_in_an_aligned_grid(sizes: list[tuple[int, int]],
                                                     title: str) -> None:
    """Modules that never ran have no links: rows under the title, each box centred in its
    column, nothing overlapping, the title fitting."""
    group = lay_out(layout_input([{"w": w, "h": h} for w, h in sizes], [], title=title))
    assert check_spacing(group, row_gap=constants()["rankGap"]) == []
    rows: dict[float, list[Any]] = {}
    for box in group.boxes.values():
        rows.setdefault(box.y, []).append(box)
    columns = [sorted(row, key=lambda b: b.x) for _, row in sorted(rows.items())]
    assert 1 < len(columns) < len(sizes)
    for j in range(len(columns[0])):
        centres = {round(row[j].centre, 1) for row in columns if j < len(row)}
        assert len(centres) == 1, (j, centres)


@pytest.mark.parametrize("direction", ["TB", "LR"])
def test_a_chain_is_one_straight_line(direction: str) -> None:
    widths = [136, 44, 90, 58, 44]
    links = [(f"c{k}", f"c{k + 1}", k, LABELS[k % 3]) for k in range(4)]
    group = lay_out(layout_input([plain(w) for w in widths], links, direction))
    assert check_all(group) == []
    centres = {round(b.centre, 1) for b in group.boxes.values()}
    assert len(centres) == 1, centres
    assert {p[0] for r in group.routes for p in r.pts} == centres


@pytest.mark.parametrize("direction", ["TB", "LR"])
def test_a_chain_through_an_open_box_runs_straight_into_and_out_of_its_ports(
        direction: str) -> None:
    """An open box's ports are off its centre: what feeds it sits over its in-port, what it
    feeds under its out-port, and both edges are straight lines."""
    opened = {"w": 136, "h": 96, "ins": {"7": 30}, "outs": {"8": 100}}
    links = [("c0", "c1:7", 0, "[2, 8]"), ("c1:8", "c2", 8, ""), ("c2", "c3", 2, "")]
    group = lay_out(layout_input([plain(58), opened, plain(44), plain(90)], links, direction))
    assert check_all(group) == []
    into, out_of = group.boxes["c1"].x + 30, group.boxes["c1"].x + 100
    assert group.boxes["c0"].centre == pytest.approx(into, abs=0.15)
    assert group.boxes["c2"].centre == pytest.approx(out_of, abs=0.15)
    assert group.boxes["c3"].centre == pytest.approx(out_of, abs=0.15)
    for route, x in zip(group.routes, (into, out_of, out_of), strict=True):
        assert [p[0] for p in route.pts] == pytest.approx([x] * len(route.pts), abs=0.15)


@pytest.mark.parametrize("direction", ["TB", "LR"])
@pytest.mark.parametrize("labelled", [True, False])
def test_a_fork_and_a_join_are_centred(direction: str, labelled: bool) -> None:
    """A box feeding three equal boxes sits over their middle, and the box they all feed
    under it; the edges leave and enter each box at its centre when there is one tensor."""
    label = "[2, 8]" if labelled else ""
    links = [("c0", f"c{k}", 0, label) for k in (1, 2, 3)]
    links += [(f"c{k}", "c4", k, label) for k in (1, 2, 3)]
    group = lay_out(layout_input([plain(136), plain(), plain(), plain(), plain(90)], links,
                                 direction))
    assert check_all(group) == []
    boxes = group.boxes
    middle = (boxes["c1"].centre + boxes["c3"].centre) / 2
    assert boxes["c0"].centre == pytest.approx(middle, abs=0.15)
    assert boxes["c4"].centre == pytest.approx(middle, abs=0.15)
    assert boxes["c2"].centre == pytest.approx(middle, abs=0.15)


@pytest.mark.parametrize("direction", ["TB", "LR"])
@pytest.mark.parametrize("skipped", [2, 3, 4])
def test_a_skip_connection_bends_once_at_each_end_and_runs_straight_between(
        direction: str, skipped: int) -> None:
    """Long links pull hardest: a residual connection past a chain of boxes leaves its source
    with one bend, runs on one line (no jog over 3 px) past the boxes it skips, and bends
    once more into its target."""
    n = skipped + 2
    links = [(f"c{k}", f"c{k + 1}", k, "") for k in range(n - 1)] + [("c0", f"c{n - 1}", 0, "")]
    group = lay_out(layout_input([plain(90), *[plain() for _ in range(skipped)], plain(90)],
                                 links, direction))
    assert check_all(group) == []
    (skip,) = [r for r in group.routes if (r.src, r.dst) == ("c0", f"c{n - 1}")]
    between = [p[0] for p in skip.pts[1:-1]]
    assert len(between) >= 2 * (2 * skipped + 1)  # a point where each rank starts and ends
    assert max(between) - min(between) <= 3, skip.pts


@pytest.mark.parametrize("direction", ["TB", "LR"])
@pytest.mark.parametrize("widths", [(90, 44, 90), (136, 58, 44), (44, 90, 136)])
def test_a_group_input_passing_between_two_boxes_runs_straight_to_its_target(
        direction: str, widths: tuple[int, int, int]) -> None:
    """The group's input feeds a box on the next rank but one: its line passes between the
    two boxes of the rank it skips, however narrow their gap leaves the way, and bends only
    into its target (a line packed tight between its neighbours is still one line)."""
    links = [("c0", "c1", 0, ""), ("i:101", "c1", 101, ""), ("c2", "o:202", 202, "")]
    group = lay_out(layout_input([plain(w) for w in widths], links, direction, (101,),
                                 (202,)))
    assert check_all(group) == []
    (line,) = [r for r in group.routes if r.src == "i:101"]
    along = {round(p[0], 1) for p in line.pts[:-1]}
    assert len(along) == 1, line.pts
    assert group.boxes["c0"].right < along.pop() < group.boxes["c2"].x


@pytest.mark.parametrize("direction", ["TB", "LR"])
@pytest.mark.parametrize("widths", [(58, 90), (90, 90), (44, 136)])
def test_a_group_input_and_output_passing_each_other_do_not_cross(
        direction: str, widths: tuple[int, int]) -> None:
    """The group's input skips the first box to feed the second, and the first box's
    result leaves the group past the second: each passes the other box on its own side,
    so the two lines never cross."""
    links = [("c0", "c1", 0, "[2, 8]"), ("i:101", "c1", 101, ""), ("c0", "o:200", 200, "")]
    group = lay_out(layout_input([plain(w) for w in widths], links, direction, (101,),
                                 (200,)))
    assert crossings(group.routes) == 0
    assert check_all(group) == []


@settings(max_examples=80, deadline=None)
@given(st.lists(st.integers(0, 20), min_size=2, max_size=8), st.randoms(use_true_random=False),
       st.sampled_from(("TB", "LR")))
def test_a_tree_is_drawn_without_crossings(parents: list[int], random: Any,
                                           direction: str) -> None:
    """Each child has one parent: a drawing without crossings exists, and the barycentre
    sweeps find it whatever order the children were called in."""
    n = len(parents) + 1
    order = list(range(n))
    random.shuffle(order)  # call order unrelated to the tree's shape
    position = {node: k for k, node in enumerate(order)}
    links = []
    for child in range(1, n):
        parent = parents[child - 1] % child
        a, b = position[parent], position[child]
        links.append((f"c{a}", f"c{b}", a, LABELS[a % len(LABELS)]))
    links.sort(key=lambda link: int(link[1][1:]))
    group = lay_out(layout_input([plain(WIDTHS[k % 4]) for k in range(n)], links, direction))
    assert crossings(group.routes) == 0
    assert check_all(group) == []


@pytest.mark.parametrize("direction", ["TB", "LR"])
@pytest.mark.parametrize("closing", [(3, 1), (3, 0), (2, 2)])
def test_a_cycle_is_broken_by_one_edge_drawn_upward(direction: str,
                                                    closing: tuple[int, int]) -> None:
    """A folded loop can feed a box back into an earlier one: that edge, and only it, runs
    up from its source's top to its target's bottom; the rest of the drawing stays sound."""
    a, b = closing
    links = [("c0", "c1", 0, "[2, 8]"), ("c1", "c2", 1, "[2, 8]"), ("c2", "c3", 2, "x"),
             (f"c{a}", f"c{b}", 9, "")]
    links = [link for link in links if link[0] != link[1]]
    group = lay_out(layout_input([plain(90), plain(), plain(136), plain()], links, direction))
    up = [r for r in group.routes if r.pts[-1][1] < r.pts[0][1]]
    assert [(r.src, r.dst) for r in up] == ([(f"c{a}", f"c{b}")] if a != b else [])
    assert check_ends(group) == []
    assert check_all(group) == []


@pytest.mark.parametrize("direction", ["TB", "LR"])
def test_two_tensors_from_one_open_box_enter_a_box_at_two_points(direction: str) -> None:
    """An open box's two outputs (through two ports) into one op: two ends, side by side in
    the order of the ports, not one on the other."""
    kids = [{"w": 136, "h": 96, "outs": {"5": 30, "6": 100}, "ins": {}}, plain(58)]
    links = [("c0:5", "c1", 5, ""), ("c0:6", "c1", 6, "")]
    group = lay_out(layout_input(kids, links, direction))
    assert check_spread(group) == [] and check_all(group) == []
    ends = sorted(r.pts[-1][0] for r in group.routes)
    assert ends[0] < group.boxes["c1"].centre < ends[1]


@pytest.mark.parametrize("direction", ["TB", "LR"])
def test_edges_leave_a_box_in_the_order_of_where_they_go(direction: str) -> None:
    """Three tensors leave one box for boxes placed right to left of their call order: the
    ends along the border follow the boxes, so the edges do not cross at the border."""
    links = [("c0", "c3", 0, "[2, 8]"), ("c0", "c2", 1, "[4, 16, 64, 64]"), ("c0", "c1", 2, "x"),
             ("c4", "c1", 4, ""), ("c5", "c3", 5, "")]
    kids = [plain(136), plain(), plain(), plain(), plain(44), plain(44)]
    group = lay_out(layout_input(kids, links, direction))
    assert check_spread(group) == [] and check_all(group) == []


def test_labels_sit_beside_their_lines_in_both_directions() -> None:
    links = [("c0", "c1", 0, "[4, 16, 64, 64]"), ("c0", "c2", 0, "[4, 16, 64, 64]"),
             ("c1", "c3", 1, "x"), ("c2", "c3", 2, "[2, 8]")]
    for direction in ("TB", "LR"):
        group = lay_out(layout_input([plain(90), plain(), plain(136), plain()], links,
                                     direction))
        assert len(group.labels) == 3
        assert check_labels(group) == [], direction


@pytest.mark.parametrize("name", [n for n in FIGURE_MODELS if "671B" not in n])
@pytest.mark.parametrize("direction", ["TB", "LR"])
def test_every_group_of_real_models_is_laid_out_well(name: str, direction: str) -> None:
    """The same properties on the groups of traced models (an encoder layer, a ResNet-like
    net, a GPT-2, DeepSeek-V3 tiny whole and focused) at every depth, and each port met by
    the flow inside and outside its box at one point."""
    figure = FigureData.of(FIGURE_MODELS[name]())
    for depth in [*range(figure.tree.deepest_level() + 1), -1]:
        placed = place(figure.json, DrawOptions(depth=depth, direction=direction))
        assert check_figure(placed, direction) == [], depth


def test_constants_are_the_layouts_own() -> None:
    """The checks read MT.LAYOUT rather than copies of its numbers."""
    assert constants()["nodeSep"] > constants()["boxToLine"] > constants()["thinSep"] > 0


@settings(max_examples=200, deadline=None)
@given(st.lists(st.lists(st.tuples(st.integers(0, 5), st.integers(0, 5)), max_size=12),
                min_size=1, max_size=3))
def test_the_crossings_the_sweeps_minimise_are_the_pairs_of_segments_that_swap_order(
        gaps: list[list[tuple[int, int]]]) -> None:
    """Between two consecutive ranks, two segments cross when their ends come in opposite
    orders on the two ranks; segments that share an end, or join the same two places, do
    not. The order sweeps keep the order with the fewest, so they must be counted exactly."""
    ranks = len(gaps) + 1
    layers = [[{"id": r * 6 + k, "pos": k} for k in range(6)] for r in range(ranks)]
    down: list[list[dict[str, Any]]] = [[] for _ in range(6 * ranks)]
    for r, segments in enumerate(gaps):
        for a, b in segments:
            down[r * 6 + a].append({"a": {"pos": a}, "b": {"pos": b}})
    expected = sum((a - c) * (b - d) < 0 for segments in gaps
                   for (a, b), (c, d) in itertools.combinations(segments, 2))
    assert evaluate("modelTrace.crossings", layers, down) == expected
