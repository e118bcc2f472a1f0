"""torch's CPU ops on one thread, for work too small or too crowded to gain from more."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch


@contextlib.contextmanager
def one_thread() -> Iterator[None]:
    """Run torch on one CPU thread inside, its thread count restored on exit.

    Starting torch's worker threads costs more than small work gains from them, and on a busy
    machine far more: a docs build runs several workers at once, and their threads, competing
    for the same cores, made MiniLM's forward pass 25 times slower on a two-core machine
    (1.1 s instead of 46 ms); the concrete values of a meta trace (indices, masks, counts)
    took 15 ms per ``triu`` or ``histc`` instead of 4 us. One thread also makes every sum add
    up in the same order whatever the machine's core count, so a view's numbers and a
    measurement's code path do not depend on it."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)
