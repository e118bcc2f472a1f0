"""Routing policies against group masks that plain round robin does not satisfy by accident,
their answers' independence, the fixed policy's bounds and what each policy describes."""

from __future__ import annotations

import re

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from model_trace.tracing import (
    BalancedRouting,
    FixedRouting,
    RandomRouting,
    RoutingPolicy,
    routing_policy,
    trace,
)


def _group_mask(rows: int, groups: int, size: int, allowed_groups: list[list[int]]
                ) -> torch.Tensor:
    """(rows, groups * size) mask: row r may use the groups ``allowed_groups[r % len]``."""
    mask = torch.zeros(rows, groups, dtype=torch.bool)
    for row in range(rows):
        mask[row, allowed_groups[row % len(allowed_groups)]] = True
    return mask.repeat_interleave(size, dim=1)


def _loads(chosen: torch.Tensor, choices: int) -> list[int]:
    return torch.bincount(chosen.flatten(), minlength=choices).tolist()


def _inside(chosen: torch.Tensor, allowed: torch.Tensor) -> bool:
    return bool(allowed.gather(1, chosen).all())


def _distinct(chosen: torch.Tensor) -> bool:
    return all(len(set(row)) == len(row) for row in chosen.tolist())


# Row r may use groups r + 2 and r + 3 (mod 4): the groups a round robin over the experts
# (row r takes experts 4r..4r+3, group r mod 4) never picks.
AWAY_FROM_ROUND_ROBIN = [[(r + 2) % 4, (r + 3) % 4] for r in range(4)]


def test_balanced_keeps_to_groups_round_robin_would_miss() -> None:
    allowed = _group_mask(32, 4, 4, AWAY_FROM_ROUND_ROBIN)
    chosen = BalancedRouting().choose(rows=32, choices=16, k=4, allowed=allowed)
    assert _inside(chosen, allowed) and _distinct(chosen)
    assert _loads(chosen, 16) == [8] * 16


def test_balanced_spreads_over_one_allowed_group_only() -> None:
    """Every row may use group 3 only: its 4 experts take every token."""
    allowed = _group_mask(10, 4, 4, [[3]])
    chosen = BalancedRouting().choose(rows=10, choices=16, k=4, allowed=allowed)
    assert _loads(chosen, 16) == [0] * 12 + [10] * 4


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 24), st.integers(1, 3), st.data())
def test_every_policy_honours_any_group_mask(rows: int, k: int, data: st.DataObject) -> None:
    """Masks drawn at random (each row keeps at least k experts): balanced and random pick
    only allowed experts, distinct in each row."""
    groups, size = 4, 2
    kept = [data.draw(st.lists(st.integers(0, groups - 1), min_size=(k + size - 1) // size,
                               max_size=groups, unique=True)) for _ in range(rows)]
    allowed = _group_mask(rows, groups, size, kept)
    for policy in (BalancedRouting(), RandomRouting(data.draw(st.integers(0, 5)))):
        chosen = policy.choose(rows=rows, choices=groups * size, k=k, allowed=allowed)
        assert chosen.shape == (rows, k)
        assert _inside(chosen, allowed) and _distinct(chosen), policy.name


def test_random_keeps_to_the_mask_and_uses_all_of_it() -> None:
    allowed = _group_mask(400, 4, 4, AWAY_FROM_ROUND_ROBIN)
    chosen = RandomRouting(1).choose(rows=400, choices=16, k=4, allowed=allowed)
    assert _inside(chosen, allowed)
    loads = _loads(chosen, 16)
    assert min(loads) > 0 and sum(loads) == 1600


def test_one_policy_asked_with_two_masks_answers_each() -> None:
    policy = BalancedRouting()
    low = _group_mask(8, 4, 4, [[0, 1]])
    high = _group_mask(8, 4, 4, [[2, 3]])
    first = policy.choose(rows=8, choices=16, k=4, allowed=low)
    second = policy.choose(rows=8, choices=16, k=4, allowed=high)
    assert _inside(first, low) and _inside(second, high)
    unmasked = policy.choose(rows=8, choices=16, k=4, allowed=None)
    assert _loads(unmasked, 16) == [2] * 16


def test_a_remembered_answer_is_not_shared_with_the_caller() -> None:
    policy = BalancedRouting()
    first = policy.choose(rows=4, choices=8, k=2, allowed=None)
    expected = first.clone()
    first.fill_(7)  # a caller writing into its indices in place
    assert torch.equal(policy.choose(rows=4, choices=8, k=2, allowed=None), expected)


