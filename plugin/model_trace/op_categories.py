"""Op categories: the colour families a reader uses to scan a graph."""

from __future__ import annotations

_CATEGORY_BY_NAME: dict[str, str] = {}

_FAMILIES: dict[str, tuple[str, ...]] = {
    "linear": ("linear", "bilinear", "conv1d", "conv2d", "conv3d", "embedding", "fp8_gemm"),
    "matmul": ("matmul", "mm", "bmm", "einsum", "baddbmm", "addmm", "scaled_dot_product_attention",
               "multi_head_attention_forward"),
    "norm": ("layer_norm", "rms_norm", "group_norm", "batch_norm", "instance_norm", "normalize"),
    "activation": ("relu", "gelu", "silu", "sigmoid", "tanh", "softmax", "log_softmax", "softplus",
                   "mish", "elu", "leaky_relu", "dropout", "glu"),
    "elementwise": ("add", "sub", "mul", "div", "truediv", "rsqrt", "sqrt", "exp", "log", "pow",
                    "neg", "abs", "clamp", "where", "masked_fill", "masked_fill_", "add_", "mul_",
                    "sub_", "div_", "type_as", "float", "to", "polar", "view_as_complex",
                    "view_as_real", "triu", "triu_", "full", "zeros", "ones", "zeros_like",
                    "arange", "outer", "radd", "rmul", "rsub"),
    "reduce": ("sum", "mean", "amax", "max", "min", "topk", "argmax", "bincount", "cumsum"),
    "index": ("getitem", "setitem", "gather", "scatter", "scatter_", "index_select", "index_put_",
              "index_add_", "nonzero"),
    "shape": ("view", "reshape", "flatten", "unflatten", "transpose", "permute", "contiguous",
              "expand", "split", "chunk", "cat", "stack", "squeeze", "unsqueeze", "t"),
    "quant": ("act_quant", "weight_dequant", "weight_quant"),
    "collective": ("all_reduce", "all_gather", "all_gather_into_tensor", "reduce_scatter",
                   "broadcast"),
}
for _family, _names in _FAMILIES.items():
    for _name in _names:
        _CATEGORY_BY_NAME[_name] = _family

CATEGORIES: tuple[str, ...] = (*_FAMILIES, "io", "other")


def category_of(op_name: str) -> str:
    """The colour family of an op, by its short name (``aten::`` and overloads stripped)."""
    short = op_name.split("::")[-1].split(".")[0]
    return _CATEGORY_BY_NAME.get(short, "other")
