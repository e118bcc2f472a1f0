"""Published architectures from Hugging Face transformers and diffusers, at full size, built
from their configs on whatever device is current (the meta device for a trace: no weights).

Every size below is a number of the checkpoint's ``config.json`` on the Hugging Face Hub (the
repository named in ``source``); fields a config leaves at transformers' default are not
repeated. torchvision's models are its own builders, whose weights ``source`` names.
``params`` is the parameter count the checkpoint's model card, paper or Hub page ("Model
size": the Hub's count of the checkpoint's tensors) publishes, as published (rounded), so a
wrong number here shows; where a card rounds further than 1%, the Hub's count is used. The
docs' model gallery, the tracer's coverage tests and ``benchmarks/coverage.py`` build their
models from this table.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

TOKENS = 32
"""Token ids traced through the language models: ``0, 1, ..., 31`` (real values, CPU)."""


@dataclass(frozen=True)
class Published:
    """One architecture: how to build it and what to feed it."""

    name: str
    family: str
    """``dense decoder``, ``MoE decoder``, ``encoder-decoder``, ``vision``, ..."""
    source: str
    """The checkpoint whose config.json the numbers come from."""
    params: str
    """The published parameter count, as published (``46.7B``)."""
    build: Callable[[], torch.nn.Module]
    inputs: Callable[[], dict[str, Any]] = field(default=lambda: {"input_ids": token_ids()})
    package: str = "transformers"
    """The package that defines the model (``transformers``, ``diffusers``, ``torchvision``)."""


def token_ids(count: int = TOKENS) -> torch.Tensor:
    """(1, count) token ids 0, 1, ..., count - 1, on the CPU: values, not a shape."""
    return torch.arange(count).unsqueeze(0)


def _causal_lm(config_class: str, **numbers: Any) -> Callable[[], torch.nn.Module]:
    def build() -> torch.nn.Module:
        import transformers

        config = getattr(transformers, config_class)(**numbers)
        model = transformers.AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)
        return model.eval()

    return build


def _model(model_class: str, config_class: str, **numbers: Any
           ) -> Callable[[], torch.nn.Module]:
    def build() -> torch.nn.Module:
        import transformers

        config = getattr(transformers, config_class)(**numbers)
        return getattr(transformers, model_class)(config).eval()

    return build


def pixels(size: int = 224) -> dict[str, Any]:
    """A (1, 3, size, size) image on the meta device, as ``pixel_values``."""
    return {"pixel_values": torch.empty(1, 3, size, size, device="meta")}


def _torchvision(builder: str) -> Callable[[], torch.nn.Module]:
    def build() -> torch.nn.Module:
        import torchvision

        return getattr(torchvision.models, builder)().eval()

    return build


def image(size: int = 224) -> dict[str, Any]:
    """A (1, 3, size, size) image on the meta device, as torchvision's ``x``."""
    return {"x": torch.empty(1, 3, size, size, device="meta")}


def _whisper_inputs() -> dict[str, Any]:
    return {"input_features": torch.empty(1, 128, 3000, device="meta"),
            "decoder_input_ids": token_ids(8)}


def _speech_inputs() -> dict[str, Any]:
    """One second of 16 kHz audio on the meta device, as wav2vec 2.0's ``input_values``."""
    return {"input_values": torch.empty(1, 16000, device="meta")}


def _seq2seq_inputs() -> dict[str, Any]:
    return {"input_ids": token_ids(), "decoder_input_ids": token_ids(8)}


def _stable_diffusion_unet() -> torch.nn.Module:
    from diffusers import UNet2DConditionModel

    return UNet2DConditionModel(
        sample_size=64, in_channels=4, out_channels=4, layers_per_block=2,
        block_out_channels=(320, 640, 1280, 1280), cross_attention_dim=768,
        attention_head_dim=8,
        down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D",
                          "CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D",
                        "CrossAttnUpBlock2D")).eval()


def _unet_inputs() -> dict[str, Any]:
    return {"sample": torch.empty(1, 4, 64, 64, device="meta"), "timestep": torch.tensor(10),
            "encoder_hidden_states": torch.empty(1, 77, 768, device="meta")}