def test_balanced_answers_the_same_question_the_same_way() -> None:
    allowed = _group_mask(16, 4, 4, AWAY_FROM_ROUND_ROBIN)
    one = BalancedRouting().choose(rows=16, choices=16, k=4, allowed=allowed)
    two = BalancedRouting().choose(rows=16, choices=16, k=4, allowed=allowed)
    assert torch.equal(one, two)


def test_balanced_load_stays_even_in_every_prefix_of_rows() -> None:
    """Least loaded first: after any number of rows no expert leads another by more than one
    row's worth (a token's k picks)."""
    chosen = BalancedRouting().choose(rows=12, choices=8, k=3, allowed=None)
    for rows in range(1, 13):
        loads = _loads(chosen[:rows], 8)
        assert max(loads) - min(loads) <= 1, (rows, loads)


# -- fixed routing -------------------------------------------------------------------------
@pytest.mark.parametrize("experts", [[3, 16], [16], [[0, 1], [2, 16]]])
def test_fixed_indices_out_of_range_take_the_first_k(experts: list) -> None:
    """An index equal to the number of choices cannot be taken: the first k are."""
    k = 2 if isinstance(experts[0], list) or len(experts) == 2 else 1
    chosen = FixedRouting(experts).choose(rows=3, choices=16, k=k, allowed=None)
    assert chosen.tolist() == [list(range(k))] * 3


def test_fixed_indices_just_inside_the_range_are_taken() -> None:
    chosen = FixedRouting([15, 0]).choose(rows=2, choices=16, k=2, allowed=None)
    assert chosen.tolist() == [[15, 0], [15, 0]]
    per_row = FixedRouting([[1], [15]]).choose(rows=5, choices=16, k=1, allowed=None)
    assert per_row.tolist() == [[1], [15], [1], [15], [1]]


def test_fixed_lists_too_short_for_k_take_the_first_k() -> None:
    chosen = FixedRouting([[4, 5, 6], [7]]).choose(rows=2, choices=16, k=2, allowed=None)
    assert chosen.tolist() == [[0, 1], [0, 1]]


@pytest.mark.parametrize("experts", [[-1, 2], [0, -3], [[1, 2], [-1, 0]], [2, 2]])
def test_fixed_refuses_negative_or_repeated_indices(experts: list) -> None:
    with pytest.raises(ValueError, match="must be distinct indices >= 0"):
        FixedRouting(experts)


def test_fixed_accepts_index_zero_and_per_row_lists() -> None:
    assert FixedRouting([0]).table == [[0]]
    assert FixedRouting([[0, 1], [1, 0]]).table == [[0, 1], [1, 0]]


# -- names and descriptions ----------------------------------------------------------------
@pytest.mark.parametrize(("spec", "described"), [
    (None, {"policy": "balanced"}),
    ("balanced", {"policy": "balanced"}),
    ("random", {"policy": "random", "seed": 0}),
    ("uniform", {"policy": "random", "seed": 0}),
    ("random:7", {"policy": "random", "seed": 7}),
    ("first", {"policy": "first"}),
    ([4, 2], {"policy": "fixed", "experts": [4, 2]}),
    ([[4, 2], [1, 3]], {"policy": "fixed", "experts": [[4, 2], [1, 3]]}),
])
def test_each_spelling_describes_its_policy(spec: object, described: dict) -> None:
    assert routing_policy(spec).describe() == described  # type: ignore[arg-type]


def test_first_routing_takes_experts_zero_to_k() -> None:
    chosen = routing_policy("first").choose(rows=3, choices=8, k=2, allowed=None)
    assert chosen.tolist() == [[0, 1]] * 3


def test_a_policy_object_is_used_as_it_is() -> None:
    policy = RandomRouting(5)
    assert routing_policy(policy) is policy


@pytest.mark.parametrize("spec", ["smart", "first:3", "Balanced", ""])
def test_unknown_names_are_refused_with_the_choices(spec: str) -> None:
    with pytest.raises(ValueError, match="balanced, random, first"):
        routing_policy(spec)


@pytest.mark.parametrize("spec", ["random:abc", "random:", "random:-1", "balanced:2"])
def test_a_seed_is_a_number_after_random_only(spec: str) -> None:
    with pytest.raises(ValueError, match=r"random:SEED"):
        routing_policy(spec)


