"""Concrete integer ops whose CPU kernel lacks their dtype, run widened in a meta trace: the
model's code gets the values it would on a device that has the kernel, or the trace says it
assumed them."""

from __future__ import annotations

from typing import Any

import torch

from model_trace.tracing import trace

EXPERTS = [0, 2, 2, 3, 1, 2]


def test_a_mask_stays_a_mask_when_the_tensor_it_picks_from_is_widened() -> None:
    """uint16 has no ``masked_fill`` kernel on the CPU (nor ``x[mask] = v``, which runs
    it); widened to int64 the counts get one, and the boolean mask must stay boolean."""
    seen: dict[str, torch.Tensor] = {}

    def drop_full_experts(x: torch.Tensor, experts: torch.Tensor) -> torch.Tensor:
        counts = experts.to(torch.uint16)
        seen["filled"] = counts.masked_fill(experts == 2, 9)
        counts[experts == 3] = 5
        seen["assigned"] = counts
        return x * 2

    premise = torch.tensor(EXPERTS).to(torch.uint16)
    try:
        premise.masked_fill(premise == 2, 9)
    except (RuntimeError, NotImplementedError) as error:
        assert "not implemented for 'UInt16'" in str(error)
    else:
        raise AssertionError("the premise: the CPU has no uint16 masked_fill")
    graph = trace(drop_full_experts, torch.empty(6, 8, device="meta"), torch.tensor(EXPERTS))
    assert seen["filled"].tolist() == [0, 9, 9, 3, 1, 9]
    assert seen["assigned"].tolist() == [0, 2, 2, 5, 1, 2]
    assert {t.dtype for t in seen.values()} == {torch.uint16}
    assert graph.meta["assumptions"] == []  # computed, not assumed


def _int64_only(name: str, kernel: Any) -> Any:
    """A CPU kernel as an extension might ship one: for int64 indices only."""
    def run(ids: torch.Tensor, *rest: torch.Tensor) -> Any:
        if ids.dtype != torch.int64:
            raise NotImplementedError(f'"{name}" not implemented for {ids.dtype}')
        return kernel(ids, *rest)
    return run


def test_a_widened_op_gets_its_float_arguments_as_they_are() -> None:
    """Only the integer tensors are widened: real float weights beside int32 indices keep
    their fractions."""
    library = torch.library.Library("model_trace_widen_weigh", "DEF")
    library.define("weigh(Tensor ids, Tensor weights) -> Tensor")
    library.impl("weigh", _int64_only("weigh", lambda ids, weights: weights[ids]), "CPU")
    library.impl("weigh", lambda ids, weights: weights.new_empty(ids.shape), "Meta")
    seen: dict[str, torch.Tensor] = {}

    def weighted(x: torch.Tensor, experts: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        seen["weights"] = torch.ops.model_trace_widen_weigh.weigh(experts.int(), weights)
        return x * 2

    graph = trace(weighted, torch.empty(6, 8, device="meta"), torch.tensor(EXPERTS),
                  torch.tensor([0.5, 1.25, 2.75, 3.5]))
    assert seen["weights"].tolist() == [0.5, 2.75, 2.75, 3.5, 1.25, 2.75]
    assert seen["weights"].dtype == torch.float32
    assert graph.meta["assumptions"] == []


def test_a_widened_result_its_meta_kernel_disagrees_with_is_assumed_not_passed_on() -> None:
    """An op whose result's shape depends on its values (one row per distinct expert) and
    whose meta kernel can only guess it (one per token): the widened run's answer does not
    fit what the op declares, so the outputs are taken as zeros of the declared shapes and
    the op is marked, as for an op with no kernel at all."""
    library = torch.library.Library("model_trace_widen_distinct", "DEF")
    library.define("distinct(Tensor ids) -> (Tensor, Tensor)")
    library.impl("distinct", _int64_only("distinct", lambda ids: (torch.unique(ids),
                                                                   ids.sort().values)), "CPU")
    library.impl("distinct", lambda ids: (torch.empty_like(ids), torch.empty_like(ids)),
                 "Meta")
    seen: list[torch.Tensor] = []

    def distinct(x: torch.Tensor, experts: torch.Tensor) -> torch.Tensor:
        seen.extend(torch.ops.model_trace_widen_distinct.distinct(experts.int()))
        return x * 2

    premise = torch.ops.model_trace_widen_distinct.distinct(torch.tensor(EXPERTS))
    assert [len(t) for t in premise] == [4, 6]  # the shapes do disagree for one output
    graph = trace(distinct, torch.empty(6, 8, device="meta"), torch.tensor(EXPERTS))
    assert [(t.tolist(), t.dtype) for t in seen] == [([0] * 6, torch.int32)] * 2
    (assumed,) = graph.meta["assumptions"]
    assert (assumed["kind"], assumed["op"]) == ("kernel", "distinct")
