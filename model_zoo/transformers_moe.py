"""Every mixture-of-experts family the installed transformers ships, found in its source
rather than listed by hand, each built from transformers' default config on whatever device
is current (the meta device for a trace).

A family is a folder of ``transformers/models`` whose modeling file defines an experts or
MoE class (``...Experts``, ``...MoE``/``...Moe...``, ``...SparseMLP``); a new MoE family in
a later transformers shows up here by itself. Its model is the folder's causal language
model (the text-only one where a multimodal folder has several), else its sequence-to-
sequence model, else its base model. A config class's defaults are the sizes its docstring
says mirror a published checkpoint; ``COMPLETIONS`` sets what a default leaves unset or off
(the experts themselves, for a few), each with its source, and ``NOT_COVERED`` says why a
family is not traced as a mixture of experts from its defaults. ``model_zoo.published``
holds the architectures whose numbers come from a checkpoint's own config.json.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import torch

from model_zoo.published import token_ids

_EXPERTS_CLASS = re.compile(r"^class \w*(Experts|MoE|Moe|SparseMLP)\w*\(", re.MULTILINE)
"""A class definition that makes a modeling file a mixture of experts."""


@dataclass(frozen=True)
class Family:
    """One MoE family of transformers: its folder, the model type and class traced."""

    folder: str
    model_type: str
    model_class: str
    seq2seq: bool = False


COMPLETIONS: dict[str, tuple[dict[str, Any], str]] = {
    "dots1": ({"n_routed_experts": 128, "num_experts_per_tok": 6, "n_shared_experts": 2},
              "the default leaves the experts unset; dots.llm1 has 128 routed experts, 6 per "
              "token, and 2 shared ones (its technical report)"),
    "deepseek_v2": ({"num_experts_per_tok": 6, "moe_intermediate_size": 1408},
                    "the default (DeepSeek-V2-Lite's 64 routed experts) leaves the experts per "
                    "token unset and has experts 1407 wide, which grouped_mm refuses (rows "
                    "not 16-byte aligned); DeepSeek-V2-Lite's config.json has 6 and 1408"),
    "dbrx": ({"attn_config": {"rope_theta": 500000.0, "clip_qkv": 8.0}},
             "the default attention config lacks rope_theta and clip_qkv, which the model "
             "reads; DBRX's config.json has 500000 and 8"),
    "longcat_flash": ({"num_layers": 4},
                      "4 of its 28 layers: its code loops over the experts a token chose "
                      "(512 routed and 256 identity experts), about 6,000 ops per layer, so "
                      "the full model records 170,000 ops and traces in over a minute"),
    "doge": ({"is_moe": True},
             "the default is the dense Doge; is_moe turns on the config's own experts "
             "(16384, 64 per token)"),
    "deepseek_ocr2": ({"text_config": {
        "hidden_size": 1280, "intermediate_size": 6848, "num_hidden_layers": 12,
        "num_attention_heads": 10, "num_key_value_heads": 10, "vocab_size": 129280,
        "max_position_embeddings": 8192, "moe_intermediate_size": 896,
        "n_routed_experts": 64, "n_shared_experts": 2, "num_experts_per_tok": 6,
        "n_group": 1, "topk_group": 1, "mlp_layer_types": ["dense"] + ["sparse"] * 11}},
        "the default text config leaves mlp_layer_types and num_experts_per_tok unset "
        "(the model indexes mlp_layer_types while it is built) and is not the checkpoint's "
        "language model; these are the language model of deepseek-ai/DeepSeek-OCR-2 "
        "(its config.json, as transformers' converted config lists it). Traced over token "
        "ids, the text path: the vision tower (the default's, not the checkpoint's) is not "
        "called"),
    "qwen3_omni_moe": ({"text_config": {"head_dim": 128}},
                       "the default text config leaves head_dim unset, so the heads are "
                       "2048 // 28 = 73 wide while the rotary table, built for "
                       "hidden_size / heads, is 74 wide, and q * cos fails; Qwen3's heads "
                       "are 128 wide (head_dim in every Qwen3 config.json)"),
}
"""Per folder: the config fields set over the defaults, and why."""

NOT_COVERED: dict[str, str] = {
    "lfm2_moe": "the default config leaves layer_types unset (None), which "
                "Lfm2MoeDecoderLayer indexes while the model is built (TypeError)",
    "gemma4": "the default config is the dense Gemma 4 (enable_moe_block False; num_experts, "
              "top_k_experts and moe_intermediate_size unset): it traces with no experts",
    "hunyuan_v1_moe": "the default config leaves head_dim unset (None), which "
                      "HunYuanMoEV1Attention raises to the power -0.5 while the model is "
                      "built (TypeError); it also has 1 expert (num_experts 1, moe_topk 1)",
    "qwen4_exp": "the default config leaves the indexer's sizes unset (indexer_budget, "
                 "indexer_compress_ratio, indexer_n_heads, ... None), which the indexed "
                 "attention divides while the model is built (TypeError)",
    "diffusion_gemma": "the default text config leaves num_experts unset (None), which the "
                       "router's nn.Linear(hidden_size, num_experts) needs while the model is "
                       "built (TypeError)",
    "step3p7": "the default config sets no sliding_window, which transformers' sliding-"
               "window mask code requires in the forward (ValueError: could not find a "
               "sliding_window argument in the config)",
    "nllb_moe": "NllbMoeExperts one-hot encodes the router's mask, which is one-hot already "
                "(tokens x 128): every token runs through expert 0 127 times and expert 1 "
                "once, whatever the router chose, so activated parameters equal the total "
                "(the trace follows the code; the model's numbers are meaningless)",
    "granitemoehybrid": "the default config's layer_types are linear_attention only, and "
                        "transformers' cache refuses get_seq_length without an attention "
                        "layer (ValueError) in the forward",
    "glm4v_moe": "the default text config has 96 heads over hidden_size 4096 and no "
                 "head_dim (42-wide heads, 11 rotary frequencies at partial_rotary_factor "
                 "0.5) but mrope_section [8, 12, 12], which sums to 32: split_with_sizes "
                 "fails in the rotary embedding",
}
"""Families not traced as mixtures of experts from their defaults, and why (the test
expects each to fail, strictly, so a transformers that fixes one shows)."""


def _modeling_file(folder: str) -> Path:
    import transformers

    return Path(transformers.__file__).parent / "models" / folder / f"modeling_{folder}.py"


@cache
def moe_families() -> dict[str, Family]:
    """Every MoE family of the installed transformers, by folder, in folder order."""
    from transformers.models.auto import modeling_auto
    from transformers.models.auto.configuration_auto import model_type_to_module_name

    found: dict[str, list[Family]] = {}
    for mapping, seq2seq in ((modeling_auto.MODEL_FOR_CAUSAL_LM_MAPPING_NAMES, False),
                             (modeling_auto.MODEL_FOR_SEQ_TO_SEQ_CAUSAL_LM_MAPPING_NAMES, True),
                             (modeling_auto.MODEL_MAPPING_NAMES, False)):
        this_mapping: dict[str, list[Family]] = {}
        for model_type, model_class in mapping.items():
            folder = model_type_to_module_name(model_type)
            source = _modeling_file(folder)
            if folder in found or not isinstance(model_class, str) or not source.exists() \
                    or not _EXPERTS_CLASS.search(source.read_text(encoding="utf-8")):
                continue
            this_mapping.setdefault(folder, []).append(
                Family(folder, model_type, model_class, seq2seq))
        found.update(this_mapping)  # a folder's models from the first mapping that has one
    return {folder: _text_only(found[folder]) for folder in sorted(found)}


def _text_only(candidates: list[Family]) -> Family:
    """The text-only model type where a folder has several (``llama4_text``)."""
    return next((f for f in candidates if f.model_type.endswith("_text")), candidates[0])


def build_family(folder: str) -> torch.nn.Module:
    """The family's model from transformers' default config (and ``COMPLETIONS``), bf16."""
    import transformers
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING

    family = moe_families()[folder]
    fields = COMPLETIONS.get(folder, ({}, ""))[0]
    config = CONFIG_MAPPING[family.model_type](**fields)
    model_class = getattr(transformers, family.model_class)
    return model_class._from_config(config, dtype=torch.bfloat16).eval()


def family_inputs(folder: str) -> dict[str, Any]:
    """32 token ids (and 8 decoder token ids for a sequence-to-sequence model), on the CPU."""
    inputs = {"input_ids": token_ids()}
    if moe_families()[folder].seq2seq:
        inputs["decoder_input_ids"] = token_ids(8)
    return inputs
