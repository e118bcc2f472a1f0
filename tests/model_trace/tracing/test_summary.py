"""The per-module table: folded runs summed with their members' spread, the modules inside
a run counted for one member, numbers right-aligned, the measured time where there is one."""

from __future__ import annotations

import pytest
import torch

from model_trace.graph import Graph
from model_trace.naming import format_count
from model_trace.tracing import trace
from model_trace.tracing.summary import (
    COLUMNS,
    MEASURED_COLUMN,
    Totals,
    columns,
    summary_rows,
    summary_table,
    totals,
)
from model_zoo.deepseek_v3 import RuntimeOptions, Transformer, load_config

from .models import TwoLayer


@pytest.fixture(scope="module")
def folded() -> Graph:
    """Tiny DeepSeek-V3 with 3 MoE layers folded into one run, tokens routed at random (so
    the experts' members differ in FLOPs)."""
    model = Transformer(load_config("tiny", n_layers=4), RuntimeOptions(device="meta"))
    return trace(model, torch.zeros(1, 8, dtype=torch.int64, device="meta"), routing="random")


def test_a_folded_run_sums_its_members_and_the_modules_inside_count_one(folded: Graph) -> None:
    rows = summary_rows(folded)
    (run,) = (r for r in rows if r.cls == "Block \u00d73")
    inside = rows[rows.index(run) + 1:]
    inside = inside[:next(i for i, r in enumerate(inside) if r.level <= run.level)]
    assert inside and all("(each)" in r.cls or "\u00d7" in r.cls for r in inside)
    assert not any("(each)" in r.cls for r in rows if r not in inside)
    members = folded.modules[run.call].repeat.member_stats
    assert run.flops == sum(s.flops for s in members)
    assert run.params == sum(s.params for s in members)


def test_members_of_different_flops_show_their_least_and_most(folded: Graph) -> None:
    spreads = {}
    for row in summary_rows(folded):
        repeat = folded.modules[row.call].repeat
        if repeat is None:
            assert row.per_member == ""
            continue
        flops = [s.flops for s in repeat.member_stats]
        low, high = min(flops), max(flops)
        spreads[row.cls.split(" ")[0]] = row.per_member
        assert row.per_member == (format_count(low) if low == high
                                  else f"{format_count(low)} \u2013 {format_count(high)}")
    assert "\u2013" in spreads["Expert"]  # random routing: experts' loads differ
    assert "\u2013" not in spreads["Block"]


def test_the_text_table_right_aligns_numbers_and_ends_with_the_totals(folded: Graph) -> None:
    text = summary_table(folded, max_depth=1)
    header, rule, *lines = text.splitlines()
    widths = [len(cell) for cell in rule.split("  ")]
    starts = [sum(widths[:i]) + 2 * i for i in range(len(widths))]
    rows = summary_rows(folded, max_depth=1)
    for row, line in zip(rows, lines, strict=False):
        for i, cell in enumerate(row.cells()[1:], start=1):
            placed = line[starts[i]:starts[i] + widths[i]]
            if i >= 2:  # numbers: right-aligned
                assert placed == cell.rjust(widths[i]), (i, line)
            else:
                assert placed == cell.ljust(widths[i]), (i, line)
    # the last columns: the call's input and output shapes (token ids in, logits out), two
    # at most and how many more
    assert lines[0].split()[-4:] == ["(1,", "8)", "(1,", "256)"]
    layer = next(c for c in folded.modules.values() if c.path == "layers.0")
    (line,) = (line for line in lines if line.strip().startswith("layers.0 "))
    assert len(layer.inputs) > 2 and f" +{len(layer.inputs) - 2}  " in line
    root = folded.modules[folded.root].stats
    totals = next(line for line in lines if line.startswith("Totals: "))
    assert totals.endswith(".") and totals.startswith(f"Totals: {root.params:,} parameters, "
                             f"{root.activated_params:,} activated per token, "
                             f"{root.flops:,} FLOPs per forward pass")
    assert header.split()[:2] == ["module", "class"] and MEASURED_COLUMN not in header


def test_a_measured_trace_adds_each_call_s_time() -> None:
    plain = trace(TwoLayer(), torch.randn(3, 8))
    assert columns(plain) == COLUMNS
    assert all(row.measured is None for row in summary_rows(plain))
    measured = trace(TwoLayer(), torch.randn(3, 8), execute="cpu")
    assert columns(measured) == (*COLUMNS, MEASURED_COLUMN)
    rows = summary_rows(measured)
    assert all(row.measured and row.measured != "\u2013" for row in rows)
    assert all(row.cells()[-1] == row.measured for row in rows)
    assert MEASURED_COLUMN in summary_table(measured).splitlines()[0]


def test_a_run_of_two_members_shows_their_flops_per_member() -> None:
    model = Transformer(load_config("tiny", n_layers=3), RuntimeOptions(device="meta"))
    graph = trace(model, torch.zeros(1, 8, dtype=torch.int64, device="meta"))
    (run,) = (r for r in summary_rows(graph) if r.cls == "Block \u00d72")
    (member,) = {s.flops for s in graph.modules[run.call].repeat.member_stats}
    assert run.per_member == format_count(member)


def test_totals_are_the_tracer_s_or_else_the_root_s() -> None:
    graph = trace(TwoLayer(), torch.randn(3, 8))
    meta = graph.meta["totals"]
    assert totals(graph) == Totals(meta["params"], meta["activated_params"], meta["flops"],
                                   meta["block_scale_params"],
                                   meta["activated_block_scale_params"], meta["weight_bytes"],
                                   meta["activation_bytes"], meta["workspace_bytes"])
    del graph.meta["totals"]  # a graph without the tracer's totals: the root's, no scales
    root = graph.modules[graph.root].stats
    assert totals(graph) == Totals(root.params, root.activated_params, root.flops, 0, 0,
                                   root.weight_bytes, root.activation_bytes,
                                   root.workspace_bytes)
    assert totals(graph).note() == ""


def test_fp8_totals_are_the_bf16_model_s_plus_the_block_scales_they_leave_out() -> None:
    """An fp8 model has the bf16 model's weights and, beside them, float32 block scales: the
    totals count the weights alone, and the note names the scales and how many are read."""
    tokens = torch.zeros(1, 8, dtype=torch.int64, device="meta")
    bf16, fp8 = (totals(trace(Transformer(load_config("tiny", n_layers=2, dtype=dtype),
                                          RuntimeOptions(device="meta")), tokens))
                 for dtype in ("bf16", "fp8"))
    assert bf16.scales == bf16.activated_scales == 0
    assert 0 < fp8.activated_scales < fp8.scales
    assert fp8.params - fp8.scales == bf16.params
    assert fp8.activated - fp8.activated_scales == bf16.activated
    assert dict(fp8.parts())[f"{bf16.activated:,}"] == "activated per token"
    assert f"{fp8.scales:,} float32 fp8 block scales, {fp8.activated_scales:,} of them" \
        in fp8.note()
