"""Any model, at its published full size on the meta device: transformers' mixtures of
experts (stacked experts, grouped matrix products), dense decoders, encoder-decoders,
encoders, vision, audio, state-space and hybrid models, a diffusers UNet and torchvision's
ResNet, ViT and ConvNeXt (``model_zoo.published``: configs from the checkpoints'
config.json). Llama 3, Mixtral, DBRX, Switch Transformer, Llama 4 and transformers'
DeepSeek-V3 are checked against hand formulas, DeepSeek-V3 against the zoo's own
implementation, torchvision's models against the counts torchvision ships.
``benchmarks/coverage.py`` times the same table.

torchvision's wheels need the torch they were built with, which is not the CPU torch of the
test environment: its rows are marked ``torchvision``, and CI runs them in a virtual
environment of their own (``.ci/run``). A row whose package does not import is skipped, and
fails when ``CI`` is set."""

from __future__ import annotations

import importlib
import os

import pytest
import torch

from model_trace.caveats import if_only_chosen_experts_ran, trace_caveats
from model_trace.graph import Graph
from model_trace.tracing import trace
from model_zoo.published import ARCHITECTURES, TOKENS, Published

pytestmark = pytest.mark.slow

DENSE_EXPERTS = {"Llama 4 Scout (text)"}
"""MoE models whose transformers implementation runs every expert on every token (Llama 4
multiplies all 16 experts by the routing scores): every expert's parameters are used, and the
trace says so (``graph.meta["dense_experts"]``, a caveat)."""


def _cases(names: list[str] | None = None) -> list[object]:
    return [pytest.param(name, marks=getattr(pytest.mark, ARCHITECTURES[name].package))
            for name in names or ARCHITECTURES]


def _require(package: str) -> None:
    """Skip without ``package``; fail instead when CI is set, so CI cannot pass silently."""
    try:
        importlib.import_module(package)
    except ImportError as error:
        message = f"{package} does not import ({error})"
        if package == "torchvision":
            message += ("; torchvision's wheels need the torch they were built with: .ci/run "
                        "runs these tests in a virtual environment of their own")
        if os.environ.get("CI"):
            pytest.fail(message + " and CI is set", pytrace=False)
        pytest.skip(message)


@pytest.mark.parametrize("package", [
    pytest.param(package, marks=getattr(pytest.mark, package))
    for package in sorted({a.package for a in ARCHITECTURES.values()})])
def test_every_package_of_the_matrix_imports(package: str) -> None:
    """Apart from the rows, which may be expected to fail (a strict xfail passes on any
    error, a missing package too)."""
    _require(package)


def _published(count: str) -> float:
    scale = {"M": 1e6, "B": 1e9}[count[-1]]
    return float(count[:-1]) * scale


def _traced(architecture: Published) -> tuple[torch.nn.Module, Graph]:
    _require(architecture.package)
    with torch.device("meta"):
        model = architecture.build()
    return model, trace(model, **architecture.inputs())


@pytest.mark.parametrize("name", _cases())
def test_every_architecture_traces_at_full_size_with_exact_totals(name: str) -> None:
    architecture = ARCHITECTURES[name]
    model, graph = _traced(architecture)
    totals = graph.meta["totals"]
    assert totals["params"] == sum(p.numel() for p in model.parameters())
    published = _published(architecture.params)
    assert abs(totals["params"] - published) / published < 0.01, totals["params"]
    assert totals["flops"] > 0 and 0 < totals["activated_params"] <= totals["params"]
    assert graph.meta["flops_without_formula"] == {}  # every op that multiplies is counted
    assert not [a for a in graph.meta["assumptions"] if a["warning"]]
    moe = "MoE" in architecture.family
    if moe and name not in DENSE_EXPERTS:
        assert totals["activated_params"] < totals["params"] / 2
        assert graph.meta["experts"]  # tokens per expert, in every MoE layer
    else:
        assert totals["activated_params"] == totals["params"]
    assert bool(graph.meta.get("dense_experts")) == (name in DENSE_EXPERTS)


def _linear(m: int, k: int, n: int) -> int:
    return 2 * m * k * n


def test_llama_3_8b_matches_its_hand_count() -> None:
    d, d_kv, inner, layers, heads, head_dim, vocab = 4096, 1024, 14336, 32, 32, 128, 128256
    _, graph = _traced(ARCHITECTURES["Llama 3 8B"])
    per_layer = 2 * d * d + 2 * d * d_kv + 3 * d * inner + 2 * d  # projections, mlp, norms
    params = layers * per_layer + 2 * vocab * d + d
    flops = layers * (_linear(TOKENS, 1, 2 * d * d + 2 * d * d_kv + 3 * d * inner)
                      + 2 * 2 * TOKENS * TOKENS * heads * head_dim) + _linear(TOKENS, d, vocab)
    totals = graph.meta["totals"]
    assert (totals["params"], totals["activated_params"], totals["flops"]) == \
        (params, params, flops) == (8_030_261_248, 8_030_261_248, 480_835_010_560)


