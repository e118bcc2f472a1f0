"""The memory statistics split: weights read, activations and workspace. Activations and
workspace are the old single figure (bytes of new tensors) divided, and each byte lands where
its tensor's origin says: copies made from weights and the model's caches are workspace."""

from __future__ import annotations

import pytest
import torch
import torch.distributed as dist

from model_trace.graph import Graph
from model_trace.tracing import stats, tensor_parallel, trace
from model_zoo.deepseek_v3 import RuntimeOptions, Transformer, init_weights, load_config


def _tiny(device: str = "meta", **options: object) -> Transformer:
    with torch.device(device):
        model = Transformer(load_config("tiny", dtype="fp8"),
                            RuntimeOptions(world_size=1, rank=0, dtype=torch.float32,
                                           **options))  # type: ignore[arg-type]
    return init_weights(model) if device != "meta" else model


def _trace(model: Transformer, device: str = "meta") -> Graph:
    tokens = torch.zeros(2, 16, dtype=torch.int64, device=device)
    return trace(model, tokens, fold=False, force_routing=device != "meta")


def _unsplit(monkeypatch: pytest.MonkeyPatch, model: Transformer) -> Graph:
    """The same trace with every written byte left as an activation: the figure before the
    split."""
    with monkeypatch.context() as patched:
        patched.setattr(stats, "split_bytes", lambda graph, modules, state: None)
        return _trace(model)


@pytest.mark.parametrize("options", [{}, {"gemm_impl": "fp8"}, {"attn_impl": "naive"}])
def test_activations_and_workspace_sum_to_the_old_total_op_by_op(
        monkeypatch: pytest.MonkeyPatch, options: dict[str, str]) -> None:
    old = _unsplit(monkeypatch, _tiny(**options))
    new = _trace(_tiny(**options))
    assert new.nodes.keys() == old.nodes.keys()
    for node_id, node in new.nodes.items():
        assert node.stats.activation_bytes + node.stats.workspace_bytes == \
            old.nodes[node_id].stats.activation_bytes, node.name
    totals, before = new.meta["totals"], old.meta["totals"]
    assert totals["activation_bytes"] + totals["workspace_bytes"] == before["activation_bytes"]
    assert before["workspace_bytes"] == 0


def test_weight_copies_and_caches_are_workspace_the_rest_activations() -> None:
    graph = _trace(_tiny())
    by_op: dict[str, list[tuple[int, int]]] = {}
    for node in graph.nodes.values():
        by_op.setdefault(node.name, []).append((node.stats.activation_bytes,
                                                node.stats.workspace_bytes))
    assert all(a == 0 and w > 0 for a, w in by_op["weight_dequant"])  # bf16 copies of fp8
    assert all(a == 0 and w > 0 for a, w in by_op["new_zeros"])  # the KV caches
    assert all(w == 0 for _, w in by_op["linear"]) and all(a > 0 for a, _ in by_op["linear"])
    assert all(w == 0 for _, w in by_op["zeros_like"])  # the MoE's output: an activation
    moe_fp8 = next(m for m in _trace(_tiny(gemm_impl="fp8")).modules.values()
                   if m.path == "layers.1.ffn")
    assert moe_fp8.stats.workspace_bytes == 0 and moe_fp8.stats.activation_bytes > 0


def test_weights_read_are_the_parameters_in_their_stored_dtype() -> None:
    """Balanced routing calls every expert, so one forward reads every weight once; an fp8
    weight costs one byte and its float32 scales four."""
    model = _tiny()
    graph = _trace(model)
    stored = sum(p.numel() * p.element_size() for p in model.parameters())
    assert graph.meta["totals"]["weight_bytes"] == stored
    dequant = next(n for n in graph.nodes.values() if n.name == "weight_dequant")
    weight = model.get_parameter(dequant.params[0])
    assert weight.dtype == torch.float8_e4m3fn
    scale_bytes = sum(model.get_parameter(n).numel() * 4 for n in dequant.params[1:])
    assert dequant.stats.weight_bytes == weight.numel() + scale_bytes
    assert dequant.stats.read_bytes == dequant.stats.weight_bytes


def test_a_real_run_splits_as_the_meta_trace_does() -> None:
    """Routed the same way, a run with real weights on the CPU gives the same figures."""
    real = _trace(_tiny("cpu"), "cpu")
    meta = _trace(_tiny())
    for name in ("activation_bytes", "workspace_bytes", "weight_bytes", "read_bytes"):
        assert real.meta["totals"][name] == meta.meta["totals"][name], name


