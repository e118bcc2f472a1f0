"""Traces shared between the sites of one machine (``cache.SharedTraces``): a new site drawing
a model another site traced reuses the trace, until the model's source changes."""

from __future__ import annotations

import io
import logging
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from markdown import Markdown
from mkdocs.commands.build import build
from mkdocs.config import load_config
from sphinx.testing.util import SphinxTestApp

from model_trace.cli import main

FENCE = "```model-trace\nmodel: tiny_models:Tiny\ninputs: [[3, 8]]\ncaption: {caption}\n```\n"
WIDE_FENCE = "```model-trace\nmodel: tiny_models:Tiny\nargs: {width: 16}\ninputs: [[3, 16]]\n```\n"


def _site(folder: Path, caption: str, pages: dict[str, str] | None = None,
          **options: object) -> str:
    """Build a site in ``folder`` (its own site cache; again if it is there: a rebuild) with
    ``pages`` (name -> Markdown; default: one fence with ``caption``) and return its index."""
    (folder / "docs").mkdir(parents=True, exist_ok=True)
    for name, text in (pages or {"index.md": FENCE.format(caption=caption)}).items():
        (folder / "docs" / name).write_text(text, encoding="utf-8")
    plugin = {"allowed_roots": ["tiny_models"], **options}
    config = {"site_name": "test", "theme": "mkdocs", "plugins": [{"model-trace": plugin}],
              "markdown_extensions": ["pymdownx.superfences"]}
    (folder / "mkdocs.yml").write_text(yaml.safe_dump(config), encoding="utf-8")
    loaded = load_config(str(folder / "mkdocs.yml"))
    build(loaded)
    return (Path(loaded.site_dir) / "index.html").read_text(encoding="utf-8")


def _summaries(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if " figures: " in r.getMessage()]


def _figure(page: str) -> str:
    """The figure's markup without its caption."""
    found = re.search(r'<figure class="model-trace".*?</figure>', page, re.S)
    assert found is not None
    return re.sub(r"<figcaption.*?</figcaption>", "", found[0], flags=re.S)


def _without_build_date(page: str) -> str:
    """The page without the comment where MkDocs writes when it was built."""
    return re.sub(r"<!--\s*MkDocs version.*?-->", "", page, flags=re.S)


def test_a_new_site_draws_a_model_another_site_traced(tmp_path: Path, tiny_models,
                                                       own_shared_traces: Path) -> None:
    first = _site(tmp_path / "a", "First site")
    assert tiny_models.builds() == ["Tiny 8"]
    assert len(list(own_shared_traces.glob("*.json"))) == 1
    second = _site(tmp_path / "b", "Second site, another caption")
    assert tiny_models.builds() == ["Tiny 8"]  # drawn from the first site's trace
    assert "Second site, another caption" in second
    assert _figure(second) == _figure(first)


def test_a_site_without_the_shared_folder_makes_the_same_page(tmp_path: Path, tiny_models,
                                                              own_shared_traces: Path) -> None:
    shared = _figure(_site(tmp_path / "a", "One"))
    assert "<template" in shared  # the graph data, whose dicts keep the order they are read in
    assert _figure(_site(tmp_path / "b", "One", shared_cache=False)) == shared
    assert _figure(_site(tmp_path / "c", "One")) == shared  # read from the first site's trace
    assert tiny_models.builds() == ["Tiny 8"] * 2


def test_an_edited_model_or_a_site_that_keeps_its_traces_traces_again(
        tmp_path: Path, tiny_models, own_shared_traces: Path) -> None:
    _site(tmp_path / "a", "One")
    tiny_models.source.write_text(tiny_models.source.read_text(encoding="utf-8")
                                  + "\n# edited\n", encoding="utf-8")
    _site(tmp_path / "b", "One")
    assert tiny_models.builds() == ["Tiny 8", "Tiny 8"]
    _site(tmp_path / "c", "One", shared_cache=False)
    assert tiny_models.builds() == ["Tiny 8"] * 3
    _site(tmp_path / "d", "One", cache=False)
    assert tiny_models.builds() == ["Tiny 8"] * 4
    assert len(list(own_shared_traces.glob("*.json"))) == 2


