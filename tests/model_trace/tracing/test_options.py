"""``TraceOptions``: one validated value for the options of ``trace``."""

from __future__ import annotations

import dataclasses
import inspect

import pytest
import torch

from model_trace.tracing import TraceOptions, trace, trace_with_options

from .models import TwoLayer


def test_trace_and_trace_options_have_the_same_defaults() -> None:
    """``trace_with_options(TraceOptions())`` (what ``backward`` and a session start from)
    traces as ``trace`` does with no options given."""
    fields = {f.name: f.default for f in dataclasses.fields(TraceOptions)}
    keywords = {name: p.default for name, p in inspect.signature(trace).parameters.items()
                if p.kind == inspect.Parameter.KEYWORD_ONLY}
    assert set(keywords) <= set(fields)
    assert {name: fields[name] for name in keywords} == keywords
    assert set(fields) - set(keywords) == {"shared_min_uses", "no_grad"}  # trace's own
    model, x = TwoLayer(), torch.randn(3, 8)
    assert trace_with_options(model, (x,), {}, TraceOptions()).to_json() == trace(
        model, x).to_json()


class _GradSeen(torch.nn.Module):
    """Notes whether autograd was on while its forward ran."""

    def __init__(self) -> None:
        super().__init__()
        self.proj = torch.nn.Linear(2, 2)
        self.grad: list[bool] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.grad.append(torch.is_grad_enabled())
        return self.proj(x)


def test_a_forward_is_traced_without_autograd_unless_asked() -> None:
    model = _GradSeen()
    trace(model, torch.randn(1, 2))
    trace_with_options(model, (torch.randn(1, 2),), {}, TraceOptions())
    trace_with_options(model, (torch.randn(1, 2),), {}, TraceOptions(no_grad=False))
    assert model.grad == [False, False, True]
    assert torch.is_grad_enabled()


def test_each_bound_is_accepted_and_one_past_it_refused() -> None:
    accepted = TraceOptions(trace_depth=0, module_depth=0, parameters="nodes", execute="cpu",
                            shared_min_uses=2)
    assert (accepted.trace_depth, accepted.module_depth, accepted.shared_min_uses) == (0, 0, 2)
    TraceOptions(module_depth=None, parameters="attach", execute=None)
    refused = [({"trace_depth": -1}, "trace_depth=-1 must be 0 or more"),
               ({"module_depth": -1}, "module_depth=-1 must be 0 or more, or None"),
               ({"parameters": "edges"}, "parameters='edges' must be 'attach' or 'nodes'"),
               ({"execute": 0}, "execute=0 must be a device name like 'cpu'"),
               ({"shared_min_uses": 1}, "shared_min_uses=1 must be 2 or more")]
    for options, message in refused:
        with pytest.raises(ValueError, match=f"^{message}$"):
            TraceOptions(**options)  # type: ignore[arg-type]


def test_the_options_a_graph_was_traced_with_are_in_its_meta() -> None:
    graph = trace(TwoLayer(), torch.randn(3, 8), fold=False, trace_depth=2, module_depth=1,
                  aten=True, parameters="nodes", force_routing=True, execute="cpu")
    assert graph.meta["options"] == {
        "fold": False, "trace_depth": 2, "module_depth": 1, "aten": True, "execute": "cpu",
        "parameters": "nodes", "force_routing": True}
