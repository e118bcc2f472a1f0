"""The op table: one row per op, and what the tracer derives from it per function."""

from __future__ import annotations

import pytest
import torch

from model_trace.tracing.op_info import OpInfo
from model_trace.tracing.op_table import _rows, _table, category_of, facts_of, gathers_rows


def test_an_op_listed_twice_is_refused() -> None:
    with pytest.raises(ValueError, match="topk listed twice"):
        _table(_rows("reduce", "sum topk"), _rows("other", "topk", role="routing"))


def test_each_function_gets_its_facts_from_the_table() -> None:
    add_ = OpInfo.of(torch.Tensor.add_)
    assert (add_.name, add_.category, add_.mutates, add_.in_place) == ("add_", "elementwise",
                                                                       "self", True)
    topk = OpInfo.of(torch.topk)
    assert topk.role == "routing" and not topk.cacheable  # the policy answers, every time
    index_put = OpInfo.of(torch.Tensor.index_put_)
    assert index_put.indexing and index_put.mutates == "self" and not index_put.in_place
    assert OpInfo.of(torch.Tensor.view).view and OpInfo.of(torch.zeros).factory
    assert OpInfo.of(torch.nn.functional.linear).flops == "linear"
    assert OpInfo.of(torch.matmul).flops == "dispatch"
    assert OpInfo.of(torch.ops.aten.mm.default).flops == "custom"  # by the op's formula
    assert OpInfo.of(torch.Tensor.size).passthrough
    assert OpInfo.of(torch.Tensor.shape.__get__).passthrough  # a property read
    transposed = OpInfo.of(torch.Tensor.T.__get__)
    assert (transposed.category, transposed.view) == ("shape", True)


def test_distributed_functions_are_collectives_where_torch_names_collide() -> None:
    assert facts_of("gather").role == "gather"
    assert facts_of("gather", distributed=True).category == "collective"
    assert category_of("aten::mm.default") == "matmul" and category_of("frobnicate") == "other"
    assert gathers_rows("index_select") and not gathers_rows("embedding")