def test_a_real_run_is_never_shared(tmp_path: Path, tiny_models,
                                   own_shared_traces: Path) -> None:
    measured = {"index.md": FENCE.format(caption="Run").replace("```\n", "execute: cpu\n```\n")}
    for site in ("a", "b"):
        assert "measured" in _site(tmp_path / site, "", pages=measured)
    assert tiny_models.builds() == ["Tiny 8", "Tiny 8"]  # each site measured its own run
    assert list(own_shared_traces.glob("*.json")) == []


def test_a_damaged_shared_trace_is_traced_again(tmp_path: Path, tiny_models,
                                                own_shared_traces: Path) -> None:
    _site(tmp_path / "a", "One")
    (entry,) = own_shared_traces.glob("*.json")
    entry.write_text('{"schema": 1, "graph": "{not json', encoding="utf-8")
    page = _site(tmp_path / "b", "One")
    assert tiny_models.builds() == ["Tiny 8", "Tiny 8"] and ">relu</text>" in page


def test_the_build_log_counts_figures_traced_and_read_from_each_cache(
        tmp_path: Path, tiny_models, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="mkdocs.plugins.model_trace")
    _site(tmp_path / "a", "First site")
    second = tmp_path / "b"
    pages = {"index.md": FENCE.format(caption="Shared"), "wide.md": WIDE_FENCE}
    _site(second, "Second site", pages=pages)
    assert tiny_models.builds() == ["Tiny 8", "Tiny 16"]
    pages["index.md"] = FENCE.format(caption="Shared, with a new caption")
    pages["narrow.md"] = WIDE_FENCE.replace("16", "4")
    _site(second, "Second site", pages=pages)
    assert tiny_models.builds() == ["Tiny 8", "Tiny 16", "Tiny 4"]
    assert _summaries(caplog) == [
        "model-trace: 1 figures: 1 traced (1 new trace), 0 from the shared cache (0 traces), "
        "0 from the site's cache",
        "model-trace: 2 figures: 1 traced (1 new trace), 1 from the shared cache (1 trace), "
        "0 from the site's cache",
        "model-trace: 3 figures: 1 traced (1 new trace), 1 from the shared cache (1 trace), "
        "1 from the site's cache"]


def test_a_comparison_shares_the_trace_of_each_variant(
        tmp_path: Path, tiny_models, own_shared_traces: Path,
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="mkdocs.plugins.model_trace")
    _site(tmp_path / "a", "Plain")  # the comparison's first variant, folded
    compare = {"index.md": FENCE.format(caption="Folded or not").replace(
        "```\n", "compare: {fold: [true, false]}\n```\n")}
    made = _without_build_date(_site(tmp_path / "b", "", pages=compare))
    assert tiny_models.builds() == ["Tiny 8", "Tiny 8"]  # only the unfolded variant is new
    assert _without_build_date(_site(tmp_path / "c", "", pages=compare)) == made
    assert tiny_models.builds() == ["Tiny 8", "Tiny 8"]
    assert made.count('<div class="mt-compare-cell">') == 2
    assert _summaries(caplog)[1:] == [
        "model-trace: 1 figures: 1 traced (1 new trace), 0 from the shared cache (1 trace), "
        "0 from the site's cache",
        "model-trace: 1 figures: 0 traced (0 new traces), 1 from the shared cache (2 traces), "
        "0 from the site's cache"]


def test_a_sphinx_project_draws_a_model_another_project_traced(tmp_path: Path, tiny_models,
                                                               own_shared_traces: Path) -> None:
    pages = []
    for name, conf in [("a", ""), ("b", ""), ("c", "model_trace_shared_cache = False\n")]:
        source = tmp_path / name / "src"
        source.mkdir(parents=True)
        (source / "conf.py").write_text(
            'extensions = ["model_trace.sphinx_ext"]\n'
            f'model_trace_allowed_roots = ["tiny_models"]\n{conf}', encoding="utf-8")
        (source / "index.rst").write_text(
            "Tiny\n====\n\n.. model-trace::\n   :model: tiny_models:Tiny\n"
            "   :inputs: [[3, 8]]\n", encoding="utf-8")
        status = io.StringIO()
        app = SphinxTestApp("html", srcdir=source, builddir=tmp_path / name / "build",
                            freshenv=True, status=status, warning=io.StringIO())
        try:
            app.build()
        finally:
            app.cleanup()
        pages.append((Path(app.outdir) / "index.html").read_text(encoding="utf-8"))
        if name == "b":  # drawn from the first project's trace
            assert tiny_models.builds() == ["Tiny 8"]
            assert "0 traced (0 new traces), 1 from the shared cache" in status.getvalue()
    assert tiny_models.builds() == ["Tiny 8", "Tiny 8"]  # the third keeps to itself
    assert len(list(own_shared_traces.glob("*.json"))) == 1
    assert _figure(pages[1]) == _figure(pages[0]) and ">relu</text>" in pages[2]


