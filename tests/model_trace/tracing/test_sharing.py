"""Tensors every layer receives (rotary tables, masks) are drawn once per layer."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest
import torch

from model_trace.render_html import FigureData, ViewOptions, export_svg
from model_trace.tracing import trace
from model_trace.tracing.sharing import leading_shared_names, plan_shared_uses


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


class Block(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.proj = torch.nn.Linear(4, 4)

    def forward(self, x: torch.Tensor, mask: torch.Tensor,
                rotary: torch.Tensor | None = None) -> torch.Tensor:
        x = self.proj(x) * mask
        return x if rotary is None else x + rotary


def _shared(graph) -> list[tuple[str, str]]:
    return [(graph.modules[n.parent].path, n.name) for n in graph.nodes.values()
            if n.kind == "shared"]


def test_shared_sources_come_in_the_order_of_their_tensors_not_of_first_use() -> None:
    """``rotary`` is made before ``mask`` but every layer reads ``mask`` first; ids of
    different lengths (t9, t12) sort by number, not as text."""

    class Layers(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.layers = torch.nn.ModuleList(Block() for _ in range(3))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            rotary = x.new_ones(4) * 2
            for _ in range(8):  # ops between the two: ids of another length
                x = x + 0
            mask = x.new_ones(4, 4).tril()
            for layer in self.layers:
                x = layer(x, mask, rotary)
            return x

    graph = trace(Layers(), torch.randn(4, 4), fold=False)
    sources = [n for n in graph.nodes.values() if n.kind == "shared"]
    ids = [n.outputs[0] for n in sources]
    assert len(set(map(len, ids))) == 2  # the premise: ids of two lengths
    assert ids == sorted(ids, key=lambda t: int(t[1:]))
    assert [n.name for n in sources] == ["rotary"] * 3 + ["mask"] * 3
    # each layer starts with its sources, the last planned first
    for i in range(3):
        call = next(c for c in graph.modules.values() if c.path == f"layers.{i}")
        assert [graph.nodes[c].name for c in call.children[:2]] == ["mask", "rotary"]
        names = {c: {graph.nodes[n].outputs[0]: graph.nodes[n].name for n in
                     graph.modules[c].children if graph.nodes.get(n, None) is not None
                     and graph.nodes[n].kind == "shared"} for c in graph.modules}
        assert leading_shared_names(plan_shared_uses(graph, names))[call.id] == [
            "mask", "rotary"]


@pytest.mark.parametrize(("calls", "linked", "shared"), [(3, 1, True), (7, 2, False),
                                                          (5, 2, True), (2, 1, False)])
def test_only_calls_that_mostly_feed_each_other_get_sources_of_their_own(
        calls: int, linked: int, shared: bool) -> None:
    """A stack of layers: at least half the consecutive pairs linked; branches: fewer; and
    at least three calls (two are drawn with one source)."""

    class Calls(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.blocks = torch.nn.ModuleList(Block() for _ in range(calls))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            mask = x.new_ones(4, 4).tril()
            h = self.blocks[0](x, mask)
            for block in self.blocks[1:linked + 1]:  # fed the call before
                h = block(h, mask)
            return h + sum(block(x, mask) for block in self.blocks[linked + 1:])

    graph = trace(Calls(), torch.randn(4, 4), fold=False)
    assert bool(_shared(graph)) == shared
    if shared:
        assert _shared(graph) == [(f"blocks.{i}", "mask") for i in range(calls)]


def test_a_tensor_also_used_outside_its_maker_is_shared_among_the_calls_inside() -> None:
    class Stack(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.layers = torch.nn.ModuleList(Block() for _ in range(3))

        def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            mask = x.new_ones(4, 4).tril()
            for layer in self.layers:
                x = layer(x, mask)
            return x, mask

    class Outer(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.stack, self.head = Stack(), Block()

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            x, mask = self.stack(x)
            return self.head(x, mask)

    graph = trace(Outer(), torch.randn(4, 4), fold=False)
    assert _shared(graph) == [(f"stack.layers.{i}", "mask") for i in range(3)]


def test_a_tensor_the_calls_read_without_taking_it_keeps_one_source() -> None:
    """The first tensor every layer reads comes through an attribute (no argument to name
    its source after): it keeps its one producer; the mask made after it, an argument of
    every layer, still gets a source per layer."""

    class Layer(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.proj = torch.nn.Linear(4, 4)
            self.scale = torch.ones(4)

        def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
            return self.proj(x) * self.scale * mask

    class Model(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.layers = torch.nn.ModuleList(Layer() for _ in range(3))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            scale = x.new_full((4,), 0.5)
            mask = x.new_ones(4)
            for layer in self.layers:
                layer.scale = scale
                x = layer(x, mask)
            return x

    graph = trace(Model(), torch.randn(2, 4), fold=False)
    assert _shared(graph) == [(f"layers.{i}", "mask") for i in range(3)]


def test_a_layer_s_own_source_is_drawn_as_a_tensor_handed_in_not_as_an_op() -> None:
    """A shared source stands for a tensor the layer receives: in the figure it is a pill
    filled like the model's own input, not a box coloured like the op that made it."""

    class Layers(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.layers = torch.nn.ModuleList(Block() for _ in range(3))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            mask = x.new_ones(4, 4).tril()
            for layer in self.layers:
                x = layer(x, mask)
            return x

    graph = trace(Layers(), torch.randn(4, 4), fold=False)
    svg = ET.fromstring(export_svg(FigureData.of(graph), ViewOptions(depth=3, theme="light")))
    drawn: dict[str, set[tuple[str | None, str | None]]] = {}
    for group in svg.iter("{http://www.w3.org/2000/svg}g"):
        kinds = [c for c in group.get("class", "").split() if c.startswith("mt-kind-")]
        rect = group.find("{http://www.w3.org/2000/svg}rect")
        if kinds and rect is not None:
            drawn.setdefault(kinds[0], set()).add((rect.get("fill"), rect.get("rx")))
    assert len(drawn["mt-kind-shared"]) == 1  # the three layers' sources (premise: drawn)
    assert drawn["mt-kind-shared"] == drawn["mt-kind-input"]
    assert not drawn["mt-kind-shared"] & drawn["mt-kind-op"]
