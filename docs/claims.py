"""Every number the DeepSeek-V3 pages quote, with the computation or the source behind it.

A page writes ``{{ name }}`` where a number goes; the site's build hook (``docs/hooks.py``)
puts the claim's ``text`` there. ``tests/docs/test_claims.py`` recomputes every computed claim
from the zoo (``model_zoo.deepseek_v3``) or from a trace of the fence the page draws, and fails
when a result no longer reads exactly as ``text``; for a cited claim (a number of DeepSeek's
report or repository) it checks that every page quoting it links the source. So a page cannot
drift from the code, and a number that is neither here nor a plain count of the architecture
(61 blocks, 256 experts) does not get onto a DeepSeek-V3 page: the test looks for one.

This module imports neither torch nor the zoo at import time: the build hook only reads texts.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from model_trace.graph import Graph, ModuleCall

SOURCES = {
    "report": "https://arxiv.org/abs/2412.19437",
    "v2": "https://arxiv.org/abs/2405.04434",
    "readme": "https://github.com/deepseek-ai/DeepSeek-V3/blob/main/README.md",
    "weights": "https://github.com/deepseek-ai/DeepSeek-V3/blob/main/README_WEIGHTS.md",
    "hf-config": "https://huggingface.co/deepseek-ai/DeepSeek-V3/blob/main/config.json",
}
"""Where cited numbers come from: DeepSeek-V3's technical report, DeepSeek-V2's paper, the
DeepSeek-V3 repository's README and README_WEIGHTS, the Hugging Face checkpoint's config."""


@dataclass(frozen=True)
class Claim:
    """A number as a page shows it: computed (``compute`` recomputes ``text``), cited
    (``source``, a key of ``SOURCES``, says where it is written), or both (a published figure
    that the zoo reproduces)."""

    text: str
    compute: Callable[[Facts], str] | None = None
    source: str | None = None

    def __post_init__(self) -> None:
        if self.compute is None and self.source is None:
            raise ValueError(f"claim {self.text!r} needs a computation or a source")


# -- what claims are computed from -----------------------------------------------------------

FENCES = {
    "671B": "model: deepseek-v3",
    "671B+mtp": "model: deepseek-v3\noverrides: {mtp: true}",
    "naive": "model: deepseek-v3\noverrides: {n_layers: 4}\nargs: {attn_impl: naive}",
    "decode": "model: deepseek-v3\noverrides: {n_layers: 4}\n"
              "inputs: model_zoo.deepseek_v3.examples:decode_step",
    "decode naive": "model: deepseek-v3\noverrides: {n_layers: 4}\nargs: {attn_impl: naive}\n"
                    "inputs: model_zoo.deepseek_v3.examples:decode_step",
    "tp16": "model: deepseek-v3\noverrides: {n_layers: 4}\nworld_size: 16\nrank: 0",
    "balanced": "model: deepseek-v3\noverrides: {n_layers: 4}\nrouting: balanced",
    "random": "model: deepseek-v3\noverrides: {n_layers: 4}\nrouting: random",
    "first": "model: deepseek-v3\noverrides: {n_layers: 4}\nrouting: first",
    "fp8": "model: deepseek-v3\noverrides: {n_layers: 4}\nargs: {gemm_impl: fp8}",
}
"""The traces claims read, as fence bodies: the same traces the pages' figures draw."""


