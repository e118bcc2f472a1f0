"""Where a model's weights come from: safetensors checkpoints, fp8 quantisation, random init.

`load_checkpoint` reads checkpoints in our (the reference's) names or in Hugging Face's names
(the published DeepSeek-V3 repository), whole or already split per rank, and keeps this rank's
slice of every tensor.
"""

import re
from collections.abc import Iterator, Mapping
from pathlib import Path

import torch
from torch import Tensor, nn

from model_zoo.deepseek_v3.kernels import weight_quant
from model_zoo.deepseek_v3.model import BLOCK_SIZE, Linear, MoE, RMSNorm, Transformer

HF_NAME_PARTS = {
    "embed_tokens": "embed",
    "lm_head": "head",
    "self_attn": "attn",
    "mlp": "ffn",
    "input_layernorm": "attn_norm",
    "post_attention_layernorm": "ffn_norm",
    "q_proj": "wq",
    "q_a_proj": "wq_a",
    "q_a_layernorm": "q_norm",
    "q_b_proj": "wq_b",
    "kv_a_proj_with_mqa": "wkv_a",
    "kv_a_layernorm": "kv_norm",
    "kv_b_proj": "wkv_b",
    "o_proj": "wo",
    "gate_proj": "w1",
    "down_proj": "w2",
    "up_proj": "w3",
    "e_score_correction_bias": "bias",
    "weight_scale_inv": "scale",
}
"""Hugging Face name parts and ours, e.g. model.layers.0.mlp.gate_proj.weight_scale_inv ->
layers.0.ffn.w1.scale."""

MTP_OWN_PARTS = frozenset({"embed", "enorm", "hnorm", "eh_proj", "shared_head"})
"""The multi-token-prediction layer's own parts (layer `n_layers` of a checkpoint, after
`HF_NAME_PARTS`); everything else of that layer belongs to its block, and shared_head.norm and
shared_head.head are its norm and head: model.layers.61.self_attn.o_proj -> mtp.block.attn.wo,
model.layers.61.shared_head.head -> mtp.head."""

_LAYER = re.compile(r"^layers\.(\d+)\.")
_EXPERT = re.compile(r"^layers\.(\d+)\.ffn\.experts\.(\d+)\.")


def native_name(name: str, n_layers: int | None = None) -> str:
    """Our state-dict name for a checkpoint name, which may be ours or Hugging Face's.

    With `n_layers`, layer `n_layers` (DeepSeek-V3's layer 61) is the multi-token-prediction
    module: model.layers.61.eh_proj.weight -> mtp.eh_proj.weight.
    """
    parts = [HF_NAME_PARTS.get(part, part) for part in name.removeprefix("model.").split(".")]
    if n_layers is not None and parts[:2] == ["layers", str(n_layers)]:
        own = parts[2] in MTP_OWN_PARTS
        parts = ["mtp", *([] if own else ["block"]), *parts[2:]]
        if parts[1] == "shared_head":
            del parts[1]
    return ".".join(parts)


def _checkpoint_files(path: Path) -> list[Path]:
    files = sorted(path.glob("*.safetensors")) if path.is_dir() else [path]
    if not files or not all(f.is_file() for f in files):
        raise FileNotFoundError(f"no safetensors checkpoint at {path}")
    return files


def _belongs_elsewhere(model: Transformer, name: str) -> bool:
    """Whether a checkpoint tensor (our name) has no place in this model by design: a layer
    beyond n_layers (e.g. DeepSeek-V3's multi-token-prediction layer 61 in a model built
    without `mtp`) or another rank's expert."""
    layer = _LAYER.match(name)
    if layer and int(layer[1]) >= len(model.layers):
        return True
    if name.startswith("mtp.block."):
        block: nn.Module | None = model.mtp.block if model.mtp is not None else None
        name = name.removeprefix("mtp.block.")
    else:
        expert_layer = _EXPERT.match(name)
        block = model.layers[int(expert_layer[1])] if expert_layer else None
        name = name.partition(".")[2].partition(".")[2]
    expert = re.match(r"^ffn\.experts\.(\d+)\.", name)
    if block is None or expert is None:
        return False
    return isinstance(block.ffn, MoE) and block.ffn.experts[int(expert[1])] is None


def _local_slice(full: Tensor, target: Tensor, rank: int, name: str) -> Tensor:
    """This rank's part of a whole checkpoint tensor, split along the one dimension where
    the model's tensor is smaller (row- or column-parallel layers, embedding, head)."""
    if full.shape == target.shape:
        return full
    split = [d for d, (n, m) in enumerate(zip(full.shape, target.shape, strict=True)) if n != m]
    if len(split) != 1 or full.shape[split[0]] % target.shape[split[0]]:
        raise ValueError(
            f"checkpoint tensor {name} has shape {tuple(full.shape)}, which does not split "
            f"into the model's {tuple(target.shape)}"
        )
    d = split[0]
    return full.narrow(d, rank * target.shape[d], target.shape[d])