ARCHITECTURES: dict[str, Published] = {p.name: p for p in (
    # -- dense decoders ---------------------------------------------------------------------
    Published("Llama 3 8B", "dense decoder", "meta-llama/Meta-Llama-3-8B", "8.03B",
              _causal_lm("LlamaConfig", vocab_size=128256, hidden_size=4096,
                         intermediate_size=14336, num_hidden_layers=32,
                         num_attention_heads=32, num_key_value_heads=8,
                         max_position_embeddings=8192, rope_theta=500000.0)),
    Published("Mistral 7B", "dense decoder", "mistralai/Mistral-7B-v0.1", "7.24B",
              _causal_lm("MistralConfig", vocab_size=32000, hidden_size=4096,
                         intermediate_size=14336, num_hidden_layers=32,
                         num_attention_heads=32, num_key_value_heads=8,
                         sliding_window=4096)),
    Published("Qwen2.5 7B", "dense decoder", "Qwen/Qwen2.5-7B", "7.62B",
              _causal_lm("Qwen2Config", vocab_size=152064, hidden_size=3584,
                         intermediate_size=18944, num_hidden_layers=28,
                         num_attention_heads=28, num_key_value_heads=4,
                         tie_word_embeddings=False, rope_theta=1000000.0)),
    Published("Qwen3 8B", "dense decoder", "Qwen/Qwen3-8B", "8.19B",
              _causal_lm("Qwen3Config", vocab_size=151936, hidden_size=4096,
                         intermediate_size=12288, num_hidden_layers=36,
                         num_attention_heads=32, num_key_value_heads=8, head_dim=128,
                         tie_word_embeddings=False, rope_theta=1000000.0)),
    Published("Gemma 2 9B", "dense decoder", "google/gemma-2-9b", "9.24B",
              _causal_lm("Gemma2Config", vocab_size=256000, hidden_size=3584,
                         intermediate_size=14336, num_hidden_layers=42,
                         num_attention_heads=16, num_key_value_heads=8, head_dim=256)),
    Published("Phi-3 mini", "dense decoder", "microsoft/Phi-3-mini-4k-instruct", "3.82B",
              _causal_lm("Phi3Config", vocab_size=32064, hidden_size=3072,
                         intermediate_size=8192, num_hidden_layers=32,
                         num_attention_heads=32, num_key_value_heads=32)),
    Published("GPT-2", "dense decoder", "openai-community/gpt2", "124M",
              _causal_lm("GPT2Config", vocab_size=50257, n_positions=1024, n_embd=768,
                         n_layer=12, n_head=12)),
    # -- mixtures of experts -----------------------------------------------------------------
    Published("Mixtral 8x7B", "MoE decoder", "mistralai/Mixtral-8x7B-v0.1", "46.7B",
              _causal_lm("MixtralConfig", vocab_size=32000, hidden_size=4096,
                         intermediate_size=14336, num_hidden_layers=32,
                         num_attention_heads=32, num_key_value_heads=8,
                         num_local_experts=8, num_experts_per_tok=2, rope_theta=1e6)),
    Published("Qwen3 235B-A22B", "MoE decoder", "Qwen/Qwen3-235B-A22B", "235B",
              _causal_lm("Qwen3MoeConfig", vocab_size=151936, hidden_size=4096,
                         intermediate_size=12288, moe_intermediate_size=1536,
                         num_hidden_layers=94, num_attention_heads=64,
                         num_key_value_heads=4, head_dim=128, num_experts=128,
                         num_experts_per_tok=8, norm_topk_prob=True,
                         tie_word_embeddings=False, rope_theta=1000000.0)),
    Published("Qwen1.5 MoE A2.7B", "MoE decoder", "Qwen/Qwen1.5-MoE-A2.7B", "14.3B",
              _causal_lm("Qwen2MoeConfig", vocab_size=151936, hidden_size=2048,
                         intermediate_size=5632, moe_intermediate_size=1408,
                         shared_expert_intermediate_size=5632, num_hidden_layers=24,
                         num_attention_heads=16, num_key_value_heads=16, num_experts=60,
                         num_experts_per_tok=4)),
    Published("DeepSeek-V3 (transformers)", "MoE decoder", "deepseek-ai/DeepSeek-V3",
              "671B",
              _causal_lm("DeepseekV3Config", vocab_size=129280, hidden_size=7168,
                         intermediate_size=18432, moe_intermediate_size=2048,
                         num_hidden_layers=61, num_attention_heads=128,
                         num_key_value_heads=128, n_shared_experts=1, n_routed_experts=256,
                         routed_scaling_factor=2.5, kv_lora_rank=512, q_lora_rank=1536,
                         qk_rope_head_dim=64, v_head_dim=128, qk_nope_head_dim=128,
                         n_group=8, topk_group=4, num_experts_per_tok=8,
                         first_k_dense_replace=3, norm_topk_prob=True)),
    Published("GPT-OSS 120B", "MoE decoder", "openai/gpt-oss-120b", "117B",
              _causal_lm("GptOssConfig", vocab_size=201088, hidden_size=2880,
                         intermediate_size=2880, num_hidden_layers=36,
                         num_attention_heads=64, num_key_value_heads=8, head_dim=64,
                         num_local_experts=128, num_experts_per_tok=4, sliding_window=128)),
    Published("OLMoE 1B-7B", "MoE decoder", "allenai/OLMoE-1B-7B-0924", "6.92B",
              _causal_lm("OlmoeConfig", vocab_size=50304, hidden_size=2048,
                         intermediate_size=1024, num_hidden_layers=16,
                         num_attention_heads=16, num_key_value_heads=16, num_experts=64,
                         num_experts_per_tok=8)),
    Published("Phi-3.5 MoE", "MoE decoder", "microsoft/Phi-3.5-MoE-instruct", "41.9B",
              _causal_lm("PhimoeConfig", vocab_size=32064, hidden_size=4096,
                         intermediate_size=6400, num_hidden_layers=32,
                         num_attention_heads=32, num_key_value_heads=8,
                         num_local_experts=16, num_experts_per_tok=2)),
    Published("DBRX", "MoE decoder", "databricks/dbrx-base", "132B",
              _causal_lm("DbrxConfig", d_model=6144, n_heads=48, n_layers=40,
                         max_seq_len=32768, vocab_size=100352,
                         attn_config={"kv_n_heads": 8, "rope_theta": 500000.0, "clip_qkv": 8},
                         ffn_config={"ffn_hidden_size": 10752, "moe_num_experts": 16,
                                     "moe_top_k": 4})),
    Published("Llama 4 Scout (text)", "MoE decoder", "meta-llama/Llama-4-Scout-17B-16E",
              "108B",
              _causal_lm("Llama4TextConfig", vocab_size=202048, hidden_size=5120,
                         intermediate_size=8192, intermediate_size_mlp=16384,
                         num_hidden_layers=48, num_attention_heads=40,
                         num_key_value_heads=8, head_dim=128, num_local_experts=16,
                         num_experts_per_tok=1, interleave_moe_layer_step=1)),
    Published("Jamba v0.1", "hybrid MoE + state space", "ai21labs/Jamba-v0.1", "51.6B",
              _causal_lm("JambaConfig", vocab_size=65536, hidden_size=4096,
                         intermediate_size=14336, num_hidden_layers=32,
                         num_attention_heads=32, num_key_value_heads=8, num_experts=16,
                         num_experts_per_tok=2, expert_layer_period=2, expert_layer_offset=1,
                         attn_layer_period=8, attn_layer_offset=4)),
    Published("Qwen3-Next 80B-A3B", "hybrid MoE + linear attention",
              "Qwen/Qwen3-Next-80B-A3B-Instruct", "80B", _causal_lm("Qwen3NextConfig")),
    # the model card's table says 21B, 3.8% below the 21,825,437,888 parameters its config
    # builds; the Hub counts 21.8B in the checkpoint's safetensors (21.83B where listed with
    # two decimals), tied embeddings stored once: the card rounds down
    Published("ERNIE 4.5 21B-A3B", "MoE decoder", "baidu/ERNIE-4.5-21B-A3B-PT", "21.8B",
              _causal_lm("Ernie4_5_MoeConfig")),
    Published("Switch Transformer base-8", "MoE encoder-decoder", "google/switch-base-8",
              "619M", _model("SwitchTransformersForConditionalGeneration",
                             "SwitchTransformersConfig", vocab_size=32128, d_model=768,
                             d_kv=64, d_ff=3072, num_layers=12, num_decoder_layers=12,
                             num_heads=12, num_experts=8, expert_capacity=64,
                             encoder_sparse_step=2, decoder_sparse_step=2),
              _seq2seq_inputs),
    # -- encoder-decoders, encoders, audio ------------------------------------------------
    Published("T5 base", "encoder-decoder", "google-t5/t5-base", "223M",
              _model("T5ForConditionalGeneration", "T5Config", d_model=768, d_ff=3072,
                     num_layers=12, num_heads=12, d_kv=64), _seq2seq_inputs),
    Published("BART large", "encoder-decoder", "facebook/bart-large", "406M",
              _model("BartForConditionalGeneration", "BartConfig"), _seq2seq_inputs),
    Published("Whisper large-v3", "audio encoder-decoder", "openai/whisper-large-v3",
              "1.55B",
              _model("WhisperForConditionalGeneration", "WhisperConfig", d_model=1280,
                     encoder_layers=32, decoder_layers=32, encoder_attention_heads=20,
                     decoder_attention_heads=20, encoder_ffn_dim=5120,
                     decoder_ffn_dim=5120, vocab_size=51866, num_mel_bins=128),
              _whisper_inputs),
    Published("BERT base", "encoder", "google-bert/bert-base-uncased", "110M",
              _model("BertModel", "BertConfig")),
    # a convolutional feature encoder, and a weight-normed positional convolution
    Published("wav2vec 2.0 base", "audio encoder", "facebook/wav2vec2-base", "95M",
              _model("Wav2Vec2Model", "Wav2Vec2Config"), _speech_inputs),
    # -- vision -------------------------------------------------------------------------------
    Published("ViT-B/16 (transformers)", "vision", "google/vit-base-patch16-224", "86M",
              _model("ViTModel", "ViTConfig"), pixels),
    Published("CLIP ViT-L/14 vision", "vision", "openai/clip-vit-large-patch14", "304M",
              _model("CLIPVisionModel", "CLIPVisionConfig", hidden_size=1024,
                     intermediate_size=4096, num_hidden_layers=24,
                     num_attention_heads=16, patch_size=14, image_size=224), pixels),
    Published("ResNet-50 (torchvision)", "vision", "torchvision ResNet50_Weights.IMAGENET1K_V2",
              "25.6M", _torchvision("resnet50"), image, "torchvision"),
    Published("ViT-B/16 (torchvision)", "vision", "torchvision ViT_B_16_Weights.IMAGENET1K_V1",
              "86.6M", _torchvision("vit_b_16"), image, "torchvision"),
    Published("ConvNeXt-Tiny (torchvision)", "vision",
              "torchvision ConvNeXt_Tiny_Weights.IMAGENET1K_V1", "28.6M",
              _torchvision("convnext_tiny"), image, "torchvision"),
    # -- state space ----------------------------------------------------------------------
    Published("Mamba 130M", "state space", "state-spaces/mamba-130m-hf", "130M",
              _causal_lm("MambaConfig", vocab_size=50280, hidden_size=768,
                         num_hidden_layers=24)),
    Published("Mamba2 130M", "state space", "state-spaces/mamba2-130m", "130M",
              _causal_lm("Mamba2Config", vocab_size=50288, hidden_size=768,
                         num_hidden_layers=24, num_heads=24, head_dim=64, state_size=128,
                         n_groups=1, expand=2, tie_word_embeddings=True)),
    # -- diffusion ------------------------------------------------------------------------
    Published("Stable Diffusion 1.5 UNet", "diffusion",
              "stable-diffusion-v1-5/stable-diffusion-v1-5 (unet)", "860M",
              _stable_diffusion_unet, _unet_inputs, "diffusers"),
)}
"""Every architecture, by name."""


def build(name: str) -> torch.nn.Module:
    """A fence's model: ``model: model_zoo.published:build`` with ``args: {name: ...}``."""
    return ARCHITECTURES[name].build()


def inputs(name: str) -> dict[str, Any]:
    """The inputs of an architecture (language models: token ids 0..31 on the CPU)."""
    return ARCHITECTURES[name].inputs()
