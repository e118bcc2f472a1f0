"""What the tracer knows about each op, in one table: its colour family, its role in a meta
trace and how its FLOPs are counted.

Every part of the tracer reads this table: the recorder (queries it skips, views that
allocate nothing, ops whose FLOPs it counts), the meta-trace rules of ``concrete`` (routing,
indexing, factory and device ops) and the statistics (ops that pick rows by an index). Adding
an op means adding it here, once.

Ops are keyed by their short name (``linear``, ``and_`` for ``x &= m``, ``getitem``; ATen
ops by the name after ``aten::``, read without a leading underscore or ``native_`` where the
table lists them so: ``aten::_softmax`` is ``softmax``). The in-place form of an elementwise op
or activation (``add_``, ``bitwise_and_``) is that op written into its first argument: it has
the op's row unless it has its own. An op not in the table has category ``other``, no role,
and no FLOP rule.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Role = Literal["", "query", "view", "routing", "gather", "indexing", "factory", "like",
               "device", "grouped", "shapes"]
"""What an op does with its tensors, as the meta-trace rules and the statistics see it:

- ``query``: returns no tensor (``size``, ``item``, ``x.shape``): run, never recorded;
- ``view``: its output shares its input's memory (no bytes written);
- ``routing``: produces indices from scores (``topk``, ``argmax``): on the meta device the
  routing policy chooses them;
- ``gather``: picks rows of a tensor by an index (``x[idx]``, ``index_select``); ``indexing``:
  any other op taking concrete indices (``index_put_``, ``scatter``, ``embedding``); both take
  CPU indices as they are in a meta trace;
- ``factory``: makes a tensor from sizes (``zeros``, ``arange``); ``like``: from another
  tensor's shape and dtype, not its values (``zeros_like``, ``new_ones``);
- ``device``: moves a tensor between devices (``to``, ``cpu``);
- ``grouped``: multiplies groups of rows, delimited by offsets, each by its own slice of a
  stacked operand (``grouped_mm``: experts stored as one tensor);
- ``shapes``: has no meta kernel, and the shapes of its results, and the values of its
  integer and boolean ones, depend only on the shapes of its float tensors and the values of
  its integer ones (``nn.TransformerEncoder``'s check that a padding mask is left-aligned,
  the CTC loss): on the meta device it runs on the CPU, each meta tensor standing in as a
  tensor of its shape that holds one element; its float results move to the meta device.
