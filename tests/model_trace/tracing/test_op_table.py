"""The op table: one row per op, and what the tracer derives from it per function."""

from __future__ import annotations

import types
import warnings
from typing import Any, get_args

import pytest
import torch

from model_trace.tracing import trace
from model_trace.tracing.op_info import OpInfo, op_name
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


def _names_the_recorder_gives() -> set[str]:
    """The short name of every function and property of torch's public namespaces, as the
    recorder names it when a torch-function mode is shown that function."""
    spaces = (torch, torch.Tensor, torch.nn.functional, torch.linalg, torch.special, torch.fft,
              torch.distributed)
    names: set[str] = set()
    with warnings.catch_warnings():  # deprecated names warn when read
        warnings.simplefilter("ignore")
        for space in spaces:
            for attribute in dir(space):
                value = getattr(space, attribute, None)
                if isinstance(value, type | types.ModuleType) or value is None:
                    continue
                if space is torch.Tensor and not callable(value) and hasattr(value, "__get__"):
                    names.add(op_name(value.__get__)[0])  # x.shape
                    if hasattr(value, "__set__"):
                        names.add(op_name(value.__set__)[0])  # x.requires_grad = False
                elif callable(value):
                    names.add(op_name(value)[0])
    return names


def _aten_names() -> set[str]:
    """Every ATen op's name as ``aten_facts`` reads it (``_softmax`` as ``softmax``)."""
    names: set[str] = set()
    for name in dir(torch.ops.aten):
        forward = name.removesuffix("_data").removesuffix("_backward")
        for base in (name, forward):
            stripped = base.lstrip("_")
            names |= {base, stripped, stripped.removeprefix("native_")}
    return names


# Rows no torch 2.13 function or ATen op gives, besides the zoo's FP8 kernels (custom ops,
# named in the test): named-tensor queries torch>=2.4 still had (``x.names``).
_OLDER_TORCH = frozenset({"names", "has_names"})


def test_every_row_names_an_op_the_recorder_can_see() -> None:
    """A row whose name the recorder never gives is dead: a misspelt name, or one torch
    reports otherwise (``x @= y`` has no ``matmul_``; ``torch.mm`` was seen as ``spmm``)."""
    import model_zoo.deepseek_v3.kernels  # noqa: F401  (registers the model_zoo ops)

    seen = _names_the_recorder_gives() | _aten_names()
    zoo = {op_name(getattr(torch.ops.model_zoo, name))[0]
           for name in ("fp8_gemm", "act_quant", "weight_dequant")}
    assert zoo == {"fp8_gemm", "act_quant", "weight_dequant"}
    unseen = sorted(name for name in _TABLE if name not in seen | zoo)
    assert unseen == sorted(_OLDER_TORCH - seen)


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


