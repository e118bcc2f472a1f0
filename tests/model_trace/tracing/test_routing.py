"""Routing policies give the expert loads they promise, alone and inside a traced MoE."""

from __future__ import annotations

import pytest
import torch

from model_trace.tracing import (
    BalancedRouting,
    FixedRouting,
    RandomRouting,
    routing_policy,
    trace,
)


def _loads(chosen: torch.Tensor, choices: int) -> list[int]:
    return torch.bincount(chosen.flatten(), minlength=choices).tolist()


def _distinct_per_row(chosen: torch.Tensor) -> bool:
    return all(len(set(row)) == len(row) for row in chosen.tolist())


def test_balanced_gives_every_choice_the_same_load() -> None:
    chosen = BalancedRouting().choose(rows=48, choices=16, k=4, allowed=None)
    assert chosen.shape == (48, 4) and _distinct_per_row(chosen)
    assert _loads(chosen, 16) == [12] * 16


def test_balanced_keeps_to_allowed_groups_and_stays_balanced() -> None:
    """4 groups of 4 choices, 2 groups allowed per row (as a group-limited gate leaves)."""
    rows = torch.arange(32)
    groups = torch.zeros(32, 4, dtype=torch.bool)
    groups[rows, rows % 4] = groups[rows, (rows + 1) % 4] = True  # row r: groups r, r + 1
    allowed = groups.repeat_interleave(4, dim=1)  # (32 rows, 16 choices)
    chosen = BalancedRouting().choose(rows=32, choices=16, k=4, allowed=allowed)
    assert all(allowed[r, chosen[r]].all() for r in range(32))
    assert _loads(chosen, 16) == [8] * 16