"""

Made = Literal["", "args", "random", "uninitialised"]
"""Where a factory's values come from: its arguments alone (``zeros``, ``arange``: known
without any data), a random generator, or nowhere (``empty``)."""

FlopRule = Literal["", "linear", "vecdot", "dispatch"]
"""How an op's FLOPs are counted: ``linear`` by the matrix-multiply formula on its shapes
(no dispatch round trip), ``vecdot`` by the dot-product formula per output (torch runs it as
an elementwise product and a sum, which count 0 each), ``dispatch`` by adding up torch's
formulas for the ATen ops it runs (``flops.FlopCounter``); ``""``: no rule (ATen and custom
ops called directly are looked up in the formula registry by the op itself)."""


@dataclass(frozen=True, slots=True)
class OpFacts:
    """One row of the table."""

    category: str = "other"
    """The colour family a reader uses to scan a graph (``CATEGORIES``)."""
    role: Role = ""
    flops: FlopRule = ""
    made: Made = ""
    """For factories: where their values come from."""
    known: bool = True
    """False for the row of an op the table does not list."""


def _rows(category: str, names: str, role: Role = "", flops: FlopRule = "", made: Made = ""
          ) -> dict[str, OpFacts]:
    return dict.fromkeys(names.split(), OpFacts(category, role, flops, made))


def _table(*rows: dict[str, OpFacts]) -> dict[str, OpFacts]:
    """The rows as one mapping; an op named twice is a mistake in the table."""
    table: dict[str, OpFacts] = {}
    for row in rows:
        twice = sorted(table.keys() & row.keys())
        if twice:
            raise ValueError(f"op table: {', '.join(twice)} listed twice")
        table.update(row)
    return table


# Within a family, ops with a role or a FLOP rule get their own rows.
_TABLE: dict[str, OpFacts] = _table(
    _rows("linear", "linear", flops="linear"),
    _rows("linear", "bilinear conv1d conv2d conv3d conv_transpose1d conv_transpose2d "
                    "conv_transpose3d conv_tbc convolution _convolution", flops="dispatch"),
    _rows("linear", "embedding", role="indexing"),
    # sums the rows of each bag: added up as the gradient of embedding is, with no formula
    _rows("linear", "embedding_bag", role="indexing", flops="dispatch"),
    _rows("linear", "fp8_gemm"),
    _rows("matmul", "vecdot", flops="vecdot"),
    _rows("matmul", "matmul mm bmm einsum baddbmm addmm scaled_dot_product_attention "
                    "multi_head_attention_forward scaled_mm _scaled_mm addmm_ baddbmm_ addbmm "
                    "addbmm_ addmv addmv_ mv dot vdot inner tensordot chain_matmul multi_dot "
                    "rmatmul matrix_power _addmm_activation", flops="dispatch"),
    _rows("matmul", "grouped_mm _grouped_mm scaled_grouped_mm _scaled_grouped_mm",
          role="grouped", flops="dispatch"),
    # the attention kernels scaled_dot_product_attention runs (and their gradients)
    _rows("matmul", "scaled_dot_product_flash_attention scaled_dot_product_efficient_attention "
                    "scaled_dot_product_cudnn_attention "
                    "scaled_dot_product_flash_attention_for_cpu", flops="dispatch"),
    _rows("norm", "layer_norm rms_norm group_norm batch_norm instance_norm normalize "
                  "local_response_norm fused_rms_norm batch_norm_legit_no_training "
                  "batch_norm_legit _weight_norm weight_norm_interface"),
    _rows("activation", "relu gelu silu sigmoid tanh softmax log_softmax softplus mish elu "
                        "leaky_relu dropout glu hardswish hardsigmoid relu6 selu celu "
                        "logsigmoid softmin prelu hardtanh threshold softsign tanhshrink "
                        "native_dropout safe_softmax dropout1d dropout2d dropout3d "
                        "feature_dropout alpha_dropout feature_alpha_dropout"),
    _rows("elementwise", "add sub mul div truediv rsqrt sqrt exp log pow neg abs clamp "
                         "where masked_fill type_as float polar triu outer radd rmul rsub "
                         "rtruediv rpow rfloordiv rmod true_divide divide multiply subtract "
                         "clip ger addr kron cross linalg_cross"),
    _rows("elementwise", "eq ne lt le gt ge logical_and logical_or logical_not logical_xor "
                         "bitwise_and bitwise_or bitwise_not bitwise_xor and or xor invert "
                         "bitwise_left_shift bitwise_right_shift lshift rshift rlshift rrshift "
                         "floordiv floor_divide remainder mod fmod floor ceil round trunc frac "
                         "sign reciprocal exp2 expm1 log2 log10 log1p sin cos tan sinh cosh asin "
                         "acos atan atan2 erf erfc erfinv square maximum minimum lerp addcmul "
                         "addcdiv clamp_min clamp_max nan_to_num isinf isnan isfinite "
                         "copysign hypot int long bool half bfloat16 double type to_copy "
                         "masked_scatter tril"),
    _rows("elementwise", "view_as_complex view_as_real", role="view"),
    _rows("elementwise", "to", role="device"),
    _rows("elementwise", "full zeros ones arange", role="factory", made="args"),
    _rows("elementwise", "zeros_like", role="like", made="args"),
    _rows("reduce", "sum mean amax bincount cumsum prod std var norm logsumexp all any "
                    "count_nonzero cumprod amin aminmax var_mean std_mean nansum histc "
                    "cummax cummin linalg_vector_norm vector_norm cumsum_ cumprod_"),
    # losses and similarities: elementwise work summed (a pick of each target's
    # log-probability, for the classification losses)
    _rows("reduce", "cross_entropy nll_loss nll_loss_forward nll_loss2d nll_loss2d_forward "
                    "mse_loss l1_loss smooth_l1_loss huber_loss binary_cross_entropy "
                    "binary_cross_entropy_with_logits kl_div soft_margin_loss "
                    "margin_ranking_loss hinge_embedding_loss cosine_embedding_loss "
                    "poisson_nll_loss gaussian_nll_loss triplet_margin_loss "
                    "multilabel_margin_loss multi_margin_loss cosine_similarity "
                    "pairwise_distance"),
    # no meta kernel; its loss and table of path scores have shapes set by the inputs'
    _rows("reduce", "ctc_loss _ctc_loss", role="shapes"),
    _rows("reduce", "max_pool1d max_pool2d max_pool3d max_pool1d_with_indices "
                    "max_pool2d_with_indices max_pool3d_with_indices avg_pool1d avg_pool2d "
                    "avg_pool3d adaptive_avg_pool1d adaptive_avg_pool2d adaptive_avg_pool3d "
                    "adaptive_max_pool1d adaptive_max_pool2d adaptive_max_pool3d"),
    _rows("reduce", "max min topk argmax argmin kthvalue mode median nanmedian",
          role="routing"),
    _rows("index", "getitem gather index_select take index", role="gather"),
    _rows("index", "setitem scatter scatter_ index_put_ index_add_", role="indexing"),
    # ATen's slicing (``x[:, 1:3]``) and the copies that write a part into a whole, the
    # gradients of slicing and selecting (no element is added to another)
    _rows("index", "slice", role="view"),
    _rows("index", "slice_scatter select_scatter diagonal_scatter as_strided_scatter"),
    _rows("index", "nonzero masked_select unique unique_consecutive bucketize searchsorted "
                   "one_hot argwhere nonzero_static unsafe_index"),
    _rows("shape", "view reshape flatten unflatten transpose permute expand split chunk "
                   "squeeze unsqueeze t reshape_alias", role="view"),
    _rows("shape", "contiguous cat stack repeat repeat_interleave tile flip roll "
                   "clone copy_ fill_ zero_ pad constant_pad_nd hstack vstack concat "
                   "concatenate broadcast_tensors meshgrid unsafe_view unsafe_split reversed "
                   "split_copy expand_copy view_as_real_copy as_strided_"),
    _rows("shape", "broadcast_to", role="view"),
    # copies that rearrange or repeat elements; fold adds up overlapping windows (no formula)
    _rows("shape", "pixel_shuffle pixel_unshuffle channel_shuffle native_channel_shuffle "
                   "reflection_pad1d reflection_pad2d reflection_pad3d replication_pad1d "
                   "replication_pad2d replication_pad3d im2col"),
    _rows("shape", "fold col2im", flops="dispatch"),
    # resizing and resampling: nearest copies, (bi)linear weighs neighbours (no formula)
    _rows("shape", "interpolate upsample", flops="dispatch"),
    _rows("index", "grid_sample", flops="dispatch"),
    # in place: the tensor itself gets the new shape (a new version of it, no view)
    _rows("shape", "squeeze_ unsqueeze_ t_ transpose_ swapaxes_ swapdims_"),
    _rows("quant", "act_quant weight_dequant"),
    _rows("collective", "all_reduce all_gather all_gather_into_tensor reduce_scatter "
                        "broadcast"),
    # ops drawn in the "other" family, known for their role or FLOPs
    _rows("other", "size dim numel stride is_contiguous data_ptr element_size "
                   "is_floating_point is_complex get_device nelement ndimension __len__ "
                   "__bool__ __format__ __repr__ __hash__ __set__ tolist item __int__ "
                   "__float__ __index__ __reduce_ex__ __deepcopy__ storage_offset "
                   "untyped_storage is_pinned is_set_to requires_grad_ retain_grad "
                   "register_hook __array__ numpy __contains__ is_nonzero equal has_names "
                   "is_shared is_signed dim_order __dlpack__ __dlpack_device__ __setstate__ "
                   "__getstate__ __sizeof__ __dir__ __iter__ "
                   # the same, read as properties (x.shape)
                   "shape dtype device is_meta is_cuda is_cpu ndim requires_grad layout "
                   "grad grad_fn is_leaf names itemsize nbytes is_sparse is_quantized "
                   "is_nested output_nr _base _version is_mkldnn is_xpu is_mps _cdata "
                   "is_inference _grad_fn _backward_hooks", role="query"),
    # views named otherwise, in the family of the view they are a form of (select and
    # narrow are slicing, movedim a permute, unbind a split)
    _rows("index", "narrow select diagonal", role="view"),
    _rows("shape", "expand_as split_with_sizes tensor_split unbind T mT H mH movedim "
                   "moveaxis swapaxes swapdims as_strided unfold view_as reshape_as",
          role="view"),
    _rows("other", "real imag detach alias data conj resolve_conj resolve_neg", role="view"),
    _rows("other", "sort argsort multinomial", role="routing"),
    _rows("index", "index_put scatter_add scatter_add_ scatter_reduce scatter_reduce_ "
                   "index_add index_copy index_copy_ index_fill index_fill_ take_along_dim "
                   "max_unpool1d max_unpool2d max_unpool3d", role="indexing"),
    _rows("other", "linspace logspace eye range scalar_tensor", role="factory", made="args"),
    # tensors of given data (BigBird's random blocks: torch.tensor(numpy_array, device=...))
    _rows("other", "tensor as_tensor asarray tril_indices triu_indices", role="factory",
          made="args"),
    _rows("other", "rand randn randint randperm normal", role="factory", made="random"),
    _rows("other", "empty empty_strided", role="factory", made="uninitialised"),
    _rows("other", "ones_like full_like new_zeros new_ones new_full new_tensor", role="like",
          made="args"),
    _rows("other", "rand_like randn_like randint_like", role="like", made="random"),
    _rows("other", "empty_like new_empty new_empty_strided", role="like",
          made="uninitialised"),
    _rows("other", "cuda cpu", role="device"),
    _rows("other", "_nested_tensor_from_mask_left_aligned", role="shapes"),
    # recurrent layers: a packed sequence's batch sizes stay on the CPU, as indices do
    _rows("linear", "lstm gru rnn_tanh rnn_relu", role="indexing", flops="dispatch"),
    _rows("linear", "lstm_cell gru_cell rnn_tanh_cell rnn_relu_cell", flops="dispatch"),
    _rows("shape", "_pack_padded_sequence _pad_packed_sequence", role="indexing"),
)

_COLLECTIVES = frozenset({
    "all_reduce", "all_gather", "all_gather_into_tensor", "reduce_scatter",
    "reduce_scatter_tensor", "broadcast", "all_to_all", "all_to_all_single", "reduce",
    "gather", "scatter", "send", "recv", "isend", "irecv", "barrier",
})
"""Names of ``torch.distributed`` functions that communicate: category ``collective``, and
they write into their first argument."""

_UNKNOWN = OpFacts(known=False)
_COLLECTIVE = OpFacts("collective")

CATEGORIES: tuple[str, ...] = ("linear", "matmul", "norm", "activation", "elementwise",
                               "reduce", "index", "shape", "quant", "collective", "io",
                               "other")
"""Every category, in the order a legend lists them."""


_IN_PLACE_FAMILIES = frozenset({"elementwise", "activation"})
"""Families whose ops, written in place (``x.add_(y)``, ``x &= m``), are still the same op:
the in-place form takes its row from the op's."""