class _Slices(torch.nn.Module):
    """Views and copies of one activation, under inference mode as DeepSeek-V3's forward runs
    (where views do not record their base)."""

    @torch.inference_mode()
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x * 2
        columns = y[:, :4]                      # basic indexing: a view
        flat = y.reshape(-1)                    # contiguous: a view
        rows = y[torch.tensor([0, 2])]          # advanced indexing: a copy
        moved = y.t().reshape(-1)               # not contiguous: a copy
        return columns.sum() + flat.sum() + rows.sum() + moved.sum()


@pytest.mark.parametrize("calls", [1, 2])
def test_a_view_writes_and_reads_nothing_a_copy_writes_its_bytes(calls: int) -> None:
    """Twice: the second call's ops come from the meta-result cache, which must not turn a
    view into a new tensor."""
    class Calls(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.slices = _Slices()

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return sum(self.slices(x) for _ in range(calls))

    graph = trace(Calls(), torch.empty(4, 8, device="meta"), fold=False)
    written = {}
    for node in graph.nodes.values():
        if node.name in ("getitem", "reshape"):
            written.setdefault(node.name, []).append(
                (node.stats.activation_bytes + node.stats.workspace_bytes, node.stats.read_bytes))
    assert written["getitem"] == [(0, 0), (2 * 8 * 4, 4 * 8 * 4 + 2 * 8)] * calls  # + index
    assert written["reshape"] == [(0, 0), (4 * 8 * 4, 4 * 8 * 4)] * calls


def test_absorbed_attention_slices_its_dequantised_weight_without_a_copy() -> None:
    """``w_k, w_v = wkv_b[:, :128], wkv_b[:, -128:]`` (and the cache reads ``[:bsz, :end]``)
    are views: the only workspace the block's attention writes is the dequantised weights and
    the caches."""
    graph = _trace(_tiny())
    attn = next(m for m in graph.modules.values() if m.path == "layers.1.attn")
    slices = [graph.nodes[c] for c in attn.children
              if c in graph.nodes and graph.nodes[c].name == "getitem"]
    assert len(slices) >= 4
    assert all(n.stats.activation_bytes + n.stats.workspace_bytes == 0 for n in slices)
    makers = {graph.nodes[c].name for c in attn.children
              if c in graph.nodes and graph.nodes[c].stats.workspace_bytes}
    assert makers == {"weight_dequant", "new_zeros"}



class _Cache(torch.nn.Module):
    """A cache made in the forward and updated in place from tensors that were themselves
    written in place, one of them reached along two paths (``addcmul_(t, s)``, where ``t``
    was written from ``s``)."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("cache", torch.zeros(4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.cache = x.new_zeros(4)
        scale = x.new_ones(4).mul_(2)
        shift = x.new_zeros(4).add_(scale)
        self.cache.addcmul_(shift, scale)
        return x * 2


def test_every_earlier_version_of_the_cache_is_workspace() -> None:
    """An in-place write's inputs of its shape and dtype count as earlier versions of what it
    wrote (which one it wrote over is not known): the ops that made them are workspace,
    however many paths lead back to them; the output is an activation."""
    graph = trace(_Cache(), torch.ones(3, 4), fold=False)
    made = [(n.name, n.stats.activation_bytes, n.stats.workspace_bytes)
            for n in graph.nodes.values() if n.kind == "op" and not n.name.endswith("_")]
    assert made == [("new_zeros", 0, 16), ("new_ones", 0, 16), ("new_zeros", 0, 16),
                    ("mul", 3 * 4 * 4, 0)]


class _Reduced(torch.nn.Module):
    """A cache summed across ranks in place (``all_reduce``): the reduced tensor is the
    cache's next version."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("cache", torch.zeros(4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.cache = x.new_zeros(4)
        dist.all_reduce(self.cache)
        return x * 2


def test_a_cache_reduced_across_ranks_is_still_workspace() -> None:
    with tensor_parallel(2, 0):
        graph = trace(_Reduced(), torch.ones(3, 4), fold=False)
    made = [(n.name, n.stats.activation_bytes, n.stats.workspace_bytes)
            for n in graph.nodes.values() if n.kind == "op"]
    assert made == [("new_zeros", 0, 16), ("all_reduce", 0, 0), ("mul", 3 * 4 * 4, 0)]
