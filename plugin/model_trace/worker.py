"""Trace fences in separate processes: in parallel, with a time limit, on fresh imports.

Each worker is a fresh interpreter (``python -m model_trace.worker``), so it imports the
model's code anew (an edited model is really re-imported under ``mkdocs serve``), a model that
hangs or crashes takes down only its worker, and, unlike multiprocessing's 'spawn', the
program that started the build (a script without a ``__main__`` guard, code read from stdin)
is never run again in the worker. ``TracePool`` runs at most ``jobs`` traces at once, re-uses
idle workers within one build, kills a worker whose trace runs past ``timeout_s``, and logs
progress for traces that take a while. A docs build makes one pool per build.

The worker talks over two pipes of its own (not stdin/stdout, which the model may print to)
with ``multiprocessing.connection`` framing; its first message is the parent's ``sys.path``.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

from model_trace.cache import FenceOutput
from model_trace.errors import ModelLoadError, ModelTraceError, SpecError, TraceError
from model_trace.spec import FenceSpec

STARTUP_TIMEOUT_S = 180.0
"""How long a new worker may take to import torch and model-trace (not counted in a trace)."""
PROGRESS_AFTER_S = 2.0
PROGRESS_EVERY_S = 10.0

_ERRORS: dict[str, type[ModelTraceError]] = {
    cls.__name__: cls for cls in (SpecError, ModelLoadError, TraceError)
}


class TraceTimeout(ModelTraceError):
    """A trace ran past its time limit; its worker process was killed."""


@dataclass(frozen=True)
class TraceJob:
    """Fences that share one trace (equal ``trace_identity``, defaults filled in), the theme,
    and a label for logs."""

    specs: list[FenceSpec]
    theme: str
    label: str


JobResult = list["FenceOutput | ModelTraceError"]
"""One output, or the error of that fence's view, per spec of a job."""


class _Worker:
    """One worker process and the two pipes to it."""

    def __init__(self) -> None:
        from_worker, worker_out = os.pipe()
        worker_in, to_worker = os.pipe()
        package_root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        python_path = os.pathsep.join(
            p for p in (package_root, os.environ.get("PYTHONPATH", "")) if p)
        self.process = subprocess.Popen(
            [sys.executable, "-m", "model_trace.worker", str(worker_in), str(worker_out)],
            pass_fds=(worker_in, worker_out), stdin=subprocess.DEVNULL,
            env={**os.environ, "PYTHONPATH": python_path})
        os.close(worker_in)
        os.close(worker_out)
        self.incoming = Connection(from_worker, writable=False)
        self.outgoing = Connection(to_worker, readable=False)
        self.send(list(sys.path))
        if not self.incoming.poll(STARTUP_TIMEOUT_S):
            self.kill()
            raise ModelTraceError(f"a trace worker did not start within {STARTUP_TIMEOUT_S} s")
        status, detail = self.receive()
        if status != "ready":
            self.kill()
            raise ModelTraceError(f"a trace worker failed to start: {detail}")

    def send(self, message: Any) -> None:
        try:
            self.outgoing.send(message)
        except OSError as error:
            raise self._died() from error

    def receive(self) -> Any:
        try:
            return self.incoming.recv()
        except (EOFError, OSError) as error:
            raise self._died() from error

    def _died(self) -> ModelTraceError:
        self.kill()
        return ModelTraceError(f"the trace worker died (exit code {self.process.returncode}); "
                               "the model may have crashed the interpreter or run out of memory")

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(10)
        self.incoming.close()
        self.outgoing.close()

    def stop(self) -> None:
        try:
            self.outgoing.send(None)
            self.process.wait(2)
        except (OSError, subprocess.TimeoutExpired):
            pass
        self.kill()


