"""How long the docs site takes to build, and what the plugin adds: ``python benchmarks/site.py``.

Works on a copy of ``docs/`` and ``mkdocs.yml`` in a temporary folder, with real ``mkdocs``
processes, and reports:

- cold: ``mkdocs build`` with an empty cache (every fence traced);
- warm: ``mkdocs build`` again, everything from the disk cache (median of ``--repeat``);
- baseline: the same site with every ```` ```model-trace ```` fence turned into a plain
  ```` ```yaml ```` block, so the plugin has nothing to draw (median of ``--repeat``);
  warm minus baseline is the plugin's overhead on an unchanged site;
- serve: under ``mkdocs serve``, the time from an edit of a page without fences to the
  browsers' reload, and the rebuild alone, with the plugin and for the baseline site.
"""

from __future__ import annotations

import argparse
import os
import queue
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FENCE = re.compile(r"^([ \t]*(?:`{3,}|~{3,})[ \t]*)model-trace\b", re.M)
QUIET_PAGE = "reference/sphinx-and-cli.md"
"""A page without fences, edited in the serve measurement."""


def copy_site(target: Path, *, fences: bool) -> Path:
    target.mkdir(parents=True)
    shutil.copytree(ROOT / "docs", target / "docs")
    shutil.copy(ROOT / "mkdocs.yml", target / "mkdocs.yml")
    if not fences:
        for page in (target / "docs").rglob("*.md"):
            page.write_text(FENCE.sub(r"\1yaml", page.read_text(encoding="utf-8")),
                            encoding="utf-8")
    return target


def build(project: Path) -> float:
    """Wall time of one ``mkdocs build`` process, start to exit."""
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "mkdocs", "build", "-q"], cwd=project, check=True,
                   env={**os.environ, "NO_MKDOCS_2_WARNING": "1"})
    return time.perf_counter() - start


def serve_rebuilds(project: Path, edits: int) -> list[tuple[float, float]]:
    """For each edit of a page without fences under ``mkdocs serve``: seconds from the edit to
    the browsers' reload, and from the server noticing the change to the reload (the rebuild
    itself: MkDocs polls for changes every 0.5 s, which adds up to that much to the first
    figure whatever the site). MkDocs' own "built in" line is not used, as its log filter drops
    a repeat of the same text."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen(
        [sys.executable, "-m", "mkdocs", "serve", "-a", f"127.0.0.1:{port}"], cwd=project,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"})
    lines: queue.Queue[tuple[float, str]] = queue.Queue()

    def read() -> None:
        assert server.stdout is not None
        for line in server.stdout:
            lines.put((time.perf_counter(), line))

    threading.Thread(target=read, daemon=True).start()
    timings: list[tuple[float, float]] = []
    try:
        _wait_for(lines, "Serving on", 0.0)
        page = project / "docs" / QUIET_PAGE
        for edit in range(edits):
            time.sleep(2.0)  # let the previous rebuild and its file events settle
            start = time.perf_counter()
            page.write_text(page.read_text(encoding="utf-8") + f"\nEdit {edit}.\n",
                            encoding="utf-8")
            detected = _wait_for(lines, "Detected file changes", start)
            reloaded = _wait_for(lines, "Reloading browsers", detected)
            timings.append((reloaded - start, reloaded - detected))
    finally:
        server.terminate()
        server.wait(30)
    return timings


def _wait_for(lines: queue.Queue[tuple[float, str]], text: str, after: float) -> float:
    """When the first line containing ``text`` printed after ``after`` arrived."""
    while True:
        arrived, line = lines.get(timeout=120)
        if text in line and arrived > after:
            return arrived


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--edits", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="model-trace-site-") as folder:
        site = copy_site(Path(folder) / "site", fences=True)
        baseline = copy_site(Path(folder) / "baseline", fences=False)
        cold = build(site)
        warm = statistics.median(build(site) for _ in range(args.repeat))
        plain = statistics.median(build(baseline) for _ in range(args.repeat))
        served = serve_rebuilds(site, args.edits)
        served_plain = serve_rebuilds(baseline, args.edits)
    print(f"machine: {os.cpu_count()} CPUs, python {sys.version.split()[0]}")
    print(f"cold build (empty cache):          {cold:6.2f} s")
    print(f"warm build (all cached), median:   {warm:6.2f} s")
    print(f"baseline (fences as plain code):   {plain:6.2f} s")
    print(f"warm overhead over baseline:       {warm - plain:6.2f} s")
    for index, what in enumerate(("edit to reload", "rebuild (change seen to reload)")):
        ours = statistics.median(t[index] for t in served)
        plain = statistics.median(t[index] for t in served_plain)
        print(f"serve, page without fences, {what}, median: {ours:.2f} s "
              f"(baseline {plain:.2f} s)")


if __name__ == "__main__":
    main()
