"""The tensor-parallel view: one rank's shapes, its collectives as nodes."""

from __future__ import annotations

import pytest
import torch
import torch.distributed as dist

from model_trace.tracing import tensor_parallel, trace


def test_rank_1_of_2_has_its_shapes_and_collectives_as_nodes(build_tiny) -> None:
    with tensor_parallel(2, 1):
        graph = trace(build_tiny(), torch.zeros(1, 8, dtype=torch.int64, device="meta"))
    assert graph.meta["tensor_parallel"] == {"rank": 1, "world_size": 2}
    collectives = [(n.name, graph.modules[n.parent].path) for n in graph.nodes.values()
                   if n.category == "collective"]
    # folded: one dense block, one MoE block (×2), the embedding and the head
    assert collectives == [
        ("all_reduce", "embed"),  # each rank looks up its half of the vocabulary
        ("all_reduce", "layers.0.attn.wo"), ("all_reduce", "layers.0.ffn.w2"),
        ("all_reduce", "layers.1.attn.wo"), ("all_reduce", "layers.1.ffn.shared_experts.w2"),
        ("all_reduce", "layers.1.ffn"),  # the routed experts' sum
        ("all_gather", ""),  # the logits of both halves of the vocabulary
    ]
    by_path = {c.path: c for c in graph.modules.values()}
    # a column-parallel projection makes half the heads' columns: 4 / 2 heads x 48
    assert [graph.tensors[t].shape for t in by_path["layers.0.attn.wq_b"].outputs] == [
        [1, 8, 96]]
    assert by_path["layers.1.ffn.experts"].repeat.members == [
        f"layers.1.ffn.experts.{i}" for i in range(8, 16)]  # rank 1's experts
    reduce = next(n for n in graph.nodes.values() if n.name == "all_reduce")
    assert reduce.outputs != reduce.inputs  # a new version of the tensor it wrote
    assert not dist.is_initialized()


def test_the_process_group_is_gone_after_an_error_and_ranks_are_checked() -> None:
    with pytest.raises(RuntimeError, match="boom"), tensor_parallel(4, 3):
        assert dist.get_rank() == 3 and dist.get_world_size() == 4
        raise RuntimeError("boom")
    assert not dist.is_initialized()
    with pytest.raises(ValueError, match=r"rank=2 must be in \[0, world_size=2\)"), \
            tensor_parallel(2, 2):
        pass


def test_rank_0_is_the_default_and_every_rank_outside_the_world_is_refused() -> None:
    with tensor_parallel(2):
        assert (dist.get_rank(), dist.get_world_size()) == (0, 2)
    for rank in (-1, 2):
        with pytest.raises(ValueError, match=rf"rank={rank} must be in \[0, world_size=2\)"), \
                tensor_parallel(2, rank):
            pass
    assert not dist.is_initialized()


def test_a_process_group_already_there_is_left_alone() -> None:
    with tensor_parallel(4, 1):
        with pytest.raises(RuntimeError, match="a process group is initialised already; "
                           "tensor_parallel"), tensor_parallel(2, 0):
            pass
        assert (dist.get_rank(), dist.get_world_size()) == (1, 4)  # the outer one, intact
    assert not dist.is_initialized()


def test_a_torch_without_distributed_is_told_so(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(dist, "is_available", lambda: False)
    with pytest.raises(RuntimeError, match=r"this torch build has no torch\.distributed"), \
            tensor_parallel(2, 0):
        pass
    assert not dist.is_initialized()