class TracePool:
    """Runs ``TraceJob``s in spawned worker processes, at most ``jobs`` at a time."""

    def __init__(self, jobs: int, timeout_s: float, timeout_hint: str = "timeout",
                 log: Callable[[str], None] | None = None) -> None:
        self.timeout_s = timeout_s
        self.timeout_hint = timeout_hint
        self._log = log or logging.getLogger("mkdocs.plugins.model_trace").info
        self._threads = ThreadPoolExecutor(max(1, jobs), thread_name_prefix="model-trace")
        self._idle: list[_Worker] = []
        self._lock = threading.Lock()
        self._closing = threading.Event()

    def submit(self, job: TraceJob) -> Future[JobResult]:
        """Start tracing ``job`` as soon as a slot is free."""
        return self._threads.submit(self._run, job)

    def close(self) -> None:
        """Stop every worker; traces still running fail, queued ones are cancelled."""
        self._closing.set()
        self._threads.shutdown(wait=True, cancel_futures=True)
        with self._lock:
            idle, self._idle = self._idle, []
        for worker in idle:
            worker.stop()

    def _run(self, job: TraceJob) -> JobResult:
        worker = self._take()
        try:
            worker.send((job.specs, job.theme))
            self._wait(worker, job)
            status, payload = worker.receive()
        except BaseException:
            worker.kill()
            raise
        self._give_back(worker)
        if status != "ok":
            raise _error(payload)
        return [output if kind == "ok" else _error(output) for kind, output in payload]

    def _wait(self, worker: _Worker, job: TraceJob) -> None:
        start = time.monotonic()
        next_log = PROGRESS_AFTER_S
        while not worker.incoming.poll(0.25):
            elapsed = time.monotonic() - start
            if self._closing.is_set():
                raise ModelTraceError(f"tracing {job.label} was stopped: the build ended")
            if elapsed >= self.timeout_s:
                raise TraceTimeout(
                    f"tracing {job.label} took longer than {self.timeout_s:g} s, so its worker "
                    f"was stopped; raise {self.timeout_hint}, or trace a smaller model "
                    "(e.g. `overrides: {n_layers: 4}`)")
            if elapsed >= next_log:
                self._log(f"model-trace: tracing {job.label} ... ({elapsed:.0f} s)")
                next_log += PROGRESS_EVERY_S
        elapsed = time.monotonic() - start
        if elapsed >= PROGRESS_AFTER_S:
            self._log(f"model-trace: traced {job.label} in {elapsed:.1f} s")

    def _take(self) -> _Worker:
        with self._lock:
            if self._idle:
                return self._idle.pop()
        return _Worker()

    def _give_back(self, worker: _Worker) -> None:
        with self._lock:
            self._idle.append(worker)


def _describe_error(error: Exception) -> tuple[str, str, str | None]:
    """An error as plain data: class name, message, field (exceptions may not pickle)."""
    if isinstance(error, ModelTraceError):
        return type(error).__name__, str(error), getattr(error, "field", None)
    return "ModelTraceError", f"{type(error).__name__}: {error}", None


def _error(described: tuple[str, str, str | None]) -> ModelTraceError:
    kind, message, field_name = described
    error_class = _ERRORS.get(kind, ModelTraceError)
    if error_class is SpecError:
        return SpecError(message, field=field_name)
    return error_class(message)


def serve(incoming: Connection, outgoing: Connection) -> None:
    """A worker's main loop: receive (specs, theme), reply with one output or error per spec,
    or with the error that stopped the trace they share."""
    sys.path[:] = incoming.recv()
    sys.dont_write_bytecode = True  # no __pycache__ writes into watched model folders
    try:
        from model_trace.pipeline import run_fences
    except BaseException as error:
        outgoing.send(("failed", f"{type(error).__name__}: {error}"))
        return
    outgoing.send(("ready", None))
    while True:
        try:
            request = incoming.recv()
        except (EOFError, OSError):
            return
        if request is None:
            return
        specs, theme = request
        try:
            outputs = run_fences(specs, theme)
        except Exception as error:  # a model's own bug too: report it, keep serving
            outgoing.send(("error", _describe_error(error)))
            continue
        outgoing.send(("ok", [("ok", output) if not isinstance(output, Exception)
                              else ("error", _describe_error(output)) for output in outputs]))


if __name__ == "__main__":
    serve(Connection(int(sys.argv[1]), writable=False), Connection(int(sys.argv[2]),
                                                                    readable=False))