class Facts:
    """The configs, parameter counts and traces claims are computed from, each made once."""

    @staticmethod
    @cache
    def args(config: str = "671B", **overrides: Any) -> Any:
        from model_zoo.deepseek_v3 import load_config

        return load_config(config, **overrides)

    @staticmethod
    @cache
    def counts(config: str = "671B", mtp: bool = False) -> dict[str, int]:
        from model_zoo.deepseek_v3 import parameter_breakdown

        return parameter_breakdown(Facts.args(config, mtp=mtp))

    @staticmethod
    @cache
    def trace(name: str) -> Graph:
        from model_trace.pipeline import trace_spec
        from model_trace.spec import parse_spec

        return trace_spec(parse_spec(FENCES[name]))

    @staticmethod
    @cache
    def model(config: str = "671B", mtp: bool = False) -> Any:
        """The model unsplit on the meta device, cut to 4 blocks (3 dense and a MoE one)."""
        import torch

        from model_zoo.deepseek_v3 import RuntimeOptions, Transformer

        with torch.device("meta"):
            return Transformer(Facts.args(config, n_layers=4, mtp=mtp),
                               RuntimeOptions(world_size=1, rank=0))

    @staticmethod
    def weights(path: str, mtp: bool = False) -> int:
        """Weights (fp8 block scales excluded) of one module of the 671B model."""
        module = Facts.model(mtp=mtp).get_submodule(path)
        return sum(p.numel() for n, p in module.named_parameters() if not n.endswith("scale"))

    @staticmethod
    def module(name: str, path: str) -> ModuleCall:
        graph = Facts.trace(name)
        return next(m for m in graph.modules.values() if m.path == path and not m.call_index)

    @staticmethod
    def ops(name: str, op: str, under: str) -> list[Any]:
        """The op nodes named ``op`` inside module ``under`` (a path prefix)."""
        graph = Facts.trace(name)
        return [n for n in graph.nodes.values() if n.name == op
                and (graph.modules[n.parent].path + ".").startswith(under + ".")]

    @staticmethod
    def expert_tokens(name: str) -> list[int]:
        return Facts.trace(name).meta["experts"]["layers.3.ffn.experts"]["tokens"]

    @staticmethod
    def attention_flops(name: str) -> int:
        return Facts.module(name, "layers.0.attn").stats.flops

    @staticmethod
    def yarn_ramp() -> tuple[int, int]:
        """YaRN's (low, high) pair indices: kept up to low, divided from high."""
        a = Facts.args()
        turns = [a.original_seq_len * a.rope_theta ** (-2 * j / a.qk_rope_head_dim) / (2 * math.pi)
                 for j in range(a.qk_rope_head_dim // 2)]
        low = max(j for j, t in enumerate(turns) if t > a.beta_fast)
        high = min(j for j, t in enumerate(turns) if t < a.beta_slow)
        return low, high


# -- how numbers are written -----------------------------------------------------------------

def count(n: float) -> str:
    """An exact count with thousands separators: 187,107,328."""
    return f"{round(n):,}"


def billions(n: float, digits: int = 2) -> str:
    return f"{n / 1e9:.{digits}f}B"


def size(n_bytes: float) -> str:
    """Bytes in decimal units with three significant figures: 70.3 KB, 5.00 MB, 655 GB."""
    for unit, scale in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("KB", 1e3)):
        if n_bytes >= scale:
            value = n_bytes / scale
            return f"{value:.{max(0, 2 - int(math.log10(value)))}f} {unit}"
    return f"{n_bytes:.0f} B"


def fixed(x: float, digits: int) -> str:
    return f"{x:.{digits}f}"


def _yarn_m(f: Facts) -> float:
    """YaRN's m = 0.1 * mscale * ln(rope_factor) + 1; the softmax scale is multiplied by m^2."""
    return 0.1 * f.args().mscale * math.log(f.args().rope_factor) + 1


def ratio(x: float, digits: int = 1) -> str:
    return f"{x:.{digits}f}×"


def percent(x: float, digits: int = 1) -> str:
    return f"{100 * x:.{digits}f}%"


def _field(name: str, config: str = "671B") -> Callable[[Facts], str]:
    return lambda f: count(getattr(f.args(config), name))


def _param(path: str, mtp: bool = False) -> Callable[[Facts], str]:
    return lambda f: count(f.weights(path, mtp))


def _decode_start_pos() -> int:
    from model_zoo.deepseek_v3.examples import DECODE_START_POS

    return DECODE_START_POS


def _kv_absorbed(f: Facts) -> int:
    a = f.args()
    return a.kv_lora_rank + a.qk_rope_head_dim


def _kv_naive(f: Facts) -> int:
    a = f.args()
    return a.n_heads * (a.qk_head_dim + a.v_head_dim)


def _kv_bytes(per_layer: int, f: Facts, tokens: int = 1) -> float:
    return per_layer * f.args().n_layers * 2 * tokens  # bf16


CONTEXT_128K = 128 * 1024
GQA_KV_HEADS = 8


def _decode_cache_bytes(per_layer: int, f: Facts) -> str:
    """The bf16 cache one layer reads in the decoding step: every cached position and the new
    one."""
    return size(per_layer * (_decode_start_pos() + 1) * 2)


def _yarn_table(f: Facts) -> str:
    import torch

    from model_zoo.deepseek_v3 import precompute_freqs_cis

    a = f.args()
    stretched = precompute_freqs_cis(a)[1].angle()
    plain = a.rope_theta ** -(torch.arange(0, a.qk_rope_head_dim, 2) / a.qk_rope_head_dim)
    rows = ["| pair j | wavelength (positions) | turns over "
            f"{count(a.original_seq_len)} positions | divided by |", "|---|---|---|---|"]
    for j, (freq, new) in enumerate(zip(plain.tolist(), stretched.tolist(), strict=True)):
        turns = a.original_seq_len * freq / (2 * math.pi)
        rows.append(f"| {j} | {2 * math.pi / freq:,.1f} | {turns:,.2f} | {freq / new:.3f} |")
    return "\n".join(rows)


def _allreduces(under: str) -> Callable[[Facts], str]:
    return lambda f: str(len(f.ops("tp16", "all_reduce", under)))


def _cache_rows(f: Facts) -> str:
    shapes = [tuple(f.trace("tp16").tensors[t].shape)
              for n in f.ops("tp16", "new_zeros", "layers.0.attn") for t in n.outputs]
    return count(max(shapes)[-1])


def _checkpoint_elements(f: Facts) -> int:
    """Every number the published checkpoint stores: weights and their float32 fp8 scales, the
    MTP module included (what the Hugging Face page counts)."""
    counts = f.counts(mtp=True)
    return counts["total"] + counts["fp8_scales"]


def _totals(f: Facts) -> dict[str, int]:
    return f.trace("671B").meta["totals"]


def _moe_bytes(f: Facts, trace: str, figure: str) -> str:
    value = getattr(f.module(trace, "layers.3.ffn").stats, figure)
    return size(value) if value else "none"


def _cache_bytes(f: Facts) -> int:
    """The absorbed KV caches of all blocks as the reference allocates them, in bf16."""
    a = f.args()
    return a.n_layers * a.max_batch_size * a.max_seq_len * _kv_absorbed(f) * 2


def _total_flops(f: Facts) -> int:
    return f.trace("671B").meta["totals"]["flops"]


def _scores_mflop_per_token(f: Facts) -> str:
    einsums = f.ops("671B", "einsum", "layers.0.attn")
    scores = [n.stats.flops for n in einsums if "t" in str(n.args.get("arg0", "")).split("->")[0]]
    return f"{sum(scores) / 128 / 1e6:.1f}"


C = Claim
CLAIMS: dict[str, Claim] = {
    # configuration (configs/671B.json and the ModelArgs defaults)
    "dim": C("7,168", _field("dim")),
    "inter_dim": C("18,432", _field("inter_dim")),
    "moe_inter_dim": C("2,048", _field("moe_inter_dim")),
    "vocab": C("129,280", _field("vocab_size")),
    "q_lora": C("1,536", _field("q_lora_rank")),
    "kv_lora": C("512", _field("kv_lora_rank")),
    "rope_dim": C("64", _field("qk_rope_head_dim")),
    "max_seq_len": C("16,384", _field("max_seq_len")),
    "max_batch_size": C("8", _field("max_batch_size")),
    "original_seq_len": C("4,096", _field("original_seq_len")),
    "rope_theta": C("10,000", _field("rope_theta")),
    "rope_factor": C("40", _field("rope_factor")),
    "beta_fast": C("32", _field("beta_fast")),
    "beta_slow": C("1", _field("beta_slow")),
    "route_scale": C("2.5", lambda f: f"{f.args().route_scale:g}"),
    "v2_dim": C("5,120", _field("dim", "236B")),
    "v2_moe_inter_dim": C("1,536", _field("moe_inter_dim", "236B")),
    "v2_route_scale": C("16", lambda f: f"{f.args('236B').route_scale:g}"),
    "v2_shared_width": C("3,072", lambda f: count(f.args("236B").n_shared_experts
                                                    * f.args("236B").moe_inter_dim)),
    "hf_max_positions": C("163,840", lambda f: count(f.args().original_seq_len
                                                     * f.args().rope_factor)),
    "decode_start_pos": C("4,096", lambda f: count(_decode_start_pos())),
    # parameters (parameter_breakdown, fp8 block scales apart)
    "total_params": C("671,026,419,200", lambda f: count(f.counts()["total"])),
    "total_params_b": C("671.03B", lambda f: billions(f.counts()["total"])),
    "total_params_mtp": C("684,489,845,504", lambda f: count(f.counts(mtp=True)["total"])),
    "activated_params": C("37,552,297,472",
                          lambda f: count(f.counts()["activated_per_token"])),
    "activated_b": C("37.6B", lambda f: billions(f.counts()["activated_per_token"], 1)),
    "activated_b_exact": C("37.55B", lambda f: billions(f.counts()["activated_per_token"])),
    "activated_b_rounded": C("38B", lambda f: billions(f.counts()["activated_per_token"], 0)),
    "activated_excl_embedding_b": C("36.63B", lambda f: billions(
        f.counts()["activated_excl_embedding"])),
    "routed_params": C("653,908,770,816", lambda f: count(f.counts()["routed_experts"])),
    "routed_share": C("97.4%", lambda f: percent(f.counts()["routed_experts"]
                                                 / f.counts()["total"])),
    "routed_active_share": C("3.1%", lambda f: percent(f.args().n_activated_experts
                                                       / f.args().n_routed_experts)),
    "attention_params": C("187,107,328", lambda f: count(f.counts()["attention"]
                                                         // f.args().n_layers)),
    "attention_all_b": C("11.4 billion", lambda f: f"{f.counts()['attention'] / 1e9:.1f} "
                                                   "billion"),
    "dense_mlp_params": C("396,361,728", lambda f: count(f.counts()["dense_mlp"]
                                                         // f.args().n_dense_layers)),
    "embed_params": C("926,679,040", lambda f: count(f.counts()["embedding"])),
    "expert_params": C("44,040,192", _param("layers.3.ffn.experts.0")),
    "wq_a_params": C("11,010,048", _param("layers.0.attn.wq_a")),
    "wq_b_params": C("37,748,736", _param("layers.0.attn.wq_b")),
    "wkv_a_params": C("4,128,768", _param("layers.0.attn.wkv_a")),
    "wkv_b_params": C("16,777,216", _param("layers.0.attn.wkv_b")),
    "wo_params": C("117,440,512", _param("layers.0.attn.wo")),
    "fp8_scales": C("40,838,232", lambda f: count(f.counts()["fp8_scales"])),
    "v2_total_params": C("235,741,434,880", lambda f: count(f.counts("236B")["total"])),
    "v2_activated_b": C("21.38B", lambda f: billions(f.counts("236B")["activated_per_token"])),
    # parameters as the figures' tables count them (fp8 block scales included)
    "attention_params_with_scales": C("187,118,776", lambda f: count(
        f.module("671B", "layers.0.attn").stats.params)),
    "expert_params_with_scales": C("44,042,880", lambda f: count(
        f.module("671B", "layers.3.ffn.experts.0").stats.params)),
    "expert_scales": C("2,688", lambda f: count(
        f.module("671B", "layers.3.ffn.experts.0").stats.params
        - f.weights("layers.3.ffn.experts.0"))),
    # the multi-token-prediction module (mtp: true)
    "mtp_params": C("13,463,426,304", lambda f: count(f.counts(mtp=True)["mtp"])),
    "mtp_unique_params": C("11,610,068,224", lambda f: count(f.counts(mtp=True)["mtp_unique"])),
    "mtp_unique_b": C("11.61B", lambda f: billions(f.counts(mtp=True)["mtp_unique"])),
    "mtp_block_params": C("11,507,286,272", _param("mtp.block", mtp=True)),
    "mtp_block_b": C("11.51B", lambda f: billions(f.weights("mtp.block", mtp=True))),
    "eh_proj_params": C("102,760,448", _param("mtp.eh_proj", mtp=True)),
    "mtp_norm_params": C("21,504", lambda f: count(sum(
        f.weights(f"mtp.{norm}", mtp=True) for norm in ("enorm", "hnorm", "norm")))),
    "mtp_activated_b": C("2.54B", lambda f: billions(f.counts(mtp=True)["mtp_activated"])),
    "mtp_activated_without_eh_b": C("2.44B", lambda f: billions(
        f.counts(mtp=True)["mtp_activated"] - f.weights("mtp.eh_proj", mtp=True))),
    "fp8_scales_mtp": C("41,540,496", lambda f: count(f.counts(mtp=True)["fp8_scales"])),
    "total_params_mtp_rounded": C("684B", lambda f: billions(f.counts(mtp=True)["total"], 0)),
    "total_elements_mtp": C("684,531,386,000", lambda f: count(_checkpoint_elements(f))),
    "published_with_mtp": C("685B", lambda f: billions(_checkpoint_elements(f), 0), "readme"),
    # attention, the KV cache and absorption
    "kv_absorbed_per_layer": C("576", lambda f: count(_kv_absorbed(f))),
    "kv_naive_per_layer": C("40,960", lambda f: count(_kv_naive(f))),
    "kv_ratio": C("71.1×", lambda f: ratio(_kv_naive(f) / _kv_absorbed(f))),
    "gqa8_per_layer": C("2,048", lambda f: count(2 * GQA_KV_HEADS * f.args().v_head_dim)),
    "mla_gqa_heads": C("2.25", lambda f: f"{_kv_absorbed(f) / (2 * f.args().v_head_dim):g}"),
    "kv_absorbed_token_bytes": C("70.3 KB", lambda f: size(_kv_bytes(_kv_absorbed(f), f))),
    "kv_naive_token_bytes": C("5.00 MB", lambda f: size(_kv_bytes(_kv_naive(f), f))),
    "gqa8_token_bytes": C("250 KB", lambda f: size(_kv_bytes(2 * GQA_KV_HEADS * 128, f))),
    "context_128k_tokens": C("131,072", lambda f: count(CONTEXT_128K)),
    "kv_absorbed_128k_bytes": C("9.21 GB", lambda f: size(_kv_bytes(_kv_absorbed(f), f,
                                                                     CONTEXT_128K))),
    "kv_naive_128k_bytes": C("655 GB", lambda f: size(_kv_bytes(_kv_naive(f), f, CONTEXT_128K))),
    "gqa8_128k_bytes": C("32.7 GB", lambda f: size(_kv_bytes(2 * GQA_KV_HEADS * 128, f,
                                                             CONTEXT_128K))),
    "absorbed_cache_elements_block": C("75.5 million", lambda f: fixed(
        f.args().max_batch_size * f.args().max_seq_len * _kv_absorbed(f) / 1e6, 1) + " million"),
    "naive_cache_elements_block": C("5.4 billion", lambda f: fixed(
        f.args().max_batch_size * f.args().max_seq_len * _kv_naive(f) / 1e9, 1) + " billion"),
    "prefill_absorbed_gflop": C("52.5", lambda f: f"{f.attention_flops('671B') / 1e9:.1f}"),
    "prefill_naive_gflop": C("49.2", lambda f: f"{f.attention_flops('naive') / 1e9:.1f}"),
    "decode_absorbed_gflop": C("1.52", lambda f: f"{f.attention_flops('decode') / 1e9:.2f}"),
    "decode_naive_gflop": C("0.71", lambda f: f"{f.attention_flops('decode naive') / 1e9:.2f}"),
    "decode_flop_ratio": C("2.1×", lambda f: ratio(f.attention_flops("decode")
                                                   / f.attention_flops("decode naive"))),
    "decode_absorbed_cache_bytes": C("4.72 MB", lambda f: _decode_cache_bytes(_kv_absorbed(f),
                                                                              f)),
    "decode_naive_cache_bytes": C("336 MB", lambda f: _decode_cache_bytes(_kv_naive(f), f)),
    "softmax_scale": C("0.1352", lambda f: f"{f.args().softmax_scale:.4f}"),
    "softmax_scale_plain": C("0.0722", lambda f: f"{f.args().qk_head_dim ** -0.5:.4f}"),
    "softmax_scale_yarn_off": C("0.0722", lambda f: f"{_yarn_off(f).softmax_scale:.4f}"),
    "yarn_m": C("1.369", lambda f: fixed(_yarn_m(f), 3)),
    "yarn_m_squared": C("1.874", lambda f: fixed(_yarn_m(f) ** 2, 3)),
    "yarn_low": C("10", lambda f: str(f.yarn_ramp()[0])),
    "yarn_high": C("23", lambda f: str(f.yarn_ramp()[1])),
    "yarn_table": C("\n".join([
        "| pair j | wavelength (positions) | turns over 4,096 positions | divided by |",
        "|---|---|---|---|",
        "| 0 | 6.3 | 651.90 | 1.000 |", "| 1 | 8.4 | 488.86 | 1.000 |",
        "| 2 | 11.2 | 366.59 | 1.000 |", "| 3 | 14.9 | 274.90 | 1.000 |",
        "| 4 | 19.9 | 206.15 | 1.000 |", "| 5 | 26.5 | 154.59 | 1.000 |",
        "| 6 | 35.3 | 115.93 | 1.000 |", "| 7 | 47.1 | 86.93 | 1.000 |",
        "| 8 | 62.8 | 65.19 | 1.000 |", "| 9 | 83.8 | 48.89 | 1.000 |",
        "| 10 | 111.7 | 36.66 | 1.000 |", "| 11 | 149.0 | 27.49 | 1.081 |",
        "| 12 | 198.7 | 20.61 | 1.176 |", "| 13 | 265.0 | 15.46 | 1.290 |",
        "| 14 | 353.3 | 11.59 | 1.429 |", "| 15 | 471.2 | 8.69 | 1.600 |",
        "| 16 | 628.3 | 6.52 | 1.818 |", "| 17 | 837.9 | 4.89 | 2.105 |",
        "| 18 | 1,117.3 | 3.67 | 2.500 |", "| 19 | 1,490.0 | 2.75 | 3.077 |",
        "| 20 | 1,986.9 | 2.06 | 4.000 |", "| 21 | 2,649.6 | 1.55 | 5.714 |",
        "| 22 | 3,533.3 | 1.16 | 10.000 |", "| 23 | 4,711.7 | 0.87 | 40.000 |",
        "| 24 | 6,283.2 | 0.65 | 40.000 |", "| 25 | 8,378.8 | 0.49 | 40.000 |",
        "| 26 | 11,173.3 | 0.37 | 40.000 |", "| 27 | 14,899.8 | 0.27 | 40.000 |",
        "| 28 | 19,869.2 | 0.21 | 40.000 |", "| 29 | 26,496.0 | 0.15 | 40.000 |",
        "| 30 | 35,332.9 | 0.12 | 40.000 |", "| 31 | 47,117.2 | 0.09 | 40.000 |",
    ]), _yarn_table),
    # FLOPs of the full-size trace (128 tokens)
    "flops_total_t": C("9.42", lambda f: fixed(_total_flops(f) / 1e12, 2)),
    "flops_per_token_g": C("73.6", lambda f: fixed(_total_flops(f) / 128 / 1e9, 1)),
    "head_gflop": C("1.85", lambda f: f"{f.module('671B', 'head').stats.flops / 1e9:.2f}"),
    "attention_score_mflop_per_token": C("35.7", _scores_mflop_per_token),
    # memory: weights read, activations and workspace written (Stats)
    "moe_weights_read": C("11.3 GB", lambda f: _moe_bytes(f, "671B", "weight_bytes")),
    "moe_weights_read_fp8": C("11.3 GB", lambda f: _moe_bytes(f, "fp8", "weight_bytes")),
    "moe_activations_bf16": C("83.8 MB", lambda f: _moe_bytes(f, "671B", "activation_bytes")),
    "moe_activations_fp8": C("103 MB", lambda f: _moe_bytes(f, "fp8", "activation_bytes")),
    "moe_workspace_bf16": C("22.6 GB", lambda f: _moe_bytes(f, "671B", "workspace_bytes")),
    "moe_workspace_fp8": C("none", lambda f: _moe_bytes(f, "fp8", "workspace_bytes")),
    "attn_workspace_bf16": C("525 MB", lambda f: size(
        f.module("671B", "layers.3.attn").stats.workspace_bytes)),
    "attn_activations_bf16": C("95.3 MB", lambda f: size(
        f.module("671B", "layers.3.attn").stats.activation_bytes)),
    "attn_dequantised_weights": C("5", lambda f: count(
        len(f.ops("671B", "weight_dequant", "layers.3.attn")))),
    "block_cache_bytes": C("151 MB", lambda f: size(_cache_bytes(f) / f.args().n_layers)),
    "model_weights_read": C("673 GB", lambda f: size(_totals(f)["weight_bytes"])),
    "model_activations": C("11.2 GB", lambda f: size(_totals(f)["activation_bytes"])),
    "model_workspace": C("1.35 TB", lambda f: size(_totals(f)["workspace_bytes"])),
    "model_cache_bytes": C("9.21 GB", lambda f: size(_cache_bytes(f))),
    "dequant_share": C("98.5%", lambda f: percent(
        (_totals(f)["workspace_bytes"] - _cache_bytes(f))
        / (_totals(f)["workspace_bytes"] + _totals(f)["activation_bytes"]))),
    # tensor parallelism (rank 0 of 16)
    "tp16_vocab_slice": C("8,080", lambda f: count(
        f.module("tp16", "embed").stats.params // f.args().dim)),
    "tp16_kv_cache_row": C("512", _cache_rows),
    "allreduce_dense_block": C("2", _allreduces("layers.0")),
    "allreduce_moe_block": C("3", _allreduces("layers.3")),
    "allreduce_moe_sublayer": C("2", _allreduces("layers.3.ffn")),
    "allreduce_embed": C("1", _allreduces("embed")),
    # routing policies on the first MoE block (128 tokens, 8 of 256 experts each)
    "balanced_tokens_per_expert": C("4", lambda f: "/".join(
        sorted({str(n) for n in f.expert_tokens("balanced")}))),
    "random_max_tokens": C("11", lambda f: str(max(f.expert_tokens("random")))),
    "random_min_tokens": C("1", lambda f: str(min(n for n in f.expert_tokens("random") if n))),
    "random_idle_experts": C("4", lambda f: str(f.expert_tokens("random").count(0))),
    "expert_mflop_per_token": C("88.1", lambda f: fixed(
        3 * 2 * f.args().dim * f.args().moe_inter_dim / 1e6, 1)),
    "first_tokens_per_expert": C("128", lambda f: str(max(f.expert_tokens("first")))),
    "first_idle_experts": C("248", lambda f: str(f.expert_tokens("first").count(0))),
    # cited: DeepSeek's report, papers and repository
    "published_total": C("671B", lambda f: billions(f.counts()["total"], 0), "readme"),
    "published_activated": C("37B", source="readme"),
    "published_mtp": C("14B", source="readme"),
    "context_published": C("128K", source="readme"),
    "weights_activated": C("36.7B", source="weights"),
    "weights_embed": C("0.9B", source="weights"),
    "weights_mtp_unique": C("11.5B", source="weights"),
    "weights_mtp_activated": C("2.4B", source="weights"),
    "pretrain_seq_len": C("4K", source="report"),
    "extension_phase1": C("32K", source="report"),
    "extension_steps": C("1,000", source="report"),
    "bias_gamma": C("0.001", source="report"),
    "bias_gamma_tokens": C("14.3T", source="report"),
    "bias_frozen_tokens": C("500B", source="report"),
    "seq_loss_alpha": C("0.0001", source="report"),
    "mtp_lambda_early": C("0.3", source="report"),
    "mtp_lambda_early_tokens": C("10T", source="report"),
    "mtp_lambda_late": C("0.1", source="report"),
    "mtp_lambda_late_tokens": C("4.8T", source="report"),
    "mtp_acceptance": C("85% to 90%", source="report"),
    "mtp_speedup": C("1.8×", source="report"),
    "fp8_loss_error": C("0.25%", source="report"),
    "train_ep": C("64", source="report"),
    "train_ep_nodes": C("8", source="report"),
    "nvlink_bandwidth": C("160 GB/s", source="report"),
    "ib_bandwidth": C("50 GB/s", source="report"),
    "nvlink_ib_ratio": C("3.2×", source="report"),
    "experts_per_node": C("3.2", source="report"),
    "prefill_nodes": C("4", source="report"),
    "prefill_gpus": C("32", source="report"),
    "prefill_dp": C("8", source="report"),
    "prefill_redundant": C("32", source="report"),
    "decode_nodes": C("40", source="report"),
    "decode_gpus": C("320", source="report"),
    "decode_dp": C("80", source="report"),
    "demo_ranks": C("16", source="readme"),
    "demo_nodes": C("2", source="readme"),
    "demo_gpus_per_node": C("8", source="readme"),
}
"""Every claim by the name pages use."""


def _yarn_off(f: Facts) -> Any:
    import dataclasses

    return dataclasses.replace(f.args(), max_seq_len=f.args().original_seq_len)


def texts() -> dict[str, str]:
    """Name -> text, what the build hook substitutes."""
    return {name: claim.text for name, claim in CLAIMS.items()}
