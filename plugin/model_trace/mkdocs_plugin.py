"""The MkDocs plugin: a thin layer that wires the Markdown extension into a site.

It injects the model-trace custom fence into SuperFences' config (so users add nothing but
``plugins: [model-trace]``), tells the fence state which page is being converted, turns recorded
fence problems into one-line build errors, and ships the viewer's assets once per site.
"""

from __future__ import annotations

import logging
from importlib import resources
from typing import Any, Literal

from mkdocs.config import base
from mkdocs.config import config_options as c
from mkdocs.config.defaults import MkDocsConfig
from mkdocs.exceptions import PluginError
from mkdocs.plugins import BasePlugin
from mkdocs.structure.files import File, Files
from mkdocs.structure.pages import Page

from model_trace.markdown_ext import FenceState, ModelTraceExtension, superfences_entry

log = logging.getLogger("mkdocs.plugins.model_trace")

ASSET_DIR = "assets/model-trace"
ASSETS = ("viewer.js", "viewer.css")
SUPERFENCES = "pymdownx.superfences"


class ModelTraceConfig(base.Config):
    """Options under ``plugins: - model-trace:`` in ``mkdocs.yml``."""

    on_error = c.Choice(("fail", "warn"), default="fail")
    """``fail`` stops the build on a bad fence; ``warn`` logs it (``--strict`` still fails)."""


class ModelTracePlugin(BasePlugin[ModelTraceConfig]):
    """``plugins: [model-trace]``: draws every ```model-trace fence of the site."""

    def __init__(self) -> None:
        self.state = FenceState()

    def on_config(self, config: MkDocsConfig) -> MkDocsConfig:
        if SUPERFENCES not in config.markdown_extensions:
            config.markdown_extensions.append(SUPERFENCES)
        fences: list[dict[str, Any]] = config.mdx_configs.setdefault(SUPERFENCES, {}).setdefault(
            "custom_fences", []
        )
        if not any(f.get("name") == superfences_entry()["name"] for f in fences):
            fences.append(superfences_entry())
        config.markdown_extensions.append(
            ModelTraceExtension(state=self.state, register_fence=False)  # type: ignore[arg-type]
        )
        for name in ASSETS:
            target = config.extra_javascript if name.endswith(".js") else config.extra_css
            url = f"{ASSET_DIR}/{name}"
            if url not in target:
                target.append(url)
        return config

    def on_files(self, files: Files, *, config: MkDocsConfig) -> Files:
        package = resources.files("model_trace") / "assets"
        for name in ASSETS:
            content = (package / name).read_bytes()
            files.append(File.generated(config, f"{ASSET_DIR}/{name}", content=content))
        return files

    def on_page_markdown(
        self, markdown: str, *, page: Page, config: MkDocsConfig, files: Files
    ) -> str:
        self.state.start_page(page.file.src_uri)
        return markdown

    def on_page_content(
        self, html: str, *, page: Page, config: MkDocsConfig, files: Files
    ) -> str:
        problems = list(self.state.problems)
        self.state.problems.clear()
        for problem in problems:
            self._report(f"model-trace: {problem}")
        return html

    def _report(self, message: str, level: Literal["fail", "warn"] | None = None) -> None:
        if (level or self.config.on_error) == "fail":
            raise PluginError(message)
        log.warning(message)
