"""A fence's model with real weights on the CPU, its inputs, and its tokenizer.

Graph fences build models on the meta device, where weights have shapes but no values; data
views and ``execute`` run them for real. ``weights: model`` takes what the model's class or
factory loads (a factory that reads a checkpoint); ``weights: random`` draws seeded random
weights (seed 0: the zoo's own ``init_weights``, else the model's own initialisation after
``torch.manual_seed``), and the figure says so.
"""

from __future__ import annotations

import dataclasses
import importlib
import itertools
from typing import Any

import torch

from model_trace.errors import ModelLoadError, SpecError, brief
from model_trace.loader import ZOO, ImportPolicy, build_inputs, build_model, resolve
from model_trace.naming import format_bytes
from model_trace.spec import FenceSpec
from model_trace.tracing.structures import map_structure

SEED = 0
MAX_RUN_BYTES = 8 * 2**30
"""The most weight bytes a fence may run for real on the CPU of a docs build."""


def real_model(spec: FenceSpec, policy: ImportPolicy | None, why: str) -> torch.nn.Module:
    """The spec's model on the CPU with real weights, in eval mode; ``why`` ("an attention
    view", "`execute: cpu`") is how an error names what needs them."""
    zoo = ZOO.get(spec.model)
    if zoo is not None and spec.weights != "random":
        raise SpecError(f"{why} runs the model on real weights, but the zoo's {spec.model} "
                        "has none here (it is built on the meta device, where weights have "
                        "shapes but no values); set `weights: random` for seeded random "
                        "weights (the figure says so), or name a factory that loads a "
                        "checkpoint", field="weights" if "weights" in spec.lines else "model")
    if zoo is not None:
        _check_size(build_model(spec, "meta", policy=policy), spec)
    torch.manual_seed(SEED)
    model = build_model(spec, "cpu", policy=policy)
    if zoo is not None and zoo.init_weights is not None:
        zoo.init_weights(importlib.import_module(zoo.package), model, SEED)
    on_meta = next((n for n, p in itertools.chain(model.named_parameters(),
                                                   model.named_buffers()) if p.is_meta), None)
    if on_meta is not None:
        raise SpecError(f"{why} runs the model on real weights, but '{on_meta}' of "
                        f"{spec.model} is on the meta device (no values); build it on the CPU "
                        "with its weights loaded, or set `weights: random`", field="model")
    return model


def _check_size(model: torch.nn.Module, spec: FenceSpec) -> None:
    size = sum(p.numel() * p.element_size() for p in model.parameters())
    if size > MAX_RUN_BYTES:
        raise SpecError(f"{spec.model} {spec.config or ''} has {format_bytes(size)} of "
                        f"weights; a docs build runs models of at most "
                        f"{format_bytes(MAX_RUN_BYTES)} for real: pick a small config (e.g. "
                        "`config: tiny`) or `overrides`", field="config" if spec.config
                        else "model")


def real_inputs(spec: FenceSpec, policy: ImportPolicy | None
                ) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """The spec's inputs on the CPU with values: a factory's as they are; from shapes, seeded
    normal floats and zero integers (token 0, as a meta trace assumes)."""
    if isinstance(spec.inputs, str):
        return build_inputs(spec, "cpu", policy=policy)
    zoo = ZOO.get(spec.model)
    if zoo is not None and spec.inputs is None:
        spec = dataclasses.replace(spec, inputs=zoo.default_inputs)
    args, kwargs = build_inputs(spec, "cpu", policy=policy)
    generator = torch.Generator().manual_seed(SEED)

    def fill(tensor: torch.Tensor) -> torch.Tensor:
        if tensor.dtype.is_floating_point:
            return torch.randn(tensor.shape, generator=generator).to(tensor.dtype)
        return torch.zeros_like(tensor)

    return map_structure((args, kwargs), fill)


@dataclasses.dataclass(frozen=True)
class Tokens:
    """A text as the model reads it: token ids, and how the figure labels each."""

    ids: list[int]
    labels: list[str]


class Tokenizer:
    """The fence's tokenizer (a ``tokenizers.Tokenizer`` or a transformers tokenizer),
    without padding or truncation: a text too long for the model is an error, not cut."""

    def __init__(self, spec: FenceSpec, policy: ImportPolicy | None) -> None:
        self.path = spec.tokenizer
        made = resolve(spec.tokenizer, "tokenizer", policy)() if spec.tokenizer else None
        if made is not None and hasattr(made, "no_padding"):
            made.no_padding()
            made.no_truncation()
        if made is not None and not (hasattr(made, "encode") or callable(made)):
            raise ModelLoadError(f"'{spec.tokenizer}' returned a {type(made).__name__}, not a "
                                 "tokenizer (tokenizers.Tokenizer or a transformers tokenizer)")
        self.made = made

    def encode(self, text: str) -> Tokens:
        made = self.made
        if made is None:
            raise SpecError("a text needs the model's `tokenizer`", field="tokenizer")
        if hasattr(made, "encode") and hasattr(made, "token_to_id"):  # tokenizers.Tokenizer
            encoding = made.encode(text)
            return Tokens(list(encoding.ids), list(encoding.tokens))
        ids = list(made(text, truncation=False)["input_ids"])
        return Tokens(ids, list(made.convert_ids_to_tokens(ids)))

    def labels(self, ids: list[int]) -> list[str]:
        """How token ids given in the fence are labelled: by the tokenizer, else by id."""
        made = self.made
        if made is None:
            return [f"#{i}" for i in ids]
        if hasattr(made, "id_to_token"):
            return [made.id_to_token(i) or f"#{i}" for i in ids]
        return list(made.convert_ids_to_tokens(ids))


def max_tokens(model: torch.nn.Module) -> int | None:
    """How many tokens the model reads at most (its position table or its config)."""
    config = getattr(model, "config", None) or getattr(model, "args", None)
    for name in ("max_position_embeddings", "max_seq_len", "n_positions"):
        value = getattr(config, name, None)
        if isinstance(value, int) and value > 0:
            return value
    return None


def check_length(count: int, model: torch.nn.Module, spec: FenceSpec, field: str,
                 what: str = "the text") -> None:
    """A ``SpecError`` on ``field`` when ``count`` tokens are more than the model reads."""
    limit = max_tokens(model)
    if limit is not None and count > limit:
        raise SpecError(f"{what} is {count} tokens long, but {brief(spec.model, 60)} reads at "
                        f"most {limit}; shorten it", field=field)


def run_model(model: torch.nn.Module, ids: list[int]) -> Any:
    """One forward pass over a batch of one text (token ids as the first argument)."""
    with torch.no_grad():
        return model(torch.tensor([ids], dtype=torch.long))
