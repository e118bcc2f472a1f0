"""Meta traces with concrete integers: the same graph as a real run routed the same way, and
the rules that let data-dependent code run with float tensors that have no values."""

from __future__ import annotations

from typing import Any

import torch
from torch.overrides import TorchFunctionMode

from model_trace.graph import Graph
from model_trace.tracing import trace
from model_trace.tracing.builder import REF_ATTRIBUTE

ROUTING = [1, 4, 6, 2]  # experts of groups 0 and 1: within the tiny gate's limit of 2


def _without_devices(graph: Graph) -> dict[str, Any]:
    data = graph.to_dict()
    for tensor in data["tensors"]:
        tensor.pop("device")
    data["meta"].pop("device")
    data["meta"]["options"].pop("force_routing")
    return data


class TensorsSeen(TorchFunctionMode):
    """Below the tracer's own mode: every tensor an op reads, by the trace id it has when the
    op runs (the id of the edge into that op), with the real tensor's shape."""

    def __init__(self) -> None:
        super().__init__()
        self.shapes: dict[str, list[int]] = {}

    def __torch_function__(self, func: Any, types: Any, args: tuple[Any, ...] = (),
                           kwargs: dict[str, Any] | None = None) -> Any:
        for value in [*args, *(kwargs or {}).values()]:
            for tensor in value if isinstance(value, list | tuple) else [value]:
                ref = getattr(tensor, REF_ATTRIBUTE, None)
                if isinstance(tensor, torch.Tensor) and ref is not None:
                    self.shapes.setdefault(ref[1], list(tensor.shape))
        return func(*args, **(kwargs or {}))


def test_a_meta_trace_equals_a_real_run_routed_the_same_way(build_tiny, tiny_tokens) -> None:
    real_model = build_tiny("cpu")
    seen = TensorsSeen()
    boundaries: dict[tuple[str, int], list[list[int]]] = {}
    calls: dict[str, int] = {}

    def capture(module: torch.nn.Module, args: Any, output: Any) -> None:
        path = names[module]
        index = calls[path] = calls.get(path, -1) + 1
        tensors = output if isinstance(output, tuple) else (output,)
        boundaries[(path, index)] = [list(t.shape) for t in tensors]

    names = {module: name for name, module in real_model.named_modules()}
    handles = [m.register_forward_hook(capture) for m in names]
    try:
        with seen:
            real = trace(real_model, tiny_tokens, routing=ROUTING, force_routing=True,
                         fold=False)
    finally:
        for handle in handles:
            handle.remove()
    meta = trace(build_tiny("meta"), tiny_tokens.to("meta"), routing=ROUTING, fold=False)

    assert real.meta["device"] == "cpu" and meta.meta["device"] == "meta"
    assert _without_devices(meta) == _without_devices(real)  # nodes, edges, shapes, stats

    # every shape in the graph is the real tensor's: at each module's output ...
    outputs = {(c.path, c.call_index): [real.tensors[t].shape for t in c.outputs]
               for c in real.modules.values() if c.called}
    assert outputs == boundaries
    # ... and on every edge into an op (the edges into the output node carry the logits)
    checked = 0
    for edge in real.edges:
        if real.nodes[edge.dst].kind == "output":
            assert real.tensors[edge.tensor].shape == [2, 256]
            continue
        if edge.tensor in seen.shapes:
            assert real.tensors[edge.tensor].shape == seen.shapes[edge.tensor]
            checked += 1
        else:  # a buffer at its first read gets its id only then
            assert real.nodes[edge.src].kind in ("buffer", "constant", "input")
    assert checked > 0.9 * len(real.edges)


def test_routing_decides_the_rows_each_expert_runs_on(build_tiny, tiny_tokens) -> None:
    graph = trace(build_tiny(), tiny_tokens.to("meta"), routing=ROUTING, fold=False)
    experts = [m for m in graph.modules.values() if ".experts." in m.path and m.cls == "Expert"]
    called = {m.path: graph.tensors[m.inputs[0]].shape for m in experts if m.called}
    assert called == {f"layers.{layer}.ffn.experts.{i}": [16, 128] for layer in (1, 2)
                      for i in ROUTING}  # every one of the 2 x 8 tokens
    assert sum(1 for m in experts if not m.called) == 2 * (16 - len(ROUTING))
    assert graph.meta["routing"]["assumed_zero"] == {}  # nothing had to be guessed


class Branchy(torch.nn.Module):
    """Data-dependent code of every kind the rules cover."""

    def __init__(self) -> None:
        super().__init__()
        self.scores = torch.nn.Linear(8, 4)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        index = self.scores(x).argmax(-1)  # (N,): from the routing policy
        counts = torch.bincount(index, minlength=4).tolist()
        picked = x[torch.where(index == counts.index(max(counts)))]  # rows of one choice
        positive = (x > 0).all()  # booleans made from float values: unknowable
        buffer = torch.zeros(1024, 1024)  # would be a real 4 MB buffer
        steps = torch.arange(x.shape[0]).to(x.device)
        return picked, positive, buffer, steps, torch.ones_like(index)


def test_integer_results_are_concrete_and_floats_stay_on_meta() -> None:
    with torch.device("meta"):
        model, x = Branchy(), torch.empty(6, 8)
    graph = trace(model, x, routing="first")
    outputs = {n.name: graph.tensors[n.inputs[0]] for n in graph.nodes.values()
               if n.kind == "output"}
    assert outputs["output[0]"].shape == [6, 8]  # "first": every row chose 0
    assert outputs["output[1]"].device == "cpu" and outputs["output[1]"].dtype == "bool"
    assert outputs["output[2]"].device == "meta"  # the factory made no real memory
    assert outputs["output[3]"].device == "cpu"  # .to(meta) of integers stays concrete
    assert outputs["output[4]"].device == "cpu"  # ones_like of indices: computed, not guessed
    assert graph.meta["routing"] == {"policy": "first", "decisions": 1,
                                     "assumed_zero": {"gt": 1}}  # then .all() of zeros
