"""The same docs and code give byte-identical sites: every page, figure and export file."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

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
    "authoring.md": """\
        # Compared, named, annotated, backward

        ```model-trace
        model: deepseek-v3
        config: tiny
        focus: layers.0.attn
        dims: auto
        compare: {attn_impl: [naive, absorb]}
        notes: {wkv_b: The latent expanded., new_zeros: The caches.}
        ```

        ```model-trace
        model: torch.nn:TransformerEncoderLayer
        args: {d_model: 32, nhead: 4, dim_feedforward: 64, batch_first: true}
        inputs: [[2, 8, 32]]
        graph: backward
        hide: [TBackward0]
        highlight: {linear1: red}
        labels: {linear2: back to 32}
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


REPO = Path(__file__).resolve().parents[2]


def _build_docs_site(root: Path, *, hash_seed: str, jobs: int) -> dict[str, bytes]:
    """The project's own docs built by ``python -m mkdocs build --strict`` in a fresh process,
    with this hash seed and this many trace workers, and no cache."""
    root.mkdir()
    shutil.copytree(REPO / "docs", root / "docs")
    config = (REPO / "mkdocs.yml").read_text(encoding="utf-8")
    assert "\n  - model-trace:\n" in config
    config = config.replace("\n  - model-trace:\n",
                            f"\n  - model-trace:\n      jobs: {jobs}\n      cache: false\n")
    (root / "mkdocs.yml").write_text(config, encoding="utf-8")
    python_path = os.pathsep.join([str(REPO / "plugin"), str(REPO),
                                   os.environ.get("PYTHONPATH", "")])
    env = {**os.environ, "PYTHONHASHSEED": hash_seed, "PYTHONPATH": python_path}
    subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-q"], cwd=root,
                   env=env, check=True, timeout=1200)
    return _files(root / "site")


def _measured_pages() -> list[str]:
    """The docs pages with an ``execute`` fence: their figures carry the timings of a real
    run, which differ from build to build by design (the page and the graph schema say so)."""
    pages = []
    for source in sorted((REPO / "docs").rglob("*.md")):
        if re.search(r"^execute:", source.read_text(encoding="utf-8"), re.M):
            pages.append(source.relative_to(REPO / "docs").with_suffix("").as_posix() + "/")
    return pages


def _without_pages(search_index: bytes, pages: list[str]) -> list[dict]:
    """The search index's entries, less those of ``pages`` (their text quotes timings)."""
    docs = json.loads(search_index)["docs"]
    return [doc for doc in docs if not doc["location"].startswith(tuple(pages))]


@pytest.mark.slow
def test_the_docs_site_is_byte_identical_across_processes_seeds_and_jobs(tmp_path: Path) -> None:
    """Every file but the measured pages' (and their search entries) is the same bytes."""
    first = _build_docs_site(tmp_path / "a", hash_seed="1", jobs=1)
    second = _build_docs_site(tmp_path / "b", hash_seed="2024", jobs=3)
    assert sorted(first) == sorted(second)
    measured = _measured_pages()
    assert measured == ["looking-inside/measured-time/"]
    index = "search/search_index.json"
    skipped = {page + "index.html" for page in measured} | {index}
    differing = [name for name in first if name not in skipped and first[name] != second[name]]
    assert not differing, f"these files differ between two builds: {differing}"
    assert _without_pages(first[index], measured) == _without_pages(second[index], measured)
    assert len(_without_pages(first[index], measured)) < len(json.loads(first[index])["docs"])
    assert sum(name.endswith("index.html") for name in first) >= 10