@pytest.mark.parametrize(("rows", "groups", "kept", "experts", "k"), [
    (128, 8, 4, 256, 8),  # DeepSeek-V3: 8 of 256 experts from 4 of 8 groups
    (128, 8, 3, 160, 6),  # DeepSeek-V2: 6 of 160 experts from 3 of 8 groups
    (32, 4, 2, 16, 4),  # the tiny config
    (3, 8, 4, 256, 8),  # fewer tokens than groups
])
def test_balanced_spreads_each_token_over_all_its_allowed_groups(
        rows: int, groups: int, kept: int, experts: int, k: int) -> None:
    """The expert sets respect the group limit and use every allowed group, k / kept each,
    as a trained group-limited gate does; the load stays as even as the group choice allows."""
    policy = BalancedRouting()
    chosen_groups = policy.choose(rows, groups, kept, None)
    allowed = torch.zeros(rows, groups, dtype=torch.bool).scatter_(1, chosen_groups, True)
    allowed = allowed.repeat_interleave(experts // groups, dim=1)
    chosen = policy.choose(rows, experts, k, allowed)
    assert chosen.shape == (rows, k) and _distinct_per_row(chosen)
    size = experts // groups
    for row in range(rows):
        assert allowed[row, chosen[row]].all()
        per_group = torch.bincount(chosen[row] // size, minlength=groups)
        assert sorted(per_group[per_group > 0].tolist()) == [k // kept] * kept
        assert set((chosen[row] // size).tolist()) == set(chosen_groups[row].tolist())
    loads = _loads(chosen, experts)
    assert max(loads) - min(loads) <= 1


def test_fixed_routing_refuses_lists_that_break_the_group_limit() -> None:
    policy = FixedRouting([3, 5, 9, 12])
    groups = policy.choose(rows=4, choices=4, k=2, allowed=None)  # cannot answer: first 2
    allowed = torch.zeros(4, 4, dtype=torch.bool).scatter_(1, groups, True)
    with pytest.raises(ValueError, match=r"routing \[3, 5, 9, 12\] sends a token to experts "
                       r"in 4 groups, but the gate keeps at most 2 of its 4 groups of 4 "
                       r"experts .* e\.g\. \[3, 5, 0, 1\]"):
        policy.choose(rows=4, choices=16, k=4, allowed=allowed.repeat_interleave(4, dim=1))
    valid = FixedRouting([4, 6, 9, 11])  # groups 1 and 2: within the limit of 2
    valid.choose(rows=4, choices=4, k=2, allowed=None)
    assert valid.choose(4, 16, 4, allowed.repeat_interleave(4, dim=1)).tolist() == [
        [4, 6, 9, 11]] * 4


def test_random_is_uniform_seeded_and_reproducible() -> None:
    first = RandomRouting(7).choose(rows=20_000, choices=16, k=4, allowed=None)
    assert _distinct_per_row(first[:500])
    expected = 20_000 * 4 / 16
    assert all(abs(load - expected) < 0.04 * expected for load in _loads(first, 16))
    again = RandomRouting(7)
    assert torch.equal(again.choose(20_000, 16, 4, None), first)
    again.reset()  # what a trace does first: the same draws again
    assert torch.equal(again.choose(20_000, 16, 4, None), first)
    assert not torch.equal(RandomRouting(8).choose(20_000, 16, 4, None), first)


def test_fixed_takes_the_listed_experts_for_every_row() -> None:
    chosen = FixedRouting([5, 2, 9, 14]).choose(rows=10, choices=16, k=4, allowed=None)
    assert chosen.tolist() == [[5, 2, 9, 14]] * 10
    per_row = FixedRouting([[0, 1], [2, 3], [4, 5]]).choose(rows=4, choices=8, k=2, allowed=None)
    assert per_row.tolist() == [[0, 1], [2, 3], [4, 5], [0, 1]]
    # a request the list cannot answer (choosing 2 of 4 groups) takes the first k
    assert FixedRouting([5, 9]).choose(rows=2, choices=4, k=2, allowed=None).tolist() == [
        [0, 1], [0, 1]]


@pytest.mark.parametrize(("spec", "name"), [(None, "balanced"), ("balanced", "balanced"),
                                            ("random", "random"), ("uniform", "random"),
                                            ("random:3", "random"), ("first", "first"),
                                            ([1, 2], "fixed")])
def test_routing_policy_reads_every_spelling(spec: object, name: str) -> None:
    assert routing_policy(spec).name == name  # type: ignore[arg-type]


def test_fixed_experts_must_be_distinct() -> None:
    with pytest.raises(ValueError, match=r"experts \[1, 1\] must be distinct indices"):
        routing_policy([1, 1])


@pytest.mark.parametrize(("routing", "promised"), [
    ("balanced", lambda loads: loads == [8] * 16),
    ("first", lambda loads: loads == [32] * 4 + [0] * 12),
    ([4, 6, 9, 11], lambda loads: [i for i, n in enumerate(loads) if n] == [4, 6, 9, 11]
     and set(loads) == {0, 32}),
    ("random:11", lambda loads: sum(loads) == 128 and len(set(loads)) > 1),
])
def test_each_policy_gives_a_traced_moe_the_loads_it_promises(build_tiny, routing, promised
                                                              ) -> None:
    """The tiny config: 32 tokens, 16 experts in 4 groups (2 kept per token), 4 per token."""
    tokens = torch.zeros(2, 16, dtype=torch.int64, device="meta")
    graph = trace(build_tiny(), tokens, routing=routing)
    experts = graph.meta["experts"]
    assert list(experts) == ["layers.1.ffn.experts", "layers.2.ffn.experts"]
    for group in experts.values():
        assert group["active_per_token"] == 4
        assert promised(group["tokens"]), group["tokens"]
        assert group["called"] == sum(1 for n in group["tokens"] if n)
    assert graph.meta["routing"]["policy"] == routing_policy(routing).name


def test_random_routing_is_the_same_at_every_trace_and_differs_by_seed(build_tiny) -> None:
    tokens = torch.zeros(1, 64, dtype=torch.int64, device="meta")

    def loads(routing: str) -> list[list[int]]:
        graph = trace(build_tiny(), tokens, routing=routing)
        return [group["tokens"] for group in graph.meta["experts"].values()]

    assert loads("random:4") == loads("random:4")
    assert loads("random:4") != loads("random:5")
