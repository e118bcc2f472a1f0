"""``execute="cpu"``: a real run measured per module call, with the real routing."""

from __future__ import annotations

import torch

from model_trace.tracing import trace


def test_a_real_run_records_time_memory_and_tokens_per_expert(build_tiny, tiny_tokens) -> None:
    model = build_tiny("cpu")
    routed: list[list[int]] = []  # the gates' own choices in a plain run
    handles = [model.get_submodule(f"layers.{i}.ffn.gate").register_forward_hook(
        lambda _m, _a, out: routed.append(torch.bincount(out[1].flatten(), minlength=16)
                                          .tolist())) for i in (1, 2)]
    with torch.inference_mode():
        model(tiny_tokens)
    for handle in handles:
        handle.remove()

    graph = trace(model, tiny_tokens, execute="cpu", fold=False)
    assert graph.meta["routing"] == {"policy": "real"}
    assert graph.meta["execution"]["device"] == "cpu"
    loads = [group["tokens"] for group in graph.meta["experts"].values()]
    assert loads == routed and all(sum(load) == 16 * 4 for load in loads)
    calls = [c for c in graph.modules.values() if c.kind == "module" and c.called]
    assert all(c.measured is not None for c in calls)
    assert graph.meta["execution"]["measured_calls"] == len(calls)
    for call in calls:
        assert call.measured.wall_time_s >= 0 and call.measured.peak_memory_bytes >= 0
        parent = graph.modules.get(call.parent) if call.parent else None
        if parent is not None and parent.measured is not None:  # nested inside its parent
            assert call.measured.wall_time_s <= parent.measured.wall_time_s
    uncalled = [c for c in graph.modules.values() if not c.called]
    assert all(c.measured is None for c in uncalled)
    idle = [c.path for c in uncalled if c.cls == "Expert"]  # experts no token chose
    assert idle == [f"layers.{layer}.ffn.experts.{i}" for layer, load in zip((1, 2), loads,
                                                                               strict=True)
                    for i, tokens in enumerate(load) if not tokens]
