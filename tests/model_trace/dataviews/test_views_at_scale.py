"""The experts view of the full 671B DeepSeek-V3 (routing policies on the meta device) and
the optional projections (t-SNE, UMAP): what the "Looking inside" pages draw."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch

from model_trace.dataviews.experts import ExpertLoad
from model_trace.dataviews.projection import project
from model_trace.dataviews.run import draw_experts_view
from model_trace.pipeline import trace_spec
from model_trace.spec import parse_spec

TOKENS = 128
"""The tokens of a DeepSeek-V3 fence's default input (one sequence of 128)."""
EXPERTS_PAGE = Path(__file__).resolve().parents[3] / "docs" / "looking-inside" / "experts.md"
"""The docs page that quotes these figures."""


def _template_data(html: str) -> dict:
    found = re.search(r'<template class="mt-dv-data">(.*?)</template>', html, re.S)
    assert found is not None
    return json.loads(found.group(1))


@pytest.mark.slow
@pytest.mark.parametrize("routing", ["balanced", "random"])
def test_671b_experts_view_draws_the_traced_counts_of_58_layers_by_256(routing) -> None:
    spec = parse_spec(f"view: experts\nmodel: deepseek-v3\nconfig: 671B\nrouting: {routing}\n"
                      ).with_defaults(depth=1, routing="balanced", export=())
    graph = trace_spec(spec)
    experts = graph.meta["experts"]
    html = draw_experts_view(graph, spec).html
    shown = _template_data(html)
    assert shown["containers"] == list(experts)
    assert shown["counts"] == [experts[c]["tokens"] for c in experts]
    assert len(shown["counts"]) == 58  # layers 3-60: the first 3 are dense
    assert shown["containers"][0] == "layers.3.ffn.experts"
    assert shown["containers"][-1] == "layers.60.ffn.experts"
    assert {len(row) for row in shown["counts"]} == {256}
    assert {sum(row) for row in shown["counts"]} == {TOKENS * 8}  # 8 routed experts a token
    overall = ExpertLoad.of(graph).overall
    if routing == "balanced":  # 1024 choices over 256 experts: 4 each, everywhere
        assert {c for row in shown["counts"] for c in row} == {4}
        assert "max/mean 1.00 · experts without a token 0.0% · Gini 0.000" in html
    else:
        assert overall.max_over_mean > 1.5 and overall.gini > 0.1
        assert f"max/mean {overall.max_over_mean:.2f}" in html
    assert "58 layers × 256" in html
    page = " ".join(EXPERTS_PAGE.read_text(encoding="utf-8").split())
    assert "58 mixture-of-experts layers (layers 3 to 60" in page
    assert f"{TOKENS} tokens: {TOKENS * 8:,} expert choices per layer" in page
    if routing == "balanced":
        assert f"gets the same share, {TOKENS * 8:,} / 256 = 4 tokens" in page
    else:
        assert (f"the busiest expert gets {overall.max_over_mean:.2f} times the mean, "
                f"{overall.idle_share:.1%} of the experts get no token, and the Gini "
                f"coefficient of the counts is {overall.gini:.3f}") in page


def _two_clusters() -> tuple[torch.Tensor, list[int]]:
    generator = torch.Generator().manual_seed(3)
    centres = torch.zeros(2, 16, dtype=torch.float64)
    centres[1, 0] = 12.0
    vectors = torch.cat([centres[g] + torch.randn(15, 16, generator=generator,
                                                   dtype=torch.float64) for g in (0, 1)])
    return vectors, [0] * 15 + [1] * 15


@pytest.mark.parametrize("method", ["tsne", pytest.param("umap", marks=pytest.mark.slow)])
def test_optional_projections_are_seeded_and_keep_clusters_apart(method) -> None:
    """UMAP is slow: numba compiles it on first use (minutes on a busy machine)."""
    pytest.importorskip("sklearn" if method == "tsne" else "umap")
    vectors, groups = _two_clusters()
    first, again = project(vectors, method), project(vectors.clone(), method)
    assert first.points == again.points  # seeded: the same plot every build
    assert first.method == {"tsne": "t-SNE", "umap": "UMAP"}[method]
    points = torch.tensor(first.points)
    distances = torch.cdist(points, points) + torch.eye(len(points)) * 1e9
    nearest = distances.argmin(1).tolist()
    assert all(groups[i] == groups[j] for i, j in enumerate(nearest))


def test_experts_view_of_a_transformers_mixture_of_experts() -> None:
    """transformers' Mixtral (2 layers of 8 experts, 2 per token) on the meta device: the
    view finds its expert containers and draws the traced counts."""
    transformers = pytest.importorskip("transformers")
    from model_trace.dataviews.draw_experts import draw_experts
    from model_trace.tracing import trace

    config = transformers.MixtralConfig(
        vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, num_local_experts=8,
        num_experts_per_tok=2)
    with torch.device("meta"):  # bfloat16, as published: its grouped matmul wants it
        model = transformers.AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)
    graph = trace(model, torch.arange(12).unsqueeze(0), routing="random")
    load = ExpertLoad.of(graph)
    assert len(load.containers) == 2 and all(".layers." in c for c in load.containers)
    assert [len(row) for row in load.counts] == [8, 8]
    assert [sum(row) for row in load.counts] == [12 * 2, 12 * 2]  # 2 experts a token
    shown = _template_data(draw_experts(load, "p").figure_html("p"))
    assert shown["counts"] == [graph.meta["experts"][c]["tokens"] for c in load.containers]
