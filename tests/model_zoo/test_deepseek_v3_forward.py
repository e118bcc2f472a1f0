"""Forward passes on the CPU: dtypes, naive vs absorb, KV-cache decoding, generate, fp8."""

import pytest
import torch
from deepseek_v3_helpers import build, random_tokens, relative_error, twin

from model_zoo.deepseek_v3 import (
    ModelArgs,
    RuntimeOptions,
    Transformer,
    generate,
    load_config,
    quantize_state_dict,
)

CONFIGS = {
    "tiny": load_config("tiny"),
    # the ModelArgs defaults (DeepSeek-V2-Lite shapes, YaRN on) cut to one dense + one MoE layer
    "default": ModelArgs(n_layers=2, max_batch_size=2),
}
SEQ_LEN = {"tiny": 32, "default": 64}


@pytest.fixture(scope="module", params=list(CONFIGS))
def f32_model(request: pytest.FixtureRequest) -> Transformer:
    return build(CONFIGS[request.param], dtype=torch.float32)


@pytest.fixture(scope="module")
def bf16_model(f32_model: Transformer) -> Transformer:
    """The float32 model's weights rounded to bfloat16."""
    model = Transformer(f32_model.args, RuntimeOptions(world_size=1, rank=0))
    model.load_state_dict(f32_model.state_dict())
    return model


def _tokens(model: Transformer) -> torch.Tensor:
    name = next(key for key, args in CONFIGS.items() if args == model.args)
    return random_tokens(model.args, 2, SEQ_LEN[name])


def test_float32_forward(f32_model: Transformer) -> None:
    logits = f32_model(_tokens(f32_model))
    assert logits.shape == (2, f32_model.args.vocab_size) and logits.dtype == torch.float32
    assert logits.isfinite().all()


def test_bf16_forward_is_close_to_float32(f32_model: Transformer, bf16_model: Transformer) -> None:
    tokens = _tokens(f32_model)
    logits = bf16_model(tokens)
    assert logits.dtype == torch.bfloat16 and logits.isfinite().all()
    assert relative_error(logits, f32_model(tokens)) < 0.05


def test_naive_matches_absorb(f32_model: Transformer) -> None:
    tokens = _tokens(f32_model)
    naive = twin(f32_model, attn_impl="naive")
    assert relative_error(naive(tokens), f32_model(tokens)) <= 1e-5


@pytest.mark.parametrize("attn_impl", ["absorb", "naive"])
def test_decoding_matches_prefill(f32_model: Transformer, attn_impl: str) -> None:
    """Last-token logits of one full prefill equal those of a shorter prefill followed by
    one-token decoding steps through the KV cache."""
    model = f32_model if attn_impl == "absorb" else twin(f32_model, attn_impl=attn_impl)
    tokens = _tokens(model)
    full = model(tokens)
    split = tokens.size(1) * 3 // 4
    model(tokens[:, :split])
    for pos in range(split, tokens.size(1)):
        step = model(tokens[:, pos : pos + 1], start_pos=pos)
    assert relative_error(step, full) <= 1e-5


@pytest.mark.parametrize("attn_impl", ["absorb", "naive"])
def test_chunked_prefill_matches_full_prefill(f32_model: Transformer, attn_impl: str) -> None:
    """s > 1 with start_pos > 0, a shape error in the reference, works here."""
    model = f32_model if attn_impl == "absorb" else twin(f32_model, attn_impl=attn_impl)
    tokens = _tokens(model)
    full = model(tokens)
    half = tokens.size(1) // 2
    model(tokens[:, :half])
    assert relative_error(model(tokens[:, half:], start_pos=half), full) <= 1e-5


def test_bf16_decoding_is_close_to_prefill(bf16_model: Transformer) -> None:
    tokens = _tokens(bf16_model)
    full = bf16_model(tokens)
    bf16_model(tokens[:, :-1])
    step = bf16_model(tokens[:, -1:], start_pos=tokens.size(1) - 1)
    assert relative_error(step, full) < 0.02


