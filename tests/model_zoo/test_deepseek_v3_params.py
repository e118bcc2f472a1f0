"""Parameter counts on the meta device against the spec's numbers; no cache is materialised."""

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from model_zoo.deepseek_v3 import MLA, RuntimeOptions, Transformer, load_config, parameter_breakdown

REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def model_671b() -> Transformer:
    return Transformer(load_config("671B"), RuntimeOptions(world_size=1, rank=0, device="meta"))


def test_671b_breakdown(model_671b: Transformer) -> None:
    counts = parameter_breakdown(model_671b)
    assert counts == {
        "embedding": 926_679_040,
        "attention": 61 * 187_107_328,
        "dense_mlp": 3 * 396_361_728,
        "routed_experts": 44_040_192 * 256 * 58,
        "shared_experts": 2_554_331_136,
        "gates": 106_445_312,
        "norms": 881_664,
        "head": 926_679_040,
        "mtp": 0,
        "total": 671_026_419_200,
        "activated_per_token": counts["activated_per_token"],
        "activated_excl_embedding": counts["activated_excl_embedding"],
        "mtp_unique": 0,
        "mtp_activated": 0,
        "fp8_scales": 40_838_232,
    }
    assert counts["routed_experts"] == 653_908_770_816
    assert round(counts["activated_per_token"] / 1e9, 3) == 37.552
    assert round(counts["activated_excl_embedding"] / 1e9, 3) == 36.626


def test_671b_structure(model_671b: Transformer) -> None:
    assert sum(1 for _ in model_671b.modules()) == 60_486
    assert model_671b.layers[0].attn.wq_b.weight.dtype == torch.float8_e4m3fn
    assert model_671b.layers[0].attn.wq_b.weight.scale is model_671b.layers[0].attn.wq_b.scale
    assert model_671b.head.weight.dtype == torch.bfloat16  # never fp8
    assert model_671b.layers[3].ffn.gate.weight.dtype == torch.bfloat16
    assert model_671b.layers[3].ffn.gate.bias.dtype == torch.float32
    assert torch.get_default_dtype() == torch.float32  # building never changes it


def test_671b_caches_are_not_allocated(model_671b: Transformer) -> None:
    """The absorb caches would hold 4.61e9 elements; they appear only on the first forward."""
    assert [name for name, _ in model_671b.named_buffers()] == ["freqs_cis"]
    attn = model_671b.layers[0].attn
    assert isinstance(attn, MLA) and attn.kv_cache is None and attn.pe_cache is None
    assert model_671b.freqs_cis.shape == (16384, 32)


@pytest.mark.parametrize(
    ("name", "total", "activated"),
    [("16B", 15_706_484_224, 2.661), ("236B", 235_741_434_880, 21.376)],
)
def test_published_totals(name: str, total: int, activated: float) -> None:
    counts = parameter_breakdown(load_config(name))
    assert counts["total"] == total
    assert round(counts["activated_per_token"] / 1e9, 3) == activated
    assert counts["fp8_scales"] == 0


def test_v31_matches_671b_shapes() -> None:
    counts = parameter_breakdown(load_config("v3.1", n_layers=4))
    assert counts == parameter_breakdown(load_config("671B", n_layers=4))


def test_summary_cli() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "model_zoo.deepseek_v3", "--config", "16B", "--summary"],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        check=True,
    )
    assert "15,706,484,224" in result.stdout and "2.661" in result.stdout


def test_cli_reports_bad_overrides() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "model_zoo.deepseek_v3", "--config", "tiny", "--set", "foo=1"],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
    )
    assert result.returncode == 2
    assert "unknown ModelArgs field(s) foo" in result.stderr
