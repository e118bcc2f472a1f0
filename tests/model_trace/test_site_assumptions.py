"""Assumed values in a docs build: a warning naming the page and line, the op and the model's
line (a failure under `--strict` or `assume: error`), and a marker on the figure's node. Ops
without a FLOP formula: a line in the build log naming the page and line, the node's marker
and the summary's note (not a warning: the figure is right, its FLOPs a lower bound)."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from mkdocs.exceptions import Abort, PluginError

GATED = '''\
import torch


class Gated(torch.nn.Module):
    """Branches on the values of meta floats: which way is unknowable."""

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        if (h > 0).any():
            return torch.relu(h)
        return h * 2


class Distances(torch.nn.Module):
    """Pairwise distances: a kernel torch has no FLOP formula for."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cdist(x, x)
'''
PAGE = "# Gated\n\n```model-trace\nmodel: gated_models:Gated\ninputs: [[4, 8]]\n{extra}```\n"


@pytest.fixture
def gated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, list[str]]:
    """A package with the Gated model on sys.path (and so the workers'), allowed in."""
    root = tmp_path / "models"
    (root / "gated_models").mkdir(parents=True)
    (root / "gated_models" / "__init__.py").write_text(GATED, encoding="utf-8")
    monkeypatch.syspath_prepend(str(root))
    return {"allowed_roots": ["gated_models"]}


def _warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING
            and "model-trace" in r.getMessage()]


def test_a_branch_on_assumed_values_warns_and_is_marked(build_site, gated, caplog) -> None:
    site = build_site({"index.md": PAGE.format(extra="")}, plugin=gated)
    (warning,) = _warnings(caplog)
    assert warning.startswith("model-trace: index.md:3: assumed values at op '__bool__'")
    assert "gated_models/__init__.py:8 `if (h > 0).any():`" in warning
    assert "the branch it took may not be the model's" in warning
    assert "values assumed: zeros at 'gt'" in warning
    html = (site / "index.html").read_text(encoding="utf-8")
    assert 'stroke-dasharray="3 2"' in html  # the static figure marks the nodes
    assert "assumed (zeros): integer result of meta floats" in html  # and says why


def test_a_strict_build_fails_on_the_warning(build_site, gated, caplog) -> None:
    with pytest.raises(Abort):
        build_site({"index.md": PAGE.format(extra="")}, plugin=gated, strict=True)
    assert any("index.md:3" in w for w in _warnings(caplog))


def test_assume_error_fails_the_fence_and_allow_keeps_quiet(build_site, gated, caplog) -> None:
    with pytest.raises((Abort, PluginError)):
        build_site({"index.md": PAGE.format(extra="assume: error\n")}, plugin=gated)
    failed = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert any("index.md:3" in m and "`assume: error`" in m and "__bool__" in m
               for m in failed)
    caplog.clear()
    build_site({"index.md": PAGE.format(extra="")}, plugin={**gated, "assume": "allow"},
               strict=True)
    assert _warnings(caplog) == []


def test_an_op_without_a_flop_formula_is_logged_and_shown(build_site, gated, caplog) -> None:
    caplog.set_level(logging.INFO)
    page = "# Distances\n\n```model-trace\nmodel: gated_models:Distances\ninputs: [[4, 8]]\n" \
           "summary: 1\n```\n"
    site = build_site({"index.md": page}, plugin=gated, strict=True)  # information only
    note = ("FLOPs are a lower bound: ops without a FLOP formula are not counted "
            "(aten::_cdist_forward ×1).")
    logged = [r.getMessage() for r in caplog.records if r.levelno == logging.INFO]
    assert f"model-trace: index.md:3: {note}" in logged
    html = (site / "index.html").read_text(encoding="utf-8")
    assert "FLOPs not counted (no formula): aten::_cdist_forward" in html  # the node's
    assert f'<p class="model-trace-caveat">{note}</p>' in html  # under the summary table
