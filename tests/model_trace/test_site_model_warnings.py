"""Python warnings a fence's model raises while it is built or traced reach the MkDocs build
log as the tracer's assumption warnings do: one line naming the page and line (a failure under
``--strict``), for every fence that shows the model, from the cache too. The Sphinx directive
and the CLI show the same lines (their own tests)."""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import pytest
from mkdocs.exceptions import Abort

from model_trace.pipeline import run_fences
from model_trace.spec import parse_spec

YARN_OFF = ("# Short context\n\n```model-trace\nmodel: deepseek-v3\nconfig: tiny\n"
            "overrides: {max_seq_len: 64}\ninputs: {tokens: [1, 16]}\n```\n")
NOISY = '''\
import warnings

import torch


class Noisy(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.proj = torch.nn.Linear(4, 4)
        warnings.warn("Noisy is deprecated: use torch.nn:Linear", FutureWarning)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x)
'''
NOISY_FENCE = "```model-trace\nmodel: noisy_models:Noisy\ninputs: [[2, 4]]\n{extra}```\n"


@pytest.fixture
def noisy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, list[str]]:
    """A package whose model warns when built, on sys.path (and so the workers'), allowed."""
    root = tmp_path / "models"
    (root / "noisy_models").mkdir(parents=True)
    (root / "noisy_models" / "__init__.py").write_text(NOISY, encoding="utf-8")
    monkeypatch.syspath_prepend(str(root))
    return {"allowed_roots": ["noisy_models", "torch"]}


def _warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING
            and r.getMessage().startswith("model-trace:")]


def test_an_override_that_turns_yarn_off_fails_a_strict_build(build_site, caplog) -> None:
    with pytest.raises(Abort):
        build_site({"index.md": YARN_OFF}, strict=True)
    (warning,) = _warnings(caplog)
    assert warning.startswith("model-trace: index.md:3: YarnOffWarning raised while the model "
                              "was built or traced: config 'tiny' with max_seq_len=64 <= "
                              "original_seq_len=64 turns YaRN off"), warning
    assert warning.endswith("keep max_seq_len above 64 (it only sizes the KV cache)"), warning
    caplog.clear()
    caplog.set_level(logging.INFO, logger="mkdocs.plugins.model_trace")
    site = build_site({"index.md": YARN_OFF})  # not strict: drawn, and still said (cached)
    assert '<figure class="model-trace"' in (site / "index.html").read_text(encoding="utf-8")
    assert [w.split(": ", 2)[1] for w in _warnings(caplog)] == ["index.md:3"]
    assert any("0 traced (0 new traces), 0 from the shared cache (0 traces), "
               "1 from the site's cache" in r.getMessage()
               for r in caplog.records)


def test_each_fence_of_a_warning_model_names_its_page_and_the_model_line(
        build_site, noisy, caplog) -> None:
    pages = {"a.md": "# A\n\n" + NOISY_FENCE.format(extra=""),
             "b.md": NOISY_FENCE.format(extra="depth: 2\n")}  # the same trace, another view
    site = build_site(pages, plugin=noisy)
    assert (site / "b" / "index.html").is_file()
    assert sorted(_warnings(caplog)) == [
        f"model-trace: {where}: FutureWarning raised while the model was built or traced (at "
        "noisy_models/__init__.py:10): Noisy is deprecated: use torch.nn:Linear"
        for where in ("a.md:3", "b.md:1")]


def test_the_warning_goes_to_the_output_not_to_stderr(noisy, capfd) -> None:
    spec = parse_spec("model: noisy_models:Noisy\ninputs: [[2, 4]]\n").with_defaults(
        depth=1, routing="balanced", export=())
    with warnings.catch_warnings(record=True) as escaped:
        (output,) = run_fences([spec]).outputs
    assert not escaped
    assert not isinstance(output, Exception)
    assert output.warnings == ("FutureWarning raised while the model was built or traced (at "
                               "noisy_models/__init__.py:10): Noisy is deprecated: use "
                               "torch.nn:Linear",)
    assert "Noisy is deprecated" not in capfd.readouterr().err
