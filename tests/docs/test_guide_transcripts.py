"""The command-line transcripts of the guide are what the commands print: each output line a
page shows (``...`` marks lines left out) is a line of the real output, so a page cannot keep
quoting figures or source lines the code no longer gives."""

from __future__ import annotations

from pathlib import Path

import pytest

from model_trace.cli import main

GUIDE = Path(__file__).resolve().parents[2] / "docs" / "guide"
SPEC = "model: deepseek-v3\nconfig: tiny\nargs: {{attn_impl: {impl}}}\nfocus: layers.0.attn\n"


def _shown_output(page: Path, command: str) -> list[str]:
    """The output lines a ``console`` block of ``page`` shows after ``$ command``."""
    lines = page.read_text(encoding="utf-8").splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"$ {command}"))
    shown = []
    for line in lines[start + 1:]:
        if line.startswith(("$ ", "```")):
            break
        if line != "...":
            shown.append(line.rstrip())
    return shown


def test_the_diff_transcript_is_what_model_trace_diff_prints(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # the two spec files the page describes: `attn_impl` apart, tiny config, one attention
    for impl in ("naive", "absorb"):
        (tmp_path / f"{impl}.yml").write_text(SPEC.format(impl=impl), encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    shown = _shown_output(GUIDE / "authoring.md", "model-trace diff naive.yml absorb.yml ")
    assert len(shown) >= 5
    assert main(["diff", "naive.yml", "absorb.yml"]) == 0
    printed = {line.rstrip() for line in capsys.readouterr().out.splitlines()}
    assert [line for line in shown if line not in printed] == []
