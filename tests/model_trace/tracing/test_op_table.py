"""The op table: one row per op, and what the tracer derives from it per function."""

from __future__ import annotations

import operator
from typing import get_args

import pytest
import torch

from model_trace.tracing.op_info import OpInfo
from model_trace.tracing.op_table import (
    _TABLE,
    CATEGORIES,
    FlopRule,
    Made,
    Role,
    _rows,
    _table,
    category_of,
    facts_of,
    gathers_rows,
)


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


def test_every_row_names_a_known_category_role_flop_rule_and_origin() -> None:
    """A row with an unknown category would draw in no colour; a row whose fields slipped
    (a name where the category goes) would file its ops under a category nobody draws."""
    for name, facts in _TABLE.items():
        assert facts.category in CATEGORIES, name
        assert facts.role in get_args(Role) and facts.flops in get_args(FlopRule), name
        # only factories say where their values come from, and every factory says it
        assert (facts.made in get_args(Made)) and bool(facts.made) == (
            facts.role in ("factory", "like")), name
        assert facts.known and name == name.strip() and " " not in name


# Names the table lists that torch does not spell the same way: our own kernels (the FP8
# model's), ATen names the dispatcher reports without their underscore, and attributes the
# recorder sees through Python's descriptor protocol.
_NOT_IN_TORCH = frozenset({
    "fp8_gemm", "act_quant", "weight_dequant", "weight_quant", "batch_norm_legit",
    "batch_norm_legit_no_training", "gelu_tanh", "rsub_", "where_", "matmul_", "__set__",
    "has_names", "names", "__eq_ne_metadata"})


def test_every_op_the_table_lists_is_one_torch_has() -> None:
    """A misspelt name is a row that never matches: its op falls back to ``other``."""
    spaces = (torch, torch.Tensor, torch.nn.functional, torch.linalg, torch.distributed,
              torch.ops.aten, operator)

    def in_torch(name: str) -> bool:
        return any(hasattr(space, spelling) for space in spaces
                   for spelling in (name, f"__{name}__", f"_{name}"))

    assert sorted(n for n in _TABLE if not in_torch(n)) == sorted(_NOT_IN_TORCH)


def test_view_rows_are_views_in_aten_too() -> None:
    """Where ATen has the op, its schema says the output aliases the input (no bytes are
    written: the statistics count nothing for a view). ``x.data`` shares ``x``'s storage
    though ATen's schema does not say so."""
    checked = 0
    for name, facts in _TABLE.items():
        overload = getattr(getattr(torch.ops.aten, name, None), "default", None)
        if facts.role != "view" or overload is None or name == "data":
            continue
        returns = overload._schema.returns
        assert returns[0].alias_info is not None, name
        checked += 1
    assert checked >= 10


def test_every_collective_is_a_function_of_torch_distributed() -> None:
    from model_trace.tracing.op_table import _COLLECTIVES

    assert all(callable(getattr(torch.distributed, name, None)) for name in _COLLECTIVES)
    assert all(facts_of(name, distributed=True).category == "collective"
               for name in _COLLECTIVES)
