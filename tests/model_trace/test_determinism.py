"""The same docs and code give byte-identical sites: every page, figure and export file."""

from __future__ import annotations

import shutil
from pathlib import Path

PAGES = {
    "index.md": """\
        # Encoder

        ```model-trace
        model: torch.nn:TransformerEncoderLayer
        args: {d_model: 64, nhead: 4, batch_first: true}
        inputs: [[2, 16, 64]]
        export: [svg, png, json]
        ```
        """,
    "moe.md": """\
        # A tiny DeepSeek-V3, randomly routed

        ```model-trace
        model: deepseek-v3
        config: tiny
        routing: random:3
        overlay: flops
        summary: 2
        ```

        ```model-trace
        model: deepseek-v3
        config: tiny
        focus: layers.1.ffn
        ```
        """,
}


def _files(site: Path) -> dict[str, bytes]:
    return {str(p.relative_to(site)): p.read_bytes() for p in sorted(site.rglob("*"))
            if p.is_file()}


def test_two_cold_builds_are_byte_identical(build_site, tmp_path: Path) -> None:
    site = build_site(PAGES, theme="material")
    first = _files(site)
    shutil.rmtree(tmp_path / ".cache")  # the second build traces everything again
    shutil.rmtree(site)
    second = _files(build_site(PAGES, theme="material"))
    assert sorted(first) == sorted(second)
    differing = [name for name in first if first[name] != second[name]]
    assert not differing, f"these files differ between two builds: {differing}"
    assert any(name.endswith(".png") for name in first)  # the exports were compared too
    assert b"deepseek" in first["moe/index.html"].lower()
