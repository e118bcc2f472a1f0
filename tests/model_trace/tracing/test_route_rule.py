"""The routing rule answers every form of a routing op with the policy's indices."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from model_trace.tracing import BalancedRouting, FixedRouting
from model_trace.tracing.route_rule import RoutingRule
from model_trace.tracing.routing import RoutingPolicy

PICKS = [3, 1, 4, 0, 2, 5]
"""The fixed policy's order: never the order a real top-k or argmax of random scores gives
by accident for every row, and never index 0 first."""


def _route(name: str, func: Any, *args: Any, **kwargs: Any) -> tuple[Any, Any]:
    """(the routed result, the real one) of ``func(*args, **kwargs)``."""
    result = func(*args, **kwargs)
    return RoutingRule(FixedRouting(PICKS)).route(name, args, kwargs, result), result


def _policy_indices(shape: tuple[int, ...], dim: int, k: int) -> torch.Tensor:
    return RoutingRule(FixedRouting(PICKS)).indices(shape, dim, k)


SCORES = torch.randn(6, 6, generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize(("args", "kwargs", "dim", "k"), [
    ((SCORES, 2), {}, -1, 2),
    ((SCORES, 2, 0), {}, 0, 2),
    ((SCORES, 2), {"dim": 0}, 0, 2),
    ((SCORES,), {"k": 3, "dim": 1}, 1, 3),
    ((), {"input": SCORES, "k": 2}, -1, 2),
])
def test_topk_takes_the_policy_s_indices_in_every_argument_form(args, kwargs, dim, k) -> None:
    routed, result = _route("topk", torch.topk, *args, **kwargs)
    assert type(routed) is type(result)
    expected = _policy_indices(SCORES.shape, dim, k)
    assert routed.indices.shape == result.indices.shape == expected.shape
    assert torch.equal(routed.indices, expected)
    assert torch.equal(routed.values, SCORES.gather(dim, expected))  # real scores' values


@pytest.mark.parametrize(("name", "func", "args", "kwargs", "dim"), [
    ("sort", torch.sort, (SCORES,), {}, -1),
    ("sort", torch.sort, (SCORES, 0), {}, 0),
    ("argsort", torch.argsort, (SCORES,), {"dim": 0}, 0),
    ("argsort", torch.argsort, (SCORES, 1), {}, 1),
])
def test_sort_takes_a_whole_permutation_from_the_policy(name, func, args, kwargs, dim) -> None:
    routed, result = _route(name, func, *args, **kwargs)
    expected = _policy_indices(SCORES.shape, dim, SCORES.shape[dim])
    indices = routed if name == "argsort" else routed.indices
    assert type(routed) is type(result) and torch.equal(indices, expected)
    assert torch.equal(indices.sort(dim).values, torch.arange(6).expand_as(indices)
                       if dim != 0 else torch.arange(6)[:, None].expand_as(indices))
    if name == "sort":
        assert torch.equal(routed.values, SCORES.gather(dim, expected))


def test_one_dimensional_and_scalar_scores() -> None:
    row = SCORES[0]
    routed, _ = _route("topk", torch.topk, row, 2)
    assert routed.indices.tolist() == PICKS[:2]
    routed, _ = _route("argmax", torch.argmax, row, 0)
    assert routed.tolist() == PICKS[0]
    routed, _ = _route("max", torch.max, row, 0)
    assert routed.indices.tolist() == PICKS[0] and routed.values == row[PICKS[0]]
    scalar = torch.tensor(2.5)
    for name, func, args in (("topk", torch.topk, (scalar, 1)), ("sort", torch.sort, (scalar,)),
                             ("argmax", torch.argmax, (scalar, 0)),
                             ("max", torch.max, (scalar, 0))):
        routed, _ = _route(name, func, *args)
        indices = routed if isinstance(routed, torch.Tensor) else routed[1]
        assert indices.shape == () and indices.item() == 0, name
        if not isinstance(routed, torch.Tensor):
            assert routed[0] == 2.5


@pytest.mark.parametrize(("name", "func", "args", "kwargs", "dim", "keepdim"), [
    ("argmax", torch.argmax, (SCORES, 1), {}, 1, False),
    ("argmin", torch.argmin, (SCORES, 0), {}, 0, False),
    ("argmax", torch.argmax, (SCORES,), {"dim": 1, "keepdim": True}, 1, True),
    ("argmin", torch.argmin, (SCORES, 1, True), {}, 1, True),
    ("max", torch.max, (SCORES, 1), {}, 1, False),
    ("max", torch.max, (SCORES, 0, True), {}, 0, True),
    ("min", torch.min, (SCORES,), {"dim": 1, "keepdim": True}, 1, True),
    ("min", torch.min, (SCORES, 0), {}, 0, False),
])
def test_arg_and_value_reductions_over_a_dimension_take_the_policy_s_index(
        name, func, args, kwargs, dim, keepdim) -> None:
    routed, result = _route(name, func, *args, **kwargs)
    kept = _policy_indices(SCORES.shape, dim, 1)
    expected = kept if keepdim else kept.squeeze(dim)
    assert type(routed) is type(result)
    indices = routed if name.startswith("arg") else routed.indices
    assert indices.shape == (result if name.startswith("arg") else result.indices).shape
    assert torch.equal(indices, expected)
    if not name.startswith("arg"):
        values = SCORES.gather(dim, kept)
        assert torch.equal(routed.values, values if keepdim else values.squeeze(dim))


def test_whole_tensor_and_elementwise_forms() -> None:
    other = torch.zeros(6, 6)
    for name, func, args in (("max", torch.max, (SCORES,)), ("min", torch.min, (SCORES,)),
                             ("max", torch.max, (SCORES, other)),
                             ("min", torch.min, (SCORES, other))):
        routed, result = _route(name, func, *args)
        assert routed is result, name  # a value, not an index: nothing to choose
    routed, _ = _route("argmax", torch.argmax, SCORES)  # the flattened tensor's index
    assert routed.shape == () and routed.item() == PICKS[0]
    routed, _ = _route("argmin", torch.argmin, SCORES)
    assert routed.item() == PICKS[0]


def test_multinomial_draws_from_the_policy_unless_it_asks_for_more_than_there_are() -> None:
    weights = SCORES.softmax(-1)
    routed, _ = _route("multinomial", torch.multinomial, weights, 2)
    assert torch.equal(routed, _policy_indices(weights.shape, -1, 2))
    routed, _ = _route("multinomial", torch.multinomial, weights, num_samples=2)
    assert torch.equal(routed, _policy_indices(weights.shape, -1, 2))
    routed, _ = _route("multinomial", torch.multinomial, weights, 6)  # every choice, once
    assert torch.equal(routed, _policy_indices(weights.shape, -1, 6))
    routed, result = _route("multinomial", torch.multinomial, weights, 8, True)
    assert routed is result
    routed, result = _route("kthvalue", torch.kthvalue, SCORES, 2)
    assert routed is result


def test_a_group_choice_limits_the_next_choice_of_experts_to_its_groups() -> None:
    """4 groups of 4 experts, 2 groups per token, then 4 experts per token."""
    rule = RoutingRule(BalancedRouting())
    group_scores, expert_scores = torch.randn(8, 4), torch.randn(8, 16)
    groups = rule.route("topk", (group_scores, 2), {"dim": -1},
                        torch.topk(group_scores, 2, dim=-1)).indices
    experts = rule.route("topk", (expert_scores, 4), {},
                         torch.topk(expert_scores, 4)).indices
    assert all(set((experts[r] // 4).tolist()) <= set(groups[r].tolist()) for r in range(8))
    # the limit applies once: the next choice of experts is free again
    free = rule.route("topk", (expert_scores, 4), {}, torch.topk(expert_scores, 4)).indices
    assert torch.equal(free, RoutingRule(BalancedRouting()).indices((8, 16), 1, 4))
    assert rule.decisions == 3 and rule.describe()["decisions"] == 3


def test_a_choice_over_rows_or_of_a_3d_tensor_is_no_group_choice() -> None:
    for shape, dim in (((4, 8), 0), ((2, 4, 4), 2)):
        rule = RoutingRule(BalancedRouting())
        rule.indices(shape, dim, 2)
        assert rule.saved()[1] is None and rule.state()[1] is None
        free = RoutingRule(BalancedRouting()).indices((4, 16), 1, 4)
        assert torch.equal(rule.indices((4, 16), 1, 4), free)


class _Rotating(RoutingPolicy):
    """Each answer starts one choice further than the last: same shape, new choices."""

    name = "rotating"

    def __init__(self) -> None:
        self.turn = 0

    def choose(self, rows: int, choices: int, k: int, allowed: torch.Tensor | None
               ) -> torch.Tensor:
        self.turn += 1
        return ((torch.arange(k) + self.turn) % choices).expand(rows, k).clone()

    def replay_state(self) -> Any:
        return self.turn

    def restore_state(self, state: Any) -> None:
        self.turn = state


def test_the_replay_state_names_the_pending_group_choice_each_time_it_changes() -> None:
    rule = RoutingRule(_Rotating())
    states, choices = [], []
    for _ in range(3):  # three group choices of the same shape, each different
        choices.append(rule.indices((2, 4), 1, 2))
        states.append(rule.state())
        assert rule.state() == states[-1]  # asking again changes nothing
    for i in range(3):
        for j in range(3):
            assert (states[i][1] == states[j][1]) == torch.equal(choices[i], choices[j])
    assert [s[0] for s in states] == [1, 2, 3]
    saved = rule.saved()
    rule.indices((2, 4), 1, 2)
    rule.restore(saved)
    assert rule.state() == states[-1]


def test_a_group_choice_limits_only_a_choice_over_its_rows_and_a_multiple_of_its_groups(
        ) -> None:
    for rows, choices in ((4, 16), (8, 10), (8, 4)):
        rule = RoutingRule(BalancedRouting())
        rule.indices((8, 4), 1, 2)  # 2 of 4 groups for 8 rows
        free = RoutingRule(BalancedRouting()).indices((rows, choices), 1, 2)
        assert torch.equal(rule.indices((rows, choices), 1, 2), free), (rows, choices)


def test_on_meta_scores_the_values_stay_the_kernel_s_and_the_indices_the_policy_s() -> None:
    scores = torch.empty(6, 6, device="meta")
    for name, func in (("max", torch.max), ("min", torch.min), ("topk", torch.topk)):
        args = (scores, 2, 1) if name == "topk" else (scores, 1)
        routed, result = _route(name, func, *args)
        assert routed.values is result.values and not routed.indices.is_meta
        assert torch.equal(routed.indices, _policy_indices((6, 6), 1, 2 if name == "topk"
                                                           else 1).squeeze(-1)
                           if name != "topk" else _policy_indices((6, 6), 1, 2))


def test_pending_group_choices_with_the_same_indices_over_other_shapes_differ() -> None:
    """Balanced answers over (2 rows, 4 groups, 4 kept) and (4 rows, 4 groups, 2 kept) are the
    same numbers, as are (2, 4, 2) and (2, 8, 2); what they allow next is not."""
    for first, second in ((((2, 4), 4), ((4, 4), 2)), (((2, 4), 2), ((2, 8), 2))):
        states = []
        for shape, k in (first, second):
            rule = RoutingRule(BalancedRouting())
            rule.indices(shape, 1, k)
            states.append(rule.state())
        assert states[0] != states[1]
