"""One docs build's traces, shared by every front end (MkDocs, Sphinx, Python-Markdown, CLI).

``TraceSession.submit`` fills in the defaults, checks the allowed import roots, looks the
fence up in the cache and otherwise starts tracing it in a worker; ``render`` waits for the
result and gives the figure its page's id prefix and export file names. Front ends submit
every fence they can find early and render late, so independent fences trace in parallel.
"""

from __future__ import annotations

import html
import os
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path

from model_trace.cache import (
    PREFIX_PLACEHOLDER,
    FenceOutput,
    PackageSource,
    SourceHasher,
    TraceCache,
    cache_key,
)
from model_trace.loader import DEFAULT_ALLOWED_ROOTS, ZOO, check_allowed, imported_modules
from model_trace.spec import FenceSpec
from model_trace.worker import TraceJob, TracePool


@dataclass(frozen=True)
class Settings:
    """What a front end's configuration decides for all its fences."""

    depth: int = 1
    routing: str = "balanced"
    export: tuple[str, ...] = ()
    theme: str = "auto"
    allowed_roots: tuple[str, ...] | None = DEFAULT_ALLOWED_ROOTS
    """Packages a fence may import; None allows any (the CLI, where the user runs the spec)."""
    timeout_s: float = 300.0
    jobs: int = field(default_factory=lambda: os.cpu_count() or 1)
    cache_dir: Path | None = None
    isolate: bool = True
    """Trace in worker processes (with the time limit); False traces in this process."""
    option_hint: str = "`{name}`"
    """How an error names a configuration option, e.g. "`model_trace_{name}` in conf.py"."""
    log: Callable[[str], None] | None = None

    def option(self, name: str) -> str:
        return self.option_hint.format(name=name)


@dataclass(frozen=True)
class RenderedFence:
    """A fence's HTML on its page, and the export files to write next to the page."""

    html: str
    files: dict[str, bytes]


class TraceSession:
    """Cache lookups and parallel traces for the fences of one site (kept across rebuilds)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.cache = TraceCache(settings.cache_dir)
        self.hasher = SourceHasher()
        self.sources: dict[str, PackageSource] = {}
        """The package sources of this build's fences, by name."""
        self.traced: list[str] = []
        """Labels of the fences this build traced (the others came from the cache)."""
        self._pending: dict[str, Future[FenceOutput]] = {}
        self._pool: TracePool | None = None
        self._toolchain: str | None = None

    # -- a build -----------------------------------------------------------------------
    def start_build(self) -> None:
        """Forget last build's bookkeeping (the cache stays); workers start on demand."""
        self._pending = {}
        self.sources = {}
        self.traced = []
        self._toolchain = None

    def finish_build(self, *, complete: bool) -> None:
        """Stop the workers, and record what the build used; ``complete`` (a full build that
        succeeded) also drops cache entries no fence uses any more."""
        if self._pool is not None:
            self._pool.close()
            self._pool = None
        if self._pending and self.settings.log is not None:
            self.settings.log(f"model-trace: {len(self._pending)} figures, "
                              f"{len(self.traced)} traced, "
                              f"{len(self._pending) - len(self.traced)} from the cache")
        self._pending = {}
        self.cache.finish_build(prune=complete)

    # -- fences ------------------------------------------------------------------------
    def prepare(self, spec: FenceSpec) -> FenceSpec:
        """The spec with the defaults filled in; ``SpecError`` if it may not be imported."""
        check_allowed(spec, self.settings.allowed_roots, self.settings.option("allowed_roots"))
        return spec.with_defaults(depth=self.settings.depth, routing=self.settings.routing,
                                  export=self.settings.export)

    def submit(self, spec: FenceSpec, origin: str) -> Future[FenceOutput]:
        """Start (or find) the trace of a prepared spec; ``origin`` ("page.md:12") is for logs."""
        key = self.key(spec)
        future = self._pending.get(key)
        if future is not None:
            return future
        future = Future()
        cached = self.cache.get(key)
        if cached is not None:
            future.set_result(cached)
        else:
            job = TraceJob(spec, self.settings.theme, f"{describe(spec)} for {origin}")
            self.traced.append(job.label)
            future = self._start(job)
            about = {"model": describe(spec), "origin": origin}
            future.add_done_callback(
                lambda done: done.exception() or self.cache.put(key, done.result(), about))
        self._pending[key] = future
        return future

    def render(self, spec: FenceSpec, prefix: str, origin: str, export_base: str) -> RenderedFence:
        """Wait for a prepared spec's output; its ids start with ``prefix``, its export files
        are named ``export_base.<format>`` and sit next to the page."""
        output = self.submit(spec, origin).result()
        files = {f"{export_base}.{fmt}": data for fmt, data in output.exports.items()}
        figure = output.html.replace(PREFIX_PLACEHOLDER, prefix)
        return RenderedFence(figure + _export_links(files), files)

    def key(self, spec: FenceSpec) -> str:
        if self._toolchain is None:
            self._toolchain = self.hasher.toolchain()
        sources = []
        for module in imported_modules(spec):
            source = self.hasher.package(module)
            self.sources[source.name] = source
            sources.append(source)
        return cache_key(spec.identity(), self.settings.theme, self._toolchain, sources)

    def _start(self, job: TraceJob) -> Future[FenceOutput]:
        if not self.settings.isolate:
            from model_trace.pipeline import run_fence

            future: Future[FenceOutput] = Future()
            try:
                future.set_result(run_fence(job.spec, job.theme))
            except Exception as error:
                future.set_exception(error)
            return future
        if self._pool is None:
            self._pool = TracePool(self.settings.jobs, self.settings.timeout_s,
                                   self.settings.option("timeout"), self.settings.log)
        return self._pool.submit(job)

    def watched_paths(self) -> list[Path]:
        """The local model sources this build's fences import: what a dev server watches."""
        return [s.local_path for s in self.sources.values() if s.local_path is not None]


def describe(spec: FenceSpec) -> str:
    """How logs name a fence's model: 'deepseek-v3 671B', 'torch.nn:Linear'."""
    zoo = ZOO.get(spec.model)
    if zoo is not None:
        return f"{spec.model} {spec.config or zoo.default_config}"
    return spec.model


def _export_links(files: dict[str, bytes]) -> str:
    if not files:
        return ""
    links = " ".join(
        f'<a href="{html.escape(name)}" download>{html.escape(name.rsplit(".", 1)[1].upper())}</a>'
        for name in files)
    return f'<p class="model-trace-export">Download: {links}</p>\n'

