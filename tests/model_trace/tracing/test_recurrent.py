"""Recurrent layers on the meta device: LSTM, GRU and plain RNNs, over padded batches and
packed sequences (``pack_padded_sequence``, whose batch sizes are CPU integers the kernels
read), traced as a real CPU run computes them: the same output shapes, the FLOPs of the hand
formula (torch's ``FlopCounterMode`` misses the CPU kernel of a bidirectional LSTM), nothing
assumed."""

from __future__ import annotations

import pytest
import torch
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from model_trace.graph import Graph
from model_trace.tracing import trace

LENGTHS = [5, 2, 4]
"""Sequence lengths of the batch, not sorted: packing sorts them and unsorts the output."""


class Tagger(torch.nn.Module):
    """A sequence tagger: a recurrent layer over a padded batch, packed or not, then a
    linear head on every step."""

    def __init__(self, layer: type[torch.nn.RNNBase], packed: bool) -> None:
        super().__init__()
        self.rnn = layer(8, 16, num_layers=2, batch_first=True, bidirectional=True)
        self.head = torch.nn.Linear(32, 3)
        self.packed = packed

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        if not self.packed:
            return self.head(self.rnn(x)[0])
        packed = pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
        steps, _ = pad_packed_sequence(self.rnn(packed)[0], batch_first=True)
        return self.head(steps)


GATES = {torch.nn.LSTM: 4, torch.nn.GRU: 3, torch.nn.RNN: 1}


def _hand_count(layer: type[torch.nn.RNNBase], packed: bool) -> int:
    """Each step of each sequence, in each direction of each layer, multiplies its input
    and its hidden state by the gates' weights: 2 * gates * 16 * (inputs + 16); a packed
    batch runs only the steps a sequence has. The head runs on every padded step."""
    steps = sum(LENGTHS) if packed else len(LENGTHS) * max(LENGTHS)
    cells = sum(2 * GATES[layer] * 16 * (inputs + 16) for inputs in (8, 32))
    return 2 * steps * cells + 2 * len(LENGTHS) * max(LENGTHS) * 32 * 3


def _real_shape(model: torch.nn.Module) -> torch.Size:
    with torch.no_grad():
        return model(torch.randn(len(LENGTHS), max(LENGTHS), 8), torch.tensor(LENGTHS)).shape


def _meta_trace(model: torch.nn.Module) -> Graph:
    meta = model.to("meta")
    return trace(meta, torch.empty(len(LENGTHS), max(LENGTHS), 8, device="meta"),
                 torch.tensor(LENGTHS), fold=False)


@pytest.mark.parametrize("packed", [False, True], ids=["padded", "packed"])
@pytest.mark.parametrize("layer", [torch.nn.LSTM, torch.nn.GRU, torch.nn.RNN])
def test_a_recurrent_layer_traces_on_meta_as_a_real_run_computes(
        layer: type[torch.nn.RNNBase], packed: bool) -> None:
    torch.manual_seed(0)
    model = Tagger(layer, packed)
    shape = _real_shape(model)
    graph = _meta_trace(model)
    (output,) = (node for node in graph.nodes.values() if node.kind == "output")
    assert graph.tensors[output.inputs[0]].shape == list(shape)
    assert graph.meta["totals"]["flops"] == _hand_count(layer, packed)
    assert not any(node.assumed for node in graph.nodes.values())
    assert not graph.meta.get("flops_without_formula")
    recurrent = [node for node in graph.nodes.values()
                 if node.name in ("lstm", "gru", "rnn_tanh")]
    assert len(recurrent) == 1 and recurrent[0].category == "linear"


def test_a_packed_sequences_batch_sizes_stay_concrete_on_the_cpu() -> None:
    """Batch sizes are how many sequences are still running at each step: integers the
    kernels read, drawn with their values' device, not moved to meta."""
    graph = _meta_trace(Tagger(torch.nn.LSTM, packed=True))
    (pack,) = (node for node in graph.nodes.values() if node.name == "_pack_padded_sequence")
    data, batch_sizes = (graph.tensors[t] for t in pack.outputs)
    assert (data.shape, data.device) == ([sum(LENGTHS), 8], "meta")
    assert (batch_sizes.shape, batch_sizes.device) == ([max(LENGTHS)], "cpu")
    (unpack,) = (node for node in graph.nodes.values() if node.name == "_pad_packed_sequence")
    assert graph.tensors[unpack.outputs[0]].shape == [len(LENGTHS), max(LENGTHS), 32]
