"""Folding, property by property: runs found as a brute force finds them, what a fold keeps
(counts, notes, labels, member statistics) and the soundness of the graph it leaves.

Every folded graph of the suite also passes ``folded_graph_checks`` (``tests/conftest.py``);
the tests here make graphs whose folds used to break it."""

from __future__ import annotations

import torch
from folded_graph_checks import folded_graph_problems
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from model_trace.graph import Graph, ModuleCall, Stats
from model_trace.tracing import fold_repeats, trace
from model_trace.tracing.folding import MAX_PERIOD, find_runs


def reference_runs(sequence: list[int], max_period: int) -> list[tuple[int, int, int]]:
    """``find_runs`` by brute force: at each start try every period, keep the longest cover
    (the shorter period on a tie), jump past it."""
    runs = []
    start = 0
    while start < len(sequence):
        best: tuple[int, int] | None = None  # (covered, period)
        for period in range(1, max_period + 1):
            pattern = sequence[start:start + period]
            count = 0
            while sequence[start + count * period:start + (count + 1) * period] == pattern \
                    and len(pattern) == period:
                count += 1
            if count >= 2 and (best is None or count * period > best[0]):
                best = (count * period, period)
        if best is None:
            start += 1
        else:
            runs.append((start, best[1], best[0] // best[1]))
            start += best[0]
    return runs


@settings(max_examples=400, deadline=None)
@given(st.lists(st.integers(0, 3), max_size=24), st.integers(1, 8))
def test_find_runs_matches_a_brute_force_search(sequence: list[int], max_period: int) -> None:
    assert find_runs(sequence, max_period) == reference_runs(sequence, max_period)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(0, 1), min_size=1, max_size=6), st.integers(2, 5),
       st.lists(st.integers(2, 3), max_size=3))
def test_a_pattern_repeated_to_the_end_is_one_run(pattern: list[int], count: int,
                                                  prefix: list[int]) -> None:
    """A run that ends exactly at the end of the sequence, after an unrelated prefix."""
    sequence = prefix + pattern * count
    runs = find_runs(sequence)
    assert runs == reference_runs(sequence, MAX_PERIOD)
    assert runs[-1][0] + runs[-1][1] * runs[-1][2] == len(sequence)


def test_runs_at_the_edges_and_the_period_limit() -> None:
    assert find_runs([1, 2, 3, 3]) == [(2, 1, 2)]  # starts at n - 2
    assert find_runs([7, 7]) == [(0, 1, 2)]
    assert find_runs([1, 2, 1, 2, 1]) == [(0, 2, 2)]
    assert find_runs([1, 2, 3] * 2, max_period=2) == []
    assert find_runs([1, 2, 3] * 2, max_period=3) == [(0, 3, 2)]
    assert MAX_PERIOD == 64  # an iteration of up to 64 items folds by default
    assert find_runs(list(range(64)) * 2) == [(0, 64, 2)]
    assert find_runs(list(range(65)) * 2) == []


# -- folds of small models ---------------------------------------------------------------
class Chain(nn.Module):
    """``layers`` identical linear layers called one after another."""

    def __init__(self, layers: int) -> None:
        super().__init__()
        self.layers = nn.ModuleList(nn.Linear(4, 4) for _ in range(layers))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            x = layer(x)
        return x


