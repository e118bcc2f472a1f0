"""Folding repeats: one representative per run, with counts and exact statistics."""

from __future__ import annotations

import torch
from folded_graph_checks import assert_sound_folded_graph

from model_trace.graph import Graph, ModuleCall
from model_trace.tracing import fold_repeats, trace
from model_trace.tracing.folding import find_runs


def _child_calls(graph: Graph, call: ModuleCall) -> list[ModuleCall]:
    return [graph.modules[c] for c in call.children if c in graph.modules]


def test_671b_blocks_fold_into_two_kinds_with_their_counts(traced_671b) -> None:
    graph = traced_671b.graph
    root = graph.modules[graph.root]
    blocks = [c for c in _child_calls(graph, root) if c.cls == "Block"]
    assert [(b.path, b.repeat.count) for b in blocks] == [("layers.0", 3), ("layers.3", 58)]
    dense, moe = blocks
    assert dense.repeat.members == [f"layers.{i}" for i in range(3)]
    assert moe.repeat.members == [f"layers.{i}" for i in range(3, 61)]
    assert [c.cls for c in _child_calls(graph, dense)] == ["RMSNorm", "MLA", "RMSNorm", "MLP"]
    assert [c.cls for c in _child_calls(graph, moe)] == ["RMSNorm", "MLA", "RMSNorm", "MoE"]
    folded = graph.meta["folded"]
    assert folded["before"]["modules"] > 60_000 and folded["after"]["modules"] < 50


def test_671b_experts_fold_into_one_loop_of_256(traced_671b) -> None:
    graph = traced_671b.graph
    ffn = next(c for c in graph.modules.values() if c.path == "layers.3.ffn")
    (loop,) = (c for c in _child_calls(graph, ffn) if c.kind == "loop")
    assert loop.path == "layers.3.ffn.experts" and loop.repeat.count == 256
    assert loop.repeat.members == [f"layers.3.ffn.experts.{i}" for i in range(256)]
    assert loop.repeat.note == "Expert ×256 of 256 called, 8 active per token"
    (expert,) = _child_calls(graph, loop)
    assert expert.path == "layers.3.ffn.experts.0" and expert.cls == "Expert"
    # balanced routing: 128 tokens x 8 experts = 4 per expert, in every MoE layer
    loads = graph.meta["experts"]
    assert len(loads) == 58
    assert all(group["tokens"] == [4] * 256 for group in loads.values())


def test_statistics_stay_exact_through_folding(build_tiny, tiny_tokens) -> None:
    unfolded = trace(build_tiny(), tiny_tokens.to("meta"), routing="random:2", fold=False)
    by_path = {c.path: c.stats for c in unfolded.modules.values()
               if c.kind == "module" and c.call_index == 0}
    folded = fold_repeats(trace(build_tiny(), tiny_tokens.to("meta"), routing="random:2",
                                fold=False))
    assert folded.modules[folded.root].stats == unfolded.modules[unfolded.root].stats
    repeats = [c for c in folded.modules.values() if c.repeat is not None]
    assert {c.path for c in repeats} >= {"layers.1", "layers.1.ffn.experts"}
    for call in repeats:
        if call.kind == "module":  # a run of module calls: each member is a module
            assert call.repeat.member_stats == [by_path[p] for p in call.repeat.members]
    for call in folded.modules.values():  # no edge points into something dropped
        assert all(c in folded.modules or c in folded.nodes for c in call.children)
    for edge in folded.edges:
        assert edge.src in folded.nodes and edge.dst in folded.nodes
        assert edge.tensor in folded.tensors


