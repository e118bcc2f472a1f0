"""The models every figure check runs on: an encoder layer, a GPT-2, a ResNet-like conv net,
and DeepSeek-V3 (tiny and 671B) whole and focused, each traced as a fence would trace it.

``benchmarks/integrity.py`` counts problems on the same set, so the figures the tests hold
to zero are the ones the benchmark reports.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import torch
from torch import nn

from model_trace import trace
from model_trace.focus import focus_graph
from model_trace.graph import Graph


class Bottleneck(nn.Module):
    """ResNet's bottleneck: 1x1, 3x3, 1x1 convolutions, a projected shortcut, a residual add."""

    def __init__(self, channels: int, width: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, channels * 2, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(channels * 2)
        self.shortcut = nn.Sequential(nn.Conv2d(channels, channels * 2, 1, stride=stride,
                                                bias=False), nn.BatchNorm2d(channels * 2))
        self.relu = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + self.shortcut(x))


class ResNetLike(nn.Module):
    """A stem, two bottleneck stages, pooling and a classifier."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 16, 7, stride=2, padding=3, bias=False),
                                  nn.BatchNorm2d(16), nn.ReLU(), nn.MaxPool2d(3, 2, 1))
        self.layer1 = Bottleneck(16, 8)
        self.layer2 = Bottleneck(32, 16, stride=2)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(64, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.layer2(self.layer1(self.stem(x)))
        return self.fc(torch.flatten(self.pool(x), 1))


def encoder_layer() -> Graph:
    layer = nn.TransformerEncoderLayer(64, 4, dim_feedforward=128, batch_first=True).eval()
    with torch.no_grad():
        return trace(layer, torch.randn(2, 16, 64))


def resnet_like() -> Graph:
    with torch.no_grad():
        return trace(ResNetLike().eval(), torch.randn(1, 3, 64, 64))


def gpt2() -> Graph:
    from transformers import GPT2Config, GPT2LMHeadModel

    config = GPT2Config(n_layer=2, n_embd=64, n_head=4, n_positions=64, vocab_size=128)
    model = GPT2LMHeadModel(config).eval()
    with torch.no_grad():
        return trace(model, torch.zeros(1, 16, dtype=torch.long))


@functools.cache
def deepseek_v3(config: str) -> Graph:
    """The zoo model traced as ``model: deepseek-v3`` with ``config`` (cached: 671B takes
    seconds)."""
    from model_trace.pipeline import trace_spec
    from model_trace.spec import parse_spec

    return trace_spec(parse_spec(f"model: deepseek-v3\nconfig: {config}\n").with_defaults(
        depth=1, routing="balanced", export=()))


FIGURE_MODELS: dict[str, Callable[[], Graph]] = {
    "encoder layer": encoder_layer,
    "resnet-like": resnet_like,
    "gpt-2": gpt2,
    "deepseek-v3 tiny": lambda: deepseek_v3("tiny"),
    "deepseek-v3 tiny, focus layers.0": lambda: focus_graph(deepseek_v3("tiny"), "layers.0"),
    "deepseek-v3 tiny, focus layers.1.ffn": lambda: focus_graph(deepseek_v3("tiny"),
                                                                "layers.1.ffn"),
    "deepseek-v3 671B": lambda: deepseek_v3("671B"),
    "deepseek-v3 671B, focus layers.0": lambda: focus_graph(deepseek_v3("671B"), "layers.0"),
    "deepseek-v3 671B, focus layers.0.attn": lambda: focus_graph(deepseek_v3("671B"),
                                                                 "layers.0.attn"),
    "deepseek-v3 671B, focus layers.3.ffn": lambda: focus_graph(deepseek_v3("671B"),
                                                                "layers.3.ffn"),
}
"""Name -> a function tracing the model (671B entries share one trace)."""
