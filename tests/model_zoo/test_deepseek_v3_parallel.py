"""Tensor parallelism: one rank's view of an 8-way split (fake process group, one process)
and a real 2-way gloo run whose gathered logits equal the unsplit model's."""

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
from deepseek_v3_helpers import build, random_tokens, relative_error
from torch.testing._internal.distributed.fake_pg import FakeStore

from model_zoo.deepseek_v3 import Transformer, load_config, parameter_breakdown

HERE = Path(__file__).resolve().parent
REPO_ROOT = HERE.parents[1]


@pytest.fixture
def fake_group(request: pytest.FixtureRequest) -> Iterator[None]:
    """A fake process group: (world_size, rank) from the test's parameter, no-op collectives."""
    world_size, rank = request.param
    dist.init_process_group("fake", rank=rank, world_size=world_size, store=FakeStore())
    yield
    dist.destroy_process_group()


@pytest.mark.parametrize("fake_group", [(8, 3)], indirect=True)
def test_one_rank_of_an_8_way_split(fake_group: None) -> None:
    with torch.device("meta"):
        model = Transformer(load_config("671B"))
    assert (model.options.world_size, model.options.rank) == (8, 3)
    assert model.embed.weight.shape == (129280 // 8, 7168)
    assert (model.embed.vocab_start, model.embed.vocab_end) == (3 * 16160, 4 * 16160)
    attn = model.layers[0].attn
    assert attn.n_local_heads == 16
    assert attn.wq_a.weight.shape == (1536, 7168)  # not split
    assert attn.wq_b.weight.shape == (16 * 192, 1536)
    assert attn.wkv_b.weight.shape == (16 * 256, 512)
    assert attn.wo.weight.shape == (7168, 16 * 128) and attn.wo.scale.shape == (56, 16)
    assert model.layers[0].ffn.w1.weight.shape == (18432 // 8, 7168)
    moe = model.layers[3].ffn
    present = [i for i, expert in enumerate(moe.experts) if expert is not None]
    assert present == list(range(96, 128))
    assert moe.shared_experts.w2.weight.shape == (7168, 2048 // 8)
    assert model.head.weight.shape == (129280 // 8, 7168)
    counts = parameter_breakdown(model)
    assert counts["routed_experts"] == 44_040_192 * 32 * 58
    assert counts["gates"] == 106_445_312  # every rank routes for all experts


@pytest.mark.parametrize("fake_group", [(2, 1)], indirect=True)
def test_forward_runs_through_the_collectives(fake_group: None) -> None:
    """With no-op collectives the numbers are one rank's partial sums; the shapes are real."""
    args = load_config("tiny")
    model = build(args, dtype=torch.float32, world_size=2, rank=1)
    logits = model(random_tokens(args, 2, 8))
    assert logits.shape == (2, args.vocab_size)


def test_two_ranks_reassemble_the_unsplit_model(tmp_path: Path) -> None:
    safetensors_torch = pytest.importorskip("safetensors.torch")
    args = load_config("tiny")
    model = build(args, dtype=torch.float32)
    safetensors_torch.save_file(model.state_dict(), tmp_path / "model.safetensors")
    tokens = random_tokens(args, 2, 24)
    torch.save(tokens, tmp_path / "tokens.pt")
    python_path = [str(REPO_ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]
    env = os.environ | {"PYTHONPATH": os.pathsep.join(python_path)}
    worker = [sys.executable, str(HERE / "deepseek_v3_tp_worker.py")]
    ranks = [subprocess.Popen([*worker, str(r), str(tmp_path)], env=env) for r in range(2)]
    assert [rank.wait(timeout=120) for rank in ranks] == [0, 0]
    results = [torch.load(tmp_path / f"rank{r}.pt") for r in range(2)]

    shapes = [result["shapes"] for result in results]
    for rank, experts in enumerate([range(0, 8), range(8, 16)]):
        held = {int(name.split(".")[4]) for name in shapes[rank] if ".experts." in name}
        assert held == set(experts)
    shapes = shapes[0]
    assert shapes["embed.weight"] == (args.vocab_size // 2, args.dim)
    assert shapes["layers.0.attn.wq_b.weight"] == (args.n_heads // 2 * args.qk_head_dim, 128)
    assert shapes["layers.0.attn.wo.weight"] == (args.dim, args.n_heads // 2 * args.v_head_dim)
    assert shapes["layers.0.ffn.w2.weight"] == (args.dim, args.inter_dim // 2)
    assert shapes["head.weight"] == (args.vocab_size // 2, args.dim)

    expected = model(tokens)
    for key in ("absorb/full", "absorb/step", "naive/full", "naive/step"):
        assert torch.equal(results[0][key], results[1][key]), key
        assert relative_error(results[0][key], expected) <= 1e-5, key
