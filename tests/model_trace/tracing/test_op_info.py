"""``OpInfo``: the short name and the facts the recorder works from, per function."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode

from model_trace.tracing import trace
from model_trace.tracing.op_info import (
    OpInfo,
    argument_names,
    function_body,
    op_name,
    writes_in_place,
)


def test_ops_are_named_as_the_table_spells_them() -> None:
    assert op_name(torch.ops.aten.mm) == ("mm", False)  # a packet, called directly
    assert op_name(torch.ops.aten.add.Tensor) == ("add", False)  # an overload
    assert op_name(F.linear) == ("linear", False)
    # torch.mm is equal to torch.spmm, the name torch's override index keeps for both
    assert torch.mm == torch.spmm and op_name(torch.mm) == ("mm", False)
    assert op_name(torch.linalg.vector_norm) == ("vector_norm", False)  # not linalg_...
    assert op_name(torch.Tensor.__add__) == ("add", False)
    assert op_name(torch.Tensor.__radd__) == ("radd", False)
    assert op_name(torch.Tensor.__iadd__) == ("add_", False)  # x += y writes into x
    assert op_name(torch.Tensor.__xor__) == ("xor", False)  # only underscores are stripped
    assert op_name(torch.Tensor.__getitem__) == ("getitem", False)
    # dunders that read a value keep their name: the table lists them as queries
    for query in ("__len__", "__int__", "__index__", "__iter__", "__bool__"):
        assert op_name(getattr(torch.Tensor, query)) == (query, False)


def test_property_reads_are_named_after_the_property() -> None:
    assert op_name(torch.Tensor.T.__get__) == ("T", True)
    assert op_name(torch.Tensor.shape.__get__) == ("shape", True)

    def __get__(value: object) -> object:  # a plain function of that name is no property
        return value

    assert op_name(__get__) == ("get", False)


def test_only_augmented_assignments_are_taken_for_in_place_writes() -> None:
    """``~mask`` (``__invert__``) starts with ``__i`` like ``__iadd__``: it was drawn as
    ``nvert_``, a write into ``mask``. Every ``__i<op>__`` of a tensor whose ``__<op>__``
    exists is an augmented assignment, and only those."""
    dunders = [n for n in dir(torch.Tensor) if n.startswith("__i") and n.endswith("__")]
    assert len(dunders) >= 15
    for name in dunders:
        short, _ = op_name(getattr(torch.Tensor, name))
        augmented = hasattr(torch.Tensor, "__" + name[3:])
        assert (short.endswith("_") and not short.startswith("_")) == augmented, name
        assert OpInfo.of(getattr(torch.Tensor, name)).in_place == augmented, name
    assert op_name(torch.Tensor.__invert__) == ("invert", False)


def test_inverting_a_mask_reads_it_and_leaves_it_as_it_was() -> None:
    def masks(mask: torch.Tensor) -> torch.Tensor:
        kept = ~mask
        return mask.float() + kept.float()

    graph = trace(masks, torch.tensor([True, False, True]))
    (source,) = [n for n in graph.nodes.values() if n.kind == "input"]
    ops = [(n.name, n.category, n.inputs) for n in graph.nodes.values() if n.kind == "op"]
    invert = next(n for n in graph.nodes.values() if n.name == "invert")
    assert ops[:2] == [("invert", "elementwise", source.outputs),
                       ("float", "elementwise", source.outputs)]  # the mask, unchanged
    assert len(invert.outputs) == 1 and invert.outputs != source.outputs
    assert invert.stats.read_bytes == 3 and invert.stats.activation_bytes == 3


def test_facts_of_queries_properties_and_roles() -> None:
    size = OpInfo.of(torch.Tensor.size)
    assert (size.name, size.category, size.role, size.passthrough, size.cacheable) == (
        "size", "other", "query", True, False)
    shape = OpInfo.of(torch.Tensor.shape.__get__)
    assert (shape.category, shape.role, shape.passthrough, shape.cacheable) == (
        "shape", "query", True, False)
    transposed = OpInfo.of(torch.Tensor.T.__get__)  # a view: never cached, never skipped
    assert (transposed.role, transposed.view, transposed.passthrough,
            transposed.cacheable) == ("view", True, False, False)
    assert OpInfo.of(torch.Tensor.__getitem__).indexing  # a gather
    assert OpInfo.of(torch.Tensor.__setitem__).indexing  # indexing
    assert not OpInfo.of(torch.add).indexing and not OpInfo.of(torch.Tensor.view).indexing
    assert OpInfo.of(torch.zeros).factory and OpInfo.of(torch.zeros_like).factory
    assert not OpInfo.of(torch.add).factory and not OpInfo.of(torch.Tensor.view).factory
    assert not OpInfo.of(torch.add).view and not OpInfo.of(torch.add).in_place
    # what the meta-output cache may keep: pure ops only
    for func in (torch.Tensor.view, torch.topk, torch.zeros, torch.zeros_like,
                 torch.Tensor.to, torch.Tensor.add_, torch.Tensor.__setitem__):
        assert not OpInfo.of(func).cacheable, func
    assert OpInfo.of(torch.add).cacheable and OpInfo.of(torch.Tensor.__getitem__).cacheable
    # a write of indexed rows is no cacheable "returns its target": its indices are values
    assert not OpInfo.of(torch.Tensor.index_put_).in_place
    assert OpInfo.of(torch.Tensor.mul_).in_place


def test_torch_python_functions_are_descended_into_and_collectives_write() -> None:
    assert OpInfo.of(F.normalize).python  # a torch Python function
    assert not OpInfo.of(torch.Tensor.split).python  # torch._tensor: a method of Tensor
    assert not OpInfo.of(torch.add).python  # a builtin

    def ours(x: torch.Tensor) -> torch.Tensor:
        return x

    assert not OpInfo.of(ours).python  # not torch's
    reduce = OpInfo.of(torch.distributed.all_reduce)
    assert (reduce.name, reduce.category, reduce.mutates, reduce.python, reduce.in_place) == (
        "all_reduce", "collective", "collective", False, False)
    rank = OpInfo.of(torch.distributed.get_rank)  # torch.distributed's, but no collective
    assert (rank.category, rank.mutates) == ("other", "")
    gather = OpInfo.of(torch.gather)  # same name as a collective, not torch.distributed's
    assert (gather.category, gather.mutates) == ("index", "")
    assert OpInfo.of(torch.matmul).flops == "dispatch"  # counted per ATen op inside
    assert OpInfo.of(F.linear).flops == "linear"
    assert OpInfo.of(torch.ops.aten.linear.default).flops == "linear"  # not ATen's registry
    assert OpInfo.of(torch.ops.aten.mm.default).flops == "custom"


class _Seen(TorchFunctionMode):
    """Notes the name of every function a torch-function mode is shown."""

    def __init__(self) -> None:
        super().__init__()
        self.names: list[str] = []

    def __torch_function__(self, func: Any, types: Any, args: tuple[Any, ...] = (),
                           kwargs: dict[str, Any] | None = None) -> Any:
        self.names.append(op_name(func)[0])
        return func(*args, **(kwargs or {}))


def test_a_function_body_shows_a_mode_its_inner_ops() -> None:
    """The copy's ``has_torch_function*`` checks answer False, so under a mode its body runs
    and each op inside is shown to the mode; the original is shown as one call."""
    body = function_body(F.normalize)
    x = torch.tensor([[3.0, 4.0]])
    with _Seen() as whole:
        F.normalize(x)
    with _Seen() as inside:
        normalised = body(x, p=1.0)
    assert whole.names == ["normalize"]
    assert "normalize" not in inside.names and "div" in inside.names
    assert normalised.tolist() == F.normalize(x, p=1.0).tolist()  # its defaults are kept
    assert F.normalize.__globals__["has_torch_function_unary"] is not \
        body.__globals__["has_torch_function_unary"]  # torch itself is unchanged


def test_argument_names_leave_out_self_and_keyword_only_ones() -> None:
    class Block(torch.nn.Module):
        def forward(self, x: torch.Tensor, mask: torch.Tensor, *rest: object,
                    scale: float = 1.0) -> torch.Tensor:
            return x

    assert argument_names(Block.forward) == ["x", "mask"]
    assert argument_names(Block().forward) == ["x", "mask"]  # bound: no self either
    assert argument_names(F.normalize) == ["input", "p", "dim", "eps", "out"]
    assert argument_names(torch.add) == []  # no signature


def test_only_public_names_ending_in_an_underscore_write_in_place() -> None:
    assert writes_in_place("add_") and writes_in_place("setitem")
    assert not writes_in_place("add") and not writes_in_place("getitem")
    # private ops of lists of tensors and kept dunders are no write into a first tensor
    assert not writes_in_place("_foreach_add_") and not writes_in_place("__len__")
