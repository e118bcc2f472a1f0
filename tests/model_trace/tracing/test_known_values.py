"""Values known without data, carried beside meta tensors."""

from __future__ import annotations

import torch

from model_trace.tracing.known_values import (
    MAX_KNOWN_ELEMENTS,
    attach,
    compute_known,
    forget,
    known,
)


def _meta_with(values: torch.Tensor) -> torch.Tensor:
    tensor = torch.empty(values.shape, device="meta")
    attach(tensor, values)
    return tensor


def test_small_tables_of_the_same_shape_are_carried_and_can_be_forgotten() -> None:
    one_hot = torch.eye(4)
    tensor = _meta_with(one_hot)
    assert known(tensor) is one_hot
    forget(tensor)
    assert known(tensor) is None
    forget(tensor)  # nothing to forget: no error
    # up to 256 KB of float32 (2**16 values): one-hots, masks, tables; no more
    assert MAX_KNOWN_ELEMENTS == 1 << 16
    assert known(_meta_with(torch.zeros(1 << 16))) is not None
    assert known(_meta_with(torch.zeros((1 << 16) + 1))) is None
    other = torch.empty(2, 8, device="meta")
    attach(other, torch.zeros(4, 4))  # the same number of values, another shape
    assert known(other) is None


def test_an_op_on_known_values_computes_them_and_one_unknown_input_stops_it() -> None:
    mask = _meta_with(torch.full((3, 3), float("-inf")).triu(1))
    (result,) = compute_known(torch.Tensor.__add__, (mask, 1.0), {}, [mask])
    assert torch.equal(result, torch.full((3, 3), float("-inf")).triu(1) + 1)
    index = torch.tensor([[2], [0], [1]])  # concrete: used as it is
    (scattered,) = compute_known(torch.scatter, (mask, 1, index), {"value": 5.0},
                                 [mask, index])
    assert scattered[0, 2] == 5 and scattered[1, 0] == 5 and scattered[2, 1] == 5
    unknown = torch.empty(3, 3, device="meta")
    assert compute_known(torch.add, (mask, unknown), {}, [mask, unknown]) is None
    assert compute_known(torch.add, (mask,), {"other": unknown}, [mask, unknown]) is None
    wrong = _meta_with(torch.zeros(2, 2))
    assert compute_known(torch.mm, (mask, wrong), {}, [mask, wrong]) is None  # fails on CPU
