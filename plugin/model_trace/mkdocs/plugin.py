"""The MkDocs plugin: a thin layer that wires the Markdown extension into a site.

It injects the model-trace custom fence into SuperFences' config (so users add nothing but
``plugins: [model-trace]``), submits every fence of the site as soon as the files are known
(``on_files``), lets the formatter collect each result while its page is converted, logs fence
problems as errors naming page and line (``on_page_content``) and fails the build once every
page is converted, before any is written (``on_env``), writes export files next
to their pages, ships the viewer's assets once per site, shows search plugins each figure
as its caption only, and under ``mkdocs serve`` watches the models' source folders. Defining
``on_startup`` makes MkDocs keep one plugin instance, and with it the in-memory cache, across
``serve`` rebuilds.
"""

from __future__ import annotations

import logging
import posixpath
import re
from pathlib import Path
from typing import Any, Literal

from mkdocs.config.defaults import MkDocsConfig
from mkdocs.exceptions import PluginError
from mkdocs.livereload import LiveReloadServer
from mkdocs.plugins import BasePlugin, CombinedEvent, event_priority
from mkdocs.structure.files import File, Files
from mkdocs.structure.pages import Page

from model_trace.cache import user_cache_dir
from model_trace.markdown_ext import (
    FenceState,
    ModelTraceExtension,
    export_namer,
    find_fences,
    superfences_entry,
)
from model_trace.mkdocs.config import ModelTraceConfig
from model_trace.session import Settings, TraceSession, put_on_sys_path
from model_trace.viewer_files import ASSET_DIR, asset_bytes, asset_names, linked_names

log = logging.getLogger("mkdocs.plugins.model_trace")

SUPERFENCES = "pymdownx.superfences"
_FIGURE = re.compile(r'<figure class="model-trace(?:-view)?".*?</figure>', re.S)
_CAPTION = re.compile(r"<figcaption>(.*?)</figcaption>", re.S)