def _read_tensors(files: list[Path]) -> Iterator[tuple[str, Tensor]]:
    from safetensors import safe_open  # optional dependency, needed only to load checkpoints

    for file in files:
        with safe_open(str(file), framework="pt", device="cpu") as f:
            for name in f.keys():  # noqa: SIM118 (safe_open is not iterable)
                yield name, f.get_tensor(name)


def _fp8_mismatch(checkpoint_name: str, name: str) -> ValueError:
    module = name.rsplit(".", 1)[0]
    return ValueError(
        f"checkpoint tensor {checkpoint_name} belongs to an fp8 weight but the model's "
        f"{module}.weight is not fp8: build the model from a config with dtype='fp8'"
    )


def _target(params: dict[str, Tensor], name: str, checkpoint_name: str, tensor: Tensor) -> Tensor:
    """The model tensor that checkpoint tensor `name` loads into; ValueError if none fits."""
    if name not in params:
        if name.endswith(".scale") and name.removesuffix("scale") + "weight" in params:
            raise _fp8_mismatch(checkpoint_name, name)
        raise ValueError(f"checkpoint tensor {checkpoint_name} ({name}) is not in the model")
    if tensor.element_size() == 1 and params[name].element_size() > 1:
        raise _fp8_mismatch(checkpoint_name, name)
    return params[name]


@torch.no_grad()
def load_checkpoint(model: Transformer, path: str | Path) -> None:
    """Copy a safetensors checkpoint (one file, or a folder of *.safetensors) into `model`.

    Names may be ours or Hugging Face's (mapped by `native_name`; layer n_layers loads into
    the multi-token-prediction module when the model has one). Layers beyond the model's
    n_layers and other ranks' experts are skipped; a whole (unsplit) tensor is sliced to this
    rank's part. Raises ValueError for unknown or missing names and mismatched shapes.
    """
    params = model.state_dict()
    missing = set(params)
    for checkpoint_name, tensor in _read_tensors(_checkpoint_files(Path(path))):
        name = native_name(checkpoint_name, len(model.layers) if model.mtp is not None else None)
        if _belongs_elsewhere(model, name):
            continue
        target = _target(params, name, checkpoint_name, tensor)
        target.copy_(_local_slice(tensor, target, model.options.rank, checkpoint_name))
        missing.discard(name)
    if missing:
        raise ValueError(f"checkpoint lacks {len(missing)} tensors, e.g. {sorted(missing)[:5]}")


def quantize_state_dict(state_dict: Mapping[str, Tensor], model: Transformer) -> dict[str, Tensor]:
    """`state_dict` (bf16/fp32 weights) in `model`'s layout: each weight that `model` stores
    as fp8 is quantised with the kernels' `weight_quant` and paired with its block scales."""
    out = dict(state_dict)
    for name, module in model.named_modules():
        if isinstance(module, Linear) and module.scale is not None:
            w_fp8, scale = weight_quant(out[f"{name}.weight"], BLOCK_SIZE, module.scale_fmt)
            out[f"{name}.weight"], out[f"{name}.scale"] = w_fp8, scale
    return out


@torch.no_grad()
def init_weights(model: Transformer, seed: int = 0, std: float = 0.02) -> Transformer:
    """Fill `model` with reproducible random weights, for tests and demos; returns `model`.

    Norm weights are 1; everything else (gate biases included) is drawn from N(0, std^2) in
    float32 on the CPU in state-dict order, so the same seed gives the same weights, up to
    rounding, for any dtype, device or attn_impl. fp8 weights are drawn the same way and
    quantised with the kernels' `weight_quant`. A tensor-parallel rank draws tensors of its own
    shapes, not slices of the unsplit model's: to split a model, save the unsplit weights and
    `load_checkpoint` them on every rank.
    """
    generator = torch.Generator().manual_seed(seed)
    for module in model.modules():
        for name, param in module.named_parameters(recurse=False):
            if isinstance(module, RMSNorm):
                param.fill_(1.0)
                continue
            if name == "scale":  # set together with its fp8 weight
                continue
            in_place = param.dtype == torch.float32 and param.device.type == "cpu"
            values = param if in_place else torch.empty(param.shape)
            values.normal_(0.0, std, generator=generator)
            if isinstance(module, Linear) and name == "weight" and module.scale is not None:
                w_fp8, scale = weight_quant(values, BLOCK_SIZE, module.scale_fmt)
                param.copy_(w_fp8)
                module.scale.copy_(scale)
            elif not in_place:
                param.copy_(values)
    return model
