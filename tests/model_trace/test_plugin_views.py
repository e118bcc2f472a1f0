"""Views of one trace: focus on a submodule, the per-module breakdown table, shared traces."""

from __future__ import annotations

import re

import pytest

from model_trace.breakdown import breakdown_table
from model_trace.errors import SpecError
from model_trace.focus import focus_graph
from model_trace.pipeline import run_fences, trace_spec
from model_trace.session import Settings, TraceSession
from model_trace.spec import parse_spec

TINY = "model: deepseek-v3\nconfig: tiny\n"


def _prepared(text: str):
    return TraceSession(Settings(isolate=False)).prepare(parse_spec(text))


@pytest.fixture(scope="module")
def tiny_graph():
    return trace_spec(_prepared(TINY))


def _rows(table: str) -> list[list[str]]:
    return [[re.sub(r"<[^>]+>", "", cell) for cell in re.findall(r"<td[^>]*>(.*?)</td>", row)]
            for row in re.findall(r"<tr>(.*?)</tr>", table)[1:]]


def _int(text: str) -> int:
    return int(text.replace(",", ""))


def test_breakdown_rows_add_up_to_the_root(tiny_graph) -> None:
    rows = _rows(breakdown_table(tiny_graph, 1))
    root, children = rows[0], rows[1:]
    assert root[1] == "Transformer"
    assert sum(_int(row[2]) for row in children) == _int(root[2])
    assert sum(_int(row[4]) for row in children) == _int(root[4])


def test_a_folded_row_sums_its_members_and_its_children_count_one(tiny_graph) -> None:
    rows = _rows(breakdown_table(tiny_graph, 2))
    folded = [i for i, row in enumerate(rows) if "×" in row[1]]
    assert folded, rows
    index = folded[0]
    count = int(rows[index][1].split("×")[1])
    children = []
    for row in rows[index + 1:]:
        if "(each)" not in row[1]:
            break
        children.append(row)
    assert children
    assert sum(_int(row[2]) for row in children) * count == _int(rows[index][2])


def test_totals_leave_out_fp8_block_scales() -> None:
    graph = trace_spec(_prepared(TINY + "overrides: {dtype: fp8}"))
    totals = graph.meta["totals"]
    assert totals["block_scale_params"] > 0
    table = breakdown_table(graph, 0)
    expected = totals["params"] - totals["block_scale_params"]
    assert f"<strong>{expected:,}</strong> parameters" in table
    assert f"{totals['block_scale_params']:,} float32 fp8 block scales" in table


@pytest.mark.slow
def test_published_671b_totals_come_out_of_the_trace() -> None:
    """DeepSeek-V3's published counts: 671,026,419,200 parameters, 37.55B activated."""
    (output,) = run_fences([_prepared("model: deepseek-v3\nconfig: 671B\nsummary: 1")]).outputs
    assert "<strong>671,026,419,200</strong> parameters" in output.html
    activated = int(re.search(r"<strong>([\d,]+)</strong> activated", output.html)[1]
                    .replace(",", ""))
    assert round(activated / 1e9, 2) == 37.55


def test_focus_keeps_the_subtree_and_its_interface(tiny_graph) -> None:
    focused = focus_graph(tiny_graph, "layers.0.attn")
    root = focused.modules[focused.root]
    assert root.path == "layers.0.attn" and root.parent is None
    assert all(m.path.startswith("layers.0.attn") for m in focused.modules.values())
    kinds = [focused.nodes[c].kind for c in root.children if c in focused.nodes]
    assert "input" in kinds and "output" in kinds
    for edge in focused.edges:
        assert edge.src in focused.nodes and edge.dst in focused.nodes
    assert focused.meta["focus"]["context"][0] == "Transformer"
    assert "totals" not in focused.meta  # those are the whole model's


def test_focus_on_a_folded_member_points_at_its_representative(tiny_graph) -> None:
    folded = next(m for m in tiny_graph.walk_modules() if m.repeat is not None
                  and m.path.startswith("layers."))
    member = folded.repeat.members[-1]
    with pytest.raises(SpecError, match=rf"folded into '{re.escape(folded.path)}'.*fold: false"):
        focus_graph(tiny_graph, member + ".attn")


def test_one_job_draws_every_view_and_keeps_view_errors_apart() -> None:
    specs = [_prepared(TINY + "depth: 0"), _prepared(TINY + "focus: no.such.module")]
    drawn, failed = run_fences(specs).outputs
    assert '<figure class="model-trace"' in drawn.html
    assert isinstance(failed, SpecError) and failed.field == "focus"


def test_attention_scores_count_their_flops_under_inference_mode() -> None:
    """DeepSeek-V3's forward runs under ``torch.inference_mode``, where ``einsum`` reaches the
    FLOP counter undecomposed; the scores and the weighted sum must still count."""
    graph = trace_spec(_prepared(TINY + "args: {attn_impl: naive}"))
    einsums = [n for n in graph.nodes.values() if n.name == "einsum"]
    assert einsums
    for node in einsums:
        first, second = (graph.tensors[t].shape for t in node.inputs[:2])
        b, s, h = first[:3]
        t, d = second[1], second[-1]
        # "bshd,bthd->bsht" and "bsht,bthd->bshd" both multiply-add b*s*h*t*d times
        assert node.stats.flops == 2 * b * s * h * t * d, node.args