class ModelTracePlugin(BasePlugin[ModelTraceConfig]):
    """``plugins: [model-trace]``: draws every ```model-trace fence of the site."""

    def __init__(self) -> None:
        self.session: TraceSession | None = None
        self.state = FenceState()
        self._dirty = False
        self._server: LiveReloadServer | None = None
        self._watched: set[Path] = set()
        self._contents: dict[str, str] = {}
        self._failed = 0

    def on_startup(self, *, command: Literal["build", "gh-deploy", "serve"],
                   dirty: bool) -> None:
        self._dirty = dirty

    def on_config(self, config: MkDocsConfig) -> MkDocsConfig:
        settings = self._settings(config)
        if self.session is None or self.session.settings != settings or not self.config.cache:
            self.session = TraceSession(settings)
        self.session.start_build()
        self.state = FenceState(self.session)
        self._failed = 0
        if SUPERFENCES not in config.markdown_extensions:
            config.markdown_extensions.append(SUPERFENCES)
        fences: list[dict[str, Any]] = config.mdx_configs.setdefault(SUPERFENCES, {}).setdefault(
            "custom_fences", []
        )
        if not any(f.get("name") == superfences_entry()["name"] for f in fences):
            fences.append(superfences_entry())
        config.markdown_extensions.append(
            ModelTraceExtension(state=self.state, register_fence=False,  # type: ignore[arg-type]
                                on_error="record", paths=[])
        )
        for name in linked_names():
            target = config.extra_javascript if name.endswith(".js") else config.extra_css
            url = f"{ASSET_DIR}/{name}"
            if url not in target:
                target.append(url)
        return config

    def _settings(self, config: MkDocsConfig) -> Settings:
        root = Path(config.config_file_path or ".").resolve().parent
        put_on_sys_path(self.config.paths, root)
        return Settings(
            depth=self.config.depth,
            height=self.config.height,
            routing=self.config.routing,
            assume=self.config.assume,
            export=tuple(self.config.export),
            theme=self.config.theme,
            allowed_roots=tuple(self.config.allowed_roots),
            own_roots=tuple(self.config.own_roots),
            timeout_s=float(self.config.timeout),
            jobs=self.config.jobs,
            cache_dir=root / self.config.cache_dir if self.config.cache else None,
            shared_dir=user_cache_dir() if self.config.cache and self.config.shared_cache
            else None,
            option_hint="`{name}` under `plugins: - model-trace:` in mkdocs.yml",
            log=log.info,
        )

    def on_files(self, files: Files, *, config: MkDocsConfig) -> Files:
        for name in asset_names():
            files.append(File.generated(config, f"{ASSET_DIR}/{name}",
                                        content=asset_bytes(name)))
        # Submit every fence of the site now, so they trace in parallel while pages convert.
        self.state.prefetch({file.src_uri: find_fences(file.content_string.splitlines())
                             for file in files.documentation_pages()})
        return files

    def on_page_markdown(
        self, markdown: str, *, page: Page, config: MkDocsConfig, files: Files
    ) -> str:
        stem = posixpath.splitext(posixpath.basename(page.file.dest_uri))[0]
        self.state.start_page(page.file.src_uri, export_base=export_namer(stem))
        return markdown

    def on_page_content(
        self, html: str, *, page: Page, config: MkDocsConfig, files: Files
    ) -> str:
        folder = posixpath.dirname(page.file.dest_uri)
        for name, data in self.state.files.items():
            files.append(File.generated(config, posixpath.join(folder, name), content=data))
        report = log.error if self.config.on_error == "fail" else log.warning
        for problem in self.state.problems:
            report(f"model-trace: {problem}")
        for warning in self.state.warnings:  # mkdocs build --strict fails on these
            log.warning(f"model-trace: {warning}")
        self.state.warnings = []
        self._failed += len(self.state.problems)
        self.state.problems = []
        return html

    def on_env(self, env: Any, *, config: MkDocsConfig, files: Files) -> Any:
        """Every page is converted: fail the build (before any page is written) if a figure
        could not be drawn; each was logged above with its page and line."""
        if self._failed and self.config.on_error == "fail":
            failed, self._failed = self._failed, 0
            raise PluginError(f"model-trace: {failed} figure(s) could not be drawn (see the "
                              "errors above); fix the fences, or set `on_error: warn` under "
                              "`plugins: - model-trace:` to build the pages with error boxes")
        return env

    @event_priority(100)  # before the search plugins
    def _hide_figures(self, context: dict[str, Any], *, page: Page, config: MkDocsConfig,
                      nav: Any) -> dict[str, Any]:
        """Search plugins index ``page.content`` here: hand them each figure as its caption,
        not its drawing's labels and its graph data."""
        self._contents[page.file.src_uri] = page.content or ""
        page.content = _FIGURE.sub(_caption_only, page.content or "")
        return context

    @event_priority(-100)  # after them, before the theme renders the page
    def _restore_figures(self, context: dict[str, Any], *, page: Page, config: MkDocsConfig,
                         nav: Any) -> dict[str, Any]:
        page.content = self._contents.pop(page.file.src_uri, page.content)
        return context

    on_page_context = CombinedEvent(_hide_figures, _restore_figures)

    def on_post_build(self, *, config: MkDocsConfig) -> None:
        assert self.session is not None
        self.session.finish_build(complete=not self._dirty)
        if self._server is not None:
            self._watch_models()

    def on_build_error(self, *, error: Exception) -> None:
        if self.session is not None:
            self.session.finish_build(complete=False)

    def on_serve(self, server: LiveReloadServer, *, config: MkDocsConfig,
                 builder: Any) -> LiveReloadServer:
        self._server = server
        self._watch_models()
        return server

    def _watch_models(self) -> None:
        """Rebuild when a local model's source changes; only its fences miss the cache."""
        assert self.session is not None and self._server is not None
        for path in self.session.watched_paths():
            if path not in self._watched:
                self._watched.add(path)
                self._server.watch(str(path))


def _caption_only(figure: re.Match[str]) -> str:
    caption = _CAPTION.search(figure[0])
    return f"<p>{caption[1]}</p>" if caption else ""
