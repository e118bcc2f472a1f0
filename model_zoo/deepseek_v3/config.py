"""DeepSeek-V3 hyperparameters: the `ModelArgs` dataclass and the named configs in `configs/`.

Each `configs/<name>.json` holds the fields that differ from the `ModelArgs` defaults:

- `16B`, `236B`: DeepSeek-V2-Lite and DeepSeek-V2 shapes (bf16 weights, softmax routing).
- `671B`: DeepSeek-V3 (fp8 weights, sigmoid routing with a bias, 8 expert groups).
- `v3.1`: DeepSeek-V3.1, the 671B shapes with power-of-two ("ue8m0") fp8 scales.
Every config describes the model as the inference reference builds it: without the multi-token
prediction (MTP) module the published checkpoint adds as layer 61; `mtp=True` adds it.

- `tiny`: every branch of the model (q LoRA, dense and MoE layers, group-limited sigmoid routing
  with a gate bias, shared experts, YaRN) at sizes that run on a CPU in milliseconds; its
  matrix dimensions are multiples of 128 so it also runs with fp8 weights.
"""

import dataclasses
import json
import math
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, get_args

CONFIG_DIR = Path(__file__).parent / "configs"

WeightDtype = Literal["bf16", "fp8"]
ScaleFormat = Literal["ue8m0"]
ScoreFunc = Literal["softmax", "sigmoid"]


@dataclass(frozen=True)
class ModelArgs:
    """Architecture of a DeepSeek-V3 model; the defaults are the reference's defaults.

    `dtype` is how Linear weights are stored ("bf16": in the model's compute dtype, "fp8":
    float8_e4m3fn with one float32 scale per 128 x 128 block, rounded to powers of two when
    `scale_fmt` is "ue8m0"). `gate_bias` adds the float32 routing bias of the gate; None means
    the reference's rule, a bias exactly when `dim == 7168` (see `has_gate_bias`). YaRN and its
    attention-scale correction apply only when `max_seq_len > original_seq_len`. `mtp` adds the
    multi-token-prediction module of the published checkpoint (off in the inference reference).
    """

    max_batch_size: int = 8
    max_seq_len: int = 4096 * 4
    dtype: WeightDtype = "bf16"
    scale_fmt: ScaleFormat | None = None
    vocab_size: int = 102400
    dim: int = 2048
    inter_dim: int = 10944
    moe_inter_dim: int = 1408
    n_layers: int = 27
    n_dense_layers: int = 1
    n_heads: int = 16
    # mixture of experts
    n_routed_experts: int = 64
    n_shared_experts: int = 2
    n_activated_experts: int = 6
    n_expert_groups: int = 1
    n_limited_groups: int = 1
    score_func: ScoreFunc = "softmax"
    route_scale: float = 1.0
    gate_bias: bool | None = None
    # multi-head latent attention
    q_lora_rank: int = 0
    kv_lora_rank: int = 512
    qk_nope_head_dim: int = 128
    qk_rope_head_dim: int = 64
    v_head_dim: int = 128
    # YaRN
    original_seq_len: int = 4096
    rope_theta: float = 10000.0
    rope_factor: float = 40
    beta_fast: int = 32
    beta_slow: int = 1
    mscale: float = 1.0
    # multi-token prediction
    mtp: bool = False

    def __post_init__(self) -> None:
        for name, allowed in [
            ("dtype", get_args(WeightDtype)),
            ("scale_fmt", (None, *get_args(ScaleFormat))),
            ("score_func", get_args(ScoreFunc)),
        ]:
            if getattr(self, name) not in allowed:
                raise ValueError(
                    f"ModelArgs.{name}={getattr(self, name)!r} is not one of {allowed}"
                )
        if self.n_routed_experts % self.n_expert_groups:
            raise ValueError(
                f"n_routed_experts={self.n_routed_experts} must be a multiple of "
                f"n_expert_groups={self.n_expert_groups}"
            )
        if not 1 <= self.n_limited_groups <= self.n_expert_groups:
            raise ValueError(
                f"n_limited_groups={self.n_limited_groups} must be between 1 and "
                f"n_expert_groups={self.n_expert_groups}"
            )
        if self.n_activated_experts > self.n_routed_experts:
            raise ValueError(
                f"n_activated_experts={self.n_activated_experts} exceeds "
                f"n_routed_experts={self.n_routed_experts}"
            )

    @property
    def has_gate_bias(self) -> bool:
        """Whether the gate has a routing bias: `gate_bias`, or the reference's `dim == 7168`."""
        return self.dim == 7168 if self.gate_bias is None else self.gate_bias

    @property
    def qk_head_dim(self) -> int:
        """Query/key width per head: the position-free part plus the rotary part."""
        return self.qk_nope_head_dim + self.qk_rope_head_dim

    @property
    def yarn_enabled(self) -> bool:
        """Whether YaRN stretches the rotary frequencies (and corrects the softmax scale)."""
        return self.max_seq_len > self.original_seq_len

    @property
    def softmax_scale(self) -> float:
        """Attention logit scale: 1/sqrt(qk_head_dim), times YaRN's m^2 when YaRN is on."""
        scale = self.qk_head_dim**-0.5
        if self.yarn_enabled:
            m = 0.1 * self.mscale * math.log(self.rope_factor) + 1.0
            scale *= m * m
        return scale


def list_configs() -> list[str]:
    """Names accepted by `load_config`, sorted."""
    return sorted(path.stem for path in CONFIG_DIR.glob("*.json"))


def load_config(name: str, **overrides: Any) -> ModelArgs:
    """The named config with `overrides` applied, e.g. `load_config("671B", n_layers=4)`.

    Raises ValueError naming the valid choices for an unknown config name or field.
    """
    path = CONFIG_DIR / f"{name}.json"
    if name not in list_configs():
        raise ValueError(
            f"unknown DeepSeek-V3 config {name!r}; choose one of: {', '.join(list_configs())}"
        )
    fields = json.loads(path.read_text()) | overrides
    known = [f.name for f in dataclasses.fields(ModelArgs)]
    unknown = sorted(set(fields) - set(known))
    if unknown:
        raise ValueError(
            f"unknown ModelArgs field(s) {', '.join(unknown)} for config {name!r}; "
            f"valid fields: {', '.join(known)}"
        )
    args = ModelArgs(**fields)
    base = ModelArgs(**json.loads(path.read_text()))
    if base.yarn_enabled and not args.yarn_enabled:
        warnings.warn(YarnOffWarning(name, args, base), stacklevel=2)
    return args


class YarnOffWarning(UserWarning):
    """An override of `max_seq_len` (or `original_seq_len`) turned YaRN off in a config whose
    weights were trained with it: the model then computes a different function."""

    def __init__(self, name: str, args: ModelArgs, base: ModelArgs) -> None:
        super().__init__(
            f"config {name!r} with max_seq_len={args.max_seq_len} <= original_seq_len="
            f"{args.original_seq_len} turns YaRN off: the rotary frequencies are no longer "
            f"stretched and the softmax scale falls from {base.softmax_scale:.6f} to "
            f"{args.softmax_scale:.6f}, a different function from the trained model; keep "
            f"max_seq_len above {args.original_seq_len} (it only sizes the KV cache)"
        )