def test_markdown_documents_of_two_sites_share_a_trace(tmp_path: Path, tiny_models) -> None:
    pages = []
    for name, shared in [("a", True), ("b", True), ("c", False)]:
        options = {"allowed_roots": ["tiny_models"], "cache_dir": str(tmp_path / name),
                   "shared_cache": shared}
        md = Markdown(extensions=["pymdownx.superfences", "model_trace.markdown_ext"],
                      extension_configs={"model_trace.markdown_ext": options})
        pages.append(md.convert(FENCE.format(caption="Tiny")))
        assert tiny_models.builds() == ["Tiny 8"] * (1 if name != "c" else 2)
    assert _figure(pages[1]) == _figure(pages[0]) and ">relu</text>" in pages[2]


@pytest.mark.slow
def test_a_zensical_site_draws_a_model_another_site_traced(tmp_path: Path,
                                                           tiny_models) -> None:
    script = Path(sys.executable).with_name("zensical")
    command = [str(script)] if script.is_file() else [sys.executable, "-m", "zensical"]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(tiny_models.source.parent.parent), os.environ.get("PYTHONPATH", "")])}
    pages = []
    for name, shared in [("a", True), ("b", True), ("c", False)]:
        project = tmp_path / name
        (project / "docs").mkdir(parents=True)
        (project / "docs" / "index.md").write_text(FENCE.format(caption="Tiny"),
                                                   encoding="utf-8")
        extension = {"allowed_roots": ["tiny_models"], "shared_cache": shared}
        config = {"site_name": name, "theme": {"font": False},
                  "markdown_extensions": ["pymdownx.superfences",
                                          {"model_trace.markdown_ext": extension}]}
        (project / "mkdocs.yml").write_text(yaml.safe_dump(config), encoding="utf-8")
        built = subprocess.run([*command, "build", "--clean"], cwd=project, env=env,
                               capture_output=True, text=True, timeout=600)
        assert built.returncode == 0, built.stdout + built.stderr
        pages.append((project / "site" / "index.html").read_text(encoding="utf-8"))
        assert tiny_models.builds() == ["Tiny 8"] * (1 if name != "c" else 2)
    assert _figure(pages[1]) == _figure(pages[0]) and ">relu</text>" in pages[2]


def test_the_command_line_reads_the_trace_an_earlier_run_made(tmp_path: Path, tiny_models,
                                                              monkeypatch: pytest.MonkeyPatch,
                                                              capsys) -> None:
    spec = tmp_path / "tiny.yml"
    spec.write_text("model: tiny_models:Tiny\ninputs: [[3, 8]]\n", encoding="utf-8")
    pages = []
    for name, options in [("a", []), ("b", []), ("c", ["--no-shared-cache"])]:
        (tmp_path / name).mkdir()
        monkeypatch.chdir(tmp_path / name)
        assert main(["render", str(spec), "-o", "tiny.html", *options]) == 0
        pages.append((tmp_path / name / "tiny.html").read_text(encoding="utf-8"))
        assert tiny_models.builds() == ["Tiny 8"] * (1 if name != "c" else 2)
    assert _figure(pages[1]) == _figure(pages[0]) and ">relu</text>" in pages[2]
    # the same model given as options: the other commands read the trace `render` made
    assert main(["summary", "tiny_models:Tiny", "--inputs", "[[3, 8]]"]) == 0
    assert main(["trace", "tiny_models:Tiny", "--inputs", "[[3, 8]]", "-o", "-"]) == 0
    assert tiny_models.builds() == ["Tiny 8"] * 2
    assert main(["summary", "tiny_models:Tiny", "--inputs", "[[3, 8]]",
                 "--no-shared-cache"]) == 0
    assert tiny_models.builds() == ["Tiny 8"] * 3
    printed = capsys.readouterr().out
    assert '"relu"' in printed and printed.count("Tiny    Tiny            72") == 2
