"""One docs build's traces, shared by every front end (MkDocs, Sphinx, Python-Markdown, CLI).

``TraceSession.submit`` fills in the defaults, checks the allowed import roots, looks the
fence up in the cache and otherwise starts tracing it in a worker; ``render`` waits for the
result and gives the figure its page's id prefix and export file names. Front ends submit
every fence they can find early and render late, so independent fences trace in parallel.
"""

from __future__ import annotations

import dataclasses
import html
import json
import os
import sys
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path

from model_trace.cache import (
    PREFIX_PLACEHOLDER,
    FenceOutput,
    PackageSource,
    SharedTraces,
    SourceHasher,
    TraceCache,
    cache_key,
    trace_key,
)
from model_trace.dataviews import check_view_fields
from model_trace.errors import ModelTraceError
from model_trace.loader import (
    DEFAULT_ALLOWED_ROOTS,
    ZOO,
    ImportPolicy,
    check_allowed,
    imported_modules,
)
from model_trace.spec import FenceSpec
from model_trace.worker import JobResult, TraceJob, TracePool, TraceStopped


@dataclass(frozen=True)
class Settings:
    """What a front end's configuration decides for all its fences."""

    depth: int = 1
    routing: str = "balanced"
    export: tuple[str, ...] = ()
    assume: str = "warn"
    theme: str = "auto"
    height: int | None = None
    """The most a figure's frame grows to (px) when its fence gives no ``height``."""
    allowed_roots: tuple[str, ...] | None = DEFAULT_ALLOWED_ROOTS
    """Library packages a fence may build ``nn.Module`` classes from; None allows any code
    (the CLI, where the user runs the spec)."""
    own_roots: tuple[str, ...] = ()
    """The site's own packages: a fence may call any class or function defined there."""
    timeout_s: float = 300.0
    jobs: int = field(default_factory=lambda: os.cpu_count() or 1)
    cache_dir: Path | None = None
    shared_dir: Path | None = None
    """The folder of traces shared with the other sites of this machine (``SharedTraces``);
    None: traces stay with the site."""
    isolate: bool = True
    """Trace in worker processes (with the time limit); False traces in this process."""
    option_hint: str = "`{name}`"
    """How an error names a configuration option, e.g. "`model_trace_{name}` in conf.py"."""
    log: Callable[[str], None] | None = None

    def option(self, name: str) -> str:
        return self.option_hint.format(name=name)

    @property
    def policy(self) -> ImportPolicy | None:
        """What fences may import and call; None: anything."""
        if self.allowed_roots is None:
            return None
        return ImportPolicy(self.allowed_roots, self.own_roots, self.option_hint)


@dataclass(frozen=True)
class RenderedFence:
    """A fence's HTML on its page, and the export files to write next to the page."""

    html: str
    files: dict[str, bytes]
    warnings: tuple[str, ...] = ()
    """Assumed values that may change the figure (``assume: warn``) and Python warnings
    the model raised, one line each."""


