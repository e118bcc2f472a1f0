"""On a CUDA GPU (skipped elsewhere): the same numbers as on the CPU, and fp8 through Triton."""

import pytest
import torch
from deepseek_v3_helpers import build, random_tokens, relative_error

from model_zoo.deepseek_v3 import (
    ModelArgs,
    RuntimeOptions,
    Transformer,
    generate,
    load_config,
    quantize_state_dict,
)

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@pytest.mark.parametrize("attn_impl", ["absorb", "naive"])
@pytest.mark.parametrize("args", [load_config("tiny"), ModelArgs(n_layers=2, max_batch_size=2)])
def test_cuda_matches_cpu(args: ModelArgs, attn_impl: str) -> None:
    cpu = build(args, dtype=torch.float32, attn_impl=attn_impl)
    cuda = build(args, dtype=torch.float32, attn_impl=attn_impl).cuda()
    tokens = random_tokens(args, 2, 32)
    assert relative_error(cuda(tokens.cuda()).cpu(), cpu(tokens)) <= 1e-4
    assert generate(cuda, [[1, 2, 3]], 8) == generate(cpu, [[1, 2, 3]], 8)


@pytest.mark.skipif(
    not torch.cuda.is_available() or torch.cuda.get_device_capability() < (8, 9),
    reason="Triton's fp8 kernels need compute capability 8.9+",
)
@pytest.mark.parametrize("attn_impl", ["absorb", "naive"])
def test_fp8_gemm_through_triton(attn_impl: str) -> None:
    args = load_config("tiny")
    bf16 = build(args, attn_impl=attn_impl)
    fp8_args = load_config("tiny", dtype="fp8")
    models = {}
    for gemm_impl in ("bf16", "fp8"):
        fp8 = Transformer(fp8_args, RuntimeOptions(attn_impl=attn_impl, gemm_impl=gemm_impl))
        fp8.load_state_dict(quantize_state_dict(bf16.state_dict(), fp8))
        models[gemm_impl] = fp8
    tokens = random_tokens(args, 2, 32)
    on_cpu = models["fp8"](tokens)  # the kernels' torch reference
    expected = bf16.cuda()(tokens.cuda())
    for gemm_impl, model in models.items():
        actual = model.cuda()(tokens.cuda())
        assert relative_error(actual, expected) <= 0.2, gemm_impl
        assert torch.equal(actual.argmax(-1), expected.argmax(-1)), gemm_impl
    # Triton against the torch reference, through a whole bf16 model on different hardware
    assert relative_error(models["fp8"](tokens.cuda()).cpu(), on_cpu) <= 0.05
