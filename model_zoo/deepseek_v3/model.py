"""DeepSeek-V3 in plain PyTorch: multi-head latent attention (MLA), DeepSeekMoE, YaRN, fp8.

State-dict names match the published inference reference, so its checkpoints load unchanged.

Dimension letters in shape comments:

    b  batch                    s  positions fed in this call      t  positions attended to
    N  tokens, b * s            D  model width (dim)               V  vocabulary (this rank's part)
    H  heads on this rank       d  per-head width (192 = 128 + 64 for q/k, 128 for v)
    c  kv latent (kv_lora_rank) r  rotary width (qk_rope_head_dim) I  MLP hidden width
    E  routed experts           A  activated experts per token     G  expert groups

Tensor parallelism follows the reference: with `world_size` ranks, column-parallel layers keep
1/world_size of their output rows, row-parallel layers 1/world_size of their input columns and
all-reduce, each rank holds E/world_size routed experts (the others are None) and V/world_size
embedding rows, and the logits are all-gathered.
"""

import gc
import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn

from model_zoo.deepseek_v3.config import ModelArgs
from model_zoo.deepseek_v3.kernels import act_quant, fp8_gemm, weight_dequant

BLOCK_SIZE = 128
"""Side of the square weight blocks that share one fp8 scale (and of activation blocks)."""

AttnImpl = Literal["naive", "absorb"]
GemmImpl = Literal["bf16", "fp8"]


def _process_group_size() -> int:
    return dist.get_world_size() if dist.is_initialized() else 1


def _process_group_rank() -> int:
    return dist.get_rank() if dist.is_initialized() else 0


@dataclass(frozen=True)
class RuntimeOptions:
    """How a model is built and run, apart from its architecture (`ModelArgs`).

    - dtype: activations and every weight that is not fp8 (the reference's default dtype).
    - attn_impl: "naive" caches per-head keys and values; "absorb" caches the kv latent and
      the rotary key, and folds wkv_b into the query and the output.
    - gemm_impl: for fp8 weights, "bf16" dequantises and calls F.linear; "fp8" quantises the
      activations and calls fp8_gemm.
    - world_size, rank: the tensor-parallel split; by default torch.distributed's when a
      process group is initialised, else 1 and 0.
    - device: where the weights are made, e.g. "meta" for shapes without memory (each layer
      makes its own there, far faster than `with torch.device("meta")` around the build,
      which intercepts every tensor made); None: torch's current default device.
    """

    dtype: torch.dtype = torch.bfloat16
    attn_impl: AttnImpl = "absorb"
    gemm_impl: GemmImpl = "bf16"
    world_size: int = field(default_factory=_process_group_size)
    rank: int = field(default_factory=_process_group_rank)
    device: torch.device | str | None = None

    def __post_init__(self) -> None:
        if self.attn_impl not in get_args(AttnImpl):
            raise ValueError(f"attn_impl={self.attn_impl!r} is not one of {get_args(AttnImpl)}")
        if self.gemm_impl not in get_args(GemmImpl):
            raise ValueError(f"gemm_impl={self.gemm_impl!r} is not one of {get_args(GemmImpl)}")
        if not 0 <= self.rank < self.world_size:
            raise ValueError(f"rank={self.rank} is outside world_size={self.world_size}")


def _split(size: int, world_size: int, what: str) -> int:
    """This rank's share of `size` items, which must split evenly."""
    if size % world_size:
        raise ValueError(f"{what}={size} is not divisible by world_size={world_size}")
    return size // world_size


def linear(
    x: Tensor,
    weight: Tensor,
    bias: Tensor | None = None,
    scale_fmt: str | None = None,
    gemm_impl: GemmImpl = "bf16",
) -> Tensor:
    """x W^T + b: (..., in) -> (..., out) for a bf16/fp32 or block-scaled fp8 weight (out, in).

    An fp8 weight carries its scales as `weight.scale`. With gemm_impl "bf16" it is
    dequantised to x's dtype; with "fp8" x is quantised per 128 values and fp8_gemm multiplies.
    """
    if weight.element_size() > 1:
        return F.linear(x, weight, bias)
    if gemm_impl == "bf16":
        return F.linear(x, weight_dequant(weight, weight.scale, BLOCK_SIZE, dtype=x.dtype), bias)
    x_fp8, x_scale = act_quant(x, BLOCK_SIZE, scale_fmt)
    y = fp8_gemm(x_fp8, x_scale, weight, weight.scale, dtype=x.dtype)
    return y if bias is None else y + bias


