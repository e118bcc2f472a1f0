"""Traces shared between the sites of one machine (``cache.SharedTraces``): a new site drawing
a model another site traced reuses the trace, until the model's source changes."""

from __future__ import annotations

import re
from pathlib import Path

import yaml
from mkdocs.commands.build import build
from mkdocs.config import load_config

FENCE = "```model-trace\nmodel: tiny_models:Tiny\ninputs: [[3, 8]]\ncaption: {caption}\n```\n"


def _site(folder: Path, caption: str, **options: object) -> str:
    """Build a one-page site in ``folder`` (its own site cache) and return its page."""
    (folder / "docs").mkdir(parents=True)
    (folder / "docs" / "index.md").write_text(FENCE.format(caption=caption), encoding="utf-8")
    plugin = {"allowed_roots": ["tiny_models"], **options}
    config = {"site_name": "test", "theme": "mkdocs", "plugins": [{"model-trace": plugin}],
              "markdown_extensions": ["pymdownx.superfences"]}
    (folder / "mkdocs.yml").write_text(yaml.safe_dump(config), encoding="utf-8")
    loaded = load_config(str(folder / "mkdocs.yml"))
    build(loaded)
    return (Path(loaded.site_dir) / "index.html").read_text(encoding="utf-8")


def _figure(page: str) -> str:
    """The figure's markup without its caption."""
    found = re.search(r'<figure class="model-trace".*?</figure>', page, re.S)
    assert found is not None
    return re.sub(r"<figcaption.*?</figcaption>", "", found[0], flags=re.S)


def test_a_new_site_draws_a_model_another_site_traced(tmp_path: Path, tiny_models,
                                                       own_shared_traces: Path) -> None:
    first = _site(tmp_path / "a", "First site")
    assert tiny_models.builds() == ["Tiny 8"]
    assert len(list(own_shared_traces.glob("*.json"))) == 1
    second = _site(tmp_path / "b", "Second site, another caption")
    assert tiny_models.builds() == ["Tiny 8"]  # drawn from the first site's trace
    assert "Second site, another caption" in second
    assert _figure(second) == _figure(first)


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


def test_a_damaged_shared_trace_is_traced_again(tmp_path: Path, tiny_models,
                                                own_shared_traces: Path) -> None:
    _site(tmp_path / "a", "One")
    (entry,) = own_shared_traces.glob("*.json")
    entry.write_text('{"schema": 1, "graph": "{not json', encoding="utf-8")
    page = _site(tmp_path / "b", "One")
    assert tiny_models.builds() == ["Tiny 8", "Tiny 8"] and ">relu</text>" in page
