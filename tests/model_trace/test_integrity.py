"""The figure-integrity checker itself, on hand-written SVGs of a small graph: it finds each
kind of problem it names, and passes a drawing that shows every tensor end to end."""

from __future__ import annotations

import pytest

from model_trace.graph import Edge, Graph, ModuleCall, Node, Tensor
from model_trace.integrity import check_figure, read_svg

PARENTS = {"m0": None, "m1": "m0", "m2": "m0", "n0": "m0", "n1": "m1", "n2": "m1", "n3": "m0"}


def _graph() -> Graph:
    """input n0 -> (inside m1) n1 -> n2 -> output n3; m2 never ran."""
    modules = {"m0": ModuleCall("m0", "", "Model", None, children=["n0", "m1", "m2", "n3"]),
               "m1": ModuleCall("m1", "block", "Block", "m0", children=["n1", "n2"]),
               "m2": ModuleCall("m2", "unused", "Linear", "m0", called=False)}
    nodes = {"n0": Node("n0", "input", "x", "io", "m0", outputs=["t0"]),
             "n1": Node("n1", "op", "linear", "linear", "m1", inputs=["t0"], outputs=["t1"]),
             "n2": Node("n2", "op", "relu", "activation", "m1", inputs=["t1"], outputs=["t2"]),
             "n3": Node("n3", "output", "out", "io", "m0", inputs=["t2"])}
    tensors = {f"t{i}": Tensor(f"t{i}", [2, 4], "float32", "meta", f"n{i}") for i in range(3)}
    edges = [Edge("n0", "n1", "t0"), Edge("n1", "n2", "t1"), Edge("n2", "n3", "t2")]
    return Graph("m0", modules, nodes, tensors, edges)


def _svg(items: str, edges: str) -> str:
    return f'<svg xmlns="http://www.w3.org/2000/svg">{items}{edges}</svg>'


def _box(item: str, x: float, y: float, w: float, h: float, is_open: bool = False) -> str:
    kind = "mt-module" if item.startswith("m") else "mt-node"
    return (f'<g class="{kind}{" mt-open" if is_open else ""}" data-id="{item}">'
            f'<rect x="{x}" y="{y}" width="{w}" height="{h}"/></g>')


def _edge(src: str, dst: str, d: str) -> str:
    return f'<g class="mt-edge" data-src="{src}" data-dst="{dst}"><path d="{d}"/></g>'


ROOT = _box("m0", 0, 0, 300, 400, True) + _box("m2", 200, 40, 60, 30)
CLOSED = ROOT + _box("n0", 100, 40, 60, 30) + _box("m1", 100, 100, 60, 30) + \
    _box("n3", 100, 160, 60, 30)
OPEN = ROOT + _box("n0", 100, 40, 60, 30) + _box("m1", 80, 100, 100, 160, True) + \
    _box("n1", 100, 140, 60, 30) + _box("n2", 100, 200, 60, 30) + _box("n3", 100, 300, 60, 30)


def test_a_closed_box_with_edges_in_and_out_passes() -> None:
    svg = _svg(CLOSED, _edge("n0", "m1", "M130,70 L130,100") +
               _edge("m1", "n3", "M130,130 C130,140 130,150 130,160"))
    report = check_figure(svg, _graph(), PARENTS, idle=["m2"])
    assert report.total == 0, report  # m2 never ran: exempt although it has no edge


def test_edges_through_ports_pass_and_name_their_chain() -> None:
    svg = _svg(OPEN, _edge("n0", "m1:in:t0", "M130,70 L130,100") +
               _edge("m1:in:t0", "n1", "M130,100 L130,140") +
               _edge("n1", "n2", "M130,170 L130,200") +
               _edge("n2", "m1:out:t2", "M130,230 L130,260") +
               _edge("m1:out:t2", "n3", "M130,260 L130,300"))
    drawing = read_svg(svg)
    assert {e.dst for e in drawing.edges} >= {"m1:in:t0", "m1:out:t2"}
    assert check_figure(svg, _graph(), PARENTS, idle=["m2"]).total == 0