def test_different_siblings_do_not_fold_and_runs_of_two_ops_stay() -> None:
    class Stack(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.same = torch.nn.ModuleList(torch.nn.Linear(4, 4) for _ in range(3))
            self.wider = torch.nn.Linear(4, 8)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            for layer in self.same:
                x = layer(x)
            x = torch.relu(torch.relu(x))  # two bare ops: kept as they are
            return self.wider(x)

    graph = trace(Stack(), torch.randn(2, 4))
    calls = [(c.path, c.repeat.count if c.repeat else 1) for c in graph.walk_modules()[1:]]
    assert calls == [("same.0", 3), ("wider", 1)]
    assert [n.name for n in graph.nodes.values() if n.kind == "op"].count("relu") == 2


def test_find_runs_prefers_the_longest_cover() -> None:
    assert find_runs([1, 1, 1, 2, 3, 2, 3, 4]) == [(0, 1, 3), (3, 2, 2)]
    assert find_runs([5, 6, 5, 6, 5, 6]) == [(0, 2, 3)]
    assert find_runs([1, 2, 3]) == []


class _Scorer(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.proj = torch.nn.Linear(8, 8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x) * 2


class _Block(torch.nn.Module):
    """Returns scores made inside a submodule, which the next, different layer takes."""

    def __init__(self) -> None:
        super().__init__()
        self.scorer, self.out = _Scorer(), torch.nn.Linear(8, 8)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.out(x), self.scorer(x)


class _Last(torch.nn.Module):
    def __init__(self, reads_scores: bool) -> None:
        super().__init__()
        self.lin, self.reads_scores = torch.nn.Linear(8, 8), reads_scores

    def forward(self, x: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        return self.lin(x) + scores if self.reads_scores else self.lin(x)


class _ScoresAcross(torch.nn.Module):
    def __init__(self, reads_scores: bool) -> None:
        super().__init__()
        self.blocks = torch.nn.ModuleList(_Block() for _ in range(3))
        self.last = _Last(reads_scores)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scores = x
        for block in self.blocks:
            x, scores = block(x)
        return self.last(x, scores)


def test_a_tensor_made_inside_a_folded_member_and_passed_on_stands_for_the_first() -> None:
    """GLM's sparse attention hands a layer the indexer scores of the layer before: with the
    three layers before folded into one, the scores are the representative's (whether or not
    an op of the next layer reads them)."""
    for reads_scores in (True, False):
        with torch.device("meta"):
            model, x = _ScoresAcross(reads_scores), torch.empty(2, 8)
        graph = trace(model, x)
        (blocks,) = (c for c in graph.modules.values() if c.repeat is not None)
        assert blocks.repeat.count == 3
        last = next(c for c in graph.modules.values() if c.path == "last")
        scores = graph.tensors[last.inputs[1]]
        producer = graph.nodes[scores.producer]  # type: ignore[index]
        assert (producer.name, graph.modules[producer.parent].path) == ("mul", "blocks.0.scorer")


class _Norm(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.weight = torch.nn.Parameter(torch.ones(8))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True)) * self.weight


class _SideBySide(torch.nn.Module):
    """DeepSeek-V3's MTP module as vLLM writes it (``enorm(e)`` then ``hnorm(h)``), Llama 4's
    ``qk_norm`` (one module for the queries, then the keys), a chain of norms, a shared norm
    applied twice in a chain, and two norms of one tensor."""

    def __init__(self) -> None:
        super().__init__()
        self.enorm, self.hnorm, self.qk_norm = _Norm(), _Norm(), _Norm()
        self.chain = torch.nn.ModuleList(_Norm() for _ in range(3))
        self.shared, self.left, self.right = _Norm(), _Norm(), _Norm()

    def forward(self, e: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        e, h = self.enorm(e), self.hnorm(h)
        q, k = self.qk_norm(e + 1), self.qk_norm(h + 1)
        x = q + k
        for norm in self.chain:
            x = norm(x)
        x = self.shared(self.shared(x * 2))
        y = x * 2
        return self.left(y) + self.right(y)


def test_only_members_that_read_alike_fold() -> None:
    """Calls side by side that read different tensors are uses, not repeats: folded, the
    representative would be drawn reading what it never read (the ×2 RMSNorm of DeepSeek-V3's
    MTP). A chain folds (each reads the one before), and so do calls of one tensor; calls of
    one module stay apart (their members would not be distinct)."""
    with torch.device("meta"):
        model, e, h = _SideBySide(), torch.empty(2, 8), torch.empty(2, 8)
    graph = trace(model, e, h)
    calls = [(c.path, c.repeat.count if c.repeat else 1) for c in graph.walk_modules()[1:]]
    assert calls == [("enorm", 1), ("hnorm", 1), ("qk_norm", 1), ("qk_norm", 1),
                     ("chain.0", 3), ("shared", 1), ("shared", 1), ("left", 2)]
    left = next(c for c in graph.modules.values() if c.path == "left")
    assert left.repeat.members == ["left", "right"]


class _Up(torch.nn.Module):
    """A UNet's decoder: each block reads the one before and a skip connection of its own."""

    def __init__(self) -> None:
        super().__init__()
        self.down = torch.nn.ModuleList(torch.nn.Linear(8, 8) for _ in range(3))
        self.up = torch.nn.ModuleList(torch.nn.Linear(16, 8) for _ in range(3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        for block in self.down:
            x = block(x)
            skips.append(x)
        for block, skip in zip(self.up, reversed(skips), strict=True):
            x = block(torch.cat([x, skip], dim=-1))
        return x


def test_blocks_fed_different_skip_connections_do_not_fold() -> None:
    with torch.device("meta"):
        model, x = _Up(), torch.empty(2, 8)
    graph = trace(model, x)
    repeats = {c.path: c.repeat.count for c in graph.modules.values() if c.repeat}
    assert repeats == {"down.0": 3}
    cats = [n for n in graph.nodes.values() if n.name == "cat"]
    assert len(cats) == 3 and len({tuple(n.inputs) for n in cats}) == 3


def test_a_call_given_one_more_tensor_than_the_first_is_no_member() -> None:
    """Layer 2 also gets a tensor it never reads: it takes other arguments than layers 0
    and 1, so it is no repeat of them (and reads nothing differently by itself)."""

    class Layer(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.proj = torch.nn.Linear(8, 8)

        def forward(self, x: torch.Tensor, unused: torch.Tensor | None = None) -> torch.Tensor:
            return self.proj(x)

    class Model(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.layers = torch.nn.ModuleList(Layer() for _ in range(3))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            extra = x.new_zeros(1)
            for index, layer in enumerate(self.layers):
                x = layer(x, extra if index == 2 else None)
            return x

    graph = trace(Model(), torch.empty(2, 8, device="meta"))
    layers = [(c.path, c.repeat.count if c.repeat else 1) for c in graph.modules.values()
              if c.cls == "Layer"]
    assert layers == [("layers.0", 2), ("layers.2", 1)]


def test_members_reading_other_outside_tensors_below_their_arguments_keep_sound_edges(
        ) -> None:
    """Each layer reads its own table from the parent (an attribute set before the call,
    not an argument): the layers fold, and the representative keeps its own table's edge
    only, not edges of tensors it never read."""

    class Layer(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.proj = torch.nn.Linear(8, 8)
            self.table = torch.zeros(8)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.proj(x) + self.table

    class Model(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.layers = torch.nn.ModuleList(Layer() for _ in range(3))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            tables = [x.new_ones(8), x.new_zeros(8), x.new_full((8,), 2.0)]  # no run
            for layer, table in zip(self.layers, tables, strict=True):
                layer.table = table
                x = layer(x)
            return x.sum()

    graph = trace(Model(), torch.empty(2, 8, device="meta"))
    assert_sound_folded_graph(graph)
    (layer,) = (c for c in graph.modules.values() if c.cls == "Layer")
    assert layer.repeat.count == 3
    (add,) = (graph.nodes[c] for c in layer.children if c in graph.nodes)
    into_add = sorted(graph.nodes[e.src].name for e in graph.edges if e.dst == add.id)
    assert into_add == ["linear", "new_ones"]  # its projection and its own table
    assert len(graph.edges) == len({(e.src, e.dst, e.tensor) for e in graph.edges})
    last = max(graph.nodes.values(), key=lambda n: int(n.id[1:]))
    assert last.name == "output" and [graph.nodes[e.src].name for e in graph.edges
                                      if e.dst == last.id] == ["sum"]


def test_edges_into_a_run_nested_in_a_representative_are_kept() -> None:
    """Layers fold (2), and inside each a run of sublayers folds (3): the representative
    layer's norm feeds its first sublayer, an edge between a member's own item and a run
    inside it, which the folded graph draws. Every tensor a node reads comes by an edge."""

    class Layer(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.norm = torch.nn.LayerNorm(8)
            self.subs = torch.nn.ModuleList(torch.nn.Linear(8, 8) for _ in range(3))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            h = self.norm(x)
            for sub in self.subs:
                h = sub(h)
            return x + h

    model = torch.nn.Sequential(Layer(), Layer())
    graph = trace(model, torch.empty(2, 8, device="meta"))
    assert_sound_folded_graph(graph)
    by_path = {c.path: c for c in graph.modules.values()}
    assert by_path["0"].repeat.count == 2 and by_path["0.subs.0"].repeat.count == 3
    norm = next(graph.nodes[c] for c in by_path["0.norm"].children)
    first = next(graph.nodes[c] for c in by_path["0.subs.0"].children)
    assert [(e.src, e.tensor) for e in graph.edges if e.dst == first.id] == [
        (norm.id, norm.outputs[0])]
    arriving = {(e.dst, e.tensor) for e in graph.edges}
    assert [(n.name, t) for n in graph.nodes.values() for t in n.inputs
            if (n.id, t) not in arriving] == []
