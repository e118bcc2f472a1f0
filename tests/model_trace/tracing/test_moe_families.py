"""Every mixture-of-experts family of the installed transformers (``model_zoo.
transformers_moe``: found in transformers' source, so a new family is tested without a
change here), built from transformers' default config on the meta device and traced over 32
token ids: the experts are found (tokens per expert, activated parameters below the total)
or, where the model's code runs every expert, named as run densely; every op that
multiplies has a FLOP formula; nothing is assumed that may change the figure.

Traced unfolded: the totals are computed before the fold, and the fold is checked by the
coverage matrix (``test_coverage.py``)."""

from __future__ import annotations

import pytest
import torch

from model_trace.tracing import trace
from model_zoo.transformers_moe import NOT_COVERED, build_family, family_inputs, moe_families

pytestmark = [pytest.mark.slow, pytest.mark.transformers]
pytest.importorskip("transformers")  # in the test extra: test_coverage.py fails without it in CI

ASSUMING: dict[str, str] = {
    "glm5_next": "its sparse attention's indexer picks the tokens each query reads by a mask "
                 "computed from float scores, which have no values on the meta device",
}
"""Families whose trace assumes values that may change the figure, and why: the build
warns about them, as it must."""


def _families() -> list[object]:
    return [pytest.param(folder, marks=pytest.mark.xfail(strict=True, reason=NOT_COVERED[folder]))
            if folder in NOT_COVERED else folder for folder in moe_families()]


def test_the_families_are_found_in_transformers_source() -> None:
    """Those the issue names, the stacked (grouped_mm) and the looped kinds alike; the
    families not covered are families transformers still ships."""
    families = moe_families()
    assert {"mixtral", "qwen3_moe", "deepseek_v3", "gpt_oss", "llama4", "switch_transformers",
            "jamba", "olmoe", "phimoe", "qwen2_moe", "dbrx"} <= families.keys()
    assert NOT_COVERED.keys() <= families.keys() and len(families) >= 60
    assert not {"llama", "mistral", "t5", "bert"} & families.keys()


@pytest.mark.parametrize("folder", _families())
def test_every_moe_family_traces_with_its_experts_counted(folder: str) -> None:
    with torch.device("meta"):
        model = build_family(folder)
    graph = trace(model, fold=False, **family_inputs(folder))
    totals = graph.meta["totals"]
    assert totals["params"] == sum(p.numel() for p in model.parameters())
    assert totals["flops"] > 0
    assert graph.meta["flops_without_formula"] == {}
    warned = [a for a in graph.meta["assumptions"] if a["warning"]]
    assert bool(warned) == (folder in ASSUMING), warned
    if graph.meta.get("dense_experts"):
        assert totals["activated_params"] == totals["params"]
    else:
        assert graph.meta.get("experts"), "no routed experts found"
        assert 0 < totals["activated_params"] < totals["params"]


def test_a_vision_tower_the_text_forward_skips_activates_nothing() -> None:
    """DeepSeek-OCR-2 over token ids runs its language model only: the vision tower (10.9B
    parameters) and the projector are never called and no op reads their weights, so the
    model activates what its language model traced alone does, plus the model's own
    parameter (``view_separator``, counted as a called module's own)."""
    with torch.device("meta"):
        model = build_family("deepseek_ocr2")
    inputs = family_inputs("deepseek_ocr2")
    graph = trace(model, fold=False, **inputs)
    skipped = {c.path: c.stats for c in graph.modules.values() if not c.called}
    assert skipped.keys() == {"vision_tower", "multi_modal_projector"}
    assert all(s.params > 0 and s.activated_params == 0 for s in skipped.values())
    alone = trace(model.language_model, fold=False, **inputs).meta["totals"]
    own = sum(p.numel() for p in model._parameters.values())
    assert graph.meta["totals"]["activated_params"] == alone["activated_params"] + own
