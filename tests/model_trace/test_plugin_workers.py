"""Fences trace in spawned worker processes: in parallel, with a time limit, with progress."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import time

import pytest
from mkdocs.exceptions import Abort, PluginError

PLUGIN = {"allowed_roots": ["torch"], "own_roots": ["tiny_models"]}


def _sleeper(seconds: float, width: int = 8) -> str:
    return (f"```model-trace\nmodel: tiny_models:Tiny\nargs: {{width: {width}, "
            f"sleep_s: {seconds}}}\ninputs: [[3, {width}]]\n```\n")


def _failure(raised: pytest.ExceptionInfo, caplog: pytest.LogCaptureFixture) -> str:
    """What a failed build reported: the exception and the errors MkDocs logged."""
    logged = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    return "\n".join([str(raised.value), *logged])


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_trace_past_the_timeout_is_killed_and_reported(build_site, tiny_models, caplog) -> None:
    page = "# Slow\n\n" + _sleeper(60)
    start = time.monotonic()
    with pytest.raises((Abort, PluginError)) as raised:
        build_site({"slow.md": page}, plugin={**PLUGIN, "timeout": 1})
    assert time.monotonic() - start < 40
    message = _failure(raised, caplog)
    assert "slow.md:3" in message and "longer than 1 s" in message
    assert "`timeout` under `plugins: - model-trace:`" in message
    (sleeping,) = [line for line in tiny_models.builds() if line.startswith("sleeping")]
    pid = int(sleeping.split()[1])
    deadline = time.monotonic() + 5
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _alive(pid), "the worker that ran past its time limit is still running"


def test_fences_of_different_pages_trace_in_parallel(build_site, tiny_models) -> None:
    build_site({"a.md": _sleeper(1.5, 8), "b.md": _sleeper(1.5, 16)},
               plugin={**PLUGIN, "jobs": 2})
    spans = [tuple(map(float, line.split()[2:])) for line in tiny_models.builds()
             if line.startswith("slept")]
    assert len(spans) == 2
    (start_a, end_a), (start_b, end_b) = spans
    assert start_a < end_b and start_b < end_a, f"traces ran one after the other: {spans}"


def test_jobs_one_traces_one_fence_at_a_time(build_site, tiny_models) -> None:
    build_site({"a.md": _sleeper(0.5, 8), "b.md": _sleeper(0.5, 16)},
               plugin={**PLUGIN, "jobs": 1})
    pids = {line.split()[1] for line in tiny_models.builds() if line.startswith("slept")}
    spans = sorted(tuple(map(float, line.split()[2:])) for line in tiny_models.builds()
                   if line.startswith("slept"))
    assert len(pids) == 1  # one worker, re-used
    assert spans[0][1] <= spans[1][0]


def test_a_slow_trace_logs_progress(build_site, tiny_models, caplog) -> None:
    caplog.set_level(logging.INFO, logger="mkdocs.plugins.model_trace")
    build_site({"index.md": "# Slow\n\n" + _sleeper(3)}, plugin=PLUGIN)
    messages = [r.getMessage() for r in caplog.records if r.levelno == logging.INFO]
    assert any(m.startswith("model-trace: tracing tiny_models:Tiny for index.md:3 ... (")
               for m in messages), messages
    assert any(m.startswith("model-trace: traced tiny_models:Tiny for index.md:3 in ")
               for m in messages), messages


def _misbehaving(how: str) -> str:
    return (f"```model-trace\nmodel: tiny_models:Misbehaving\nargs: {{how: {how}, code: 3}}\n"
            "inputs: [[3, 8]]\n```\n")


@pytest.mark.parametrize(("how", "words"), [
    ("os._exit", "exited with code 3 in the middle of a trace"),
    ("sys.exit", "the model called sys.exit(3)"),
    ("interrupt", "the model raised KeyboardInterrupt"),
])
def test_a_model_that_ends_its_worker_is_reported_in_one_line(build_site, tiny_models, caplog,
                                                              how: str, words: str) -> None:
    with pytest.raises((Abort, PluginError)) as raised:
        build_site({"index.md": _misbehaving(how)}, plugin=PLUGIN)
    message = _failure(raised, caplog)
    assert "index.md:1" in message and words in message, message
    assert "Traceback" not in message and "-9" not in message


def _running(pid: int) -> bool:
    """Alive and not a zombie waiting to be reaped."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False
    except OSError:
        return _alive(pid)