class TraceSession:
    """Cache lookups and parallel traces for the fences of one site (kept across rebuilds)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.cache = TraceCache(settings.cache_dir)
        self.hasher = SourceHasher()
        self.sources: dict[str, PackageSource] = {}
        """The package sources of this build's fences, by name."""
        self.drawn: list[str] = []
        """Where the fences are that this build drew (the others came from the site's cache)."""
        self.traces = 0
        """How many traces this build made for them (a job not finished counts as one)."""
        self.shared_traces = 0
        """How many traces it read from the folder shared between sites instead."""
        self.from_shared: list[int] = []
        """One item per job that read all its traces from that folder: how many figures it
        drew (appended from the workers' threads)."""
        self._pending: dict[str, Future[FenceOutput]] = {}
        self._pool: TracePool | None = None
        self._toolchain: str | None = None

    # -- a build -----------------------------------------------------------------------
    def start_build(self) -> None:
        """Forget last build's bookkeeping (the cache stays); workers start on demand."""
        self._pending = {}
        self.sources = {}
        self.drawn = []
        self.traces = 0
        self.shared_traces = 0
        self.from_shared = []
        self._toolchain = None

    def finish_build(self, *, complete: bool) -> None:
        """Stop the workers, and record what the build used; ``complete`` (a full build that
        succeeded) also drops cache entries no fence uses any more."""
        if self._pool is not None:
            self._pool.close()
            self._pool = None
        if self._pending and self.settings.log is not None:
            self.settings.log(self.summary())
        self._pending = {}
        self.cache.finish_build(prune=complete)

    def summary(self) -> str:
        """The build's figures by where they came from: traced now, read from the folder of
        traces shared between sites, the site's own cache; and those that failed."""
        errors = [f.exception() if f.done() else TraceStopped("not traced")
                  for f in self._pending.values()]
        stopped = sum(1 for e in errors if isinstance(e, TraceStopped))
        failures = sum(1 for e in errors if e is not None) - stopped
        shared = sum(self.from_shared)
        traced = len(self.drawn) - failures - stopped - shared
        return (f"model-trace: {len(self._pending)} figures: {traced} traced "
                f"({_count(self.traces, 'new trace')}), "
                f"{shared} from the shared cache ({_count(self.shared_traces, 'trace')}), "
                f"{len(self._pending) - len(self.drawn)} from the site's cache"
                + (f", {failures} failed" if failures else "")
                + (f", {stopped} stopped when the build ended" if stopped else ""))

    # -- fences ------------------------------------------------------------------------
    def prepare(self, spec: FenceSpec) -> FenceSpec:
        """The spec with the defaults filled in; ``SpecError`` if it may not be imported."""
        check_allowed(spec, self.settings.policy)
        check_view_fields(spec)
        zoo = ZOO.get(spec.model)
        if zoo is not None:  # so that `config: 671B` and no config share a trace
            spec = dataclasses.replace(spec, config=spec.config or zoo.default_config,
                                       inputs=spec.inputs or zoo.default_inputs)
        return spec.with_defaults(depth=self.settings.depth, routing=self.settings.routing,
                                  assume=self.settings.assume,
                                  export=self.settings.export, height=self.settings.height)

    def submit(self, spec: FenceSpec, origin: str) -> Future[FenceOutput]:
        """Start (or find) the trace of a prepared spec; ``origin`` ("page.md:12") is for logs."""
        return self.submit_all([(spec, origin)])[0]

    def submit_all(self, fences: list[tuple[FenceSpec, str]]) -> list[Future[FenceOutput]]:
        """``submit`` for many fences at once: those that differ only in how they show the
        graph share one trace."""
        futures: list[Future[FenceOutput]] = []
        groups: dict[str, list[tuple[str, FenceSpec, str]]] = {}
        for spec, origin in fences:
            key = self.key(spec)
            future = self._pending.get(key)
            if future is None:
                future = self._pending[key] = Future()
                cached = self.cache.get(key)
                if cached is not None:
                    future.set_result(cached)
                else:
                    trace_key = json.dumps(spec.trace_identity(), sort_keys=True, default=list)
                    groups.setdefault(trace_key, []).append((key, spec, origin))
            futures.append(future)
        for members in groups.values():
            self._trace(members)
        return futures

    def _trace(self, members: list[tuple[str, FenceSpec, str]]) -> None:
        """Trace the members' shared model once, in a worker; resolve each member's future."""
        first_spec, first_origin = members[0][1], members[0][2]
        job = TraceJob([spec for _, spec, _ in members], self.settings.theme,
                       f"{describe(first_spec)} for {first_origin}", self.settings.policy,
                       self.shared(first_spec))
        self.drawn.extend(origin for _, _, origin in members)
        self.traces += 1

        def resolve(done: Future[JobResult]) -> None:
            # a queued trace is cancelled when its build ends early (a page failed)
            error = (TraceStopped(f"tracing {job.label} was cancelled: the build ended")
                     if done.cancelled() else done.exception())
            if error is None:
                result = done.result()
                self.traces += result.traced - 1  # counted as one when it started
                self.shared_traces += result.shared
                if not result.traced:
                    self.from_shared.append(sum(not isinstance(output, BaseException)
                                                for output in result.outputs))
            for index, (key, _, origin) in enumerate(members):
                result = error or done.result().outputs[index]
                if isinstance(result, BaseException):
                    self._pending[key].set_exception(result)
                else:
                    self.cache.put(key, result, {"model": job.label.split(" for ")[0],
                                                 "origin": origin})
                    self._pending[key].set_result(result)

        self._start(job).add_done_callback(resolve)

    def render(self, spec: FenceSpec, prefix: str, origin: str, export_base: str) -> RenderedFence:
        """Wait for a prepared spec's output; its ids start with ``prefix``, its export files
        are named ``export_base.<format>`` and sit next to the page."""
        output = self.submit(spec, origin).result()
        if self.settings.log is not None:
            for note in output.notes:
                self.settings.log(f"model-trace: {origin}: {note}")
        files = {f"{export_base}.{fmt}": data for fmt, data in output.exports.items()}
        figure = output.html.replace(PREFIX_PLACEHOLDER, prefix)
        return RenderedFence(figure + _export_links(files), files, output.warnings)

    def key(self, spec: FenceSpec) -> str:
        return cache_key(spec.identity(), self.settings.theme, self._toolchain_of(),
                         self._sources_of(spec), self.settings.policy)

    def shared(self, spec: FenceSpec) -> tuple[SharedTraces, ...]:
        """Where the spec's traces are shared with other sites: its own, or one per variant of
        a comparison; none without a shared folder. (A data view or a real run never uses
        its place: ``run_fences`` and ``shared_or_traced`` decide what is shared.)"""
        if self.settings.shared_dir is None:
            return ()
        if spec.compare is None:
            traced = [spec]
        else:
            from model_trace.compare import variants

            try:
                traced = [variant.spec for variant in variants(spec)]
            except ModelTraceError:  # the fence's own error comes when it is traced
                return ()
        return tuple(SharedTraces(self.settings.shared_dir,
                                  trace_key(s.trace_identity(), self._toolchain_of(),
                                            self._sources_of(s), self.settings.policy))
                     for s in traced)

    def _toolchain_of(self) -> str:
        if self._toolchain is None:
            self._toolchain = self.hasher.toolchain()
        return self._toolchain

    def _sources_of(self, spec: FenceSpec) -> list[PackageSource]:
        sources = []
        for module in imported_modules(spec):
            # hashed once per build: a serve rebuild sees edits, a build's fences share the work
            source = self.sources.get(module.split(".")[0]) or self.hasher.package(module)
            self.sources[source.name] = source
            sources.append(source)
        return sources

    def _start(self, job: TraceJob) -> Future[JobResult]:
        if not self.settings.isolate:
            from model_trace.pipeline import run_fences

            future: Future[JobResult] = Future()
            try:
                future.set_result(run_fences(job.specs, job.theme, policy=job.policy,
                                             shared=job.shared))
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


