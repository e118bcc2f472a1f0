"""Tensor-parallel traces: rank ``r`` of an ``N``-way split, without ``N`` processes.

``tensor_parallel(world_size, rank)`` initialises torch.distributed with the "fake" backend
(``FakeStore``, from torch's test utilities): collectives return at once without moving data,
and ``get_rank()`` / ``get_world_size()`` answer as rank ``r`` of ``N`` would. A model built
inside the context splits itself as on a real cluster; tracing it records rank ``r``'s shapes
and its collectives (``all_reduce``, ``all_gather``) as nodes. The process group is destroyed
on exit, even on error.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch.distributed as dist


@contextlib.contextmanager
def tensor_parallel(world_size: int, rank: int = 0) -> Iterator[None]:
    """Act as rank ``rank`` of ``world_size`` inside the block (a fake process group)."""
    if not 0 <= rank < world_size:
        raise ValueError(f"rank={rank} must be in [0, world_size={world_size})")
    if not dist.is_available():
        raise RuntimeError("this torch build has no torch.distributed")
    if dist.is_initialized():
        raise RuntimeError("a process group is initialised already; tensor_parallel() makes "
                           "its own fake one: call it outside torch.distributed setups")
    from torch.testing._internal.distributed.fake_pg import FakeStore

    dist.init_process_group("fake", rank=rank, world_size=world_size, store=FakeStore())
    try:
        yield
    finally:
        dist.destroy_process_group()