def test_workers_do_not_outlive_a_build_killed_mid_trace(tmp_path, tiny_models) -> None:
    project = tmp_path / "project"
    (project / "docs").mkdir(parents=True)
    (project / "docs/index.md").write_text("# Slow\n\n" + _sleeper(60))
    (project / "mkdocs.yml").write_text(
        "site_name: killed\nplugins:\n  - model-trace:\n      own_roots: [tiny_models]\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(tiny_models.source.parent.parent), os.environ.get("PYTHONPATH", "")])}
    build = subprocess.Popen([sys.executable, "-m", "mkdocs", "build"], cwd=project, env=env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while not any(line.startswith("sleeping") for line in tiny_models.builds()):
        assert time.monotonic() < deadline and build.poll() is None, "the trace never started"
        time.sleep(0.1)
    (sleeping,) = [line for line in tiny_models.builds() if line.startswith("sleeping")]
    worker = int(sleeping.split()[1])
    build.kill()  # SIGKILL: the build cannot stop its workers itself
    build.wait()
    time.sleep(2)
    assert not _running(worker), "a trace worker outlived the build that was killed"


def test_the_summary_counts_failed_figures(build_site, tiny_models, caplog) -> None:
    caplog.set_level(logging.INFO, logger="mkdocs.plugins.model_trace")
    site = build_site({"index.md": _sleeper(0) + "\n" + _misbehaving("sys.exit")},
                      plugin={**PLUGIN, "on_error": "warn"})
    assert (site / "index.html").is_file()
    summary = [r.getMessage() for r in caplog.records if "figures:" in r.getMessage()]
    assert summary == ["model-trace: 2 figures: 1 traced (2 new traces), 0 from the shared "
                       "cache (0 traces), 0 from the site's cache, 1 failed"]


REFUSING_HOOK = '''\
from mkdocs.exceptions import PluginError


def on_page_markdown(markdown, page, **_):
    if page.file.src_uri == "b.md":
        raise PluginError("b.md:1: the site's hook refused this page")
    return markdown
'''


def test_a_build_that_stops_early_ends_its_traces_without_a_traceback(tmp_path,
                                                                        tiny_models) -> None:
    """A page fails (here a hook's check) while one trace runs and another waits: each
    problem is one line, the traces are stopped and counted as such, no traceback."""
    project = tmp_path / "project"
    (project / "docs").mkdir(parents=True)
    bad = "```model-trace\nmodel: tiny_models:Tiny\ninptus: [[3, 8]]\n```\n"
    for name, text in {"a.md": bad, "b.md": "# Refused\n", "c.md": _sleeper(60, 8),
                       "d.md": _sleeper(60, 16)}.items():
        (project / "docs" / name).write_text(text)
    (project / "hooks.py").write_text(REFUSING_HOOK)
    (project / "mkdocs.yml").write_text(
        "site_name: stopped\nhooks: [hooks.py]\nplugins:\n  - model-trace:\n"
        "      own_roots: [tiny_models]\n      jobs: 1\n      cache: false\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(tiny_models.source.parent.parent), os.environ.get("PYTHONPATH", "")])}
    start = time.monotonic()
    build = subprocess.run([sys.executable, "-m", "mkdocs", "build"], cwd=project, env=env,
                           capture_output=True, text=True, timeout=300)
    assert build.returncode != 0
    assert time.monotonic() - start < 50, "the build waited for a trace it no longer needs"
    assert "Traceback" not in build.stderr and "CancelledError" not in build.stderr, build.stderr
    assert "a.md:3: unknown field 'inptus'; did you mean 'inputs'?" in build.stderr
    assert "b.md:1: the site's hook refused this page" in build.stderr
    assert ("model-trace: 2 figures: 0 traced (2 new traces), 0 from the shared cache "
            "(0 traces), 0 from the site's cache, 2 stopped when the build ended"
            ) in build.stderr, build.stderr