def test_mixtral_8x7b_counts_two_experts_per_token() -> None:
    d, d_kv, inner, layers, heads, head_dim, vocab, experts = \
        4096, 1024, 14336, 32, 32, 128, 32000, 8
    _, graph = _traced(ARCHITECTURES["Mixtral 8x7B"])
    attention, expert, router = 2 * d * d + 2 * d * d_kv, 3 * d * inner, d * experts
    params = layers * (attention + experts * expert + router + 2 * d) + 2 * vocab * d + d
    activated = layers * (attention + 2 * expert + router + 2 * d) + 2 * vocab * d + d
    flops = layers * (_linear(TOKENS, 1, attention + router + 2 * expert)
                      + 2 * 2 * TOKENS * TOKENS * heads * head_dim) + _linear(TOKENS, d, vocab)
    totals = graph.meta["totals"]
    assert (totals["params"], totals["activated_params"], totals["flops"]) == \
        (params, activated, flops) == (46_702_792_704, 12_879_925_248, 816_446_439_424)
    for load in graph.meta["experts"].values():  # balanced: 32 tokens x 2 over 8 experts
        assert (load["count"], load["active_per_token"], load["tokens"]) == (8, 2.0, [8] * 8)


def test_dbrx_counts_four_of_sixteen_experts_per_token() -> None:
    """DBRX stores each layer's 16 experts as flat (16 x 10752, 6144) parameters and runs
    the chosen ones in a loop, one expert's picked rows at a time (``w.view(16, 10752,
    6144)[e]``): 4 experts per token, as the model card's 36B of 132B active."""
    d, d_qkv, inner, layers, heads, head_dim, vocab, experts = \
        6144, 6144 + 2 * 8 * 128, 10752, 40, 48, 128, 100352, 16
    attention, expert, router = d * d_qkv + d * d, 3 * d * inner, d * experts
    params = layers * (attention + experts * expert + router + 2 * d) + 2 * vocab * d + d
    activated = layers * (attention + 4 * expert + router + 2 * d) + 2 * vocab * d + d
    flops = layers * (_linear(TOKENS, 1, attention + router + 4 * expert)
                      + 2 * 2 * TOKENS * TOKENS * heads * head_dim) + _linear(TOKENS, d, vocab)
    _, graph = _traced(ARCHITECTURES["DBRX"])
    totals = graph.meta["totals"]
    assert (totals["params"], totals["activated_params"], totals["flops"]) == \
        (params, activated, flops) == (131_596_523_520, 36_469_708_800, 2_295_576_133_632)
    for load in graph.meta["experts"].values():  # balanced: 32 tokens x 4 over 16 experts
        assert (load["count"], load["active_per_token"], load["tokens"]) == (16, 4.0, [8] * 16)


def _deepseek_v3_flops(tokens: int) -> int:
    """Multi-head latent attention as transformers computes it (keys and values expanded
    per head, no absorption), 3 dense layers, 58 MoE layers of 1 shared and 8 of 256
    routed experts, the output head."""
    d, vocab, heads = 7168, 129280, 128
    projections = (d * 1536 + 1536 * heads * 192 + d * (512 + 64) + 512 * heads * (128 + 128)
                   + heads * 128 * d)
    attention = _linear(tokens, 1, projections) + 2 * tokens * tokens * heads * (192 + 128)
    dense = _linear(tokens, 1, 3 * d * 18432)
    moe = _linear(tokens, 1, d * 256 + (1 + 8) * 3 * d * 2048)
    return 61 * attention + 3 * dense + 58 * moe + _linear(tokens, d, vocab)


def test_transformers_deepseek_v3_matches_hand_counts_and_the_zoo(traced_671b) -> None:
    _, graph = _traced(ARCHITECTURES["DeepSeek-V3 (transformers)"])
    totals, zoo = graph.meta["totals"], traced_671b.graph.meta["totals"]
    assert totals["flops"] == _deepseek_v3_flops(TOKENS) == 2_349_091_258_368
    # the zoo keeps each gate's bias correction (256 per MoE layer) as a parameter and adds
    # fp8 block scales; transformers keeps the bias as a buffer, in bf16 without scales
    bias = 58 * 256
    assert totals["params"] == zoo["params"] - zoo["block_scale_params"] - bias
    assert totals["activated_params"] == \
        zoo["activated_params"] - zoo["activated_block_scale_params"] - bias
    assert totals["activated_params"] == 37_552_297_472 - bias
    loads = graph.meta["experts"]
    assert len(loads) == 58 and {load["active_per_token"] for load in loads.values()} == {8.0}