def test_balanced_gives_each_allowed_group_an_equal_share_of_a_row() -> None:
    """k = 4 over 2 allowed groups: 2 experts in each, as a trained gate spreads them."""
    allowed = _group_mask(32, 4, 4, AWAY_FROM_ROUND_ROBIN)
    chosen = BalancedRouting().choose(rows=32, choices=16, k=4, allowed=allowed)
    for row in chosen.tolist():
        per_group = [sum(1 for e in row if e // 4 == g) for g in range(4)]
        assert sorted(per_group) == [0, 0, 2, 2], row


def test_balanced_with_fewer_allowed_than_k_adds_the_least_loaded_others() -> None:
    """A gate's top-k takes masked experts when too few are left: all allowed ones first."""
    allowed = torch.zeros(6, 8, dtype=torch.bool)
    allowed[:, :2] = True
    chosen = BalancedRouting().choose(rows=6, choices=8, k=4, allowed=allowed)
    assert _distinct(chosen)
    assert all({0, 1} <= set(row) for row in chosen.tolist())
    others = _loads(chosen, 8)[2:]
    assert sum(others) == 12 and max(others) - min(others) <= 1


def test_every_name_an_error_offers_is_a_policy() -> None:
    with pytest.raises(ValueError) as raised:
        routing_policy("smart")
    offered = re.search(r"use one of ([a-z, ]+) \(", str(raised.value))
    assert offered, str(raised.value)
    names = offered[1].split(", ")
    assert [routing_policy(name).describe()["policy"] for name in names] == names


def test_the_example_a_group_limit_error_offers_is_a_routing_the_gate_accepts() -> None:
    allowed = torch.zeros(4, 16, dtype=torch.bool)
    allowed[:, 4:12] = True  # the gate kept groups 1 and 2 (of 4 groups of 4)
    policy = FixedRouting([5, 9, 13, 14])
    policy.choose(4, 4, 2, None)  # the group choice: 2 of 4 groups
    with pytest.raises(ValueError) as raised:
        policy.choose(4, 16, 4, allowed)
    example = [int(e) for e in re.search(r"e\.g\. \[([0-9, ]+)\]", str(raised.value))[1]
               .split(", ")]
    assert len(example) == 4 and len(set(example)) == 4
    fixed = FixedRouting(example)
    fixed.choose(4, 4, 2, None)
    assert fixed.choose(4, 16, 4, allowed).tolist() == [example] * 4


def test_balanced_ties_go_round_robin() -> None:
    policy = BalancedRouting()
    assert policy.choose(4, 8, 2, None).tolist() == [[0, 1], [2, 3], [4, 5], [6, 7]]
    everything = torch.ones(4, 8, dtype=torch.bool)  # evenly spaced, offsets in turn
    assert policy.choose(4, 8, 2, everything).tolist() == [[0, 4], [1, 5], [2, 6], [3, 7]]


def test_random_routing_is_seeded_with_0_unless_told() -> None:
    assert torch.equal(RandomRouting().choose(6, 16, 4, None),
                       routing_policy("random").choose(6, 16, 4, None))
    assert RandomRouting().describe() == {"policy": "random", "seed": 0}


def test_a_list_of_experts_is_described_as_fixed_routing() -> None:
    assert routing_policy([3, 1]).describe() == {"policy": "fixed", "experts": [3, 1]}
    assert routing_policy([[0, 1], [2, 3]]).describe() == {"policy": "fixed",
                                                          "experts": [[0, 1], [2, 3]]}


# -- a policy of the user's own, the fixed policy's state and inputs -------------------------
class _Mirrored(RoutingPolicy):
    """A policy of a user's own, with no name: the last ``k`` choices for every row."""

    def choose(self, rows: int, choices: int, k: int, allowed: torch.Tensor | None
               ) -> torch.Tensor:
        return torch.arange(choices - k, choices).expand(rows, k).clone()


def test_a_policy_of_the_user_s_own_is_named_by_its_class_and_must_choose() -> None:
    assert _Mirrored().describe() == {"policy": "_Mirrored"}

    class Undecided(RoutingPolicy):
        """Forgets ``choose``: the first gate that asks it says so."""

    with pytest.raises(NotImplementedError, match=r"Undecided defines no choose\("):
        Undecided().choose(2, 4, 1, None)


def test_a_traced_gate_under_a_policy_of_the_user_s_own_says_which() -> None:
    class Gate(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.proj = torch.nn.Linear(8, 6)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.proj(x).topk(2, dim=-1).indices

    graph = trace(Gate(), torch.empty(3, 8, device="meta"), routing=_Mirrored())
    assert graph.meta["routing"] == {"policy": "_Mirrored", "decisions": 1}
    (output,) = (n for n in graph.nodes.values() if n.kind == "output")
    assert graph.tensors[output.inputs[0]].device == "cpu"


def test_fixed_refuses_a_mix_of_indices_and_lists() -> None:
    for experts in ([1, [2, 3]], [[2, 3], 1]):
        with pytest.raises(ValueError, match="a list of expert indices or a list of such lists"):
            FixedRouting(experts)  # type: ignore[arg-type]


def test_fixed_restores_the_request_it_had_seen() -> None:
    """Its state is the last request, which decides whether the next one is a group choice
    whose limit a list must keep: restored, the same list is refused again."""
    fixed = FixedRouting([0, 8])  # two of 4 groups of 4
    allowed = _group_mask(2, 4, 4, [[0, 2]])
    fixed.choose(2, 4, 1, None)  # the gate keeps 1 of its 4 groups
    state = fixed.replay_state()
    assert state == ("previous", (4, 1))
    assert fixed.choose(2, 16, 2, None).tolist() == [[0, 8]] * 2  # no mask: taken
    assert fixed.choose(2, 16, 2, allowed).tolist() == [[0, 8]] * 2  # not after a group
    # choice now: taken
    fixed.restore_state(state)
    assert fixed.replay_state() == state
    with pytest.raises(ValueError, match="experts in 2 groups, but the gate keeps at most 1"):
        fixed.choose(2, 16, 2, allowed)


def test_fixed_after_a_choice_over_as_many_choices_checks_no_group_limit() -> None:
    """A top-2 then a top-4 over the same 16 experts: the first is no choice of groups (16
    groups of one expert each), so the list is not held to 2 experts."""
    fixed = FixedRouting([0, 5, 9, 13])
    fixed.choose(3, 16, 2, None)
    everything = torch.ones(3, 16, dtype=torch.bool)
    assert fixed.choose(3, 16, 4, everything).tolist() == [[0, 5, 9, 13]] * 3


def test_balanced_takes_exactly_k_allowed_choices_in_their_order() -> None:
    """A row allowed exactly ``k`` choices takes those, in order, whatever the rows before it
    took: each row is the same answer."""
    allowed = _group_mask(6, 4, 4, [[1]])  # one group of 4 for every row, k = 4
    chosen = BalancedRouting().choose(6, 16, 4, allowed)
    assert chosen.tolist() == [[4, 5, 6, 7]] * 6
    everything = torch.ones(5, 6, dtype=torch.bool)
    assert BalancedRouting().choose(5, 6, 6, everything).tolist() == [list(range(6))] * 5


def test_balanced_takes_the_least_loaded_evenly_spaced_choices_of_each_row() -> None:
    """Its promise, row by row, against a plain reading of it: of the ways to take ``k``
    choices evenly spaced over the row's allowed ones (each offset within the gap between
    two slots), the one with the least total load so far, then the least peak load, then
    the next offset in turn. Masks of every shape: groups of several sizes, kept per row."""
    generator = torch.Generator().manual_seed(7)
    checked = 0
    for _ in range(300):
        choices = int(torch.randint(2, 33, (1,), generator=generator))
        k = int(torch.randint(1, choices + 1, (1,), generator=generator))
        rows = int(torch.randint(1, 25, (1,), generator=generator))
        sizes = [s for s in range(1, choices + 1) if choices % s == 0]
        size = sizes[int(torch.randint(0, len(sizes), (1,), generator=generator))]
        groups = choices // size
        kept = int(torch.randint(1, groups + 1, (1,), generator=generator))
        picks = [torch.randperm(groups, generator=generator)[:kept].tolist()
                 for _ in range(rows)]
        allowed = _group_mask(rows, groups, size, picks)
        chosen = BalancedRouting().choose(rows, choices, k, allowed).tolist()
        load = [0] * choices
        for row in range(rows):
            positions = allowed[row].nonzero().flatten().tolist()
            if len(positions) >= k:
                count, gap = len(positions), -(-len(positions) // k)
                ways = {offset: [positions[(i * count // k + offset) % count] for i in range(k)]
                        for offset in range(gap)}
                best = min(ways, key=lambda offset: (sum(load[c] for c in ways[offset]),
                                                     max(load[c] for c in ways[offset]),
                                                     (offset - row) % gap))
                assert chosen[row] == ways[best], (rows, choices, k, row)
                checked += 1
            for choice in chosen[row]:
                load[choice] += 1
    assert checked > 1000