def test_caches_appear_on_first_forward() -> None:
    args = load_config("tiny")
    absorb = build(args, dtype=torch.float32)
    naive = twin(absorb, attn_impl="naive")
    assert absorb.layers[0].attn.kv_cache is None and naive.layers[0].attn.k_cache is None
    tokens = random_tokens(args, 1, 4)
    absorb(tokens)
    naive(tokens)
    b, t, h = args.max_batch_size, args.max_seq_len, args.n_heads
    assert absorb.layers[0].attn.kv_cache.shape == (b, t, args.kv_lora_rank)
    assert absorb.layers[0].attn.pe_cache.shape == (b, t, args.qk_rope_head_dim)
    assert naive.layers[0].attn.k_cache.shape == (b, t, h, args.qk_head_dim)
    assert naive.layers[0].attn.v_cache.shape == (b, t, h, args.v_head_dim)
    assert "kv_cache" not in absorb.state_dict()


def test_inputs_beyond_the_caches_are_refused() -> None:
    args = load_config("tiny")
    model = build(args, dtype=torch.float32)
    with pytest.raises(ValueError, match="max_seq_len=256"):
        model(random_tokens(args, 1, 8), start_pos=250)
    with pytest.raises(ValueError, match="max_batch_size=4"):
        model(random_tokens(args, 5, 8))


def test_generate_is_greedy_decoding() -> None:
    args = load_config("tiny")
    model = build(args, dtype=torch.float32)
    prompts = [[5, 6, 7], [8, 9, 10, 11, 12]]
    completions = generate(model, prompts, max_new_tokens=6)
    for prompt, completion in zip(prompts, completions, strict=True):
        expected = list(prompt)
        for _ in range(6):  # recompute the whole prefix each step, no cache reuse
            expected.append(model(torch.tensor([expected])).argmax(-1).item())
        assert completion == expected[len(prompt) :]


def test_generate_stops_at_eos() -> None:
    args = load_config("tiny")
    model = build(args, dtype=torch.float32)
    first = generate(model, [[1, 2, 3]], max_new_tokens=4)[0]
    assert generate(model, [[1, 2, 3]], max_new_tokens=4, eos_id=first[1]) == [first[:2]]
    with pytest.raises(ValueError, match="no empty prompts"):
        generate(model, [[]], max_new_tokens=1)


@pytest.mark.parametrize("gemm_impl", ["bf16", "fp8"])
@pytest.mark.parametrize("attn_impl", ["absorb", "naive"])
def test_fp8_weights_track_bf16(gemm_impl: str, attn_impl: str) -> None:
    """tiny with fp8 weights (quantised from the bf16 model's by the kernels' weight_quant)."""
    args = load_config("tiny")
    bf16 = build(args, attn_impl=attn_impl)
    fp8_args = load_config("tiny", dtype="fp8")
    fp8 = Transformer(fp8_args, RuntimeOptions(attn_impl=attn_impl, gemm_impl=gemm_impl))
    fp8.load_state_dict(quantize_state_dict(bf16.state_dict(), fp8))
    assert fp8.layers[1].ffn.experts[0].w1.weight.dtype == torch.float8_e4m3fn
    tokens = random_tokens(args, 2, 32)
    expected, actual = bf16(tokens), fp8(tokens)
    assert relative_error(actual, expected) <= 0.2
    assert torch.equal(actual.argmax(-1), expected.argmax(-1))


def test_fp8_weight_scales_survive_materialisation() -> None:
    with torch.device("meta"):
        model = Transformer(load_config("tiny", dtype="fp8"), RuntimeOptions())
    model.to_empty(device="cpu")
    wq_a = model.layers[0].attn.wq_a
    assert wq_a.weight.device.type == "cpu" and wq_a.weight.scale is wq_a.scale
