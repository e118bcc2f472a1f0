"""``one_thread``: torch's CPU ops on one thread inside, the count as it was after."""

from __future__ import annotations

import pytest
import torch

from model_trace.tracing.threads import one_thread


def test_one_thread_inside_and_the_count_restored_after_an_error_too() -> None:
    before = torch.get_num_threads()
    torch.set_num_threads(3)  # whatever this machine's count, one that is not 1
    try:
        with one_thread():
            assert torch.get_num_threads() == 1
        assert torch.get_num_threads() == 3
        with pytest.raises(KeyError), one_thread():
            raise KeyError("inside")
        assert torch.get_num_threads() == 3
    finally:
        torch.set_num_threads(before)