def test_switch_base_8_counts_one_expert_per_token() -> None:
    """12 encoder and 12 decoder layers, every second feed-forward 8 experts of which each
    token takes 1 (the experts are modules fed ``x[None, idx].reshape(-1, d)``); the decoder
    reads the encoder's 32 tokens through cross-attention; the head is tied to the embedding."""
    d, ff, experts, vocab, layers, heads, d_kv, buckets = 768, 3072, 8, 32128, 12, 12, 64, 32
    encoder_tokens, decoder_tokens = TOKENS, 8
    attention, expert, router = 4 * d * d, 2 * d * ff, d * experts
    sparse = layers // 2  # feed-forwards with experts, per stack
    encoder = layers * (attention + 2 * d) + sparse * (expert + router + experts * expert)
    decoder = layers * (2 * attention + 3 * d) + sparse * (expert + router + experts * expert)
    params = encoder + decoder + 2 * (d + buckets * heads) + vocab * d
    activated = params - 2 * sparse * (experts - 1) * expert

    def feed_forwards(tokens: int) -> int:
        return sparse * _linear(tokens, 1, expert) + sparse * _linear(tokens, 1, router + expert)

    t, s = encoder_tokens, decoder_tokens
    flops = (layers * (_linear(t, 1, attention) + 2 * 2 * t * t * heads * d_kv)
             + feed_forwards(t)
             + layers * (_linear(s, 1, attention) + 2 * 2 * s * s * heads * d_kv
                         + _linear(s, 1, 2 * d * d) + _linear(t, 1, 2 * d * d)
                         + 2 * 2 * s * t * heads * d_kv)
             + feed_forwards(s) + _linear(s, d, vocab))
    _, graph = _traced(ARCHITECTURES["Switch Transformer base-8"])
    totals = graph.meta["totals"]
    assert (totals["params"], totals["activated_params"], totals["flops"]) == \
        (params, activated, flops) == (619_339_008, 222_977_280, 8_374_517_760)
    loads = graph.meta["experts"]
    assert len(loads) == 2 * sparse
    for path, load in loads.items():  # balanced: 32 (encoder) or 8 (decoder) tokens over 8
        per_expert = (encoder_tokens if path.startswith("encoder") else decoder_tokens) // 8
        assert (load["count"], load["active_per_token"], load["tokens"]) == \
            (8, 1.0, [per_expert] * 8)


def test_llama_4_scout_runs_every_expert_and_says_what_choosing_would_cost() -> None:
    """transformers' Llama 4 multiplies every token by all 16 experts of every layer
    (weighted by the router's scores): the trace counts all of them, and its caveat gives the
    published 17B active from the 1 expert of 16 the router chooses."""
    d, d_kv, inner, layers, heads, head_dim, vocab, experts = \
        5120, 1024, 8192, 48, 40, 128, 202048, 16
    attention, expert, router = 2 * d * d + 2 * d * d_kv, 3 * d * inner, d * experts
    per_layer = attention + router + expert + experts * expert + 2 * d  # + shared expert
    params = layers * per_layer + 2 * vocab * d + d
    flops = layers * (_linear(TOKENS, 1, per_layer - 2 * d)
                      + 2 * 2 * TOKENS * TOKENS * heads * head_dim) + _linear(TOKENS, d, vocab)
    unchosen = layers * (experts - 1) * expert
    _, graph = _traced(ARCHITECTURES["Llama 4 Scout (text)"])
    totals = graph.meta["totals"]
    assert (totals["params"], totals["activated_params"], totals["flops"]) == \
        (params, params, flops) == (107_769_861_120, 107_769_861_120, 6_832_038_871_040)
    dense = graph.meta["dense_experts"]
    assert len(dense) == layers and {(e["count"], e["chosen"]) for e in dense.values()} == \
        {(experts, 1)}
    assert if_only_chosen_experts_ran(graph) == \
        (params - unchosen, flops - _linear(TOKENS, 1, unchosen)) == \
        (17_172_894_720, 1_033_833_021_440)
    (caveat,) = trace_caveats(graph)
    assert "48 × Llama4TextExperts" in caveat and "17.2B parameters activated" in caveat


TORCHVISION = [name for name, a in ARCHITECTURES.items() if a.package == "torchvision"]


@pytest.mark.parametrize("name", _cases(TORCHVISION))
def test_torchvision_models_match_the_counts_torchvision_publishes(name: str) -> None:
    """torchvision's weights carry their parameter count and their GFLOPS for one 224 x 224
    image, counted as multiply-adds (``_ops``, 3 decimals): the trace counts 2 per
    multiply-add."""
    _, graph = _traced(ARCHITECTURES[name])
    import torchvision

    enum, _, member = ARCHITECTURES[name].source.split()[1].partition(".")
    published = getattr(getattr(torchvision.models, enum), member).meta
    totals = graph.meta["totals"]
    assert totals["params"] == totals["activated_params"] == published["num_params"]
    assert round(totals["flops"] / 2e9, 3) == published["_ops"]
