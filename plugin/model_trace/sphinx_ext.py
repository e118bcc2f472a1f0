"""The Sphinx extension: ``extensions = ["model_trace.sphinx_ext"]`` and a ``model-trace``
directive with the fence's fields as options, or its YAML as content::

    .. model-trace::
       :model: torch.nn:TransformerEncoderLayer
       :args: {d_model: 64, nhead: 4, batch_first: true}
       :inputs: [[2, 16, 64]]
       :depth: 2

Option values are YAML, as in a fence. The directive runs on the MkDocs plugin's core (the
same spec, trace session, worker processes and cache) and the viewer's assets are shipped
through ``html_static_path``. Configuration values are the plugin's options with a
``model_trace_`` prefix: ``model_trace_allowed_roots``, ``model_trace_own_roots``,
``model_trace_depth``,
``model_trace_routing``, ``model_trace_timeout``, ``model_trace_jobs``,
``model_trace_on_error``, ``model_trace_assume``, ``model_trace_export``, ``model_trace_theme``,
``model_trace_cache_dir`` (relative to conf.py; empty: no disk cache),
``model_trace_shared_cache`` (share traces with the other projects and sites of this machine,
in ``cache.user_cache_dir()``; default True), ``model_trace_paths``
(folders relative to conf.py put on ``sys.path`` of the build and its trace workers, so the
project's own model package imports without ``PYTHONPATH``; default: conf.py's folder).
"""

from __future__ import annotations

import html
import os
import posixpath
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from docutils import nodes
from sphinx.application import Sphinx
from sphinx.builders import Builder
from sphinx.environment import BuildEnvironment
from sphinx.errors import ExtensionError
from sphinx.util import logging
from sphinx.util.docutils import SphinxDirective

import model_trace
from model_trace.cache import user_cache_dir
from model_trace.errors import ModelTraceError, SpecError, readable
from model_trace.loader import DEFAULT_ALLOWED_ROOTS
from model_trace.session import Settings, TraceSession, put_on_sys_path
from model_trace.spec import FIELDS, FenceSpec, read_mapping, read_yaml, spec_from_mapping
from model_trace.viewer_files import asset_bytes, asset_names

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class _Build:
    """What the directive needs from the running build (the environment is pickled, so it
    cannot hold these)."""

    session: TraceSession
    builder: Builder


_BUILDS: weakref.WeakKeyDictionary[BuildEnvironment, _Build] = weakref.WeakKeyDictionary()

_CONFIG: dict[str, Any] = {
    "allowed_roots": list(DEFAULT_ALLOWED_ROOTS),
    "own_roots": [],
    "depth": 1,
    "routing": "balanced",
    "timeout": 300,
    "jobs": os.cpu_count() or 1,
    "on_error": "fail",
    "assume": "warn",
    "export": [],
    "theme": "auto",
    "cache_dir": ".cache/plugin/model-trace",
    "shared_cache": True,
    "paths": ["."],
}


def _yaml_option(text: str | None) -> Any:
    """A directive option's value, read as YAML (``:depth: 2`` is the integer 2), with a
    fence's limits."""
    try:
        return read_yaml(text) if text else None
    except SpecError as error:  # docutils reports a ValueError as a bad option value
        raise ValueError(str(error)) from error


