"""The view data a page carries gives back exactly the graph it was made from (what the
viewer's "download JSON" rebuilds), whatever the ids look like and whichever optional fields
the graph's items fill."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from model_trace.graph import (
    Edge,
    Graph,
    Measured,
    ModuleCall,
    Node,
    Repeat,
    Selection,
    SourceLocation,
    SourceSpan,
    Stats,
    Tensor,
)
from model_trace.tracing import trace
from model_trace.view_data import decode_graph, encode_view
from model_trace.view_tree import Mark, ViewTree


def _round_trip(graph: Graph) -> Graph:
    data = json.loads(json.dumps(encode_view(ViewTree.from_graph(graph, show_constants=True))))
    return decode_graph(data)


def _hand_made(module_ids: tuple[str, str, str], node_ids: tuple[str, str, str],
               tensor_ids: tuple[str, str, str]) -> Graph:
    """Three modules (a folded run among them), an input, an op reading a stacked weight and
    a parameter node, with sources, arguments, measurements and an assumption."""
    root, block, run = module_ids
    first, op, weight = node_ids
    x, y, w = tensor_ids
    modules = {
        root: ModuleCall(root, "", "Net", None, children=[first, block, weight],
                         stats=Stats(params=7, flops=3), inputs=[x], outputs=[y]),
        block: ModuleCall(block, "block", "Block", root, children=[run, op], call_index=1,
                          extra_repr="width=4", source=SourceSpan("model.py", 3, 9),
                          measured=Measured(0.25, 4096)),
        run: ModuleCall(run, "block.layers.0", "Layer", block,
                        repeat=Repeat(3, ["block.layers.0", "block.layers.1", "block.layers.2"],
                                      [Stats(flops=i) for i in range(3)], note="Layer ×3",
                                      member_seconds=[0.5, 0.25, 0.125]),
                        kind="loop", called=False),
    }
    nodes = {
        first: Node(first, "input", "x", "io", root, outputs=[x]),
        op: Node(op, "op", "einsum", "matmul", block, inputs=[x, w], outputs=[y],
                 args={"equation": "td,tde->te", "dim": "-1"},
                 source=SourceLocation("model.py", 12, "return torch.einsum(...)"),
                 stats=Stats(flops=96, activation_bytes=32, weight_bytes=64),
                 params=["block.w"], selections=[Selection("block.w", 4, [1, 3], [2, 1])],
                 uncounted_flops=["sort"], measured=Measured(1e-5, 0), assumed="branch"),
        weight: Node(weight, "parameter", "w", "parameter", root, outputs=[w]),
    }
    tensors = {x: Tensor(x, [2, 4], "float32", "meta", first),
               y: Tensor(y, [2, 4], "bfloat16", "meta", op),
               w: Tensor(w, [4, 4, 4], "float32", "cpu", None)}
    return Graph(root=root, modules=modules, nodes=nodes, tensors=tensors,
                 edges=[Edge(first, op, x), Edge(weight, op, w)],
                 meta={"model": "hand-made", "totals": {"params": 7}})


@pytest.mark.parametrize("ids", [
    (("m0", "m1", "m2"), ("n0", "n1", "n2"), ("t0", "t1", "t2")),  # the tracer's pattern
    (("root", "b", "r"), ("in", "op", "w"), ("x", "y", "w")),  # anything else
    (("m0", "m2", "m1"), ("n1", "n0", "n2"), ("t0", "t2", "t1")),  # the pattern out of order
    (("m0", "m1", "m22"), ("n0", "n1", "x2"), ("t0", "t1", "u2")),  # almost the pattern
])
def test_a_hand_made_graph_comes_back_exactly(ids: tuple) -> None:
    graph = _hand_made(*ids)
    assert _round_trip(graph).to_json() == graph.to_json()


class Mixed(nn.Module):
    """Repeated layers (folded), a module called twice, a stacked MoE routed on meta."""

    def __init__(self) -> None:
        super().__init__()
        self.layers = nn.ModuleList(nn.Linear(8, 8) for _ in range(3))
        self.norm = nn.LayerNorm(8)
        self.gate = nn.Linear(8, 4, bias=False)
        self.experts = nn.Parameter(torch.zeros(4, 8, 8))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            x = torch.relu(layer(x))
        x = self.norm(self.norm(x))
        chosen = self.gate(x).topk(1, dim=-1).indices[:, 0]
        return torch.einsum("td,tde->te", x, self.experts[chosen])


@pytest.mark.parametrize("fold", [True, False])
def test_a_traced_graph_comes_back_exactly(fold: bool) -> None:
    with torch.device("meta"):
        model = Mixed()
    graph = trace(model, torch.zeros(5, 8, device="meta"), fold=fold, parameters="nodes")
    assert any(m.repeat for m in graph.modules.values()) == fold
    assert _round_trip(graph).to_json() == graph.to_json()


# -- what the figure engine reads ------------------------------------------------------------
def _view(graph: Graph) -> tuple[dict, list[str], ViewTree]:
    tree = ViewTree.from_graph(graph, show_constants=True)
    data = encode_view(tree)
    return data["view"], data["strings"], tree


def test_the_view_gives_every_item_its_parent_and_the_figure_its_title() -> None:
    view, strings, tree = _view(_hand_made(("m0", "m1", "m2"), ("n0", "n1", "n2"),
                                           ("t0", "t1", "t2")))
    ids = [strings[i] for i in view["items"]["id"]]
    parents = {item: ids[p] if p >= 0 else None
               for item, p in zip(ids, view["items"]["parent"], strict=True)}
    assert parents == tree.parents() and parents[tree.root] is None
    assert strings[view["title"]] == "Computation graph of Net"


def test_marks_are_written_for_the_items_the_view_shows() -> None:
    """A mark on an item the view leaves out (a parameter node with constants hidden) has
    nothing to be drawn on; the others keep their colour, notes and difference."""
    tree = ViewTree.from_graph(_hand_made(("m0", "m1", "m2"), ("n0", "n1", "n2"),
                                          ("t0", "t1", "t2")))
    assert "n2" not in tree.items
    tree.marks = {"n1": Mark("#ff8800", [1, 2], "changed"), "n2": Mark("#0055ff"),
                  "m1": Mark(notes=[3])}
    data = encode_view(tree)
    ids = [data["strings"][i] for i in data["view"]["items"]["id"]]
    assert [[ids[item], *rest] for item, *rest in data["view"]["marks"]] == [
        ["n1", "#ff8800", [1, 2], "changed"], ["m1", "", [3], ""]]


def test_flow_keys_name_tensors_by_shape_and_weights_by_their_own_name() -> None:
    graph = _hand_made(("m0", "m1", "m2"), ("n0", "n1", "n2"), ("t0", "t1", "t2"))
    graph.modules["m1"].path = "blocks.block"
    graph.nodes["n1"].params = ["blocks.block.w"]
    graph.nodes["n1"].parent = "m0"  # it reads the block's weight from outside the block
    graph.modules["m1"].children.remove("n1")
    graph.modules["m0"].children.append("n1")
    view, strings, _ = _view(graph)
    keys = view["keys"]
    by_id = {strings[i]: (strings[label], flag) for i, label, flag
             in zip(keys["id"], keys["label"], keys["param"], strict=True)}
    assert by_id["blocks.block.w"] == ("w", 1)
    assert all(flag == 0 for name, (_, flag) in by_id.items() if name in graph.tensors)


def test_the_time_overlay_is_called_measured_only_after_a_real_run() -> None:
    from model_trace.details import OVERLAY_NAMES

    graph = _hand_made(("m0", "m1", "m2"), ("n0", "n1", "n2"), ("t0", "t1", "t2"))
    view, strings, _ = _view(graph)
    names = {k: strings[v] for k, v in view["items"]["overlay_name"].items()}
    assert names == OVERLAY_NAMES
    graph.meta["execution"] = {"device": "cpu"}
    view, strings, _ = _view(graph)
    names = {k: strings[v] for k, v in view["items"]["overlay_name"].items()}
    assert names == {**OVERLAY_NAMES, "time": "measured time"}


def test_after_a_real_run_every_item_is_coloured_by_its_measured_time() -> None:
    """Ops too, not the estimate beside measured modules: one scale, one kind of figure; a
    folded run sums its members, as the summary table does; an op measured nowhere is 0."""
    graph = _hand_made(("m0", "m1", "m2"), ("n0", "n1", "n2"), ("t0", "t1", "t2"))
    estimated = _times(graph)
    assert estimated["n1"] != 1e-5
    graph.meta["execution"] = {"device": "cpu"}
    measured = _times(graph)
    assert measured["n1"] == 1e-5  # the op's own measurement
    assert measured["m1"] == 0.25 and measured["m2"] == 0.875  # a module; a folded run's sum
    assert measured["n0"] == 0  # an input: nothing ran


def _times(graph: Graph) -> dict[str, float]:
    view, strings, _ = _view(graph)
    ids = [strings[i] for i in view["items"]["id"]]
    return dict(zip(ids, view["items"]["overlay"]["time"], strict=True))


def test_a_decoded_graph_holds_the_same_objects_not_just_the_same_json() -> None:
    graph = _hand_made(("m0", "m1", "m2"), ("n0", "n1", "n2"), ("t0", "t1", "t2"))
    decoded = _round_trip(graph)
    assert decoded.nodes["n1"].selections == graph.nodes["n1"].selections
    assert decoded.modules["m2"].repeat == graph.modules["m2"].repeat


def test_overlay_figures_keep_whole_numbers_exact_and_four_digits_of_fractions() -> None:
    graph = _hand_made(("m0", "m1", "m2"), ("n0", "n1", "n2"), ("t0", "t1", "t2"))
    graph.nodes["n1"].stats.flops = 123_456_789
    view, strings, _ = _view(graph)
    ids = [strings[i] for i in view["items"]["id"]]
    flops = dict(zip(ids, view["items"]["overlay"]["flops"], strict=True))
    assert flops["n1"] == 123_456_789 and isinstance(flops["n1"], int)
    times = view["items"]["overlay"]["time"]
    assert any(isinstance(v, float) for v in times)  # an estimate: fractions of a second
    assert all(v == float(f"{v:.4g}") for v in times)  # four significant digits at most
