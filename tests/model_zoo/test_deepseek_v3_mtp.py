"""The multi-token-prediction option: the published 685B total, the checkpoint's layer 61, and
a draft that incremental decoding reproduces."""

import warnings
from pathlib import Path

import pytest
import torch
from deepseek_v3_helpers import build, random_tokens

from model_zoo.deepseek_v3 import (
    MoE,
    RuntimeOptions,
    Transformer,
    YarnOffWarning,
    load_checkpoint,
    load_config,
    native_name,
    parameter_breakdown,
)

TINY_MTP = load_config("tiny", mtp=True)


@pytest.fixture(scope="module")
def model_685b() -> Transformer:
    with torch.device("meta"):
        return Transformer(load_config("671B", mtp=True), RuntimeOptions(world_size=1, rank=0))


def _count(module: torch.nn.Module) -> int:
    return sum(p.numel() for n, p in module.named_parameters() if not n.endswith("scale"))


def test_mtp_parameters_match_the_hand_count(model_685b: Transformer) -> None:
    """The spec's hand count from README_WEIGHTS: one MoE block like layers 3-60, eh_proj
    (2 * 7168 -> 7168), enorm, hnorm and shared_head.norm, plus copies of embedding and head."""
    mtp = model_685b.mtp
    assert mtp is not None
    moe_block = 11_320_164_608 + 187_107_328 + 2 * 7168
    assert _count(mtp.block) == moe_block == 11_507_286_272
    assert _count(mtp.eh_proj) == 2 * 7168 * 7168 == 102_760_448
    assert _count(mtp.enorm) + _count(mtp.hnorm) + _count(mtp.norm) == 3 * 7168 == 21_504
    counts = parameter_breakdown(model_685b)
    assert counts["mtp_unique"] == moe_block + 102_760_448 + 21_504 == 11_610_068_224
    assert counts["mtp"] == 11_610_068_224 + 2 * 926_679_040 == 13_463_426_304
    assert counts["total"] == 671_026_419_200 + 13_463_426_304 == 684_489_845_504  # "685B"
    main = parameter_breakdown(load_config("671B"))
    assert counts["activated_per_token"] == main["activated_per_token"]  # MTP apart
    # README_WEIGHTS says 2.4B activated; we count 2.54B (2.44B without eh_proj)
    assert counts["mtp_activated"] == 2_541_458_688


def test_mtp_block_is_a_moe_block_and_its_projection_is_never_fp8(
        model_685b: Transformer) -> None:
    mtp = model_685b.mtp
    assert mtp is not None and isinstance(mtp.block.ffn, MoE)
    assert mtp.eh_proj.weight.dtype == torch.bfloat16 and mtp.eh_proj.scale is None
    assert mtp.head.weight.dtype == torch.bfloat16
    assert mtp.block.attn.wq_b.weight.dtype == torch.float8_e4m3fn
    with torch.device("meta"):
        two_layers = Transformer(load_config("671B", n_layers=2, mtp=True),
                                 RuntimeOptions(world_size=1, rank=0))
    assert isinstance(two_layers.mtp.block.ffn, MoE)  # even when overrides leave no MoE layer
    assert load_config("671B").mtp is False  # off by default, as in the inference reference


def test_draft_of_a_prefill_equals_the_draft_of_a_decoding_step() -> None:
    """The MTP block keeps its own KV cache at the main model's positions: a decoding step
    after a prefill gives the draft a full prefill gives, once the fed token is the greedy one."""
    model = build(TINY_MTP, dtype=torch.float32)
    prompt = random_tokens(TINY_MTP, 2, 11)
    logits, _ = model(prompt)
    tokens = torch.cat([prompt, logits.argmax(-1, keepdim=True)], dim=1)  # (2, 12)
    step_logits, step_draft = model(tokens[:, -1:], start_pos=11)
    fresh = build(TINY_MTP, dtype=torch.float32)
    full_logits, full_draft = fresh(tokens)
    assert full_draft.shape == (2, TINY_MTP.vocab_size)
    torch.testing.assert_close(step_logits, full_logits, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(step_draft, full_draft, rtol=1e-5, atol=1e-5)
    assert not torch.allclose(full_draft, full_logits)  # a different prediction


def test_the_checkpoints_layer_61_loads_into_the_mtp_module(tmp_path: Path) -> None:
    safetensors_torch = pytest.importorskip("safetensors.torch")
    model = build(TINY_MTP, dtype=torch.float32)
    n = TINY_MTP.n_layers
    published = {"mtp.embed": "embed_tokens", "mtp.norm": "shared_head.norm",
                 "mtp.head": "shared_head.head", "mtp.block.attn.wkv_a": "self_attn."
                 "kv_a_proj_with_mqa", "mtp.block.ffn.experts.3.w2": "mlp.experts.3.down_proj"}
    for ours, theirs in published.items():
        assert native_name(f"model.layers.{n}.{theirs}.weight", n) == f"{ours}.weight"
    state = {}
    for name, tensor in model.state_dict().items():
        if name.startswith("mtp."):
            part = name.removeprefix("mtp.")
            part = {"embed.weight": "embed_tokens.weight", "norm.weight": "shared_head.norm."
                    "weight", "head.weight": "shared_head.head.weight"}.get(part, part)
            name = f"model.layers.{n}.{part.removeprefix('block.')}"
        state[name] = tensor
    safetensors_torch.save_file(state, tmp_path / "model.safetensors")
    loaded = Transformer(TINY_MTP, RuntimeOptions(dtype=torch.float32, world_size=1, rank=0))
    load_checkpoint(loaded, tmp_path / "model.safetensors")
    tokens = random_tokens(TINY_MTP, 1, 9)
    for mine, theirs in zip(loaded(tokens), model(tokens), strict=True):
        assert torch.equal(mine, theirs)


def test_an_override_that_turns_yarn_off_warns() -> None:
    with pytest.warns(YarnOffWarning, match=r"max_seq_len=4096 <= original_seq_len=4096 turns "
                      r"YaRN off: .* softmax scale falls from 0\.135234 to 0\.072169"):
        args = load_config("671B", max_seq_len=4096)
    assert not args.yarn_enabled
    with pytest.warns(YarnOffWarning):
        load_config("tiny", max_seq_len=64)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load_config("671B", max_seq_len=8192)  # YaRN stays on: no warning