class _Flags(torch.nn.Module):
    """Bit flags kept in an integer tensor: set with masks, moved with shifts, in place and
    not, by operator and by function."""

    def forward(self, flags: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        kept = flags.clone()
        kept &= mask
        kept |= mask
        kept ^= mask
        kept <<= 2
        kept >>= 1
        kept.bitwise_and_(mask)
        kept.bitwise_left_shift_(1)
        kept.bitwise_right_shift_(1)
        moved = torch.bitwise_left_shift(kept, 1)
        moved = torch.bitwise_right_shift(moved, 1)
        return (moved << 1) >> 1


# What the recorder sees for each of _Flags's ops: the augmented assignments by the name
# op_name gives their dunder (x &= m: __iand__, "and_"), the rest by torch's own names.
_FLAG_OPS = ["clone", "and_", "or_", "xor_", "lshift_", "rshift_", "bitwise_and_",
             "bitwise_left_shift_", "bitwise_right_shift_", "bitwise_left_shift",
             "bitwise_right_shift", "lshift", "rshift"]


@pytest.mark.parametrize("device", ["meta", "cpu"])
def test_bitwise_and_shift_ops_are_elementwise_and_in_place_ones_write_their_target(
        device: str) -> None:
    flags = torch.arange(6, device=device)
    mask = torch.full((6,), 5, device=device)
    graph = trace(_Flags(), flags, mask)
    ops = [n for n in graph.nodes.values() if n.kind == "op"]
    assert [n.name for n in ops] == _FLAG_OPS
    assert {n.category for n in ops[1:]} == {"elementwise"}
    assert graph.meta["totals"]["flops"] == 0 and graph.meta["flops_without_formula"] == {}
    (_, mask_id) = (n.outputs[0] for n in graph.nodes.values() if n.kind == "input")
    written = ops[1:9]  # x &= mask ... kept.bitwise_right_shift_(1)
    for before, op in zip(ops, written, strict=False):
        # reads the version the op before made and makes the next one, writing no new memory
        (new_version,) = op.outputs
        assert op.inputs[0] == before.outputs[0] != new_version
        assert graph.tensors[new_version].producer == op.id
        with_mask = mask_id in op.inputs
        assert op.stats.read_bytes == (6 * 8 if with_mask else 0)
        assert op.stats.activation_bytes == 0
    assert ops[9].inputs == [written[-1].outputs[0]]  # the last version is the one read on
    assert [n.stats.activation_bytes for n in ops[9:]] == [6 * 8] * 4


def test_in_place_forms_of_elementwise_ops_and_activations_take_the_op_s_row() -> None:
    """``x.remainder_(2)`` is ``remainder`` written into ``x``; a view or an indexing op
    written in place is another op (``t_`` reshapes its tensor, ``scatter_`` writes rows)."""
    for func in (torch.Tensor.remainder_, torch.Tensor.__iand__, torch.Tensor.bitwise_not_,
                 torch.Tensor.sigmoid_, torch.Tensor.clamp_, torch.Tensor.__ilshift__):
        info = OpInfo.of(func)
        facts = facts_of(info.name[:-1])
        assert facts.known and facts.category in ("elementwise", "activation"), info.name
        assert (info.category, info.flops, info.mutates, info.in_place) == (
            facts.category, "", "self", True), info.name
    assert facts_of("t_").role == "" and facts_of("t").role == "view"
    assert facts_of("scatter_").role == facts_of("scatter").role == "indexing"
    assert not facts_of("_foreach_add_").known and not facts_of("cumsum_").role
    assert not facts_of("frobnicate_").known


class _Operators(torch.nn.Module):
    """Every Python operator on tensors: plain, reflected (a number on the left) and
    augmented."""

    def forward(self, x: torch.Tensor, n: torch.Tensor) -> list[torch.Tensor]:
        y = x.clone()
        y += 1
        y -= 1
        y *= 2
        y /= 2
        y //= 1
        y %= 5
        y **= 1
        m = n.clone()
        m &= 3
        m |= 1
        m ^= 1
        m <<= 1
        m >>= 1
        return [x + 1, 1 + x, x - 1, 1 - x, x * 2, 2 * x, x / 2, 2 / x, x // 2, 2 // x,
                x % 2, 2 % x, x ** 2, 2 ** x, -x, abs(x), x @ x, x < 1, x <= 1, x > 1,
                x >= 1, x == 1, x != 1, n & 3, 3 & n, n | 3, 3 | n, n ^ 3, 3 ^ n, ~n, n << 1,
                1 << n, n >> 1, 8 >> n, y, m]


def test_the_table_knows_every_op_python_s_operators_record() -> None:
    graph = trace(_Operators(), torch.empty(3, 3, device="meta"), torch.arange(9).view(3, 3))
    other = sorted({n.name for n in graph.nodes.values() if n.category == "other"})
    assert other == []
    names = [n.name for n in graph.nodes.values() if n.kind == "op"]
    for seen in ("rtruediv", "rpow", "rfloordiv", "rmod", "remainder_", "rlshift", "rrshift"):
        assert seen in names


def test_aten_ops_take_the_row_of_the_op_they_implement() -> None:
    """An ATen trace names ops as ATen does (``aten::_softmax``, ``aten::native_layer_norm``,
    ``aten::_to_copy``): each is drawn in its torch op's family, not as ``other``."""
    model = torch.nn.Sequential(torch.nn.LayerNorm(8), torch.nn.Softmax(-1))
    graph = trace(lambda x: model(x).half(), torch.empty(2, 8, device="meta"), aten=True)
    drawn = {n.name: n.category for n in graph.nodes.values() if n.kind == "op"}
    assert drawn == {"aten::native_layer_norm": "norm", "aten::_softmax": "activation",
                     "aten::_to_copy": "elementwise"}
    assert category_of("aten::bitwise_and_.Tensor") == "elementwise"
    assert category_of("aten::native_layer_norm_backward.default") == "norm"
    assert category_of("aten::_fft_r2c") == "other"


class _ViewForms(torch.nn.Module):
    """Pairs of the same view written two ways: a slice and ``select``/``narrow``, a
    permute and ``movedim``/``swapaxes``/``.mT``, a split and ``unbind``/``tensor_split``,
    a reshape and ``reshape_as``, an expand and ``expand_as``."""

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return (x[:, 0], x.select(1, 0), x[1:3], x.narrow(0, 1, 2), torch.diagonal(x),
                x.permute(1, 0), x.movedim(0, 1), x.swapaxes(0, 1), x.mT,
                *x.split(1), *x.unbind(0), *x.tensor_split(2), x.reshape(-1),
                x.reshape_as(y), x[:1].expand(4, 4), x[:1].expand_as(y))


def test_every_form_of_a_view_is_drawn_in_the_family_of_the_view_it_is() -> None:
    """A reader who sees ``x[:, 0]`` in one colour and ``x.select(1, 0)`` in another
    reads two kinds of op where there is one; in an ATen trace too (``aten::select``
    beside ``aten::slice``)."""
    x, y = torch.empty(4, 4, device="meta"), torch.empty(4, 4, device="meta")
    expected = {"getitem": "index", "select": "index", "narrow": "index",
                "diagonal": "index", "permute": "shape", "movedim": "shape",
                "swapaxes": "shape", "mT": "shape", "split": "shape", "unbind": "shape",
                "tensor_split": "shape", "reshape": "shape", "reshape_as": "shape",
                "expand": "shape", "expand_as": "shape"}
    graph = trace(_ViewForms(), x, y, fold=False)
    drawn = {n.name: n.category for n in graph.nodes.values() if n.kind == "op"}
    assert drawn == expected
    aten = trace(_ViewForms(), x, y, fold=False, aten=True)
    families = {n.name: n.category for n in aten.nodes.values() if n.kind == "op"}
    assert families["aten::select"] == families["aten::slice"] == "index"
    assert families["aten::permute"] == families["aten::transpose"] == "shape"
    assert "other" not in families.values()


class _Rearranged(torch.nn.Module):
    """Ops that move, repeat or pick elements and add nothing worth counting: a pixel
    shuffle, reflect and replicate padding, unfold and fold, a bag of embeddings, and the
    losses of a classifier."""

    def __init__(self) -> None:
        super().__init__()
        self.bag = torch.nn.EmbeddingBag(100, 16, mode="mean")

    def forward(self, image: torch.Tensor, ids: torch.Tensor, offsets: torch.Tensor,
                target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = torch.nn.functional.pad(torch.nn.functional.pixel_shuffle(image, 2), (1, 1, 1, 1),
                                    mode="reflect")
        x = torch.nn.functional.pad(x, (1, 1, 1, 1), mode="replicate")
        x = torch.nn.functional.fold(torch.nn.functional.unfold(x, 3, padding=1),
                                     x.shape[-2:], 3, padding=1)
        x = torch.nn.functional.channel_shuffle(torch.nn.functional.pixel_unshuffle(x, 2), 2)
        scores = self.bag(ids, offsets)
        return x, (torch.nn.functional.cross_entropy(scores, target)
                   + torch.nn.functional.nll_loss(scores.log_softmax(-1), target))


@pytest.mark.parametrize("aten", [False, True], ids=["functions", "aten"])
def test_ops_that_rearrange_or_pick_elements_count_no_flops_and_miss_no_formula(
        aten: bool) -> None:
    """Without their rows each was drawn as ``other`` and reported to the reader as an op
    computing floats without a FLOP formula, where there is nothing to count. Fold and a
    bag of embeddings add up windows and rows, as the gradients of unfold and embedding do:
    those still say they have no formula."""
    with torch.device("meta"):
        model = _Rearranged()
    graph = trace(model, torch.empty(1, 8, 4, 4, device="meta"), torch.tensor([1, 2, 3, 4, 5]),
                  torch.tensor([0, 2]), torch.tensor([1, 2]), fold=False, aten=aten)
    assert graph.meta["flops_without_formula"] == {"aten::_embedding_bag": 1,
                                                   "aten::col2im": 1}
    assert graph.meta["totals"]["flops"] == 0
    drawn = {n.name: n.category for n in graph.nodes.values() if n.kind == "op"}
    assert "other" not in drawn.values(), drawn


@pytest.mark.parametrize("op", [
    lambda x, y, idx: torch.nn.functional.mse_loss(x, y),
    lambda x, y, idx: torch.nn.functional.binary_cross_entropy_with_logits(x, y),
    lambda x, y, idx: torch.nn.functional.kl_div(x.log_softmax(-1), y.softmax(-1),
                                                 reduction="batchmean"),
    lambda x, y, idx: torch.nn.functional.cosine_similarity(x, y),
    lambda x, y, idx: torch.nn.functional.dropout2d(x[None, None], 0.5, training=True),
    lambda x, y, idx: x.argmin(-1),
    lambda x, y, idx: torch.zeros(3, 8, device=x.device).scatter_reduce(
        0, idx[:, None].expand(-1, 8), x, reduce="amax", include_self=False),
    lambda x, y, idx: torch.zeros(3, 8, device=x.device).index_add(0, idx, x),
    lambda x, y, idx: torch._weight_norm(x, y[:1], 1),  # Wav2Vec2's positional convolution
], ids=["mse_loss", "bce_with_logits", "kl_div", "cosine_similarity", "dropout2d", "argmin",
        "scatter_reduce", "index_add", "weight_norm"])
def test_losses_similarities_and_index_writes_have_families_and_count_by_convention(
        op: Any) -> None:
    """Elementwise work summed counts 0, as a reduction does: not an op reported without a
    formula. Writes through an index are indexing ops, as ``scatter`` is."""
    graph = trace(op, torch.empty(5, 8, device="meta"), torch.empty(5, 8, device="meta"),
                  torch.tensor([0, 1, 2, 0, 1]), fold=False)
    assert graph.meta["flops_without_formula"] == {}
    drawn = {n.name: n.category for n in graph.nodes.values() if n.kind == "op"}
    assert "other" not in drawn.values(), drawn


def test_resizing_is_drawn_as_shape_and_only_weighing_neighbours_lacks_a_formula() -> None:
    """``F.interpolate`` (``nn.Upsample``, a VAE decoder's upsampling): nearest copies
    pixels, bilinear weighs four of them, which torch has no FLOP formula for, and says so."""
    image = torch.empty(1, 3, 8, 8, device="meta")
    for mode, missing in (("nearest", {}), ("bilinear", {"aten::upsample_bilinear2d": 1})):
        graph = trace(lambda x, m=mode: torch.nn.functional.interpolate(x, scale_factor=2,
                                                                         mode=m), image)
        (node,) = (n for n in graph.nodes.values() if n.kind == "op")
        assert (node.name, node.category) == ("interpolate", "shape")
        assert graph.meta["flops_without_formula"] == missing