def facts_of(name: str, distributed: bool = False) -> OpFacts:
    """The table's row for an op by its short name; ``distributed`` for a function of
    ``torch.distributed`` (where ``gather`` is a collective, not an indexing op)."""
    if distributed and name in _COLLECTIVES:
        return _COLLECTIVE
    facts = _TABLE.get(name)
    if facts is not None:
        return facts
    if name.endswith("_") and not name.startswith("_"):
        written = _TABLE.get(name[:-1])  # add_: add, written into its first argument
        if (written is not None and written.category in _IN_PLACE_FAMILIES
                and not written.role and not written.flops):
            return written
    return _UNKNOWN


def aten_facts(name: str) -> OpFacts:
    """The row for an ATen op by its name after ``aten::`` (overload dropped): as spelt, else
    without a leading underscore or ``native_`` (``_softmax``, ``native_layer_norm``), else,
    for a gradient (``native_layer_norm_backward``, ``select_backward``) or an op on a
    tensor's data (``..._data``), its forward op's row."""
    forward = name.removesuffix("_data").removesuffix("_backward")
    for base in dict.fromkeys((name, forward)):
        stripped = base.lstrip("_")
        for spelling in dict.fromkeys((base, stripped, stripped.removeprefix("native_"))):
            facts = facts_of(spelling)
            if facts.known:
                return facts
    return _UNKNOWN


def category_of(op_name: str) -> str:
    """The colour family of an ATen op by its name (``aten::`` and overloads stripped)."""
    return aten_facts(op_name.split("::")[-1].split(".")[0]).category


def without_flops(aten_name: str) -> bool:
    """Whether the table lists an ATen op (see ``aten_facts``) with no FLOP rule: it
    multiplies nothing worth counting (elementwise, data movement, indexing, reductions), so
    it counts 0 FLOPs by convention."""
    facts = aten_facts(aten_name)
    return facts.known and not facts.flops


def gathers_rows(op_name: str) -> bool:
    """Whether an op picks rows of a tensor by an index (``x[idx]``, ``index_select``)."""
    return facts_of(op_name).role == "gather"


def is_view(op_name: str) -> bool:
    """Whether an op's output is a view of its input (``reshape``, ``squeeze``)."""
    return facts_of(op_name).role == "view"
