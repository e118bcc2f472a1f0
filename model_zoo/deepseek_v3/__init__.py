"""DeepSeek-V3, written from the published inference reference's architecture.

    from model_zoo.deepseek_v3 import Transformer, RuntimeOptions, load_config, init_weights
    args = load_config("tiny")
    model = init_weights(Transformer(args, RuntimeOptions(dtype=torch.float32)))
    logits = model(torch.tensor([[1, 2, 3]]))  # (1, vocab_size), last position

`python -m model_zoo.deepseek_v3 --config 671B --summary` prints the parameter breakdown.
"""

from model_zoo.deepseek_v3.config import ModelArgs, YarnOffWarning, list_configs, load_config
from model_zoo.deepseek_v3.generate import generate
from model_zoo.deepseek_v3.model import (
    MLA,
    MLP,
    Block,
    ColumnParallelLinear,
    Expert,
    Gate,
    Linear,
    MoE,
    MultiTokenPrediction,
    ParallelEmbedding,
    RMSNorm,
    RowParallelLinear,
    RuntimeOptions,
    Transformer,
    apply_rotary_emb,
    linear,
    precompute_freqs_cis,
)
from model_zoo.deepseek_v3.summary import parameter_breakdown
from model_zoo.deepseek_v3.weights import (
    init_weights,
    load_checkpoint,
    native_name,
    quantize_state_dict,
)

__all__ = [
    "MLA",
    "MLP",
    "Block",
    "ColumnParallelLinear",
    "Expert",
    "Gate",
    "Linear",
    "MoE",
    "ModelArgs",
    "MultiTokenPrediction",
    "ParallelEmbedding",
    "RMSNorm",
    "RowParallelLinear",
    "RuntimeOptions",
    "Transformer",
    "YarnOffWarning",
    "apply_rotary_emb",
    "generate",
    "init_weights",
    "linear",
    "list_configs",
    "load_checkpoint",
    "load_config",
    "native_name",
    "parameter_breakdown",
    "precompute_freqs_cis",
    "quantize_state_dict",
]
