"""Independent cross-check: Hugging Face transformers' DeepseekV3ForCausalLM, same weights."""

import pytest
import torch
from deepseek_v3_helpers import build, random_tokens, relative_error

from model_zoo.deepseek_v3 import ModelArgs, Transformer, load_config

transformers = pytest.importorskip("transformers")


def hf_config(args: ModelArgs, rope_interleave: bool) -> "transformers.DeepseekV3Config":
    """HF's config for our architecture. HF always routes with sigmoid scores, a correction
    bias and normalised top-k weights, and always applies YaRN: `args` must match that."""
    assert args.score_func == "sigmoid" and args.has_gate_bias and args.yarn_enabled
    return transformers.DeepseekV3Config(
        vocab_size=args.vocab_size,
        hidden_size=args.dim,
        intermediate_size=args.inter_dim,
        moe_intermediate_size=args.moe_inter_dim,
        num_hidden_layers=args.n_layers,
        first_k_dense_replace=args.n_dense_layers,
        num_attention_heads=args.n_heads,
        num_key_value_heads=args.n_heads,
        n_routed_experts=args.n_routed_experts,
        n_shared_experts=args.n_shared_experts,
        num_experts_per_tok=args.n_activated_experts,
        n_group=args.n_expert_groups,
        topk_group=args.n_limited_groups,
        norm_topk_prob=True,
        routed_scaling_factor=args.route_scale,
        q_lora_rank=args.q_lora_rank or None,
        kv_lora_rank=args.kv_lora_rank,
        qk_nope_head_dim=args.qk_nope_head_dim,
        qk_rope_head_dim=args.qk_rope_head_dim,
        v_head_dim=args.v_head_dim,
        max_position_embeddings=args.max_seq_len,
        rope_parameters={
            "rope_type": "yarn",
            "rope_theta": args.rope_theta,
            "factor": args.rope_factor,
            "original_max_position_embeddings": args.original_seq_len,
            "beta_fast": args.beta_fast,
            "beta_slow": args.beta_slow,
            # equal mscales: cos/sin unscaled, softmax scale times m^2, as in the reference
            "mscale": args.mscale,
            "mscale_all_dim": args.mscale,
        },
        rope_interleave=rope_interleave,
        num_mtp_layers=0,
        attn_implementation="eager",
    )


def hf_state_dict(model: Transformer, rope_interleave: bool) -> dict[str, torch.Tensor]:
    """Our weights in HF's in-memory layout (experts fused into 3-D tensors).

    Without rope_interleave HF rotates pairs (j, j + r/2) where we rotate (2j, 2j + 1), so the
    rows that produce q_pe (in wq / wq_b) and k_pe (in wkv_a) are de-interleaved.
    """
    args, ours = model.args, model.state_dict()
    r = args.qk_rope_head_dim
    order = torch.cat([torch.arange(0, r, 2), torch.arange(1, r, 2)])

    def rope_rows(weight: torch.Tensor, rows_per_head: int) -> torch.Tensor:
        if rope_interleave:
            return weight
        heads = weight.unflatten(0, (-1, rows_per_head))
        return torch.cat([heads[:, :-r], heads[:, -r:][:, order]], dim=1).flatten(0, 1)

    out = {
        "model.embed_tokens.weight": ours["embed.weight"],
        "model.norm.weight": ours["norm.weight"],
        "lm_head.weight": ours["head.weight"],
    }
    names = {"w1": "gate_proj", "w2": "down_proj", "w3": "up_proj"}
    for i in range(args.n_layers):
        src, dst = f"layers.{i}.", f"model.layers.{i}."
        attn = {
            "q_proj": rope_rows(ours[src + "attn.wq.weight"], args.qk_head_dim)
            if args.q_lora_rank == 0
            else None,
            "q_a_proj": ours.get(src + "attn.wq_a.weight"),
            "q_a_layernorm": ours.get(src + "attn.q_norm.weight"),
            "q_b_proj": rope_rows(ours[src + "attn.wq_b.weight"], args.qk_head_dim)
            if args.q_lora_rank
            else None,
            "kv_a_proj_with_mqa": rope_rows(ours[src + "attn.wkv_a.weight"], args.kv_lora_rank + r),
            "kv_a_layernorm": ours[src + "attn.kv_norm.weight"],
            "kv_b_proj": ours[src + "attn.wkv_b.weight"],
            "o_proj": ours[src + "attn.wo.weight"],
        }
        out |= {f"{dst}self_attn.{k}.weight": v for k, v in attn.items() if v is not None}
        out[dst + "input_layernorm.weight"] = ours[src + "attn_norm.weight"]
        out[dst + "post_attention_layernorm.weight"] = ours[src + "ffn_norm.weight"]
        if i < args.n_dense_layers:
            out |= {f"{dst}mlp.{names[w]}.weight": ours[f"{src}ffn.{w}.weight"] for w in names}
            continue
        out[dst + "mlp.gate.weight"] = ours[src + "ffn.gate.weight"]
        out[dst + "mlp.gate.e_score_correction_bias"] = ours[src + "ffn.gate.bias"]
        experts = range(args.n_routed_experts)
        out[dst + "mlp.experts.gate_up_proj"] = torch.stack(
            [
                torch.cat(
                    [
                        ours[f"{src}ffn.experts.{j}.w1.weight"],
                        ours[f"{src}ffn.experts.{j}.w3.weight"],
                    ]
                )
                for j in experts
            ]
        )
        out[dst + "mlp.experts.down_proj"] = torch.stack(
            [ours[f"{src}ffn.experts.{j}.w2.weight"] for j in experts]
        )
        out |= {
            f"{dst}mlp.shared_experts.{names[w]}.weight": ours[
                f"{src}ffn.shared_experts.{w}.weight"
            ]
            for w in names
        }
    return out


CASES = {
    "tiny": load_config("tiny"),
    # no q LoRA, one expert group
    "tiny-plain-q": load_config("tiny", q_lora_rank=0, n_expert_groups=1, n_limited_groups=1),
}


@pytest.mark.parametrize("rope_interleave", [False, True])
@pytest.mark.parametrize("case", list(CASES))
def test_last_position_logits_match_hugging_face(case: str, rope_interleave: bool) -> None:
    args = CASES[case]
    ours = build(args, seed=1, dtype=torch.float32, attn_impl="naive")
    hf = transformers.DeepseekV3ForCausalLM(hf_config(args, rope_interleave)).float().eval()
    result = hf.load_state_dict(hf_state_dict(ours, rope_interleave), strict=False)
    assert not result.missing_keys and not result.unexpected_keys
    tokens = random_tokens(args, 2, 48)
    with torch.no_grad():
        expected = hf(tokens).logits[:, -1]
    assert relative_error(ours(tokens), expected) <= 1e-4
    absorb = build(args, seed=1, dtype=torch.float32)
    assert relative_error(absorb(tokens), expected) <= 1e-4


def test_671b_parameter_count_matches_hugging_face() -> None:
    """HF keeps the gate bias as a buffer (e_score_correction_bias), we as a parameter."""
    with torch.device("meta"):
        hf = transformers.DeepseekV3ForCausalLM(hf_config(load_config("671B"), True))
    hf_total = sum(p.numel() for p in hf.parameters()) + sum(
        b.numel() for n, b in hf.named_buffers() if n.endswith("e_score_correction_bias")
    )
    assert hf_total == 671_026_419_200  # our count, test_deepseek_v3_params