def test_an_edge_stopping_at_an_open_box_is_a_dead_end_and_its_consumer_misses_it() -> None:
    svg = _svg(OPEN, _edge("n0", "m1", "M130,70 L130,100") +
               _edge("n1", "n2", "M130,170 L130,200") + _edge("m1", "n3", "M130,260 L130,300"))
    report = check_figure(svg, _graph(), PARENTS, idle=["m2"])
    assert report.dead_ends == ["n0->m1"]
    assert report.missing == ["n0->n1", "n2->n3"]


def test_a_port_no_edge_leaves_is_a_dead_end() -> None:
    svg = _svg(OPEN, _edge("n0", "m1:in:t0", "M130,70 L130,100") +
               _edge("n1", "n2", "M130,170 L130,200") +
               _edge("n2", "m1:out:t2", "M130,230 L130,260") +
               _edge("m1:out:t2", "n3", "M130,260 L130,300"))
    report = check_figure(svg, _graph(), PARENTS, idle=["m2"])
    assert report.dead_ends == ["n0->m1:in:t0"] and report.missing == ["n0->n1"]


def test_a_chain_must_pass_only_ports_not_other_ops() -> None:
    """n0 -> n3 drawn as n0 -> n1 -> ... does not show that n3 reads n0's tensor."""
    graph = _graph()
    graph.edges.append(Edge("n0", "n3", "t0"))
    graph.nodes["n3"].inputs.append("t0")
    svg = _svg(CLOSED, _edge("n0", "m1", "M130,70 L130,100") +
               _edge("m1", "n3", "M130,130 L130,160"))
    assert check_figure(svg, graph, PARENTS, idle=["m2"]).missing == ["n0->n3"]


def test_unconnected_boxes_that_ran_are_reported_and_idle_ones_are_not() -> None:
    svg = _svg(CLOSED, _edge("n0", "m1", "M130,70 L130,100"))
    report = check_figure(svg, _graph(), PARENTS)
    assert report.unconnected == ["n3"]  # m2 never ran: not counted
    assert report.missing == ["m1->n3"]


def test_an_end_off_its_box_is_detached() -> None:
    svg = _svg(CLOSED, _edge("n0", "m1", "M130,70 L150,82") +  # stops 18 px short
               _edge("m1", "n3", "M130,130 L130,160"))
    report = check_figure(svg, _graph(), PARENTS, idle=["m2"])
    assert report.detached == ["n0->m1"] and report.missing == []
    assert "1 detached (n0->m1)" in str(report)


def test_an_op_whose_result_nothing_reads_is_not_asked_to_connect() -> None:
    """A tensor a model keeps on the side (no edge in the graph) has nothing to draw."""
    graph = _graph()
    graph.nodes["n9"] = Node("n9", "op", "tensor", "other", "m0", outputs=["t9"])
    parents = {**PARENTS, "n9": "m0"}
    svg = _svg(CLOSED + _box("n9", 20, 40, 40, 30),
               _edge("n0", "m1", "M130,70 L130,100") + _edge("m1", "n3", "M130,130 L130,160"))
    assert check_figure(svg, graph, parents, idle=["m2"]).total == 0


# -- where an edge may end -----------------------------------------------------------------
OPEN_BOX = ROOT + _box("n0", 100, 40, 60, 30) + _box("m1", 80, 100, 100, 160, True) + \
    _box("n1", 100, 140, 60, 30) + _box("n2", 100, 200, 60, 30) + _box("n3", 100, 300, 60, 30)


