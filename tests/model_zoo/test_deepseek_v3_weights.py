"""Checkpoints: safetensors round trips in our names and in Hugging Face's, fp8, errors."""

from pathlib import Path

import pytest
import torch
from deepseek_v3_helpers import build, random_tokens

from model_zoo.deepseek_v3 import (
    RuntimeOptions,
    Transformer,
    init_weights,
    load_checkpoint,
    load_config,
    native_name,
    quantize_state_dict,
)

safetensors_torch = pytest.importorskip("safetensors.torch")

ARGS = load_config("tiny")
HF_PARTS = {
    "embed": "embed_tokens",
    "attn": "self_attn",
    "ffn": "mlp",
    "attn_norm": "input_layernorm",
    "ffn_norm": "post_attention_layernorm",
    "wq_a": "q_a_proj",
    "q_norm": "q_a_layernorm",
    "wq_b": "q_b_proj",
    "wkv_a": "kv_a_proj_with_mqa",
    "kv_norm": "kv_a_layernorm",
    "wkv_b": "kv_b_proj",
    "wo": "o_proj",
    "w1": "gate_proj",
    "w2": "down_proj",
    "w3": "up_proj",
    "bias": "e_score_correction_bias",
    "scale": "weight_scale_inv",
}


def hf_name(name: str) -> str:
    """The published checkpoint's name for one of ours (the inverse of native_name)."""
    if name == "head.weight":
        return "lm_head.weight"
    return "model." + ".".join(HF_PARTS.get(part, part) for part in name.split("."))


def fresh(args=ARGS, **options: object) -> Transformer:
    return Transformer(args, RuntimeOptions(**{"world_size": 1, "rank": 0, **options}))


def test_native_names() -> None:
    assert native_name("model.layers.5.mlp.experts.17.gate_proj.weight_scale_inv") == (
        "layers.5.ffn.experts.17.w1.scale"
    )
    assert (
        native_name("model.layers.3.mlp.gate.e_score_correction_bias") == "layers.3.ffn.gate.bias"
    )
    assert native_name("model.layers.0.self_attn.kv_a_proj_with_mqa.weight") == (
        "layers.0.attn.wkv_a.weight"
    )
    assert native_name("lm_head.weight") == "head.weight"
    assert native_name("model.norm.weight") == "norm.weight"
    assert native_name("layers.0.attn.wq_a.weight") == "layers.0.attn.wq_a.weight"


def test_round_trip_in_our_names(tmp_path: Path) -> None:
    model = build(ARGS, dtype=torch.float32)
    safetensors_torch.save_file(model.state_dict(), tmp_path / "model.safetensors")
    loaded = fresh(dtype=torch.float32)
    load_checkpoint(loaded, tmp_path / "model.safetensors")
    tokens = random_tokens(ARGS, 2, 16)
    assert torch.equal(loaded(tokens), model(tokens))


def test_hugging_face_names_in_shards(tmp_path: Path) -> None:
    """Published layout: HF names, several files, and a multi-token-prediction layer (index
    n_layers) that the model has no place for."""
    model = build(ARGS)
    tensors = {hf_name(name): t for name, t in model.state_dict().items()}
    names = sorted(tensors)
    mtp = f"model.layers.{ARGS.n_layers}.self_attn.kv_a_proj_with_mqa.weight"
    safetensors_torch.save_file({n: tensors[n] for n in names[::2]}, tmp_path / "a.safetensors")
    safetensors_torch.save_file(
        {**{n: tensors[n] for n in names[1::2]}, mtp: torch.zeros(3)}, tmp_path / "b.safetensors"
    )
    loaded = fresh()
    load_checkpoint(loaded, tmp_path)
    tokens = random_tokens(ARGS, 2, 16)
    assert torch.equal(loaded(tokens), model(tokens))


def test_fp8_checkpoint_in_hugging_face_names(tmp_path: Path) -> None:
    fp8_args = load_config("tiny", dtype="fp8")
    model = init_weights(fresh(fp8_args), seed=3)
    hf = {hf_name(name): t for name, t in model.state_dict().items()}
    assert "model.layers.1.mlp.experts.0.up_proj.weight_scale_inv" in hf
    safetensors_torch.save_file(hf, tmp_path / "model.safetensors")
    loaded = fresh(fp8_args)
    load_checkpoint(loaded, tmp_path / "model.safetensors")
    for name, tensor in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[name].view(torch.uint8), tensor.view(torch.uint8))
    tokens = random_tokens(ARGS, 1, 8)
    assert torch.equal(loaded(tokens), model(tokens))


def test_fp8_checkpoint_needs_an_fp8_model(tmp_path: Path) -> None:
    bf16 = build(ARGS)
    fp8 = fresh(load_config("tiny", dtype="fp8"))
    safetensors_torch.save_file(
        quantize_state_dict(bf16.state_dict(), fp8), tmp_path / "model.safetensors"
    )
    with pytest.raises(
        ValueError, match=r"belongs to an fp8 weight but the model's .*\.weight is not fp8"
    ):
        load_checkpoint(fresh(), tmp_path / "model.safetensors")


def test_unknown_and_missing_tensors(tmp_path: Path) -> None:
    state = build(ARGS).state_dict()
    safetensors_torch.save_file(
        state | {"layers.0.attn.wq.weight": torch.zeros(1)}, tmp_path / "x.safetensors"
    )
    with pytest.raises(ValueError, match=r"layers\.0\.attn\.wq\.weight .* is not in the model"):
        load_checkpoint(fresh(), tmp_path / "x.safetensors")
    del state["norm.weight"]
    safetensors_torch.save_file(state, tmp_path / "x.safetensors")
    with pytest.raises(ValueError, match=r"lacks 1 tensors, e\.g\. \['norm\.weight'\]"):
        load_checkpoint(fresh(), tmp_path / "x.safetensors")
    with pytest.raises(FileNotFoundError, match="no safetensors checkpoint"):
        load_checkpoint(fresh(), tmp_path / "empty")


def test_init_weights_is_reproducible_across_dtypes() -> None:
    f32 = build(ARGS, seed=7, dtype=torch.float32)
    bf16 = build(ARGS, seed=7)
    for name, tensor in f32.state_dict().items():
        rounded = bf16.state_dict()[name]
        assert torch.equal(tensor.to(rounded.dtype), rounded), name
    assert f32.layers[0].attn_norm.weight.eq(1).all()
    assert not torch.equal(build(ARGS, seed=8).head.weight, bf16.head.weight)
