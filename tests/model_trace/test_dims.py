"""Symbolic shapes: sizes named by the fence, or found by tracing again with scaled inputs."""

from __future__ import annotations

import pytest

from model_trace.dims import legend_text, shape_text, symbolic_shape
from model_trace.errors import SpecError
from model_trace.focus import focus_graph
from model_trace.graph import Graph
from model_trace.pipeline import run_fence, trace_spec
from model_trace.spec import FenceSpec, parse_spec
from model_trace.tracing.summary import summary_table

ENCODER = ("model: torch.nn:TransformerEncoderLayer\n"
           "args: {d_model: 64, nhead: 4, dim_feedforward: 128, batch_first: true}\n"
           "inputs: [[2, 16, 64]]\n")


def _spec(text: str) -> FenceSpec:
    return parse_spec(text).with_defaults(depth=2, routing="balanced", export=())


def _shapes(graph: Graph) -> dict[str, str]:
    """The symbolic shape of every tensor an op or input made, by its producer's name."""
    found: dict[str, str] = {}
    for node in graph.nodes.values():
        for tensor in node.outputs:
            found.setdefault(f"{node.name}:{graph.tensors[tensor].shape_label}",
                             symbolic_shape(graph, graph.tensors[tensor]))
    return found


def test_a_mapping_names_every_dimension_of_that_size() -> None:
    graph = trace_spec(_spec(ENCODER + "dims: {2: B, 16: S, 64: d_model}"))
    shapes = _shapes(graph)
    assert shapes["src:(2, 16, 64)"] == "(B, S, d_model)"
    assert shapes["linear:(2, 16, 128)"] == "(B, S, 128)"
    assert legend_text(graph) == "B = 2, S = 16, d_model = 64"
    tensor = next(t for t in graph.tensors.values() if t.shape == [2, 16, 64])
    assert shape_text(graph, tensor) == "(B, S, d_model) float32 = (2, 16, 64)"


def test_a_mapping_names_only_the_dimensions_that_follow_its_sizes() -> None:
    """The tiny model's width is 128, as its sequence: only the tokens' dimensions are S."""
    graph = trace_spec(_spec("model: deepseek-v3\nconfig: tiny\nargs: {attn_impl: naive}\n"
                             "dims: {1: B, 128: S}"))
    attention = focus_graph(graph, "layers.0.attn")
    shapes = _shapes(attention)
    assert shapes["einsum:(1, 128, 4, 128)"] == "(B, S, 4, S)"  # the scores
    assert shapes["linear:(1, 128, 128)"] == "(B, S, 128)"  # the width, not (B, S, S)
    assert all(not s.endswith(", S)") for k, s in shapes.items() if k.startswith("linear:"))
    assert legend_text(attention) == "B = 1, S = 128"


def test_a_mapping_without_shapes_to_scale_names_every_dimension_of_its_sizes() -> None:
    graph = trace_spec(_spec("model: deepseek-v3\noverrides: {n_layers: 1}\n"
                             "inputs: model_zoo.deepseek_v3.examples:decode_step\n"
                             "dims: {7168: d_model}"))
    assert graph.meta["dims"] == {"sizes": {"7168": "d_model"}}
    assert "(1, 1, d_model)" in _shapes(graph).values()


def test_auto_names_batch_sequence_and_width_on_the_encoder_layer() -> None:
    graph = trace_spec(_spec(ENCODER + "dims: auto"))
    assert legend_text(graph) == "B = 2, S = 16, d_model = 64"
    shapes = _shapes(graph)
    assert shapes["src:(2, 16, 64)"] == "(B, S, d_model)"
    assert shapes["transpose:(16, 2, 64)"] == "(S, B, d_model)"  # attention's own layout
    assert shapes["linear:(2, 16, 128)"] == "(B, S, 128)"  # the feed-forward width stays


@pytest.fixture(scope="module")
def attention() -> Graph:
    graph = trace_spec(_spec("model: deepseek-v3\nconfig: tiny\nargs: {attn_impl: naive}\n"
                             "dims: auto"))
    return focus_graph(graph, "layers.0.attn")


def test_auto_names_batch_sequence_and_width_on_the_zoo_attention(attention: Graph) -> None:
    assert legend_text(attention) == "B = 1, S = 128, d_model = 128"
    shapes = _shapes(attention)
    inputs = [symbolic_shape(attention, attention.tensors[t]) for n in attention.nodes.values()
              if n.kind == "input" for t in n.outputs]
    assert "(B, S, d_model)" in inputs  # x, from attn_norm
    assert "(S, S)" in inputs  # the causal mask: the sequence meets itself
    assert shapes["einsum:(1, 128, 4, 128)"] == "(B, S, 4, S)"  # scores: heads stay numbers
    # a size the model fixes is never the sequence, even when it is 128 too
    assert all(not s.endswith(", S)") for k, s in shapes.items() if k.startswith("linear:"))
    assert shapes["new_zeros:(4, 256, 4, 48)"] == "(4, 256, 4, 48)"  # the cache's fixed rows


def test_products_of_two_dimensions_are_named_as_expressions() -> None:
    graph = trace_spec(_spec("model: deepseek-v3\nconfig: tiny\ninputs: {tokens: [2, 16]}\n"
                             "dims: auto"))
    moe = focus_graph(graph, "layers.1.ffn")
    shapes = _shapes(moe)
    assert shapes["view:(32, 128)"] == "(B·S, d_model)"  # tokens of the batch, flattened
    assert any(s.startswith("(B·S·4") for s in shapes.values())  # each token's 4 experts


def test_names_show_on_edges_tooltips_and_in_the_summary(attention: Graph) -> None:
    output = run_fence(_spec("model: deepseek-v3\nconfig: tiny\nfocus: layers.0.attn\n"
                             "dims: auto\nsummary: 1"))
    assert ">(B, S, d_model)</text>" in output.html  # an edge label of the static SVG
    assert "(B, S, d_model) bfloat16 = (1, 128, 128)" in output.html  # a tooltip line
    assert '<p class="mt-dims">Dimensions: B = 1, S = 128, d_model = 128</p>' in output.html
    assert "dimensions: B = 1, S = 128, d_model = 128" in summary_table(attention)
    assert "(B, S, d_model)" in summary_table(attention)


def test_auto_needs_shapes_it_can_scale() -> None:
    spec = _spec("model: deepseek-v3\nconfig: tiny\n"
                 "inputs: model_zoo.deepseek_v3.examples:decode_step\ndims: auto")
    with pytest.raises(SpecError, match="needs `inputs:` given as shapes") as error:
        trace_spec(spec)
    assert error.value.field == "dims"