def _through_ports(into: str, out_of: str) -> str:
    """The open drawing with the ends on m1's ports at the given points."""
    return _svg(OPEN_BOX, _edge("n0", "m1:in:t0", f"M130,70 L{into}") +
                _edge("m1:in:t0", "n1", f"M{into} L130,140") +
                _edge("n1", "n2", "M130,170 L130,200") +
                _edge("n2", "m1:out:t2", f"M130,230 L{out_of}") +
                _edge("m1:out:t2", "n3", f"M{out_of} L130,300"))


def test_ports_lie_on_the_border_the_flow_enters_and_leaves_by() -> None:
    # top to bottom: in on the top border, out on the bottom one
    assert check_figure(_through_ports("130,100", "130,260"), _graph(), PARENTS,
                        idle=["m2"]).total == 0
    # left to right: in on the left border, out on the right one (within SLACK)
    assert check_figure(_through_ports("81,180", "179,180"), _graph(), PARENTS,
                        idle=["m2"]).total == 0
    # the other way round is detached: in on the bottom, out on the top
    report = check_figure(_through_ports("130,260", "130,100"), _graph(), PARENTS, idle=["m2"])
    assert set(report.detached) == {"n0->m1:in:t0", "m1:in:t0->n1", "n2->m1:out:t2",
                                    "m1:out:t2->n3"}
    # a port off the box's sides
    report = check_figure(_through_ports("130,97", "183,180"), _graph(), PARENTS, idle=["m2"])
    assert set(report.detached) == {"n0->m1:in:t0", "m1:in:t0->n1", "n2->m1:out:t2",
                                    "m1:out:t2->n3"}


def test_an_end_inside_a_box_or_without_a_path_is_detached() -> None:
    svg = _svg(CLOSED, _edge("n0", "m1", "M130,70 L130,115") +  # deep inside m1
               _edge("m1", "n3", "M130,130"))  # no end point at all
    report = check_figure(svg, _graph(), PARENTS, idle=["m2"])
    assert report.detached == ["n0->m1", "m1->n3"]
    svg = _svg(CLOSED, _edge("n0", "m1", "M130,70 L131.5,101.5") +  # at SLACK outside
               _edge("m1", "n3", "M1.3e2,130 L130,160"))
    assert check_figure(svg, _graph(), PARENTS, idle=["m2"]).total == 0


def test_an_edge_to_an_item_that_is_not_drawn_is_detached() -> None:
    svg = _svg(CLOSED, _edge("n0", "m1", "M130,70 L130,100") +
               _edge("m1", "n3", "M130,130 L130,160") + _edge("m1", "n9", "M130,130 L130,160"))
    assert check_figure(svg, _graph(), PARENTS, idle=["m2"]).detached == ["m1->n9"]


# -- what counts as connected --------------------------------------------------------------
def test_a_module_whose_weight_an_op_outside_reads_must_be_linked() -> None:
    graph = _graph()
    graph.nodes["n2"].params = ["unused.weight"]  # n2 (in block) reads m2's weight
    svg = _svg(CLOSED, _edge("n0", "m1", "M130,70 L130,100") +
               _edge("m1", "n3", "M130,130 L130,160"))
    assert check_figure(svg, graph, PARENTS).unconnected == ["m2"]
    linked = svg.replace("</svg>", _edge("m2", "m1", "M230,70 L160,100") + "</svg>")
    assert check_figure(linked, graph, PARENTS).unconnected == []
    graph.nodes["n2"].params = ["block.weight"]  # its own module's weight: nothing to link
    assert check_figure(svg, graph, PARENTS).unconnected == []


def test_boxes_inside_an_idle_group_need_no_edge() -> None:
    parents = {**PARENTS, "m2": "m0/idle", "m0/idle": "m0"}
    graph = _graph()
    graph.nodes["n2"].params = ["unused.weight"]  # flow out of m2 that the figure would draw
    svg = _svg(CLOSED + _box("m0/idle", 190, 30, 80, 50), _edge("n0", "m1", "M130,70 L130,100")
               + _edge("m1", "n3", "M130,130 L130,160"))
    assert check_figure(svg, graph, parents, idle=["m0/idle"]).total == 0
    assert check_figure(svg, graph, parents).unconnected == ["m2", "m0/idle"]