class ModelTraceDirective(SphinxDirective):
    """``.. model-trace::`` -- draws a model's traced graph, like a ```model-trace fence."""

    has_content = True
    option_spec: ClassVar[dict[str, Any]] = dict.fromkeys(FIELDS, _yaml_option)

    def run(self) -> list[nodes.Node]:
        session = _BUILDS[self.env].session
        counter = self.env.temp_data.setdefault("model_trace_counter", {})
        counter[self.env.docname] = counter.get(self.env.docname, 0) + 1
        prefix = f"model-trace-{counter[self.env.docname]}"
        page = str(self.env.doc2path(self.env.docname, base=False))
        line = self.lineno
        spec: FenceSpec | None = None
        try:
            spec = self._spec()
            rendered = session.render(session.prepare(spec), prefix, f"{page}:{line}",
                                      self._export_base(prefix))
        except ModelTraceError as error:
            return self._problem(page, self._error_line(spec, error), str(error))
        self._write_exports(rendered.files)
        for warning in rendered.warnings:
            logger.warning("model-trace: %s", warning, location=(self.env.docname, line))
        return [nodes.raw("", rendered.html, format="html")]

    def _spec(self) -> FenceSpec:
        """The content's YAML, with the options on top."""
        data, lines = read_mapping("\n".join(self.content)) if self.content else ({}, {})
        return spec_from_mapping({**data, **self.options}, lines)

    def _error_line(self, spec: FenceSpec | None, error: ModelTraceError) -> int:
        """The source line of the content line an error is about, else the directive's."""
        if isinstance(error, SpecError) and self.content:
            body_line = error.line or (spec.line_of(error.field) if spec else None)
            if body_line:
                return self.content_offset + body_line
        return self.lineno

    def _target_folder(self) -> tuple[str, str]:
        """The output folder of this document (relative) and its page's file stem."""
        target = _BUILDS[self.env].builder.get_target_uri(self.env.docname)
        if not target or target.endswith("/"):
            return target, "index"
        return posixpath.dirname(target), posixpath.splitext(posixpath.basename(target))[0]

    def _export_base(self, prefix: str) -> str:
        stem = self._target_folder()[1]
        return prefix if stem == "index" else f"{stem}-{prefix}"

    def _write_exports(self, files: dict[str, bytes]) -> None:
        builder = _BUILDS[self.env].builder
        if not files or builder.format != "html":
            return
        folder = Path(builder.outdir) / self._target_folder()[0]
        folder.mkdir(parents=True, exist_ok=True)
        for name, data in files.items():
            (folder / name).write_bytes(data)

    def _problem(self, page: str, line: int, message: str) -> list[nodes.Node]:
        message = readable(message)
        if self.config.model_trace_on_error == "fail":
            raise ExtensionError(f"model-trace: {page}:{line}: {message}")
        logger.warning("model-trace: %s", message, location=(self.env.docname, line))
        box = (f'<div class="model-trace-error admonition failure" role="alert"><p>model-trace: '
               f"{html.escape(page)}:{line}: {html.escape(message)}</p></div>")
        return [nodes.raw("", box, format="html")]


def _start(app: Sphinx) -> None:
    config = app.config
    put_on_sys_path(list(config.model_trace_paths), Path(app.confdir))
    cache_dir = config.model_trace_cache_dir
    settings = Settings(
        depth=config.model_trace_depth,
        routing=config.model_trace_routing,
        assume=config.model_trace_assume,
        export=tuple(config.model_trace_export),
        theme=config.model_trace_theme,
        allowed_roots=tuple(config.model_trace_allowed_roots),
        own_roots=tuple(config.model_trace_own_roots),
        timeout_s=float(config.model_trace_timeout),
        jobs=config.model_trace_jobs,
        cache_dir=Path(app.confdir) / cache_dir if cache_dir else None,
        shared_dir=user_cache_dir() if config.model_trace_shared_cache else None,
        option_hint="`model_trace_{name}` in conf.py",
        log=logger.info,
    )
    session = TraceSession(settings)
    session.start_build()
    _BUILDS[app.env] = _Build(session, app.builder)
    for name in asset_names():
        if name.endswith(".js"):
            app.add_js_file(name)
        else:
            app.add_css_file(name)


def _finish(app: Sphinx, exception: Exception | None) -> None:
    if exception is None and getattr(app.builder, "format", "") == "html":
        static = Path(app.outdir) / "_static"
        static.mkdir(parents=True, exist_ok=True)
        for name in asset_names():
            (static / name).write_bytes(asset_bytes(name))
    build = _BUILDS.pop(app.env, None)
    if build is not None:
        # Sphinx re-reads only changed documents: only a build that read them all knows every
        # fence, and may drop the cache entries no fence uses.
        everything_read = getattr(app, "model_trace_read_all", False)
        build.session.finish_build(complete=exception is None and everything_read)


def _note_documents_to_read(app: Sphinx, env: Any, added: set[str], changed: set[str],
                            removed: set[str]) -> list[str]:
    app.model_trace_read_all = (added | changed) == env.found_docs  # type: ignore[attr-defined]
    return []


def setup(app: Sphinx) -> dict[str, Any]:
    for name, default in _CONFIG.items():
        app.add_config_value(f"model_trace_{name}", default, "env")
    app.add_directive("model-trace", ModelTraceDirective)
    app.connect("builder-inited", _start)
    app.connect("env-get-outdated", _note_documents_to_read)
    app.connect("build-finished", _finish)
    return {"version": model_trace.__version__, "parallel_read_safe": False,
            "parallel_write_safe": True}
