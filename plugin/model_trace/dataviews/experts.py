"""Tokens per routed expert, from a trace's ``graph.meta["experts"]``, and how unevenly
they are spread.

``graph.meta["experts"]`` holds, per container of experts (``layers.3.ffn.experts``), the
tokens each expert got (``tokens``): from the routing policy on the meta device, or from the
real routing of a run on real weights. The imbalance figures: max/mean (how much longer the
busiest expert works than an even share), the share of experts that got no token, and the
Gini coefficient of the counts (0: perfectly even, towards 1: a few experts take all).
"""

from __future__ import annotations

from dataclasses import dataclass

from model_trace.errors import SpecError
from model_trace.graph import Graph
from model_trace.naming import natural_key


@dataclass(frozen=True)
class Imbalance:
    """How evenly tokens are spread over experts."""

    max_over_mean: float
    idle_share: float
    gini: float

    @classmethod
    def of(cls, counts: list[int]) -> Imbalance:
        total = sum(counts)
        mean = total / len(counts)
        ordered = sorted(counts)
        n = len(ordered)
        gini = (sum((2 * (i + 1) - n - 1) * c for i, c in enumerate(ordered)) / (n * total)
                if total else 0.0)
        return cls(max(counts) / mean if mean else 0.0,
                   sum(1 for c in counts if c == 0) / n, gini)


@dataclass(frozen=True)
class ExpertLoad:
    """Tokens per expert of each container of routed experts, in the model's order."""

    containers: list[str]
    """Module paths (``layers.3.ffn.experts``)."""
    counts: list[list[int]]
    """``counts[layer][expert]``: tokens routed to the expert."""
    cls: str
    routing: str
    """How the tokens were routed (the policy, or ``real``)."""

    @classmethod
    def of(cls, graph: Graph) -> ExpertLoad:
        experts = graph.meta.get("experts") or {}
        if not experts:
            raise SpecError(f"{graph.meta.get('model', 'the model')} has no routed experts (the "
                            "trace found no mixture-of-experts layer); `view: experts` needs "
                            "one", field="view")
        containers = sorted(experts, key=natural_key)  # layer order, also when read back
        routing = graph.meta.get("routing", {})
        policy = routing.get("policy", "real")
        if "seed" in routing:
            policy += f" (seed {routing['seed']})"
        return cls(containers, [list(experts[c]["tokens"]) for c in containers],
                   experts[containers[0]]["cls"], policy)

    @property
    def overall(self) -> Imbalance:
        """The figures over every expert of every layer."""
        return Imbalance.of([c for row in self.counts for c in row])
