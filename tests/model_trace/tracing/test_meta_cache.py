"""The meta-kernel cache: a call's key says everything a meta kernel can see, and a cached
answer has the metadata the kernel gave."""

from __future__ import annotations

import itertools
from typing import Any

import torch

from model_trace.tracing.arguments import tensors_in
from model_trace.tracing.meta_cache import MetaResults, call_signature


def _meta(*shape: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    return torch.empty(*shape, dtype=dtype, device="meta")


X = _meta(4, 6)

CALLS: list[tuple[Any, tuple[Any, ...], dict[str, Any]]] = [
    (torch.sum, (X, 0), {}),
    (torch.sum, (X, 1), {}),  # another scalar
    (torch.sum, (X,), {"dim": 1}),  # the same value by name
    (torch.sum, (X,), {"dim": 1, "keepdim": True}),
    (torch.sum, (X,), {"dim": (0, 1)}),
    (torch.sum, (X,), {"dim": (0,)}),  # a shorter list
    (torch.sum, (X,), {"dim": [1]}),
    (torch.sum, (_meta(6, 4), 0), {}),  # another shape
    (torch.sum, (_meta(6, 4).t(), 0), {}),  # another stride
    (torch.sum, (_meta(4, 6, dtype=torch.float16), 0), {}),  # another dtype
    (torch.mean, (X, 0), {}),  # another op
    (torch.Tensor.__getitem__, (X, slice(0, 2)), {}),
    (torch.Tensor.__getitem__, (X, slice(0, 3)), {}),
    (torch.Tensor.__getitem__, (X, (Ellipsis, 0)), {}),
    (torch.Tensor.__getitem__, (X, (0, Ellipsis)), {}),
    (torch.Tensor.to, (X, torch.device("cpu")), {}),
    (torch.Tensor.to, (X, torch.device("meta")), {}),
    (torch.Tensor.contiguous, (X,), {"memory_format": torch.channels_last}),
    (torch.Tensor.contiguous, (X,), {"memory_format": torch.contiguous_format}),
    (torch.add, (X, torch.ones(6)), {}),  # a real tensor: by its shape and dtype
    (torch.add, (X, torch.ones(1, 6)), {}),
    (torch.add, (X, torch.ones(6, dtype=torch.float64)), {}),
]


def test_two_calls_share_a_key_exactly_when_a_meta_kernel_sees_the_same() -> None:
    results = MetaResults()
    keys = [results.key(func, args, kwargs) for func, args, kwargs in CALLS]
    assert all(key is not None for key in keys)
    for (i, a), (j, b) in itertools.combinations(enumerate(keys), 2):
        assert a != b, (CALLS[i], CALLS[j])
    again = [results.key(func, args, kwargs) for func, args, kwargs in CALLS]
    assert again == keys  # the same calls (new tensors of the same metadata): the same keys
    assert results.key(torch.sum, (_meta(4, 6), 0), {}) == keys[0]


def test_calls_whose_output_depends_on_values_are_never_keyed() -> None:
    results = MetaResults()
    mask = torch.tensor([True, False, True, True])
    assert results.key(torch.Tensor.__getitem__, (X, mask), {}) is None  # a boolean mask
    assert results.key(torch.Tensor.__getitem__, (X, (mask, 0)), {}) is None  # inside one
    assert results.key(torch.add, (X,), {"other": object()}) is None  # not describable
    assert results.key(torch.add, (X,), {"alpha": [object()]}) is None
    # no meta tensor: a real computation, whose values matter
    assert results.key(torch.add, (torch.ones(2), torch.ones(2)), {}) is None
    assert results.key(torch.add, ((torch.ones(2), 1.0), 2), {}) is None
    # the signature itself describes them: with their number of meta tensors
    signature = call_signature(torch.add, (torch.ones(2), torch.ones(2)), {})
    assert signature is not None and signature[1] == 0
    assert call_signature(torch.cat, ([X, X, torch.ones(4, 6)],), {"dim": 0})[1] == 2
    assert call_signature(torch.add, (X,), {"other": mask}) is None


def test_in_place_calls_are_keyed_only_when_every_tensor_is_on_meta() -> None:
    results = MetaResults()
    key = results.key_in_place(torch.Tensor.add_, (X, X), {"alpha": 2})
    assert key is not None
    assert key != results.key_in_place(torch.Tensor.add_, (X, X), {"alpha": 3})
    assert results.key_in_place(torch.Tensor.add_, (X, torch.ones(6)), {}) is None
    assert results.key_in_place(torch.Tensor.add_, (X,), {"other": torch.ones(6)}) is None
    assert results.key_in_place(torch.Tensor.index_put_, (X, [torch.zeros(1, dtype=torch.int64)],
                                                          X[0]), {}) is None
    assert results.key_in_place(torch.Tensor.index_put_, (X, [_meta(1, dtype=torch.int64)],
                                                          X[0]), {}) is not None
    assert results.key_in_place(torch.add, (2, X), {}) is None  # no target tensor
    assert results.key_in_place(torch.add, (), {"input": X}) is None
    with torch.inference_mode():  # whether a write is allowed is part of it
        inside = results.key_in_place(torch.Tensor.add_, (X, X), {"alpha": 2})
    assert inside is not None and inside != key


def test_a_cached_answer_has_the_kernel_s_metadata_and_is_counted() -> None:
    results = MetaResults()
    for func, args, kwargs in [(torch.sum, (X.t(), 1), {"keepdim": True}),
                               (torch.Tensor.max, (X, 1), {}),
                               (torch.std_mean, (X, 0), {}),  # a tuple
                               (torch._foreach_add, ([X, X.t()], 1.0), {})]:  # a list
        key = results.key(func, args, kwargs)
        real = func(*args, **kwargs)
        results.put(key, real, (7, ("x",)), tensors_in(args, kwargs))
        hit = results.get(key)
        if isinstance(real, torch.return_types.max):  # integer indices: never cached
            assert hit is None
            continue
        made, cost = hit
        assert cost == (7, ("x",)) and type(made) is type(real)
        for a, b in zip(made if isinstance(made, tuple | list) else [made],
                        real if isinstance(real, tuple | list) else [real], strict=True):
            assert (a.shape, a.stride(), a.dtype, a.is_meta) == (b.shape, b.stride(), b.dtype,
                                                                 True)
    assert results.hits == 3


def test_views_and_empty_or_non_tensor_results_are_not_cached() -> None:
    results = MetaResults()
    key = results.key(torch.Tensor.__getitem__, (X, slice(0, 2)), {})
    results.put(key, X[0:2], (0, ()), [X])  # a view of its input: must stay one
    results.put(("empty",), (), (0, ()), [X])
    results.put(("number",), 3, (0, ()), [X])
    results.put(("mixed",), (X * 2, 3), (0, ()), [X])
    results.put(("real",), torch.ones(2), (0, ()), [X])
    assert results.entries == {}
    assert results.get(key) is None and results.hits == 0
