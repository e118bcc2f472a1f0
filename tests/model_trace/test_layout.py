"""Per-group layout: boxes nest and do not overlap, every link is routed, big groups are split
into chunks, equal groups are laid out once, and the result is deterministic."""

from __future__ import annotations

import itertools

import pytest
import torch
from torch import nn

from model_trace import layout as layout_module
from model_trace import trace
from model_trace.graph import Edge, Graph, ModuleCall, Node, Tensor
from model_trace.layout import layout
from model_trace.view_tree import CHUNK_LIMIT, CHUNK_SIZE, ViewTree, expanded_groups


def _encoder(layers: int = 2) -> Graph:
    layer = nn.TransformerEncoderLayer(32, 4, dim_feedforward=64, batch_first=True)
    model = nn.TransformerEncoder(layer, num_layers=layers, enable_nested_tensor=False)
    return trace(model, torch.randn(2, 8, 32))


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


def _overlap(a, b) -> bool:
    return (a.x < b.x + b.width - 0.5 and b.x < a.x + a.width - 0.5
            and a.y < b.y + b.height - 0.5 and b.y < a.y + a.height - 0.5)


@pytest.mark.parametrize("depth", [0, 1, 2])
def test_children_sit_inside_their_group_and_siblings_do_not_overlap(depth: int) -> None:
    tree = ViewTree.from_graph(_encoder())
    placed = layout(tree, expanded_groups(tree, depth))
    for group_id in placed.groups:
        outer = placed.boxes[group_id]
        children = [placed.boxes[c] for c in tree.items[group_id].children]
        for child in children:
            assert outer.x - 0.5 <= child.x
            assert outer.y - 0.5 <= child.y
            assert child.x + child.width <= outer.x + outer.width + 0.5
            assert child.y + child.height <= outer.y + outer.height + 0.5
        for a, b in itertools.combinations(children, 2):
            assert not _overlap(a, b), (a.id, b.id)


def test_every_link_of_an_open_group_is_routed_with_its_shape() -> None:
    tree = ViewTree.from_graph(_encoder())
    placed = layout(tree, expanded_groups(tree, 2))
    routed = {(r.src, r.dst) for r in placed.routes}
    for group_id in placed.groups:
        for link in tree.links.get(group_id, []):
            assert (link.src, link.dst) in routed
    for route in placed.routes:
        assert len(route.points) >= 4 and (len(route.points) - 1) % 3 == 0
        assert route.label.startswith("(")
        # from box to box: the arrow's tip touches the consumer, the tail the producer
        assert _on_border(route.points[0], placed.boxes[route.src]), route
        assert _on_border(route.points[-1], placed.boxes[route.dst]), route


def _on_border(point, box, slack: float = 1.0) -> bool:
    x, y = point
    inside = (box.x - slack <= x <= box.x + box.width + slack
              and box.y - slack <= y <= box.y + box.height + slack)
    deep = (box.x + slack < x < box.x + box.width - slack
            and box.y + slack < y < box.y + box.height - slack)
    return inside and not deep


def test_links_attach_to_the_children_of_the_lowest_common_group() -> None:
    graph = _encoder()
    tree = ViewTree.from_graph(graph)
    for group_id, links in tree.links.items():
        for link in links:
            assert tree.items[link.src].parent == group_id == tree.items[link.dst].parent
    carried = {t for links in tree.links.values() for link in links for t in link.tensors}
    assert carried == {e.tensor for e in graph.edges}


def test_layout_is_deterministic() -> None:
    graph = _encoder()
    first = layout(graph, expanded_groups(ViewTree.from_graph(graph), 2))
    second = layout(graph, expanded_groups(ViewTree.from_graph(graph), 2))
    assert first.boxes == second.boxes and first.routes == second.routes


def test_equal_groups_go_to_dot_once(monkeypatch: pytest.MonkeyPatch) -> None:
    sent: list[int] = []
    real = layout_module._run_dot

    def counting(sources: list[str]):
        sent.append(len(sources))
        return real(sources)

    monkeypatch.setattr(layout_module, "_run_dot", counting)
    tree = ViewTree.from_graph(wide_graph(40))
    placed = layout(tree, expanded_groups(tree, 1))
    assert len(placed.groups) == 41
    assert sent == [1, 1]  # forty equal experts: one dot graph; then the root


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
    # the chain between consecutive experts crosses chunk borders as chunk-to-chunk links
    assert len(tree.links[tree.root]) == len(root.children) - 1
    placed = layout(tree, expanded_groups(tree, 1))
    assert all(len(tree.items[g].children) <= CHUNK_LIMIT for g in placed.groups)
    assert set(placed.boxes) >= set(members)  # depth counts modules, not chunks


def test_big_groups_get_straight_labelled_routes_in_one_quick_pass() -> None:
    """Above BIG_GROUP boxes dot runs with splines=line and nslimit=1: every link is still
    routed, from box to box, with its shape label placed."""
    count = layout_module.BIG_GROUP + 20
    assert count <= CHUNK_LIMIT  # one group, not chunks
    tree = ViewTree.from_graph(wide_graph(count))
    source = layout_module._dot_source(tree, tree.root, {})
    assert "splines=line; nslimit=1;" in source
    placed = layout(tree, expanded_groups(tree, 0))
    assert len(placed.routes) == count - 1
    for route in placed.routes:
        assert route.label_at is not None and route.label == "(4, 8)"
        assert _on_border(route.points[0], placed.boxes[route.src])
        assert _on_border(route.points[-1], placed.boxes[route.dst])


def test_chunk_stats_sum_their_parts() -> None:
    graph = wide_graph(CHUNK_LIMIT + 1)
    for i, module_id in enumerate(graph.modules["m0"].children):
        graph.modules[module_id].stats.flops = i
    tree = ViewTree.from_graph(graph)
    chunks = tree.items[tree.root].children
    assert sum(tree.stats(c).flops for c in chunks) == sum(range(CHUNK_LIMIT + 1))


def test_graphviz_pure_missing_is_an_actionable_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(layout_module.shutil, "which", lambda name: None)
    with pytest.raises(layout_module.ModelTraceError, match="pip install graphviz-pure"):
        layout(_encoder(1), {"m0"})


def test_never_called_submodules_wait_in_one_closed_group_laid_out_as_a_grid() -> None:
    graph = wide_graph(3)
    for i in range(40):  # experts that got no tokens: no ops, no edges
        module_id = f"m{100 + i}"
        graph.modules[module_id] = ModuleCall(module_id, f"experts.{10 + i}", "Expert", "m0")
        graph.modules[module_id].called = False
        graph.modules["m0"].children.append(module_id)
    tree = ViewTree.from_graph(graph)
    idle = tree.items["m0/idle"]
    assert tree.items["m0"].children[-1] == "m0/idle" and len(idle.children) == 40
    assert idle.label == "not called: 40 Expert"
    assert "m0/idle" not in expanded_groups(tree, 1)  # its parent is open, it is not
    placed = layout(tree, expanded_groups(tree, 1) | {"m0/idle"})
    grid = placed.groups["m0/idle"]
    assert grid.routes == [] and grid.width < 8 * grid.height  # rows, not one rank
    boxes = [placed.boxes[c] for c in idle.children]
    for a, b in itertools.combinations(boxes, 2):
        assert not _overlap(a, b)
