"""Tensors every layer receives (rotary tables, masks) are drawn once per layer."""

from __future__ import annotations

import torch

from model_trace.tracing import trace


def test_rotary_table_and_mask_get_one_source_per_layer(build_tiny) -> None:
    model = build_tiny(n_layers=4)
    graph = trace(model, torch.zeros(1, 8, dtype=torch.int64, device="meta"), fold=False)
    shared = [(n.name, graph.modules[n.parent].path, n.args["from"])
              for n in graph.nodes.values() if n.kind == "shared"]
    assert shared == [("freqs_cis", f"layers.{i}", "getitem") for i in range(4)] + [
        ("mask", f"layers.{i}", "triu_") for i in range(4)]
    for name in ("freqs_cis", "mask"):
        sources = [n for n in graph.nodes.values() if n.kind == "shared" and n.name == name]
        (tensor,) = {n.outputs[0] for n in sources}  # one tensor, its producer kept
        producer = graph.nodes[graph.tensors[tensor].producer]
        assert graph.modules[producer.parent].path == ""
        consumers = [e for e in graph.edges if e.tensor == tensor]
        assert {graph.nodes[e.src].kind for e in consumers} == {"shared"}
        for edge in consumers:  # each use is wired from its own layer's source
            source = graph.nodes[edge.src]
            assert graph.modules[graph.nodes[edge.dst].parent].path.startswith(
                graph.modules[source.parent].path + ".")


def test_a_tensor_used_by_unrelated_calls_keeps_one_source() -> None:
    class Branches(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a, self.b, self.c = (torch.nn.Linear(4, 4) for _ in range(3))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            h = x * 2
            return self.a(h) + self.b(h) + self.c(h)  # branches, not a chain

    graph = trace(Branches(), torch.randn(2, 4))
    assert not [n for n in graph.nodes.values() if n.kind == "shared"]
