"""Activated parameters of modules the forward never called: those of their parameters some
op read directly count (absorbed attention reads ``wkv_b.weight`` without calling ``wkv_b``),
the others count 0 (a vision tower a text-only forward skips, an expert without tokens); the
table and the tooltip tell the two apart."""

from __future__ import annotations

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
