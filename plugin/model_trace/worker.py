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
A worker never outlives its build: a thread of its own reads the pipe from the parent and ends
the process as soon as that pipe closes or the parent's pid changes (the parent was killed),
even while a model is running. Whatever a model does (``sys.exit``, ``KeyboardInterrupt``,
``os._exit``, a crash) reaches the build as one line with the real exit status.
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

from model_trace.cache import FenceOutput, SharedTraces
from model_trace.errors import (
    ModelLoadError,
    ModelTraceError,
    SpecError,
    TraceError,
    brief,
    readable,
)
from model_trace.loader import ImportPolicy
from model_trace.spec import FenceSpec

STARTUP_TIMEOUT_S = 180.0
"""How long a new worker may take to import torch and model-trace (not counted in a trace)."""
PROGRESS_AFTER_S = 2.0
PROGRESS_EVERY_S = 10.0
EXIT_WAIT_S = 5.0
"""How long a worker whose pipe broke may take to exit, so its real exit status is reported."""
PARENT_CHECK_S = 0.5
"""How often a worker checks that its parent is still alive."""

_ERRORS: dict[str, type[ModelTraceError]] = {
    cls.__name__: cls for cls in (SpecError, ModelLoadError, TraceError)
}


class TraceTimeout(ModelTraceError):
    """A trace ran past its time limit; its worker process was killed."""


class TraceStopped(ModelTraceError):
    """A trace the end of its build stopped (a page failed, or the build was interrupted):
    not a problem of its fence."""


@dataclass(frozen=True)
class TraceJob:
    """Fences that share one trace (equal ``trace_identity``, defaults filled in), the theme,
    what the site allows them to import, a label for logs, and where their traces are shared
    with other sites (``cache.SharedTraces``, one per trace the fences need: a comparison's
    one per variant; empty: not shared)."""

    specs: list[FenceSpec]
    theme: str
    label: str
    policy: ImportPolicy | None = None
    shared: tuple[SharedTraces, ...] = ()


@dataclass(frozen=True)
class JobResult:
    """What a job drew: one output, or the error of that fence's view, per spec; and, for
    the build's summary, how many traces it made and how many it read from the folder of
    traces shared between sites (``cache.SharedTraces``) instead."""

    outputs: list[FenceOutput | ModelTraceError]
    traced: int = 1
    shared: int = 0


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
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(EXIT_WAIT_S)
        self.kill()
        return ModelTraceError(f"the trace worker {exit_status(self.process.returncode)}")

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
            worker.send((job.specs, job.theme, job.policy, job.shared))
            self._wait(worker, job)
            status, payload = worker.receive()
        except BaseException:
            worker.kill()
            raise
        self._give_back(worker)
        if status != "ok":
            raise _error(payload)
        described, traced, shared = payload
        return JobResult([output if kind == "ok" else _error(output)
                          for kind, output in described], traced, shared)

    def _wait(self, worker: _Worker, job: TraceJob) -> None:
        start = time.monotonic()
        next_log = PROGRESS_AFTER_S
        while not worker.incoming.poll(0.25):
            elapsed = time.monotonic() - start
            if self._closing.is_set():
                raise TraceStopped(f"tracing {job.label} was stopped: the build ended")
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


def exit_status(code: int | None) -> str:
    """How a worker's exit status reads in a message, with the likely cause."""
    if code is None:
        return "stopped answering"
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        cause = ("it ran out of memory, or was killed" if name == "SIGKILL"
                 else "the model crashed the interpreter")
        return f"was killed by {name} in the middle of a trace ({cause})"
    return (f"exited with code {code} in the middle of a trace (the model ended the process, "
            "e.g. with os._exit)")


def one_line(error: BaseException) -> str:
    """A foreign exception as one readable line: its type and its message."""
    return readable(f"{type(error).__name__}: {error}")


def _describe_error(error: BaseException) -> tuple[str, str, str | None]:
    """An error as plain data: class name, message, field (exceptions may not pickle)."""
    if isinstance(error, ModelTraceError):
        return type(error).__name__, readable(str(error)), getattr(error, "field", None)
    if isinstance(error, SystemExit):
        return ("ModelLoadError", f"the model called sys.exit({brief(repr(error.code), 40)}) "
                "while it was built or traced", None)
    if isinstance(error, KeyboardInterrupt):
        return "ModelLoadError", "the model raised KeyboardInterrupt", None
    return "ModelTraceError", one_line(error), None


def _error(described: tuple[str, str, str | None]) -> ModelTraceError:
    kind, message, field_name = described
    error_class = _ERRORS.get(kind, ModelTraceError)
    if error_class is SpecError:
        return SpecError(message, field=field_name)
    return error_class(message)


def _read_requests(incoming: Connection, requests: queue.Queue[Any]) -> None:
    """The worker's reader thread: passes requests on; ends the process when the parent
    closes the pipe without saying goodbye or its pid changes (it died)."""
    parent = os.getppid()
    while True:
        try:
            if not incoming.poll(PARENT_CHECK_S):
                if os.getppid() != parent:
                    os._exit(1)
                continue
            request = incoming.recv()
        except (EOFError, OSError):
            os._exit(1)
        requests.put(request)
        if request is None:
            return


def _send(outgoing: Connection, message: Any) -> None:
    try:
        outgoing.send(message)
    except OSError:  # the parent is gone: nobody to tell
        os._exit(1)


def serve(incoming: Connection, outgoing: Connection) -> None:
    """A worker's main loop: receive (specs, theme, policy, shared), reply with one output or
    error per spec and how many traces were made and read from the shared folder, or with the
    error that stopped the trace they share."""
    sys.path[:] = incoming.recv()
    sys.dont_write_bytecode = True  # no __pycache__ writes into watched model folders
    # Ctrl-C in a terminal reaches every process of the build: the build stops, and the
    # worker with it when its pipe closes; a model's own KeyboardInterrupt is still reported.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    requests: queue.Queue[Any] = queue.Queue()
    threading.Thread(target=_read_requests, args=(incoming, requests), daemon=True).start()
    try:
        from model_trace.pipeline import run_fences
    except BaseException as error:
        _send(outgoing, ("failed", one_line(error)))
        return
    _send(outgoing, ("ready", None))
    while True:
        request = requests.get()
        if request is None:
            return
        specs, theme, policy, shared = request
        try:
            result = run_fences(specs, theme, policy=policy, shared=shared)
        except BaseException as error:  # a model's own bug, sys.exit, ...: report, keep serving
            _send(outgoing, ("error", _describe_error(error)))
            continue
        _send(outgoing, ("ok", ([("ok", output) if not isinstance(output, Exception)
                                 else ("error", _describe_error(output))
                                 for output in result.outputs], result.traced,
                                result.shared)))


if __name__ == "__main__":
    serve(Connection(int(sys.argv[1]), writable=False), Connection(int(sys.argv[2]),
                                                                    readable=False))