def test_a_chain_may_pass_a_call_that_handed_its_input_on_and_unfolded_members() -> None:
    graph = _graph()
    graph.modules["m2"].inputs = graph.modules["m2"].outputs = ["t2"]
    graph.modules["m2"].called = True
    svg = _svg(CLOSED, _edge("n0", "m1", "M130,70 L130,100") +
               _edge("m1", "m2", "M160,115 L200,55") + _edge("m2", "n3", "M230,70 L160,175"))
    assert check_figure(svg, graph, PARENTS).total == 0
    members = _svg(CLOSED + _box("m1~1", 200, 100, 60, 30),
                   _edge("n0", "m1", "M130,70 L130,100") + _edge("m1", "m1~1", "M160,115 L200,115")
                   + _edge("m1~1", "n3", "M230,130 L160,170"))
    assert check_figure(members, _graph(), {**PARENTS, "m1~1": "m0"}, idle=["m2"]).total == 0
    # a closed box that ran is no pass: m1 does not carry n0's tensor on to n3
    graph = _graph()
    graph.edges.append(Edge("n0", "n3", "t0"))
    svg = _svg(CLOSED, _edge("n0", "m1", "M130,70 L130,100") +
               _edge("m1", "n3", "M130,130 L130,160"))
    assert check_figure(svg, graph, PARENTS, idle=["m2"]).missing == ["n0->n3"]


def test_a_hidden_op_is_bridged_from_its_producers_to_its_consumers() -> None:
    parents = {k: v for k, v in PARENTS.items() if k != "n1"}  # n1 hidden (hide: linear)
    svg = _svg(OPEN_BOX.replace(_box("n1", 100, 140, 60, 30), ""),
               _edge("n0", "m1:in:t0", "M130,70 L130,100") +
               _edge("m1:in:t0", "n2", "M130,100 L130,200") +
               _edge("n2", "m1:out:t2", "M130,230 L130,260") +
               _edge("m1:out:t2", "n3", "M130,260 L130,300"))
    assert check_figure(svg, _graph(), parents, idle=["m2"]).total == 0
    broken = svg.replace(_edge("m1:in:t0", "n2", "M130,100 L130,200"), "")
    report = check_figure(broken, _graph(), parents, idle=["m2"])
    assert report.missing == ["n0->n2"] and report.dead_ends == ["n0->m1:in:t0"]


def test_a_report_names_at_most_six_examples_of_each_problem() -> None:
    from model_trace.integrity import Report

    report = Report(missing=[f"a{i}->b" for i in range(8)], unconnected=["n1"])
    assert report.counts() == {"missing": 8, "dead_ends": 0, "unconnected": 1, "detached": 0}
    assert report.total == 9
    assert str(report) == ("8 missing (a0->b, a1->b, a2->b, a3->b, a4->b, a5->b, ...); "
                           "1 unconnected (n1)")
    assert str(Report()) == "no problems"


def test_six_examples_are_all_named_and_a_seventh_is_left_to_the_count() -> None:
    from model_trace.integrity import Report

    six = [f"a{i}->b" for i in range(6)]
    assert str(Report(missing=six)) == f"6 missing ({', '.join(six)})"
    assert str(Report(missing=[*six, "a6->b"])).endswith("a5->b, ...)")


def test_a_curved_edge_ends_at_its_last_point_not_at_a_control_point() -> None:
    curve = "M130,130 C190,140 100,150 130,160"  # first control point far right of n3
    svg = _svg(CLOSED, _edge("n0", "m1", "M130,70 L130,100") + _edge("m1", "n3", curve))
    assert check_figure(svg, _graph(), PARENTS, idle=["m2"]).total == 0
    bent = "M130,130 C130,140 130,150 190,160"  # its last point is off n3
    svg = _svg(CLOSED, _edge("n0", "m1", "M130,70 L130,100") + _edge("m1", "n3", bent))
    assert check_figure(svg, _graph(), PARENTS, idle=["m2"]).detached == ["m1->n3"]


