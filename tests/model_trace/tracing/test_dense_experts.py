"""Experts a model's code runs for every token although its router chooses fewer (Llama 4 in
transformers: every token through all experts, weighted by the router's scores): the trace
counts what the code computes, and says so on the summary and on the ops that ran them."""

from __future__ import annotations

import torch
from torch import nn

from model_trace.caveats import if_only_chosen_experts_ran, node_caveats, trace_caveats
from model_trace.graph import Graph
from model_trace.tracing import trace

EXPERTS, WIDTH, HIDDEN, TOKENS = 4, 8, 16, 6


class DenseMoe(nn.Module):
    """A router choosing ``chosen`` of ``EXPERTS`` per token over ``choices`` scores, and
    stacked experts every token goes through, scaled by its scores (0 where not chosen)."""

    def __init__(self, chosen: int = 1, choices: int = EXPERTS) -> None:
        super().__init__()
        self.router = nn.Linear(WIDTH, choices, bias=False)
        self.experts = nn.Module()
        self.experts.up = nn.Parameter(torch.randn(EXPERTS, WIDTH, HIDDEN))
        self.experts.down = nn.Parameter(torch.randn(EXPERTS, HIDDEN, WIDTH))
        self.chosen = chosen

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.router(x)
        top, picked = torch.topk(logits, self.chosen, dim=1)
        scores = torch.zeros_like(logits).scatter_(1, picked, top.sigmoid())[:, :EXPERTS]
        routed = x.repeat(EXPERTS, 1) * scores.t().reshape(-1, 1)
        hidden = torch.bmm(routed.view(EXPERTS, -1, WIDTH), self.experts.up).relu()
        out = torch.bmm(hidden, self.experts.down)
        return out.sum(dim=0)


def _traced(model: nn.Module) -> Graph:
    return trace(model, torch.randn(TOKENS, WIDTH), fold=False)