def put_on_sys_path(folders: list[str], root: Path) -> None:
    """Put ``folders`` (relative to ``root``) at the front of ``sys.path``, where not there
    yet: trace workers start with the build's ``sys.path``."""
    for folder in reversed(folders):
        path = str((root / folder).resolve())
        if path not in sys.path:
            sys.path.insert(0, path)


def describe(spec: FenceSpec) -> str:
    """How logs name a fence's model: 'deepseek-v3 671B', 'torch.nn:Linear', and a
    comparison's variants: 'deepseek-v3 236B vs deepseek-v3 671B (2 variants)'."""
    if spec.compare is not None:
        from model_trace.compare import variants

        try:
            names = [describe(variant.spec) for variant in variants(spec)]
        except ModelTraceError:  # the fence's own error comes when it is traced
            names = []
        if names:
            return f"{' vs '.join(dict.fromkeys(names))} ({len(names)} variants)"
    zoo = ZOO.get(spec.model)
    if zoo is not None:
        return f"{spec.model} {spec.config or zoo.default_config}"
    return spec.model


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}" + ("" if number == 1 else "s")


def _export_links(files: dict[str, bytes]) -> str:
    if not files:
        return ""
    links = " ".join(
        f'<a href="{html.escape(name)}" download>{html.escape(name.rsplit(".", 1)[1].upper())}</a>'
        for name in files)
    return f'<p class="model-trace-export">Download: {links}</p>\n'