def test_only_a_call_that_returned_its_input_carries_a_chain() -> None:
    graph = _graph()
    graph.modules["m2"].called = True
    graph.modules["m2"].inputs, graph.modules["m2"].outputs = ["t2"], ["t9"]  # a new tensor
    svg = _svg(CLOSED, _edge("n0", "m1", "M130,70 L130,100") +
               _edge("m1", "m2", "M160,115 L200,55") + _edge("m2", "n3", "M230,70 L160,175"))
    assert check_figure(svg, graph, PARENTS).missing == ["m1->n3"]


def test_a_call_that_ran_nothing_needs_an_edge_only_if_it_handed_a_tensor_on() -> None:
    graph = _graph()
    graph.modules["m2"].called = True  # called, ran nothing, returned nothing it was given
    svg = _svg(CLOSED, _edge("n0", "m1", "M130,70 L130,100") +
               _edge("m1", "n3", "M130,130 L130,160"))
    assert check_figure(svg, graph, PARENTS).unconnected == []
    graph.modules["m2"].inputs = graph.modules["m2"].outputs = ["t2"]  # a pass-through
    assert check_figure(svg, graph, PARENTS).unconnected == ["m2"]


@pytest.mark.parametrize(("into", "out_of"), [
    ("181.5,100", "78.5,260"),  # the top and bottom borders' far ends, SLACK beyond the box
    ("78.5,100", "181.5,260"),
    ("130,98.5", "130,261.5"),  # SLACK above the top, below the bottom
    ("130,101.5", "130,258.5"),  # SLACK inside
    ("78.5,261.5", "181.5,98.5"),  # the left and right borders' far ends
    ("81.5,98.5", "178.5,261.5"),
])
def test_a_port_may_lie_up_to_the_slack_off_its_border(into: str, out_of: str) -> None:
    assert check_figure(_through_ports(into, out_of), _graph(), PARENTS,
                        idle=["m2"]).total == 0


def test_an_op_reading_its_own_modules_weight_asks_for_no_link() -> None:
    graph = _graph()
    graph.modules["m2"].called = True
    graph.modules["m2"].children = ["n9"]
    graph.nodes["n9"] = Node("n9", "op", "zeros", "other", "m2", params=["unused.weight"])
    svg = _svg(CLOSED, _edge("n0", "m1", "M130,70 L130,100") +
               _edge("m1", "n3", "M130,130 L130,160"))
    assert check_figure(svg, graph, {**PARENTS, "n9": "m2"}).unconnected == []


def test_a_chain_of_hidden_ops_is_bridged_from_its_first_producer() -> None:
    graph = _graph()
    parents = {k: v for k, v in PARENTS.items() if k not in ("n1", "n2")}  # both hidden
    direct = _svg(CLOSED, _edge("n0", "m1", "M130,70 L130,100") +
                  _edge("n0", "n3", "M100,55 C60,80 60,150 100,175"))
    assert check_figure(direct, graph, parents, idle=["m2"]).missing == []
    around = _svg(CLOSED, _edge("n0", "m1", "M130,70 L130,100") +
                  _edge("m1", "n3", "M130,130 L130,160"))
    assert check_figure(around, graph, parents, idle=["m2"]).missing == ["n0->n3"]


@pytest.mark.parametrize("end", ["130,98.5", "98.5,115", "98.5,98.5", "161.5,131.5"])
def test_an_end_may_lie_up_to_the_slack_outside_a_closed_box(end: str) -> None:
    svg = _svg(CLOSED, _edge("n0", "m1", f"M130,70 L{end}") +
               _edge("m1", "n3", "M130,130 L130,160"))
    assert check_figure(svg, _graph(), PARENTS, idle=["m2"]).total == 0
