"""An op's arguments as the recorder sees them: its tensors, whether an output is a view,
and the other values as the short texts a figure shows."""

from __future__ import annotations

import torch

from model_trace.tracing import trace
from model_trace.tracing.arguments import (
    bytes_of,
    format_args,
    format_value,
    shares_memory,
    tensors_in,
    tensors_out,
)

A, B, C, D = (torch.full((1,), float(i)) for i in range(4))


def _same(found: list[torch.Tensor], expected: list[torch.Tensor]) -> bool:
    return len(found) == len(expected) and all(f is e for f, e in zip(found, expected,
                                                                      strict=True))


def test_tensors_are_found_two_levels_into_lists_and_in_keyword_arguments() -> None:
    assert _same(tensors_in((A, 1, [B, (C, 2)], "x"), {"other": D}), [A, B, C, D])
    assert _same(tensors_in(([[A]], ((B,),)), {}), [A, B])
    assert _same(tensors_in(([[[A]]],), {}), [])  # three levels down: not an argument
    assert _same(tensors_in((), {"weight": A, "bias": [B]}), [A, B])


def test_outputs_are_a_tensor_a_sequence_or_a_dict_of_them() -> None:
    assert _same(tensors_out(A), [A])
    assert _same(tensors_out((A, [B, 3])), [A, B])
    assert _same(tensors_out([A, B]), [A, B])
    assert _same(tensors_out({"logits": A, "loss": None, "all": [B]}), [A, B])
    assert tensors_out(3) == [] and tensors_out(None) == []


def test_a_view_shares_memory_with_its_base_and_a_copy_does_not() -> None:
    for device in ("cpu", "meta"):
        x = torch.empty(4, 6, device=device)
        assert shares_memory(x[:, :2], [torch.empty(2, device=device), x]) is True
        assert shares_memory(x.reshape(6, 4), [x]) is True
        assert shares_memory(x.clone(), [x]) is False
        assert shares_memory(x, []) is False
    assert shares_memory(torch.eye(3).to_sparse(), [A]) is None  # no storage to compare


def test_values_as_short_texts() -> None:
    texts = {value if not isinstance(value, list | tuple | slice) else repr(value):
             format_value(value) for value in
             (3, -1.5, True, "mean", None, torch.float16, torch.device("cuda", 1),
              slice(None), slice(None, 2), slice(1, None, 2), slice(1, 4), Ellipsis)}
    assert list(texts.values()) == ["3", "-1.5", "True", "'mean'", "None", "float16", "cuda",
                                    ":", ":2", "1::2", "1:4", "..."]
    assert format_value([1, 2]) == "[1, 2]" and format_value((0, -1)) == "(0, -1)"
    assert format_value(torch.Size([2, 3])) == "(2, 3)"
    assert format_value([[1, 2], None]) == "[[1, 2], None]"
    assert format_value(list(range(8))) == "[0, 1, 2, 3, 4, 5, 6, 7]"
    assert format_value(list(range(9))) is None  # too long to show
    assert format_value([1, object()]) is None  # something without a text
    assert format_value(A) == "T" and format_value(object()) is None


def test_an_op_s_arguments_as_texts() -> None:
    x = torch.ones(2, 3)
    assert format_args("getitem", (x, (slice(None), 0, Ellipsis, x, object())), {}) == {
        "index": "[:, 0, ..., T, ?]"}
    assert format_args("setitem", (x, 1, x), {}) == {"index": "[1]"}
    assert format_args("getitem", (x,), {}) == {}
    # tensors and empty lists are left out, positions named by index, keywords by name
    assert format_args("sum", (x, -1, [], (), True), {"keepdim": False, "out": x,
                                                      "dims": []}) == {
        "arg1": "-1", "arg4": "True", "keepdim": "False", "dims": "[]"}
    many = format_args("op", tuple(range(18)), {})
    assert list(many) == [f"arg{i}" for i in range(18)] and many["arg17"] == "17"
    assert format_args("op", (x, [1, object()], object()), {"mode": object()}) == {}


def test_bytes_are_counted_as_dense_for_a_sparse_tensor_that_has_no_nbytes() -> None:
    """A sparse tensor has no ``nbytes``: it counts as its dense equivalent (numel times the
    element size), so an op reading one still reads a size, not an error."""
    sparse, dense = torch.eye(3).to_sparse(), torch.randn(3, 4)
    assert bytes_of([sparse, dense]) == 9 * 4 + 12 * 4
    graph = trace(lambda a, b: torch.sparse.mm(a, b), sparse, dense)
    (product,) = (n for n in graph.nodes.values() if n.kind == "op")
    assert (product.stats.read_bytes, product.stats.activation_bytes) == (9 * 4 + 12 * 4, 48)
