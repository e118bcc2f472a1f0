"""Activated parameters of modules the forward never called: those of their parameters some
op read directly count (absorbed attention reads ``wkv_b.weight`` without calling ``wkv_b``),
the others count 0 (a vision tower a text-only forward skips, an expert without tokens); the
table and the tooltip tell the two apart."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from model_trace.details import item_text
from model_trace.graph import Graph, ModuleCall
from model_trace.tracing import trace
from model_trace.tracing.summary import summary_rows
from model_trace.view_tree import ViewTree
from model_zoo.deepseek_v3 import RuntimeOptions, Transformer, load_config

WIDTH = 8


class ReadsAWeightDirectly(nn.Module):
    """``up`` is never called, but its weight (not its bias) is read by the parent's matmul;
    ``tower`` is never called and nothing reads it."""

    def __init__(self) -> None:
        super().__init__()
        self.up = nn.Linear(WIDTH, 2 * WIDTH)
        self.tower = nn.Sequential(nn.Linear(WIDTH, WIDTH), nn.Linear(WIDTH, WIDTH))
        self.out = nn.Linear(2 * WIDTH, WIDTH, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(x @ self.up.weight.t())


def _call(graph: Graph, path: str) -> ModuleCall:
    return next(c for c in graph.modules.values() if c.path == path)


def test_an_uncalled_module_counts_only_the_weights_an_op_read() -> None:
    graph = trace(ReadsAWeightDirectly(), torch.zeros(3, WIDTH, device="meta"))
    up, tower = _call(graph, "up"), _call(graph, "tower")
    assert not up.called and not tower.called
    assert (up.stats.params, up.stats.activated_params) == (2 * WIDTH * WIDTH + 2 * WIDTH,
                                                            2 * WIDTH * WIDTH)
    assert (tower.stats.params, tower.stats.activated_params) == (2 * (WIDTH * WIDTH + WIDTH),
                                                                  0)
    out = 2 * WIDTH * WIDTH
    assert graph.meta["totals"]["activated_params"] == 2 * WIDTH * WIDTH + out
    assert graph.meta["totals"]["params"] == 2 * WIDTH * WIDTH + 2 * WIDTH \
        + 2 * (WIDTH * WIDTH + WIDTH) + out


def test_the_table_and_the_tooltip_say_which_uncalled_modules_had_weights_read() -> None:
    graph = trace(ReadsAWeightDirectly(), torch.zeros(3, WIDTH, device="meta"))
    classes = {row.name: row.cls for row in summary_rows(graph)}
    assert classes["up"] == "Linear (never called; weights read directly)"
    assert classes["tower"] == "Sequential (never called)"
    tree = ViewTree.from_graph(graph)
    rows = dict(item_text(tree, _call(graph, "up").id).rows)
    assert rows["called"] == "never called; weights read directly"
    rows = dict(item_text(tree, _call(graph, "tower").id).rows)
    assert rows["called"] == "never called" and rows["activated"] == "0"


class _Stack(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.empty(4, WIDTH, WIDTH))  # 4 stacked experts


class _Bank(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.inner = _Stack()


class SlicesOfAnUncalledModule(nn.Module):
    """Stacked experts in a module that is never called (``bank``, or ``bank.inner`` below
    it): the parent's ops read the slice of each token's chosen expert."""

    def __init__(self, nested: bool) -> None:
        super().__init__()
        self.gate = nn.Linear(WIDTH, 4, bias=False)
        self.bank = _Bank() if nested else _Stack()
        self.nested = nested

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        stack = self.bank.inner if self.nested else self.bank
        chosen = self.gate(x).topk(1, dim=-1).indices[:, 0]
        out = torch.zeros_like(x)
        for expert in chosen.unique().tolist():
            rows = torch.where(chosen == expert)[0]
            out = out.index_add(0, rows, x[rows] @ stack.w[expert])
        return out


@pytest.mark.parametrize("nested", [False, True], ids=["holds them", "holds their holder"])
def test_an_uncalled_module_with_stacked_experts_counts_the_share_the_tokens_used(
        nested: bool) -> None:
    """Each of 4 tokens goes to one of 4 experts: one expert's slice per token is activated,
    also where the module holding them is inside the uncalled one (which the graph lists
    without its submodules)."""
    graph = trace(SlicesOfAnUncalledModule(nested), torch.zeros(4, WIDTH, device="meta"),
                  fold=False)
    one_expert = WIDTH * WIDTH
    bank = _call(graph, "bank")
    assert not bank.called
    assert (bank.stats.params, bank.stats.activated_params) == (4 * one_expert, one_expert)
    assert graph.meta["totals"]["activated_params"] == 4 * WIDTH + one_expert
    holder = "bank.inner" if nested else "bank"
    assert graph.meta["experts"] == {holder: {
        "cls": "_Stack", "count": 4, "called": 4, "active_per_token": 1.0,
        "tokens": [1, 1, 1, 1], "stacked": ["w"]}}


def test_deepseek_v3_counts_absorbed_wkv_b_and_not_the_experts_without_tokens() -> None:
    """Absorbed attention reads wkv_b's weight without calling it: the model activates what
    the naive attention, which calls wkv_b, activates; experts no token chose count 0."""
    tokens = torch.zeros(2, 8, dtype=torch.int64)
    figures = {}
    for attention in ("absorb", "naive"):
        model = Transformer(load_config("tiny"), RuntimeOptions(device="meta",
                                                                attn_impl=attention))
        graph = trace(model, tokens, routing=[4, 6, 9, 11], fold=False)
        figures[attention] = graph.meta["totals"]["activated_params"]
        uncalled = [c for c in graph.modules.values() if not c.called]
        for call in uncalled:
            if call.path.endswith("wkv_b"):
                assert attention == "absorb"
                assert call.stats.activated_params == call.stats.params > 0
            else:
                assert call.cls == "Expert" and call.stats.activated_params == 0
        assert sum(c.cls == "Expert" for c in uncalled) == 2 * 12  # 2 MoE layers, 4 of 16 used
    assert figures["absorb"] == figures["naive"]
