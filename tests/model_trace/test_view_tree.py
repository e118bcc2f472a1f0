"""The view tree on its own: hidden constants, levels, chunking at its limit, what a depth
opens with and without chunks (drawn by the engine), labels of chunks and idle groups, the
flow between leaves, and the links the engine draws between boxes."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from model_trace.engine import DrawOptions, place
from model_trace.graph import Edge, Graph, ModuleCall, Node, Repeat, Stats, Tensor
from model_trace.naming import module_label, numbered_run, relative_name
from model_trace.render_html import view_json
from model_trace.view_data import encode_view
from model_trace.view_tree import CHUNK_LIMIT, CHUNK_SIZE, ViewTree


class GraphMaker:
    """Builds a graph by hand: modules, ops, constants and the edges between them."""

    def __init__(self, root_cls: str = "Model") -> None:
        self.graph = Graph(root="m0", modules={"m0": ModuleCall("m0", "", root_cls, None)},
                           nodes={}, tensors={}, edges=[])

    def module(self, parent: str, path: str, cls: str, called: bool = True) -> str:
        module_id = f"m{len(self.graph.modules)}"
        self.graph.modules[module_id] = ModuleCall(module_id, path, cls, parent, called=called)
        self.graph.modules[parent].children.append(module_id)
        return module_id

    def node(self, parent: str, name: str = "relu", kind: str = "op",
             reads: tuple[str, ...] = ()) -> str:
        """A node in ``parent`` reading the outputs of the nodes ``reads``; returns its id."""
        node_id = f"n{len(self.graph.nodes)}"
        tensor_id = f"t{len(self.graph.tensors)}"
        inputs = [self.graph.nodes[r].outputs[0] for r in reads]
        self.graph.nodes[node_id] = Node(node_id, kind, name, "activation", parent,
                                         inputs=inputs, outputs=[tensor_id])
        self.graph.tensors[tensor_id] = Tensor(tensor_id, [2], "float32", "meta", node_id)
        self.graph.modules[parent].children.append(node_id)
        self.graph.edges += [Edge(r, node_id, t) for r, t in zip(reads, inputs, strict=True)]
        return node_id


def _modules_under_root(count: int, cls: str = "Expert", inner: bool = True) -> Graph:
    """A root with ``count`` modules, each holding an ``Inner`` module that holds one op."""
    maker = GraphMaker()
    for i in range(count):
        outer = maker.module("m0", f"experts.{i}", cls)
        if inner:
            maker.node(maker.module(outer, f"experts.{i}.inner", "Inner"))
        else:
            maker.node(outer)
    return maker.graph


# -- constants and depths ------------------------------------------------------------------
def test_constants_and_parameters_are_shown_only_when_asked() -> None:
    maker = GraphMaker()
    constant = maker.node("m0", "mask", kind="constant")
    parameter = maker.node("m0", "weight", kind="parameter")
    op = maker.node("m0", "add", reads=(constant, parameter))
    hidden = ViewTree.from_graph(maker.graph)
    assert hidden.items["m0"].children == [op] and constant not in hidden.items
    assert hidden.flows == []  # an edge from a hidden node is not drawn
    shown = ViewTree.from_graph(maker.graph, show_constants=True)
    assert shown.items["m0"].children == [constant, parameter, op]
    assert shown.items[constant].kind == "constant"
    assert [(flow.src, flow.dst) for flow in shown.flows] == [(constant, op), (parameter, op)]


def test_levels_count_modules_below_the_root_not_chunks() -> None:
    tree = ViewTree.from_graph(_modules_under_root(3))
    assert [tree.items[i].level for i in ("m0", "m1", "m2", "n0")] == [0, 1, 2, 3]
    parents = tree.parents()
    assert [parents["n0"], parents["m2"], parents["m1"]] == ["m2", "m1", "m0"]
    chunked = ViewTree.from_graph(_modules_under_root(CHUNK_LIMIT + 1))
    assert chunked.items["m0/0"].level == 0 and chunked.items["m1"].level == 1
    assert chunked.parents()["m1"] == "m0/0" and chunked.parents()["m0/0"] == "m0"


def _opened(tree: ViewTree, depth: int) -> set[str]:
    """The boxes the engine draws open at ``depth``."""
    placed = place(view_json(encode_view(tree)), DrawOptions(depth=depth))
    return {i for i, box in placed["boxes"].items() if box["open"]}


def _opened_modules(tree: ViewTree, depth: int) -> set[str]:
    return {i for i in _opened(tree, depth) if tree.items[i].kind == "module"}


@pytest.mark.parametrize("depth", [0, 1, 2, 3])
def test_a_depth_opens_the_same_module_levels_whether_or_not_a_parent_is_chunked(
        depth: int) -> None:
    """What the docstring promises: chunks are not a level of their own."""
    for count in (CHUNK_LIMIT - 10, CHUNK_LIMIT + 10):
        graph = _modules_under_root(count)
        tree = ViewTree.from_graph(graph)
        level = graph.module_depths()
        expected = {m for m in graph.modules if level[m] <= depth}
        assert _opened_modules(tree, depth) == expected, (count, depth)
    chunked = ViewTree.from_graph(_modules_under_root(CHUNK_LIMIT + 10))
    chunks = set(chunked.items["m0"].children)
    assert chunks <= _opened(chunked, 0)  # an open module's chunks are open


# -- chunks --------------------------------------------------------------------------------
def test_exactly_the_chunk_limit_is_not_chunked_and_one_more_is() -> None:
    at_limit = ViewTree.from_graph(_modules_under_root(CHUNK_LIMIT, inner=False))
    assert len(at_limit.items["m0"].children) == CHUNK_LIMIT
    assert all(at_limit.items[c].kind == "module" for c in at_limit.items["m0"].children)
    over = ViewTree.from_graph(_modules_under_root(CHUNK_LIMIT + 1, inner=False))
    chunks = over.items["m0"].children
    sizes = [len(over.items[c].children) for c in chunks]
    assert sizes == [CHUNK_SIZE] * (len(chunks) - 1) + [(CHUNK_LIMIT + 1) % CHUNK_SIZE
                                                         or CHUNK_SIZE]
    assert chunks == [f"m0/{i}" for i in range(len(chunks))]
    assert over.items[chunks[0]].label == f"part 1/{len(chunks)}: 64 Expert"


def test_too_many_chunks_make_bigger_chunks_split_again() -> None:
    count = CHUNK_LIMIT * CHUNK_SIZE + 1
    tree = ViewTree.from_graph(_modules_under_root(count, inner=False))
    chunks = tree.items["m0"].children
    assert len(chunks) == 3 and tree.items[chunks[0]].label == "part 1/3: 4096 Expert"
    assert all(len(item.children) <= CHUNK_LIMIT for item in tree.groups())
    leaves = [i for i in tree.items if tree.items[i].kind == "module" and i != "m0"]
    assert leaves == [f"m{i + 1}" for i in range(count)]  # every expert, in call order
    parents = tree.parents()
    assert {parents[parents[m]] for m in leaves} <= set(chunks)  # chunks of a chunk
    assert {tree.items[m].level for m in leaves} == {1}
    assert _opened_modules(tree, 0) == {"m0"}


def test_exactly_as_many_chunks_as_the_limit_keep_their_size() -> None:
    count = CHUNK_LIMIT * CHUNK_SIZE
    tree = ViewTree.from_graph(_modules_under_root(count, inner=False))
    chunks = tree.items["m0"].children
    assert len(chunks) == CHUNK_LIMIT
    assert {len(tree.items[c].children) for c in chunks} == {CHUNK_SIZE}


def test_items_are_listed_parents_first_in_call_order() -> None:
    maker = GraphMaker()
    a = maker.module("m0", "a", "A")
    maker.node(a)
    b = maker.module("m0", "b", "B")
    maker.node(b)
    maker.node("m0")
    tree = ViewTree.from_graph(maker.graph)
    assert list(tree.items) == ["m0", a, "n0", b, "n1", "n2"]
    assert [item.id for item in tree.groups()] == ["m0", a, b]


def test_a_chunk_label_counts_classes_most_first_then_ops() -> None:
    maker = GraphMaker()
    for i in range(CHUNK_LIMIT + 1):
        # in the first chunk: 10 Gate, then 44 Expert, then 10 bare ops
        if i < 10:
            maker.module("m0", f"gates.{i}", "Gate")
        elif i < 54:
            maker.module("m0", f"experts.{i}", "Expert")
        else:
            maker.node("m0")
    tree = ViewTree.from_graph(maker.graph)
    first, *_, last = tree.items["m0"].children
    total = len(tree.items["m0"].children)
    assert tree.items[first].label == f"part 1/{total}: 44 Expert, 10 Gate, 10 ops"
    assert tree.items[last].label == f"part {total}/{total}: {(CHUNK_LIMIT + 1) % 64} ops"


def test_a_chunk_label_names_at_most_three_things() -> None:
    maker = GraphMaker()
    for i in range(CHUNK_LIMIT + 1):
        maker.module("m0", f"m.{i}", ["A", "B", "C", "D"][i % 4] if i < 64 else "E")
    tree = ViewTree.from_graph(maker.graph)
    assert tree.items["m0/0"].label == "part 1/3: 16 A, 16 B, 16 C"


# -- idle submodules -----------------------------------------------------------------------
def test_idle_submodules_are_gathered_most_common_class_first() -> None:
    maker = GraphMaker()
    maker.node("m0")
    idle = [maker.module("m0", f"x.{i}", "Norm" if i < 2 else "Expert", called=False)
            for i in range(5)]
    tree = ViewTree.from_graph(maker.graph)
    group = tree.items["m0/idle"]
    assert group.label == "not called: 3 Expert, 2 Norm"
    assert group.children == idle and group.category == "idle" and group.kind == "idle"
    assert tree.items["m0"].children == ["n0", "m0/idle"]
    assert all(tree.items[m].parent == "m0/idle" for m in idle)
    assert "m0/idle" not in _opened(tree, 5)
    assert "m0/idle" in _opened(tree, -1)  # only "everything" opens it


def test_two_idle_submodules_are_gathered_and_many_are_not_chunked() -> None:
    for count in (2, CHUNK_LIMIT + 40):
        maker = GraphMaker()
        maker.node("m0")
        idle = [maker.module("m0", f"x.{i}", "Expert", called=False) for i in range(count)]
        tree = ViewTree.from_graph(maker.graph)
        assert tree.items["m0/idle"].children == idle  # one grid, however long
        assert tree.items["m0/idle"].label == f"not called: {count} Expert"


def test_one_idle_submodule_stays_where_it_is() -> None:
    maker = GraphMaker()
    lone = maker.module("m0", "x.0", "Expert", called=False)
    maker.node("m0")
    tree = ViewTree.from_graph(maker.graph)
    assert tree.items["m0"].children == [lone, "n0"] and "m0/idle" not in tree.items
    assert tree.items[lone].category == "idle"  # greyed where it is


# -- links ---------------------------------------------------------------------------------
def _links(tree: ViewTree, depth: int) -> list[tuple[str, str, list[str]]]:
    placed = place(view_json(encode_view(tree)), DrawOptions(depth=depth))
    return [(r["src"], r["dst"], r["keys"]) for r in placed["routes"]]


def test_links_join_flows_between_the_same_closed_boxes_in_flow_order() -> None:
    maker = GraphMaker()
    a, b = maker.module("m0", "a", "A"), maker.module("m0", "b", "B")
    first, second = maker.node(a), maker.node(a)
    maker.node(b, reads=(first,))
    maker.node(b, reads=(second,))
    maker.node(b, reads=(first,))  # the same tensor again: listed once
    later = maker.node("m0", reads=(first,))
    tree = ViewTree.from_graph(maker.graph)
    assert [(f.src, f.dst, f.key) for f in tree.flows] == [
        (first, "n2", "t0"), (second, "n3", "t1"), (first, "n4", "t0"), (first, later, "t0")]
    assert _links(tree, 0) == [(a, b, ["t0", "t1"]), (a, later, ["t0"])]
    # a open: t0 leaves it through one port, to b and to the op after it
    opened = {(s, d) for s, d, _ in _links(tree, 1)}
    assert {(first, f"{a}:out:t0"), (f"{a}:out:t0", later)} <= opened


def test_a_flow_inside_one_child_is_drawn_only_when_it_is_open() -> None:
    maker = GraphMaker()
    a = maker.module("m0", "a", "A")
    inner = maker.module(a, "a.inner", "Inner")
    start = maker.node(inner)
    maker.node(a, reads=(start,))
    tree = ViewTree.from_graph(maker.graph)
    assert _links(tree, 0) == []
    assert _links(tree, 1) == [(inner, "n1", ["t0"])]


# -- labels --------------------------------------------------------------------------------
def test_module_labels_name_the_path_below_the_parent_and_the_repeat() -> None:
    maker = GraphMaker("Net")
    layers = [maker.module("m0", f"layers.{i}", "Block") for i in range(1)]
    graph = maker.graph
    graph.modules[layers[0]].repeat = Repeat(
        count=3, members=["layers.0", "layers.1", "layers.2"], member_stats=[Stats()] * 3)
    ffn = maker.module(layers[0], "layers.0.ffn", "MLP")
    assert module_label(graph, graph.modules["m0"]) == "Net"
    assert module_label(graph, graph.modules[layers[0]]) == "layers.0\u20132: Block \u00d73"
    assert module_label(graph, graph.modules[ffn]) == "ffn: MLP"


def test_a_folded_loop_of_ops_is_named_after_its_ops_not_loop() -> None:
    """A run of ops that calls no module (18 cache tensors) reads ``tensor ×18``."""
    maker = GraphMaker("Net")
    loop = maker.module("m0", "model", "loop")
    maker.node(loop, name="tensor")
    graph = maker.graph
    graph.modules[loop].kind = "loop"
    graph.modules[loop].repeat = Repeat(count=18, members=[f"model#{i}" for i in range(18)],
                                        member_stats=[Stats()] * 18)
    assert module_label(graph, graph.modules[loop]) == "model: tensor \u00d718"


@pytest.mark.parametrize(("names", "expected"), [
    (["layers.3", "layers.4", "layers.5"], "layers.3\u20135"),
    (["3", "4"], "3\u20134"),
    (["layers.3"], None),
    (["layers.3", "layers.5"], None),
    (["layers.3", "other.4"], None),
    (["experts.a", "experts.b"], None),
])
def test_numbered_runs(names: list[str], expected: str | None) -> None:
    assert numbered_run(names) == expected


@pytest.mark.parametrize(("path", "parent", "expected"), [
    ("layers.3.ffn", "layers.3", "ffn"), ("layers.3", "", "layers.3"),
    ("layers.30.ffn", "layers.3", "ffn"), ("head", "layers.3", "head"),
])
def test_relative_names(path: str, parent: str, expected: str) -> None:
    assert relative_name(path, parent) == expected


# -- flows the graph only implies ----------------------------------------------------------
def test_a_weight_read_from_outside_its_module_is_linked_from_that_module_once() -> None:
    maker = GraphMaker()
    maker.node("m0", "mask", kind="constant")  # hidden: no item, and nothing to link
    owner = maker.module("m0", "wkv_b", "Linear")
    inside = maker.node(owner, "linear")
    outside = maker.node("m0", "einsum")
    nested = maker.module("m0", "attn", "Attention")
    deeper = maker.node(nested, "einsum")
    nodes = maker.graph.nodes
    nodes[inside].params = ["wkv_b.weight"]  # its own weight: nothing to link
    nodes[outside].params = ["wkv_b.weight", "wkv_b.bias", "nowhere.weight"]
    nodes[deeper].params = ["weight", "wkv_b.weight"]  # the root's own weight: it encloses
    tree = ViewTree.from_graph(maker.graph)
    assert [(f.src, f.dst, f.key) for f in tree.flows] == [
        (owner, outside, "param:wkv_b.weight"), (owner, deeper, "param:wkv_b.weight")]


def test_a_shared_source_is_linked_from_the_op_that_made_its_tensor() -> None:
    maker = GraphMaker()
    maker_op = maker.node("m0", "triu")
    layer = maker.module("m0", "layers.0", "Block")
    shared = maker.node(layer, "mask", kind="shared")
    maker.graph.nodes[shared].outputs = list(maker.graph.nodes[maker_op].outputs)
    lonely = maker.node(layer, "rope", kind="shared")  # made by itself: no link to itself
    tree = ViewTree.from_graph(maker.graph)
    assert [(f.src, f.dst, f.key) for f in tree.flows] == [(maker_op, shared, "t0")]
    assert lonely in tree.items


def test_a_call_that_only_passed_its_input_on_is_drawn_in_the_flow() -> None:
    maker = GraphMaker()
    before = maker.node("m0", "linear")
    dropout = maker.module("m0", "dropout", "Dropout")
    tensor = maker.graph.nodes[before].outputs[0]
    call = maker.graph.modules[dropout]
    call.inputs, call.outputs = [tensor], [tensor]
    first = maker.node("m0", "relu", reads=(before,))
    second = maker.node("m0", "add", reads=(before,))
    tree = ViewTree.from_graph(maker.graph)
    assert [(f.src, f.dst) for f in tree.flows] == [
        (before, dropout), (dropout, first), (dropout, second)]
    assert tree.items[dropout].category == "idle"  # greyed: it ran nothing


def test_a_call_that_ran_ops_or_passed_nothing_on_is_not_drawn_in_the_flow() -> None:
    maker = GraphMaker()
    before = maker.node("m0", "linear")
    tensor = maker.graph.nodes[before].outputs[0]
    ran = maker.module("m0", "norm", "Norm")
    maker.node(ran)
    other = maker.module("m0", "cache", "Cache")
    maker.graph.modules[ran].inputs = maker.graph.modules[ran].outputs = [tensor]
    maker.graph.modules[other].inputs = [tensor]
    after = maker.node("m0", "relu", reads=(before,))
    tree = ViewTree.from_graph(maker.graph)
    assert [(f.src, f.dst) for f in tree.flows] == [(before, after)]


# -- folded members and what items cost ----------------------------------------------------
def test_folded_members_are_items_beside_their_representative_with_their_own_figures() -> None:
    maker = GraphMaker("Net")
    stack = maker.module("m0", "layers", "ModuleList")
    rep = maker.module(stack, "layers.0", "Block")
    maker.node(rep)
    figures = [Stats(flops=10 * (i + 1)) for i in range(3)]
    maker.graph.modules[rep].repeat = Repeat(3, ["layers.0", "layers.1", "layers.2"], figures)
    single = maker.module(stack, "layers.9", "Block")
    maker.graph.modules[single].repeat = Repeat(1, ["layers.9"], [Stats()])
    tree = ViewTree.from_graph(maker.graph)
    assert tree.members == {rep: [f"{rep}~1", f"{rep}~2"]}
    second = tree.items[f"{rep}~2"]
    assert (second.label, second.parent, second.kind) == ("2: Block", stack, "member")
    assert second.level == tree.items[rep].level == 2 and second.category == "member"
    assert tree.stats(f"{rep}~1").flops == 20 and tree.stats(f"{rep}~2").flops == 30


def test_a_chunk_and_an_idle_group_cost_what_their_parts_cost() -> None:
    maker = GraphMaker()
    for _ in range(CHUNK_LIMIT + 1):
        maker.node("m0")
    for i in range(3):
        maker.module("m0", f"x.{i}", "Expert", called=False)
    graph = maker.graph
    for index, node in enumerate(graph.nodes.values()):
        node.stats = Stats(flops=index, params=1)
    for i, module_id in enumerate(m for m in graph.modules if m != "m0"):
        graph.modules[module_id].stats = Stats(params=100 * (i + 1))
    tree = ViewTree.from_graph(graph)
    first = tree.items["m0"].children[0]
    assert tree.stats(first).flops == sum(range(CHUNK_SIZE))
    assert tree.stats(first).params == CHUNK_SIZE
    assert tree.stats("m0/idle").params == 600
    assert tree.stats("n3").flops == 3 and tree.stats("m0") is graph.modules["m0"].stats


def test_the_deepest_level_opens_every_group_that_holds_something() -> None:
    assert ViewTree.from_graph(_modules_under_root(2)).deepest_level() == 3
    assert ViewTree.from_graph(_modules_under_root(2, inner=False)).deepest_level() == 2
    maker = GraphMaker()
    maker.node("m0")
    for i in range(2):  # idle modules holding idle modules: not counted
        idle = maker.module("m0", f"x.{i}", "Expert", called=False)
        maker.module(idle, f"x.{i}.w", "Linear", called=False)
    assert ViewTree.from_graph(maker.graph).deepest_level() == 1
    assert ViewTree.from_graph(GraphMaker().graph).deepest_level() == 0


def test_chunks_and_idle_groups_open_like_modules_and_leaves_do_not() -> None:
    maker = GraphMaker()
    for i in range(CHUNK_LIMIT + 1):
        maker.module("m0", f"experts.{i}", "Expert")
    maker.module("m1", "experts.0.a", "Linear", called=False)
    maker.module("m1", "experts.0.b", "Linear", called=False)
    tree = ViewTree.from_graph(maker.graph)
    groups = [item.id for item in tree.groups()]
    assert groups[:3] == ["m0", "m0/0", "m1"] and "m1/idle" in groups
    assert all(tree.items[g].is_group for g in groups)
    assert len(groups) == 1 + 3 + (CHUNK_LIMIT + 1) + 1 + 2  # root, chunks, experts, idle


def test_the_layout_page_states_the_chunk_sizes_the_tree_uses() -> None:
    """docs/design/layout.md tells readers when a group is split and into what."""
    page = (Path(__file__).resolve().parents[2] / "docs" / "design" / "layout.md").read_text(
        encoding="utf-8")
    limit, size = re.search(r"more than (\d+) direct children has them split into chunks of "
                            r"(\d+)", page).groups()
    assert (int(limit), int(size)) == (CHUNK_LIMIT, CHUNK_SIZE)