class TwoStacks(nn.Module):
    """Two stacks of the same class, 3 and 4 layers deep: folded, ``Linear ×3`` and
    ``Linear ×4`` are different things and must not fold into each other."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Sequential(*(nn.Linear(4, 4) for _ in range(3)))
        self.b = nn.Sequential(*(nn.Linear(4, 4) for _ in range(4)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.b(self.a(x))


class LoopOfModuleAndOps(nn.Module):
    """A loop whose iterations hold a module call and two bare ops."""

    def __init__(self) -> None:
        super().__init__()
        self.layers = nn.ModuleList(nn.Linear(4, 4) for _ in range(3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            x = torch.relu(layer(x)) * 2
        return x


def _summed(stats: list[Stats]) -> Stats:
    total = Stats()
    for item in stats:
        total.add(item)
    return total


def _repeats(graph: Graph) -> list[ModuleCall]:
    return [call for call in graph.walk_modules() if call.repeat is not None]


def test_two_identical_calls_fold_into_one_with_count_two() -> None:
    graph = trace(Chain(2), torch.randn(2, 4))
    (folded,) = _repeats(graph)
    assert (folded.path, folded.repeat.count) == ("layers.0", 2)
    assert folded.repeat.members == ["layers.0", "layers.1"]
    assert [c.path for c in graph.walk_modules()] == ["", "layers.0"]


def test_runs_of_different_counts_stay_apart() -> None:
    graph = trace(TwoStacks(), torch.randn(2, 4))
    calls = [(c.path, c.repeat.count if c.repeat else 1) for c in graph.walk_modules()]
    assert calls == [("", 1), ("a", 1), ("a.0", 3), ("b", 1), ("b.0", 4)]


def test_an_ops_only_loop_is_labelled_by_iteration() -> None:
    def repeated(x: torch.Tensor) -> torch.Tensor:
        for _ in range(5):
            x = torch.relu(x * 2)
        return x

    graph = trace(repeated, torch.randn(3))
    (loop,) = _repeats(graph)
    assert loop.kind == "loop" and loop.path == ""
    assert loop.repeat.members == ["#0", "#1", "#2", "#3", "#4"]
    assert loop.repeat.note == "5 iterations"
    assert [graph.nodes[c].name for c in loop.children] == ["mul", "relu"]


def test_an_ops_only_loop_inside_a_module_names_its_iterations_by_the_module() -> None:
    class Block(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            x = x.clone()  # so the first iteration, too, reads a value made in here
            for _ in range(3):
                x = torch.sigmoid(x + 1)
            return x

    class Outer(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.block = Block()

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.block(x)

    (loop,) = _repeats(trace(Outer(), torch.randn(3)))
    assert loop.repeat.members == ["block#0", "block#1", "block#2"]
    assert loop.repeat.note == "3 iterations"


class TwoContainers(nn.Module):
    """A loop whose iterations call a module of each of two containers."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.ModuleList(nn.Linear(4, 4) for _ in range(3))
        self.b = nn.ModuleList(nn.Linear(4, 4) for _ in range(3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for first, second in zip(self.a, self.b, strict=True):
            x = torch.relu(second(first(x)))
        return x


def test_a_loop_over_two_containers_takes_the_path_of_its_parent() -> None:
    (loop,) = _repeats(trace(TwoContainers(), torch.randn(2, 4)))
    assert loop.kind == "loop" and loop.path == "" and loop.repeat.count == 3
    assert loop.repeat.members == ["a.0", "a.1", "a.2"]  # named by their first module


def test_iterations_fed_from_different_places_do_not_fold_together() -> None:
    """An op's signature says which inputs come from sibling ops: the first iteration reads
    the module's input, the others the previous iteration, so only two are alike (and two
    iterations of bare ops are too few to fold)."""
    class Block(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            for _ in range(3):
                x = torch.sigmoid(x + 1)
            return x

    class Outer(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.block = Block()

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.block(x)

    graph = trace(Outer(), torch.randn(3))
    assert not _repeats(graph)
    assert [n.name for n in graph.nodes.values() if n.kind == "op"] == ["add", "sigmoid"] * 3


def test_three_bare_ops_fold_and_two_stay() -> None:
    three = trace(lambda x: torch.tanh(torch.tanh(torch.tanh(x))), torch.randn(3))
    (loop,) = _repeats(three)
    assert loop.repeat.count == 3
    two = trace(lambda x: torch.tanh(torch.tanh(x)), torch.randn(3))
    assert not _repeats(two)


def test_a_loop_member_counts_its_bare_ops_too() -> None:
    model = LoopOfModuleAndOps()
    graph = trace(model, torch.randn(2, 4))
    unfolded = trace(model, torch.randn(2, 4), fold=False)
    (loop,) = _repeats(graph)
    assert loop.kind == "loop" and loop.repeat.count == 3
    assert loop.path == "layers"  # every module inside lies in one container
    assert loop.repeat.members == ["layers.0", "layers.1", "layers.2"]
    # per iteration: the linear's output, relu's and mul's (2 x 4 floats each)
    assert [s.activation_bytes for s in loop.repeat.member_stats] == [3 * 2 * 4 * 4] * 3
    assert _summed(loop.repeat.member_stats) == unfolded.modules[unfolded.root].stats
    assert loop.stats == loop.repeat.member_stats[0]


def test_idle_experts_are_counted_in_the_loop_note(build_tiny) -> None:
    """``first`` routing: 4 of 16 experts get every token."""
    tokens = torch.zeros(2, 8, dtype=torch.int64, device="meta")
    graph = trace(build_tiny(), tokens, routing="first")
    loops = [c for c in _repeats(graph) if c.kind == "loop"]
    assert [c.path for c in loops] == ["layers.1.ffn.experts"]
    assert loops[0].repeat.count == 4
    assert loops[0].repeat.note == "Expert ×4 of 16 called, 4 active per token"
    assert loops[0].repeat.members == [f"layers.1.ffn.experts.{i}" for i in range(4)]


def test_folding_keeps_totals_and_leaves_a_sound_graph(build_tiny, tiny_tokens) -> None:
    for routing in ("balanced", "random:3", "first"):
        unfolded = trace(build_tiny(), tiny_tokens.to("meta"), routing=routing, fold=False)
        before = unfolded.modules[unfolded.root].stats.copy()
        counts = (len(unfolded.modules), len(unfolded.nodes), len(unfolded.tensors),
                  len(unfolded.edges))
        folded = fold_repeats(unfolded)
        assert folded_graph_problems(folded) == []
        assert folded.modules[folded.root].stats == before
        assert folded.meta["folded"]["before"] == dict(zip(
            ("modules", "nodes", "tensors", "edges"), counts, strict=True))
        assert len(folded.nodes) < counts[1]


def _first_child_call(graph: Graph) -> ModuleCall:
    return next(call for call in graph.modules.values() if call.parent is not None)


def test_the_checks_notice_a_broken_graph() -> None:
    """The integrity checks themselves: each kind of damage is reported."""
    graph = trace(Chain(3), torch.randn(2, 4))
    assert folded_graph_problems(graph) == []
    edge = graph.edges[0]
    damages = {
        "duplicate edge": lambda g: g.edges.append(g.edges[0]),
        "self-loop": lambda g: setattr(g.edges[0], "dst", edge.src),
        "missing producer": lambda g: setattr(g.tensors[edge.tensor], "producer", "n999"),
        "repeated input": lambda g: g.nodes[edge.dst].inputs.append(edge.tensor),
        "missing child": lambda g: g.modules[g.root].children.append("m999"),
        "missing tensor": lambda g: setattr(g.edges[0], "tensor", "t999"),
        "wrong parent": lambda g: setattr(_first_child_call(g), "parent", "m999"),
        "wrong count": lambda g: setattr(_first_child_call(g).repeat, "count", 4),
        "stale totals": lambda g: g.edges.pop(),
    }
    for name, damage in damages.items():
        copy = Graph.from_json(graph.to_json())
        damage(copy)
        assert folded_graph_problems(copy), name
