"""Parameters, activated parameters per token and activation bytes, checked against the
model itself and against DeepSeek-V3's published figures."""

from __future__ import annotations

import torch

from model_trace.tracing import trace

# DeepSeek-V3 671B, from the published breakdown (/work/shared/spec/deepseek_v3.md)
EMBED = HEAD = 926_679_040
ATTENTION = 187_107_328  # per layer, 61 layers
DENSE_MLP = 396_361_728  # per layer, 3 dense layers
EXPERT = 44_040_192  # one routed expert; the shared expert is the same size
GATE = 106_445_312 // 58  # per MoE layer, bias included
NORMS = 881_664  # all of them
FP8_BLOCK_SCALES = 40_838_232


def test_671b_totals_are_the_models_own_and_the_published_ones(traced_671b) -> None:
    totals = traced_671b.graph.meta["totals"]
    assert totals["params"] == traced_671b.parameters  # sum of the model's numel
    assert totals["params"] == 671_026_419_200 + FP8_BLOCK_SCALES
    assert totals["block_scale_params"] == FP8_BLOCK_SCALES


def test_671b_activated_parameters_per_token_match_the_spec(traced_671b) -> None:
    """A token goes through every dense part and, in each of the 58 MoE layers, the gate, the
    shared expert and 8 of the 256 routed experts: 37.552B including the embedding."""
    per_token = (EMBED + HEAD + 61 * ATTENTION + 3 * DENSE_MLP
                 + 58 * (GATE + (1 + 8) * EXPERT) + NORMS)
    totals = traced_671b.graph.meta["totals"]
    weights = totals["activated_params"] - totals["activated_block_scale_params"]
    assert weights == per_token == 37_552_297_472
    assert round(weights / 1e9, 3) == 37.552
    assert round((weights - EMBED) / 1e9, 3) == 36.626  # the embedding is only a lookup


def test_tiny_parameters_count_once_per_module_and_add_up(build_tiny, tiny_tokens) -> None:
    model = build_tiny()
    graph = trace(model, tiny_tokens.to("meta"), fold=False)
    root = graph.modules[graph.root]
    assert root.stats.params == sum(p.numel() for p in model.parameters())
    for call in graph.modules.values():
        if call.kind == "module" and call.path:
            module = model.get_submodule(call.path)
            assert call.stats.params == sum(p.numel() for p in module.parameters()), call.path
    # the MoE layers' experts: 16 each, 4 per token
    moe = next(c for c in graph.modules.values() if c.path == "layers.1.ffn")
    expert = sum(p.numel() for p in model.get_submodule("layers.1.ffn.experts.0").parameters())
    dense = moe.stats.params - 16 * expert
    assert moe.stats.activated_params == dense + 4 * expert


def test_activation_bytes_count_new_tensors_not_views() -> None:
    def reshape_then_scale(x: torch.Tensor) -> torch.Tensor:
        return (x.view(4, 6).t() * 2).to(torch.float16)

    graph = trace(reshape_then_scale, torch.empty(24, device="meta"))
    sizes = {n.name: n.stats.activation_bytes for n in graph.nodes.values() if n.kind == "op"}
    assert sizes == {"view": 0, "t": 0, "mul": 24 * 4, "to": 24 * 2}
    assert graph.meta["totals"]["activation_bytes"] == 24 * 4 + 24 * 2
