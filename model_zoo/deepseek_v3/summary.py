"""Parameter counts of a DeepSeek-V3 model by component, total and activated per token."""

from torch import nn

from model_zoo.deepseek_v3.config import ModelArgs
from model_zoo.deepseek_v3.model import MoE, RuntimeOptions, Transformer

COMPONENTS = (
    "embedding",
    "attention",
    "dense_mlp",
    "routed_experts",
    "shared_experts",
    "gates",
    "norms",
    "head",
    "mtp",
)
"""Parameter groups of `parameter_breakdown`, in model order. Attention includes its q_norm
and kv_norm; norms are the layers' attn_norm and ffn_norm and the final norm; gates include
their routing biases; mtp is the whole multi-token-prediction module (0 without `mtp`), its
copies of the embedding and the head included."""


def _component(name: str) -> str:
    parts = name.split(".")
    if parts[0] == "mtp":
        return "mtp"
    if parts[0] in ("embed", "head"):
        return "embedding" if parts[0] == "embed" else "head"
    if parts[0] == "norm" or parts[2] in ("attn_norm", "ffn_norm"):
        return "norms"
    if parts[2] == "attn":
        return "attention"
    return {"gate": "gates", "experts": "routed_experts", "shared_experts": "shared_experts"}.get(
        parts[3], "dense_mlp"
    )


def _count(module: nn.Module) -> int:
    """Parameters of `module`, fp8 block scales excluded."""
    return sum(p.numel() for n, p in module.named_parameters() if not n.endswith("scale"))


def _activated(module: nn.Module) -> int:
    """Parameters of `module` one token goes through: all but the routed experts it skips."""
    total = _count(module)
    for moe in module.modules():
        if isinstance(moe, MoE):
            experts = [e for e in moe.experts if e is not None]
            total -= sum(_count(e) for e in experts) - moe.gate.topk * _count(experts[0])
    return total


def parameter_breakdown(model_or_args: Transformer | ModelArgs) -> dict[str, int]:
    """Parameter counts of a model, or of the model `ModelArgs` describes (built on the meta
    device, unsplit, so it costs no memory).

    Keys: the `COMPONENTS`; "total"; "activated_per_token" (everything of the main model but
    the routed experts a token does not use: A experts per MoE layer, embedding and head
    included); "activated_excl_embedding" (the same without the embedding lookup);
    "mtp_unique" (the MTP module without its copies of the embedding and the head, which
    training shares with the main model); "mtp_activated" (what one token goes through in the
    MTP module, its embedding and head included); "fp8_scales" (float32 block scales of fp8
    weights, counted apart from the total as the published numbers are). A tensor-parallel
    model counts what its rank holds.
    """
    if isinstance(model_or_args, ModelArgs):
        model = Transformer(model_or_args, RuntimeOptions(world_size=1, rank=0, device="meta"))
    else:
        model = model_or_args
    counts = dict.fromkeys(COMPONENTS, 0)
    fp8_scales = 0
    for name, param in model.named_parameters():
        if name.endswith(".scale"):
            fp8_scales += param.numel()
        else:
            counts[_component(name)] += param.numel()
    total = sum(counts.values())
    mtp = model.mtp
    activated = total - counts["mtp"] - _count(model.layers) + _activated(model.layers)
    return counts | {
        "total": total,
        "activated_per_token": activated,
        "activated_excl_embedding": activated - counts["embedding"],
        "mtp_unique": 0 if mtp is None else counts["mtp"] - _count(mtp.embed) - _count(mtp.head),
        "mtp_activated": 0 if mtp is None else _activated(mtp),
        "fp8_scales": fp8_scales,
    }
