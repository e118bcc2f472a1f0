"""ModelArgs and the named configs: the spec's values, derived quantities, clear errors."""

import math

import pytest
import torch

from model_zoo.deepseek_v3 import ModelArgs, list_configs, load_config, precompute_freqs_cis


def test_list_configs() -> None:
    assert list_configs() == ["16B", "236B", "671B", "tiny", "v3.1"]


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("16B", dict(dim=2048, n_layers=27, n_routed_experts=64, q_lora_rank=0, mscale=0.707)),
        ("236B", dict(dim=5120, n_heads=128, n_expert_groups=8, n_limited_groups=3)),
        ("671B", dict(dim=7168, n_dense_layers=3, score_func="sigmoid", dtype="fp8")),
        ("v3.1", dict(vocab_size=129280, dtype="fp8", scale_fmt="ue8m0", route_scale=2.5)),
    ],
)
def test_published_configs(name: str, expected: dict[str, object]) -> None:
    args = load_config(name)
    assert {key: getattr(args, key) for key in expected} == expected
    assert (args.max_batch_size, args.max_seq_len, args.kv_lora_rank) == (8, 16384, 512)


def test_overrides() -> None:
    args = load_config("671B", n_layers=4)
    assert args.n_layers == 4 and args.dim == 7168


def test_gate_bias_follows_the_reference_rule_unless_set() -> None:
    assert load_config("671B").has_gate_bias
    assert load_config("v3.1").has_gate_bias
    assert not load_config("236B").has_gate_bias
    assert not load_config("16B").has_gate_bias
    assert load_config("tiny").has_gate_bias  # set explicitly: dim is 128
    assert not load_config("671B", gate_bias=False).has_gate_bias


def test_tiny_exercises_every_branch() -> None:
    args = load_config("tiny")
    assert args.q_lora_rank > 0
    assert 0 < args.n_dense_layers < args.n_layers
    assert args.n_expert_groups > 1 and args.n_limited_groups < args.n_expert_groups
    assert args.score_func == "sigmoid" and args.has_gate_bias and args.n_shared_experts > 0
    assert args.yarn_enabled


@pytest.mark.parametrize(
    ("name", "scale"), [("671B", 0.135234), ("236B", 0.135234), ("16B", 0.114721)]
)
def test_softmax_scale(name: str, scale: float) -> None:
    """192^-0.5 * m^2 with m = 0.1 * mscale * ln(rope_factor) + 1."""
    assert load_config(name).softmax_scale == pytest.approx(scale, abs=5e-7)


def test_short_context_turns_yarn_off() -> None:
    args = load_config("671B", max_seq_len=4096)
    assert not args.yarn_enabled
    assert args.softmax_scale == 192**-0.5


def test_yarn_frequencies_671b() -> None:
    """Correction range low 10, high 23: frequencies 0..10 kept, 23.. divided by 40."""
    args = load_config("671B", max_seq_len=32)
    plain = 1e4 ** -(torch.arange(0, 64, 2, dtype=torch.float64) / 64)
    freqs = precompute_freqs_cis(load_config("671B")).angle()[1].double()
    assert freqs.shape == (32,)
    torch.testing.assert_close(freqs[:11], plain[:11], rtol=1e-6, atol=0)
    torch.testing.assert_close(freqs[23:], plain[23:] / 40, rtol=1e-6, atol=0)
    ramp = (torch.arange(32, dtype=torch.float64) - 10) / 13
    assert freqs[16] == pytest.approx(plain[16] / 40 * ramp[16] + plain[16] * (1 - ramp[16]))
    short = precompute_freqs_cis(args)
    assert short.shape == (32, 32) and short.dtype == torch.complex64
    torch.testing.assert_close(short.angle()[1].double(), plain, rtol=1e-6, atol=0)
    assert math.isclose(short.abs().max().item(), 1.0, rel_tol=1e-6)


def test_unknown_config_name_lists_the_choices() -> None:
    with pytest.raises(ValueError, match=r"unknown DeepSeek-V3 config '1T'.*16B, 236B, 671B"):
        load_config("1T")


def test_unknown_field_lists_the_valid_fields() -> None:
    with pytest.raises(ValueError, match=r"unknown ModelArgs field\(s\) n_layer .*n_layers"):
        load_config("tiny", n_layer=2)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        (dict(score_func="relu"), "score_func='relu' is not one of"),
        (dict(dtype="fp16"), "dtype='fp16' is not one of"),
        (dict(n_expert_groups=3), "multiple of n_expert_groups=3"),
        (dict(n_limited_groups=2), "n_limited_groups=2 must be between 1 and"),
    ],
)
def test_invalid_values(changes: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ModelArgs(**changes)  # type: ignore[arg-type]
