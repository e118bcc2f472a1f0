"""Shared fixtures: building real MkDocs sites in temporary folders."""

from __future__ import annotations

import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest
from mkdocs.commands.build import build
from mkdocs.config import load_config

SiteBuilder = Callable[..., Path]


@pytest.fixture
def build_site(tmp_path: Path) -> SiteBuilder:
    """Write ``pages`` (name -> Markdown) and a mkdocs.yml, build, return the site folder."""

    def _build(pages: dict[str, str], *, strict: bool = False, extra_config: str = "",
               theme: str = "mkdocs") -> Path:
        docs = tmp_path / "docs"
        docs.mkdir(exist_ok=True)
        for name, text in pages.items():
            (docs / name).write_text(textwrap.dedent(text), encoding="utf-8")
        config_file = tmp_path / "mkdocs.yml"
        config_file.write_text(
            textwrap.dedent(
                f"""\
                site_name: test
                theme: {theme}
                markdown_extensions: [admonition, pymdownx.superfences]
                plugins: [model-trace]
                """
            )
            + textwrap.dedent(extra_config),
            encoding="utf-8",
        )
        config = load_config(str(config_file), strict=strict)
        build(config)
        return Path(config.site_dir)

    return _build