class Linear(nn.Module):
    """y = x W^T (+ b): (..., in_features) -> (..., out_features).

    The weight (out_features, in_features) is stored fp8 when `args.dtype` is "fp8", else in
    `opts.dtype`; `dtype` overrides that (the head is never fp8). An fp8 weight gets a float32
    `scale` parameter (ceil(out / 128), ceil(in / 128)), one per 128 x 128 block, also attached
    as `weight.scale`.
    """

    # The reference's defaults, set on an instance only where it differs: the 45,000 Linears
    # of 671B would spend a fifth of the build in nn.Module.__setattr__ for them.
    scale_fmt: str | None = None
    gemm_impl: GemmImpl = "bf16"

    def __init__(
        self,
        in_features: int,
        out_features: int,
        args: ModelArgs,
        opts: RuntimeOptions,
        bias: bool = False,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        if args.scale_fmt is not None:
            self.scale_fmt = args.scale_fmt
        if opts.gemm_impl != "bf16":
            self.gemm_impl = opts.gemm_impl
        if dtype is None:
            dtype = torch.float8_e4m3fn if args.dtype == "fp8" else opts.dtype
        device = opts.device
        weight = nn.Parameter(torch.empty(out_features, in_features, dtype=dtype, device=device))
        scale = None
        if dtype.itemsize == 1:
            scale_shape = (-(-out_features // BLOCK_SIZE), -(-in_features // BLOCK_SIZE))
            scale = nn.Parameter(torch.empty(scale_shape, dtype=torch.float32, device=device))
            weight.scale = scale
        # register_parameter, not attribute assignment, which looks a value up in all of
        # nn.Module's tables before registering it
        self.register_parameter("weight", weight)
        self.register_parameter("scale", scale)
        self.register_parameter(
            "bias",
            nn.Parameter(torch.empty(out_features, dtype=opts.dtype, device=device))
            if bias else None,
        )

    @property
    def in_features(self) -> int:
        return self.weight.shape[1]

    @property
    def out_features(self) -> int:
        return self.weight.shape[0]

    def forward(self, x: Tensor) -> Tensor:
        return linear(x, self.weight, self.bias, self.scale_fmt, self.gemm_impl)

    def extra_repr(self) -> str:
        weight = self.weight  # looked up once: a tracer asks at every call
        return f"{weight.shape[1]}, {weight.shape[0]}, dtype={weight.dtype}"

    def _attach_scale(self) -> None:
        if self.scale is not None:
            self.weight.scale = self.scale

    # Moving the module (`to`, `to_empty`) or loading into it can replace the weight Parameter,
    # dropping the attribute: attach it again.
    def _apply(self, fn: Any, recurse: bool = True) -> "Linear":
        super()._apply(fn, recurse)
        self._attach_scale()
        return self

    def _load_from_state_dict(self, *args: Any, **kwargs: Any) -> None:
        super()._load_from_state_dict(*args, **kwargs)
        self._attach_scale()


class ColumnParallelLinear(Linear):
    """Linear whose output rows are split across ranks: (..., in) -> (..., out / world_size)."""

    def __init__(
        self,
        in_features: int,
        out_features: int,
        args: ModelArgs,
        opts: RuntimeOptions,
        bias: bool = False,
        dtype: torch.dtype | None = None,
    ) -> None:
        local_out = _split(out_features, opts.world_size, "out_features")
        super().__init__(in_features, local_out, args, opts, bias, dtype)


class RowParallelLinear(Linear):
    """Linear whose input columns are split across ranks: (..., in / world_size) -> (..., out).

    Each rank multiplies its slice; the partial sums are all-reduced, then the bias is added.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        args: ModelArgs,
        opts: RuntimeOptions,
        bias: bool = False,
        dtype: torch.dtype | None = None,
    ) -> None:
        local_in = _split(in_features, opts.world_size, "in_features")
        super().__init__(local_in, out_features, args, opts, bias, dtype)
        self.world_size = opts.world_size

    def forward(self, x: Tensor) -> Tensor:
        y = linear(x, self.weight, None, self.scale_fmt, self.gemm_impl)
        if self.world_size > 1:
            dist.all_reduce(y)
        return y if self.bias is None else y + self.bias


class ParallelEmbedding(nn.Module):
    """Token embedding, vocabulary rows split across ranks: ids (b, s) -> (b, s, D).

    Each rank looks up the ids in its own range [rank * V, (rank + 1) * V), zeroes the rest
    and the results are all-reduced.
    """

    def __init__(self, vocab_size: int, dim: int, opts: RuntimeOptions) -> None:
        super().__init__()
        self.world_size = opts.world_size
        part = _split(vocab_size, opts.world_size, "vocab_size")
        self.vocab_start, self.vocab_end = opts.rank * part, (opts.rank + 1) * part
        self.weight = nn.Parameter(torch.empty(part, dim, dtype=opts.dtype, device=opts.device))

    def forward(self, tokens: Tensor) -> Tensor:
        if self.world_size == 1:
            return F.embedding(tokens, self.weight)
        elsewhere = (tokens < self.vocab_start) | (tokens >= self.vocab_end)
        local = (tokens - self.vocab_start).masked_fill(elsewhere, 0)
        y = F.embedding(local, self.weight)
        y[elsewhere] = 0
        dist.all_reduce(y)
        return y


class RMSNorm(nn.Module):
    """x / rms(x) * weight over the last dimension: (..., dim) -> (..., dim)."""

    def __init__(
        self,
        dim: int,
        dtype: torch.dtype,
        eps: float = 1e-6,
        device: torch.device | str | None = None,
    ) -> None:
        super().__init__()
        self.dim, self.eps = dim, eps
        self.weight = nn.Parameter(torch.ones(dim, dtype=dtype, device=device))

    def forward(self, x: Tensor) -> Tensor:
        return F.rms_norm(x, (self.dim,), self.weight, self.eps)


def precompute_freqs_cis(args: ModelArgs) -> Tensor:
    """Rotations e^(i * pos * freq_j) for every position: (max_seq_len, r / 2) complex64.

    freq_j = rope_theta^(-2j / r). With YaRN on (max_seq_len > original_seq_len), frequencies
    that turn fewer than beta_slow times over original_seq_len are divided by rope_factor,
    those that turn more than beta_fast times are kept, with a linear ramp in between.
    Computed on the CPU whatever the default device (on the meta device the first arange
    would import torch._dynamo, a second of a meta build).
    """
    r, cpu = args.qk_rope_head_dim, torch.device("cpu")
    freqs = args.rope_theta ** -(torch.arange(0, r, 2, dtype=torch.float32, device=cpu) / r)
    if args.yarn_enabled:

        def correction_dim(rotations: float) -> float:
            """Index j whose frequency turns `rotations` times over original_seq_len."""
            turns = args.original_seq_len / (2 * math.pi * rotations)
            return r * math.log(turns) / (2 * math.log(args.rope_theta))

        low = max(math.floor(correction_dim(args.beta_fast)), 0)
        high = min(math.ceil(correction_dim(args.beta_slow)), r - 1)
        j = torch.arange(r // 2, dtype=torch.float32, device=cpu)
        ramp = ((j - low) / ((high - low) or 1e-3)).clamp(0, 1)  # 0: keep, 1: divide
        freqs = freqs / args.rope_factor * ramp + freqs * (1 - ramp)
    positions = torch.arange(args.max_seq_len, dtype=torch.float32, device=cpu)
    angles = torch.outer(positions, freqs)  # (max_seq_len, r/2)
    return torch.polar(torch.ones_like(angles), angles)


def apply_rotary_emb(x: Tensor, freqs_cis: Tensor) -> Tensor:
    """Rotate interleaved pairs (x[2j], x[2j+1]) by freqs_cis: (b, s, h, r) -> (b, s, h, r).

    freqs_cis is (s, r / 2) complex; the rotation runs in float32 and the result is cast back.
    """
    pairs = torch.view_as_complex(x.float().unflatten(-1, (-1, 2)))  # (b, s, h, r/2)
    rotated = pairs * freqs_cis.view(1, x.size(1), 1, -1)
    return torch.view_as_real(rotated).flatten(3).type_as(x)


class MLA(nn.Module):
    """Multi-head latent attention: x (b, s, D) -> (b, s, D), with a KV cache for decoding.

    Queries go through a low-rank bottleneck wq_a -> q_norm -> wq_b (or one wq when
    q_lora_rank is 0). Keys and values come from one shared latent c = kv_norm(wkv_a(x)[:c])
    expanded per head by wkv_b, plus one rotary key shared by all heads. attn_impl "naive"
    caches the expanded keys (H, 192) and values (H, 128) of every position; "absorb" caches
    only c and the rotary key (c + r values) and multiplies wkv_b into the query and output.
    The caches hold (max_batch_size, max_seq_len, ...) and are allocated on the first forward,
    on the input's device and in its dtype, so building the model (on the meta device too)
    allocates none.
    """

    def __init__(self, args: ModelArgs, opts: RuntimeOptions) -> None:
        super().__init__()
        self.n_local_heads = _split(args.n_heads, opts.world_size, "n_heads")
        self.q_lora_rank = args.q_lora_rank
        self.kv_lora_rank = args.kv_lora_rank
        self.qk_nope_head_dim, self.qk_rope_head_dim = args.qk_nope_head_dim, args.qk_rope_head_dim
        self.qk_head_dim = args.qk_head_dim
        self.v_head_dim = args.v_head_dim
        self.softmax_scale = args.softmax_scale
        self.attn_impl = opts.attn_impl
        self.cache_rows = (args.max_batch_size, args.max_seq_len)

        if self.q_lora_rank == 0:
            self.wq = ColumnParallelLinear(args.dim, args.n_heads * self.qk_head_dim, args, opts)
        else:
            self.wq_a = Linear(args.dim, self.q_lora_rank, args, opts)
            self.q_norm = RMSNorm(self.q_lora_rank, opts.dtype, device=opts.device)
            self.wq_b = ColumnParallelLinear(
                self.q_lora_rank, args.n_heads * self.qk_head_dim, args, opts
            )
        self.wkv_a = Linear(args.dim, self.kv_lora_rank + self.qk_rope_head_dim, args, opts)
        self.kv_norm = RMSNorm(self.kv_lora_rank, opts.dtype, device=opts.device)
        self.wkv_b = ColumnParallelLinear(
            self.kv_lora_rank, args.n_heads * (self.qk_nope_head_dim + self.v_head_dim), args, opts
        )
        self.wo = RowParallelLinear(args.n_heads * self.v_head_dim, args.dim, args, opts)
        naive = self.attn_impl == "naive"
        for name in ("k_cache", "v_cache") if naive else ("kv_cache", "pe_cache"):
            self.register_buffer(name, None, persistent=False)

    def forward(self, x: Tensor, start_pos: int, freqs_cis: Tensor, mask: Tensor | None) -> Tensor:
        """x (b, s, D) at positions start_pos..start_pos+s-1; freqs_cis (s, r/2); mask (s, t)."""
        b, s, _ = x.shape
        q = self.wq(x) if self.q_lora_rank == 0 else self.wq_b(self.q_norm(self.wq_a(x)))
        q = q.view(b, s, self.n_local_heads, self.qk_head_dim)  # (b, s, H, d)
        q_nope, q_pe = q.split([self.qk_nope_head_dim, self.qk_rope_head_dim], dim=-1)
        q_pe = apply_rotary_emb(q_pe, freqs_cis)
        kv, k_pe = self.wkv_a(x).split([self.kv_lora_rank, self.qk_rope_head_dim], dim=-1)
        k_pe = apply_rotary_emb(k_pe.unsqueeze(2), freqs_cis)  # (b, s, 1, r)
        kv = self.kv_norm(kv)  # (b, s, c)
        if self.attn_impl == "naive":
            out = self._attend_naive(q_nope, q_pe, kv, k_pe, start_pos, mask)
        else:
            out = self._attend_absorbed(q_nope, q_pe, kv, k_pe, start_pos, mask)
        return self.wo(out.flatten(2))  # (b, s, H * 128) -> (b, s, D)

    def _attend_naive(
        self,
        q_nope: Tensor,
        q_pe: Tensor,
        kv: Tensor,
        k_pe: Tensor,
        start_pos: int,
        mask: Tensor | None,
    ) -> Tensor:
        b, s, h, _ = q_nope.shape
        end = start_pos + s
        q = torch.cat([q_nope, q_pe], dim=-1)  # (b, s, H, d)
        kv = self.wkv_b(kv).view(b, s, h, self.qk_nope_head_dim + self.v_head_dim)
        k_nope, v = kv.split([self.qk_nope_head_dim, self.v_head_dim], dim=-1)
        k = torch.cat([k_nope, k_pe.expand(-1, -1, h, -1)], dim=-1)  # (b, s, H, d)
        k_cache = self._cache("k_cache", (h, self.qk_head_dim), like=k)
        v_cache = self._cache("v_cache", (h, self.v_head_dim), like=v)
        k_cache[:b, start_pos:end] = k
        v_cache[:b, start_pos:end] = v
        scores = torch.einsum("bshd,bthd->bsht", q, k_cache[:b, :end]) * self.softmax_scale
        probs = self._softmax(scores, mask)
        return torch.einsum("bsht,bthd->bshd", probs, v_cache[:b, :end])  # (b, s, H, 128)

    def _attend_absorbed(
        self,
        q_nope: Tensor,
        q_pe: Tensor,
        kv: Tensor,
        k_pe: Tensor,
        start_pos: int,
        mask: Tensor | None,
    ) -> Tensor:
        b, s, h, _ = q_nope.shape
        end = start_pos + s
        wkv_b = self.wkv_b.weight
        if self.wkv_b.scale is not None:
            wkv_b = weight_dequant(wkv_b, self.wkv_b.scale, BLOCK_SIZE, dtype=kv.dtype)
        wkv_b = wkv_b.view(h, -1, self.kv_lora_rank)  # (H, 128 + 128, c)
        w_k, w_v = wkv_b[:, : self.qk_nope_head_dim], wkv_b[:, -self.v_head_dim :]
        q_latent = torch.einsum("bshd,hdc->bshc", q_nope, w_k)  # (b, s, H, c)
        kv_cache = self._cache("kv_cache", (self.kv_lora_rank,), like=kv)
        pe_cache = self._cache("pe_cache", (self.qk_rope_head_dim,), like=k_pe)
        kv_cache[:b, start_pos:end] = kv
        pe_cache[:b, start_pos:end] = k_pe.squeeze(2)
        scores = (
            torch.einsum("bshc,btc->bsht", q_latent, kv_cache[:b, :end])
            + torch.einsum("bshr,btr->bsht", q_pe, pe_cache[:b, :end])
        ) * self.softmax_scale
        probs = self._softmax(scores, mask)
        out = torch.einsum("bsht,btc->bshc", probs, kv_cache[:b, :end])  # (b, s, H, c)
        return torch.einsum("bshc,hdc->bshd", out, w_v)  # (b, s, H, 128)

    @staticmethod
    def _softmax(scores: Tensor, mask: Tensor | None) -> Tensor:
        """Masked softmax over t in float32, cast back: (b, s, H, t) -> (b, s, H, t)."""
        if mask is not None:
            scores = scores + mask.unsqueeze(1)  # (s, 1, t)
        return scores.softmax(dim=-1, dtype=torch.float32).type_as(scores)

    def _cache(self, name: str, row_shape: tuple[int, ...], like: Tensor) -> Tensor:
        """Cache buffer `name` of shape (max_batch_size, max_seq_len, *row_shape), allocated
        (zeroed) on first use or when `like`'s device or dtype changes."""
        cache = getattr(self, name)
        if cache is None or cache.device != like.device or cache.dtype != like.dtype:
            cache = like.new_zeros(*self.cache_rows, *row_shape)
            setattr(self, name, cache)
        return cache


class SwiGLU(nn.Module):
    """The feed-forward both MLP and Expert compute: w2(silu(w1 x) * w3 x), (..., D) -> (..., D).
    Subclasses only choose how the three projections are split across ranks."""

    w1: nn.Module
    w2: nn.Module
    w3: nn.Module

    def forward(self, x: Tensor) -> Tensor:
        return self.w2(F.silu(self.w1(x)) * self.w3(x))


class MLP(SwiGLU):
    """Dense SwiGLU feed-forward with its inner width I split across ranks."""

    def __init__(self, dim: int, inter_dim: int, args: ModelArgs, opts: RuntimeOptions) -> None:
        super().__init__()
        self.w1 = ColumnParallelLinear(dim, inter_dim, args, opts)
        self.w2 = RowParallelLinear(inter_dim, dim, args, opts)
        self.w3 = ColumnParallelLinear(dim, inter_dim, args, opts)


class Expert(SwiGLU):
    """One routed expert, a SwiGLU feed-forward kept whole on its rank: (n, D) -> (n, D)."""

    def __init__(self, dim: int, inter_dim: int, args: ModelArgs, opts: RuntimeOptions) -> None:
        super().__init__()
        self.w1 = Linear(dim, inter_dim, args, opts)
        self.w2 = Linear(inter_dim, dim, args, opts)
        self.w3 = Linear(dim, inter_dim, args, opts)


class Gate(nn.Module):
    """Router: x (N, D) -> weights (N, A) in x's dtype and expert indices (N, A).

    Scores are softmax (float32) or sigmoid of x W^T. The bias, when present, only steers the
    choice of experts, never their weights. With G > 1 groups each token first keeps the
    n_limited_groups groups with the best group score (the best expert, or with a bias the sum
    of the best two) and picks its A experts among those. Sigmoid weights are renormalised to
    sum to 1; all are multiplied by route_scale.
    """

    def __init__(self, args: ModelArgs, opts: RuntimeOptions) -> None:
        super().__init__()
        self.topk = args.n_activated_experts
        self.n_groups, self.topk_groups = args.n_expert_groups, args.n_limited_groups
        self.score_func = args.score_func
        self.route_scale = args.route_scale
        self.weight = nn.Parameter(
            torch.empty(args.n_routed_experts, args.dim, dtype=opts.dtype, device=opts.device)
        )
        if args.has_gate_bias:
            self.bias = nn.Parameter(
                torch.empty(args.n_routed_experts, dtype=torch.float32, device=opts.device)
            )
        else:
            self.register_parameter("bias", None)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        scores = linear(x, self.weight)  # (N, E)
        if self.score_func == "softmax":
            scores = scores.softmax(dim=-1, dtype=torch.float32)
        else:
            scores = scores.sigmoid()
        original_scores = scores
        if self.bias is not None:
            scores = scores + self.bias
        if self.n_groups > 1:
            scores = self._keep_best_groups(scores)
        indices = scores.topk(self.topk, dim=-1)[1]  # (N, A)
        weights = original_scores.gather(1, indices)
        if self.score_func == "sigmoid":
            weights = weights / weights.sum(dim=-1, keepdim=True)
        weights = weights * self.route_scale
        return weights.type_as(x), indices

    def _keep_best_groups(self, scores: Tensor) -> Tensor:
        """Scores (N, E) with every expert outside the token's best groups set to -inf."""
        grouped = scores.view(scores.size(0), self.n_groups, -1)  # (N, G, E/G)
        if self.bias is None:
            group_scores = grouped.amax(dim=-1)  # (N, G)
        else:
            group_scores = grouped.topk(2, dim=-1)[0].sum(dim=-1)  # (N, G)
        kept = group_scores.topk(self.topk_groups, dim=-1)[1]
        dropped = torch.ones_like(group_scores, dtype=torch.bool).scatter_(1, kept, False)
        return grouped.masked_fill(dropped.unsqueeze(-1), float("-inf")).flatten(1)


class MoE(nn.Module):
    """DeepSeekMoE: x (b, s, D) -> (b, s, D), the gate-weighted sum of each token's A routed
    experts plus the shared experts (one MLP of width n_shared_experts * moe_inter_dim).

    Each rank holds experts [rank * E / world_size, (rank + 1) * E / world_size) and None for
    the others; only experts that received tokens run, and the routed sums are all-reduced.
    """

    def __init__(self, args: ModelArgs, opts: RuntimeOptions) -> None:
        super().__init__()
        self.dim = args.dim
        self.n_routed_experts = args.n_routed_experts
        self.world_size = opts.world_size
        n_local = _split(args.n_routed_experts, opts.world_size, "n_routed_experts")
        self.experts_start, self.experts_end = opts.rank * n_local, (opts.rank + 1) * n_local
        self.gate = Gate(args, opts)
        self.experts = nn.ModuleList(
            Expert(args.dim, args.moe_inter_dim, args, opts)
            if self.experts_start <= i < self.experts_end
            else None
            for i in range(args.n_routed_experts)
        )
        self.shared_experts = MLP(args.dim, args.n_shared_experts * args.moe_inter_dim, args, opts)

    def forward(self, x: Tensor) -> Tensor:
        shape = x.shape
        x = x.view(-1, self.dim)  # (N, D)
        weights, indices = self.gate(x)  # (N, A), (N, A)
        y = torch.zeros_like(x)
        counts = torch.bincount(indices.flatten(), minlength=self.n_routed_experts).tolist()
        for i in range(self.experts_start, self.experts_end):
            if counts[i] == 0:
                continue
            token, slot = torch.where(indices == i)  # the tokens routed to expert i
            y[token] += self.experts[i](x[token]) * weights[token, slot, None]
        z = self.shared_experts(x)
        if self.world_size > 1:
            dist.all_reduce(y)
        return (y + z).view(shape)


class Block(nn.Module):
    """Pre-norm transformer layer: x += attn(attn_norm(x)); x += ffn(ffn_norm(x)).

    (b, s, D) -> (b, s, D). The ffn is a dense MLP in the first n_dense_layers layers and an
    MoE after them.
    """

    def __init__(self, layer_id: int, args: ModelArgs, opts: RuntimeOptions) -> None:
        super().__init__()
        self.attn = MLA(args, opts)
        self.ffn: MLP | MoE
        if layer_id < args.n_dense_layers:
            self.ffn = MLP(args.dim, args.inter_dim, args, opts)
        else:
            self.ffn = MoE(args, opts)
        self.attn_norm = RMSNorm(args.dim, opts.dtype, device=opts.device)
        self.ffn_norm = RMSNorm(args.dim, opts.dtype, device=opts.device)

    def forward(self, x: Tensor, start_pos: int, freqs_cis: Tensor, mask: Tensor | None) -> Tensor:
        x = x + self.attn(self.attn_norm(x), start_pos, freqs_cis, mask)
        return x + self.ffn(self.ffn_norm(x))


class MultiTokenPrediction(nn.Module):
    """DeepSeek-V3's multi-token-prediction (MTP) module, layer 61 of the published checkpoint:
    from the main model's hidden states and the *next* tokens, the logits of the token after
    next. (b, s, D), (b, s) -> last-position logits (b, V).

    For position i it projects the concatenation of the normalised embedding of token i + 1
    and the normalised hidden state h_i (eh_proj, 2D -> D), runs one MoE block at position i
    (with its own KV cache), normalises and projects onto the vocabulary: a prediction of
    token i + 2 (the report's section 2.2, depth 1). In training the embedding and the head
    are the main model's; the checkpoint stores copies (layers.61.embed_tokens,
    layers.61.shared_head.head), which this module holds as its own parameters so that the
    checkpoint loads unchanged. eh_proj is stored in the default dtype, never fp8.
    """

    def __init__(self, args: ModelArgs, opts: RuntimeOptions) -> None:
        super().__init__()
        self.world_size = opts.world_size
        self.embed = ParallelEmbedding(args.vocab_size, args.dim, opts)
        self.enorm = RMSNorm(args.dim, opts.dtype, device=opts.device)
        self.hnorm = RMSNorm(args.dim, opts.dtype, device=opts.device)
        self.eh_proj = Linear(2 * args.dim, args.dim, args, opts, dtype=opts.dtype)
        # "like layers 3-60": a MoE block, whatever n_layers an override leaves
        self.block = Block(max(args.n_layers, args.n_dense_layers), args, opts)
        self.norm = RMSNorm(args.dim, opts.dtype, device=opts.device)
        self.head = ColumnParallelLinear(args.dim, args.vocab_size, args, opts, dtype=opts.dtype)

    def forward(
        self,
        h: Tensor,
        next_tokens: Tensor,
        start_pos: int,
        freqs_cis: Tensor,
        mask: Tensor | None,
    ) -> Tensor:
        """h (b, s, D): the main model's hidden states at positions start_pos.., after its
        final norm (what its head reads; vLLM's DeepSeek MTP is fed the same); next_tokens
        (b, s): the token after each of those positions."""
        h = self.hnorm(h)
        e = self.enorm(self.embed(next_tokens))  # (b, s, D)
        x = self.eh_proj(torch.cat([e, h], dim=-1))  # (b, s, 2D) -> (b, s, D)
        x = self.block(x, start_pos, freqs_cis, mask)
        return _gather_logits(self.head(self.norm(x)[:, -1]), self.world_size)


def _gather_logits(logits: Tensor, world_size: int) -> Tensor:
    """(b, V / world_size) on every rank -> (b, V): the column-parallel head's slices."""
    if world_size == 1:
        return logits
    parts = [torch.empty_like(logits) for _ in range(world_size)]
    dist.all_gather(parts, logits)
    return torch.cat(parts, dim=-1)


@contextmanager
def _gc_paused() -> Iterator[None]:
    """Pause Python's cyclic garbage collector, restoring its previous state afterwards.

    Building the 671B model creates 60,486 modules, which would trigger hundreds of
    collections, each walking the ever larger heap: 60% of the build time. Everything built
    stays alive, so pausing leaves no garbage behind.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


class Transformer(nn.Module):
    """DeepSeek-V3: token ids (b, s) at positions start_pos.. -> last-position logits (b, V).

    Built from `args` (architecture) and `options` (dtype, attention and gemm paths,
    tensor-parallel split; `RuntimeOptions()` when None). Weights are left uninitialised, as
    in the reference: load a checkpoint or call `init_weights`. Calls must go in order of
    positions: each writes its keys and values into the caches at start_pos..start_pos+s-1
    and attends to everything cached before. Unlike the reference, a call with s > 1 and
    start_pos > 0 (chunked prefill) works: the causal mask is (s, start_pos + s).

    With `args.mtp` the model also holds `mtp`, the multi-token-prediction module, and returns
    (logits, draft_logits): the MTP's logits for the token after the main model's greedy next
    token, the draft that speculative decoding verifies at the next step.
    """

    def __init__(self, args: ModelArgs, options: RuntimeOptions | None = None) -> None:
        super().__init__()
        self.args = args
        self.options = opts = options or RuntimeOptions()
        with _gc_paused():
            self.embed = ParallelEmbedding(args.vocab_size, args.dim, opts)
            self.layers = nn.ModuleList(Block(i, args, opts) for i in range(args.n_layers))
            self.norm = RMSNorm(args.dim, opts.dtype, device=opts.device)
            self.head = ColumnParallelLinear(
                args.dim, args.vocab_size, args, opts, dtype=opts.dtype
            )
            self.mtp: MultiTokenPrediction | None = (
                MultiTokenPrediction(args, opts) if args.mtp else None
            )
        device = opts.device if opts.device is not None else torch.get_default_device()
        freqs_cis = precompute_freqs_cis(args).to(device)
        self.register_buffer("freqs_cis", freqs_cis, persistent=False)

    @torch.inference_mode()
    def forward(self, tokens: Tensor, start_pos: int = 0) -> Tensor | tuple[Tensor, Tensor]:
        b, s = tokens.shape
        end = start_pos + s
        if b > self.args.max_batch_size or end > self.args.max_seq_len:
            raise ValueError(
                f"tokens {tuple(tokens.shape)} at start_pos={start_pos} exceed the caches: "
                f"batch <= max_batch_size={self.args.max_batch_size} and start_pos + seq <= "
                f"max_seq_len={self.args.max_seq_len}"
            )
        h = self.embed(tokens)  # (b, s, D)
        freqs_cis = self.freqs_cis[start_pos:end]
        mask = None
        if s > 1:  # position start_pos + i sees the cache up to and including itself
            mask = torch.full((s, end), float("-inf"), dtype=h.dtype, device=tokens.device)
            mask = mask.triu_(start_pos + 1)  # (s, t)
        for layer in self.layers:
            h = layer(h, start_pos, freqs_cis, mask)
        h = self.norm(h)
        logits = _gather_logits(self.head(h[:, -1]), self.options.world_size)  # (b, V)
        if self.mtp is None:
            return logits
        # the MTP reads position i with token i + 1: the prompt shifted by one, then the
        # main model's greedy choice for the position after the last
        next_tokens = torch.cat([tokens[:, 1:], logits.argmax(-1, keepdim=True)], dim=1)
        return logits, self.mtp(h, next_tokens, start_pos, freqs_cis, mask)