def test_experts_run_for_every_token_are_counted_whole_and_said_so() -> None:
    graph = _traced(DenseMoe(chosen=1))
    stacked = 2 * EXPERTS * WIDTH * HIDDEN
    totals = graph.meta["totals"]
    assert totals["params"] == totals["activated_params"] == WIDTH * EXPERTS + stacked
    expert_flops = 2 * 2 * EXPERTS * TOKENS * WIDTH * HIDDEN
    assert graph.meta["dense_experts"] == {"experts": {
        "cls": "Module", "count": EXPERTS, "chosen": 1, "stacked": ["up", "down"],
        "params": stacked, "flops": expert_flops}}
    # 1 of 4 experts per token: a quarter of the stacked parameters and of their FLOPs
    assert if_only_chosen_experts_ran(graph) == (
        WIDTH * EXPERTS + stacked // 4, totals["flops"] - expert_flops * 3 // 4)
    (caveat,) = trace_caveats(graph)
    assert caveat.startswith("Experts run densely: the model's code runs every token through "
                             "every expert")
    assert "1 × Module, experts: its router chooses 1 of 4 per token" in caveat
    assert f"Had only the chosen experts run: {WIDTH * EXPERTS + stacked // 4} parameters" \
        in caveat
    marked = [(node.name, node_caveats(node)) for node in graph.nodes.values()
              if node_caveats(node)]
    assert marked == [("bmm", [
        f"every expert for every row: experts.{name} holds 4 experts, the router chose 1 "
        "per token, and this op ran all of them"]) for name in ("up", "down")]


def test_two_chosen_of_four_leave_half_the_experts() -> None:
    graph = _traced(DenseMoe(chosen=2))
    stacked = 2 * EXPERTS * WIDTH * HIDDEN
    assert graph.meta["dense_experts"]["experts"]["chosen"] == 2
    assert if_only_chosen_experts_ran(graph)[0] == WIDTH * EXPERTS + stacked // 2


def test_a_router_choosing_all_or_over_other_scores_is_no_dense_run() -> None:
    """Choosing every expert is no choice; scores over another count of choices are no
    router of these experts; without a router, a stacked parameter used whole is plain."""
    for model in (DenseMoe(chosen=EXPERTS), DenseMoe(chosen=1, choices=EXPERTS + 1)):
        graph = _traced(model)
        assert "dense_experts" not in graph.meta
        assert not any(node_caveats(n) for n in graph.nodes.values())
        assert not [c for c in trace_caveats(graph) if "densely" in c]
        assert if_only_chosen_experts_ran(graph) is None


def test_the_caveat_survives_a_saved_graph() -> None:
    graph = Graph.from_json(_traced(DenseMoe()).to_json())
    assert [c[:28] for c in trace_caveats(graph)] == ["Experts run densely: the mod"]
    assert sum(1 for n in graph.nodes.values() if node_caveats(n)) == 2


class Gate(nn.Module):
    """A router of its own: scores with the top one per token kept, the others 0."""

    def __init__(self) -> None:
        super().__init__()
        self.proj = nn.Linear(WIDTH, EXPERTS, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.proj(x)
        top, picked = torch.topk(logits, 1, dim=1)
        return torch.zeros_like(logits).scatter_(1, picked, top.sigmoid())


class Layer(nn.Module):
    """DenseMoe's dense experts, routed by a gate module, by the layer itself, or by none
    (every expert weighted by a fixed score: no choice made)."""

    def __init__(self, router: str) -> None:
        super().__init__()
        self.gate = Gate() if router == "gate" else None
        self.own = Gate() if router == "own" else None
        self.experts = DenseMoe().experts

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.gate is not None:
            scores = self.gate(x)
        elif self.own is not None:  # the gate's code run as this forward's own lines
            scores = Gate.forward(self.own, x)
        else:
            scores = torch.full((x.shape[0], EXPERTS), 0.5)
        routed = x.repeat(EXPERTS, 1) * scores.t().reshape(-1, 1)
        hidden = torch.bmm(routed.view(EXPERTS, -1, WIDTH), self.experts.up).relu()
        return torch.bmm(hidden, self.experts.down).sum(dim=0)


def test_a_layer_s_experts_are_matched_to_the_router_in_that_layer_only() -> None:
    """The router's op runs in the layer's own forward (layer 0) or in a module inside it
    (layer 1); layer 2 has none, and the routers of the layers before it are not its own."""
    graph = _traced(nn.Sequential(Layer("own"), Layer("gate"), Layer("none")))
    routers = sorted({graph.modules[n.parent].path for n in graph.nodes.values()
                      if n.name == "topk"})
    assert routers == ["0", "1.gate"]
    dense = graph.meta["dense_experts"]
    assert sorted(dense) == ["0.experts", "1.experts"]
    assert all(entry["chosen"] == 1 and entry["count"] == EXPERTS for entry in dense.values())



class SliceAndWhole(DenseMoe):
    """Ops that use ``down`` whole beside another stacked parameter: one reads expert 0's
    slice of ``up`` too, one a stack of a single slice (``mix``, which no router chose
    from). Only ``down`` is a stack of experts run densely beside a router that chose one."""

    def __init__(self) -> None:
        super().__init__(chosen=1)
        self.mix = nn.Parameter(torch.randn(1, WIDTH, HIDDEN))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        torch.topk(self.router(x), self.chosen, dim=1)
        paired = torch.matmul(self.experts.up[0], self.experts.down)  # [E, WIDTH, WIDTH]
        mixed = torch.matmul(self.mix, self.experts.down)
        return x @ (paired + mixed).sum(dim=0)


def test_every_stack_an_op_used_whole_is_matched_to_a_router_whatever_else_it_used() -> None:
    graph = _traced(SliceAndWhole())
    paired, mixed = (n for n in graph.nodes.values() if n.selections)
    assert [(s.param, s.whole) for s in paired.selections] == [
        ("experts.up", False), ("experts.down", True)]
    assert [(s.param, s.whole) for s in mixed.selections] == [
        ("mix", True), ("experts.down", True)]
    assert graph.meta["dense_experts"] == {"experts": {
        "cls": "Module", "count": EXPERTS, "chosen": 1, "stacked": ["down"],
        "params": EXPERTS * HIDDEN * WIDTH, "flops": paired.stats.flops + mixed.stats.flops}}
    assert [s.chosen for n in (paired, mixed) for s in n.selections] == [0, 1, 0, 1]
    marked = [node_caveats(n) for n in graph.nodes.values() if node_caveats(n)]
    assert marked == 2 * [[
        "every expert for every row: experts.down holds 4 experts, the router chose 1 per "
        "token, and this op ran all of them"]]


class ArgmaxMoe(DenseMoe):
    """DenseMoe's router choosing by ``argmax`` (one expert per token, no k dimension)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.router(x)
        picked = logits.argmax(dim=1, keepdim=False)
        scores = torch.zeros_like(logits).scatter_(1, picked[:, None], 1.0)
        routed = x.repeat(EXPERTS, 1) * scores.t().reshape(-1, 1)
        hidden = torch.bmm(routed.view(EXPERTS, -1, WIDTH), self.experts.up).relu()
        return torch.bmm(hidden, self.experts.down).sum(dim=0)


def test_an_argmax_router_chooses_one_expert_per_token() -> None:
    graph = _traced(ArgmaxMoe())
    dense = graph.meta["dense_experts"]["experts"]
    assert (dense["count"], dense["chosen"], dense["stacked"]) == (EXPERTS, 1, ["up", "down"])
