"""``mkdocs serve`` for real: a model's source is watched, and editing it re-traces only the
fences that use it, in fresh worker processes; the in-memory cache carries the rest."""

from __future__ import annotations

import os
import queue
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

OTHER_MODEL = '''\
"""A second local model package; building it appends "Other" to the shared build log."""
import torch
from torch import nn

BUILD_LOG = {log!r}


class Other(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.proj = nn.Linear(4, 4)
        with open(BUILD_LOG, "a") as log:
            log.write("Other\\n")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.proj(x))
'''


@dataclass
class Server:
    """A running ``mkdocs serve``: its base URL and the lines it has printed."""

    url: str
    process: subprocess.Popen[str]
    lines: queue.Queue[str]

    def page(self, path: str = "") -> str:
        with urllib.request.urlopen(self.url + path, timeout=10) as response:
            return response.read().decode("utf-8")

    def wait_for_line(self, text: str, timeout_s: float = 120) -> str:
        """The first line printed from now on that contains ``text``."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=0.5)
            except queue.Empty:
                if self.process.poll() is not None:
                    break
                continue
            if text in line:
                return line
        pytest.fail(f"mkdocs serve printed no line with {text!r} within {timeout_s} s")

    def drain(self) -> None:
        while not self.lines.empty():
            self.lines.get_nowait()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def served(tmp_path: Path, tiny_models) -> Iterator[Server]:
    """A project with one page per local model package, served by ``mkdocs serve``."""
    (tiny_models.source.parent.parent / "other_models.py").write_text(
        OTHER_MODEL.format(log=str(tiny_models.log)), encoding="utf-8")
    project = tmp_path / "project"
    (project / "docs").mkdir(parents=True)
    (project / "docs/index.md").write_text(
        "# Tiny\n\n```model-trace\nmodel: tiny_models:Tiny\ninputs: [[3, 8]]\n```\n")
    (project / "docs/other.md").write_text(
        "# Other\n\n```model-trace\nmodel: other_models:Other\ninputs: [[2, 4]]\n```\n")
    (project / "mkdocs.yml").write_text(textwrap.dedent("""\
        site_name: served
        plugins:
          - model-trace:
              allowed_roots: [torch]
              own_roots: [tiny_models, other_models]
        """))
    port = _free_port()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(tiny_models.source.parent.parent), os.environ.get("PYTHONPATH", "")]),
           "NO_MKDOCS_2_WARNING": "1"}
    process = subprocess.Popen(
        [sys.executable, "-m", "mkdocs", "serve", "-a", f"127.0.0.1:{port}"],
        cwd=project, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        start_new_session=True)
    lines: queue.Queue[str] = queue.Queue()

    def read() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            lines.put(line)

    threading.Thread(target=read, daemon=True).start()
    server = Server(f"http://127.0.0.1:{port}/", process, lines)
    try:
        server.wait_for_line("Serving on")
        yield server
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def test_editing_a_model_retraces_only_its_fence(served: Server, tiny_models,
                                                 tmp_path: Path) -> None:
    assert sorted(tiny_models.builds()) == ["Other", "Tiny 8"]
    assert ">relu</text>" in served.page()
    served.drain()
    source = tiny_models.source.read_text(encoding="utf-8")
    tiny_models.source.write_text(source.replace("torch.relu", "torch.sigmoid"),
                                  encoding="utf-8")
    summary = served.wait_for_line("model-trace: 2 figures")
    assert ("1 traced (1 new trace), 0 from the shared cache (0 traces), "
            "1 from the site's cache") in summary
    assert sorted(tiny_models.builds()) == ["Other", "Tiny 8", "Tiny 8"]
    page = served.page()
    assert ">sigmoid</text>" in page and ">relu</text>" not in page  # re-imported, not stale
    assert ">tanh</text>" in served.page("other/")

    # a prose edit rebuilds from the plugin's memory: even without the disk cache, no trace
    shutil.rmtree(tmp_path / "project/.cache/plugin/model-trace")
    served.drain()
    page_file = tmp_path / "project/docs/other.md"
    page_file.write_text(page_file.read_text() + "\nMore prose.\n")
    summary = served.wait_for_line("model-trace: 2 figures")
    assert ("0 traced (0 new traces), 0 from the shared cache (0 traces), "
            "2 from the site's cache") in summary
    assert sorted(tiny_models.builds()) == ["Other", "Tiny 8", "Tiny 8"]
    assert "More prose." in served.page("other/")
