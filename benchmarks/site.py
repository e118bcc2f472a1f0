"""How long the docs site takes to build, and what the plugin adds: ``python benchmarks/site.py``;
cold builds now and before a commit: ``python benchmarks/site.py --before [COMMIT]``.

Works on a copy of ``docs/`` and ``mkdocs.yml`` in a temporary folder, with real ``mkdocs``
processes, and reports:

- cold: ``mkdocs build`` with an empty cache, the shared one included (every fence traced);
- warm: ``mkdocs build`` again, everything from the disk cache (median of ``--repeat``);
- baseline: the same site with every ```` ```model-trace ```` fence turned into a plain
  ```` ```yaml ```` block, so the plugin has nothing to draw (median of ``--repeat``);
  warm minus baseline is the plugin's overhead on an unchanged site;
- serve: under ``mkdocs serve``, the time from an edit of a page without fences to the
  browsers' reload, and the rebuild alone, with the plugin and for the baseline site.

With ``--before``, cold builds of two sites by this checkout and by an older commit instead.
Two sites, each built by real ``mkdocs build`` processes in a temporary folder:

- ``docs``: the project's own docs site, as each version of the code has it (its ``docs/``
  and ``mkdocs.yml``; the fence count is printed, since the pages differ between versions);
- ``three``: a new site of three pages, one fence each: an encoder layer, the 671B
  DeepSeek-V3 overview and a GPT-2 (124M) from the site's own code (``local_gpt2``).

The code "before" is the tree of ``--before`` (default ``d11edbd``, the commit before "Zoo
builds fast" and early folding), unpacked with ``git archive`` into the temporary folder; a
build runs its package and zoo by putting them first on ``PYTHONPATH``. "now" is this
checkout. For every site and version, one after the other, so that load hits them alike:

- reference: the site with its fences turned into plain YAML blocks (nothing to draw), as
  this checkout has it and built by it for both versions (the older plugin's own start-up
  cost stays out of it): the mean of ``--repeat`` builds before the version's builds and as
  many after them;
- cold: an empty site cache and an empty folder of shared traces (every fence traced);
- shared (now only): a second copy of the site in a new folder, its own cache empty, reading
  the traces the cold build left in the shared folder (what a new site pays for models
  another site on the machine traced). The code before had no shared folder.

Times are wall seconds of the whole ``mkdocs build`` process, and each as a ratio to the
reference built around it; the 1-minute load average at the end of each build is printed
beside it, since these machines are shared.
"""

from __future__ import annotations

import argparse
import io
import os
import queue
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tarfile
import tempfile
import textwrap
import threading
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FENCE = re.compile(r"^([ \t]*(?:`{3,}|~{3,})[ \t]*)model-trace\b", re.M)
QUIET_PAGE = "reference/sphinx-and-cli.md"
"""A page without fences, edited in the serve measurement."""


def copy_site(target: Path, *, fences: bool, source: Path = ROOT) -> Path:
    """The docs site of the tree at ``source`` copied to ``target`` (fences as plain YAML
    blocks unless ``fences``)."""
    target.mkdir(parents=True)
    shutil.copytree(source / "docs", target / "docs")
    shutil.copy(source / "mkdocs.yml", target / "mkdocs.yml")
    if not fences:
        plain_fences(target / "docs")
    return target


def plain_fences(docs: Path) -> None:
    """Turn every model-trace fence under ``docs`` into a plain YAML block."""
    for page in docs.rglob("*.md"):
        page.write_text(FENCE.sub(r"\1yaml", page.read_text(encoding="utf-8")),
                        encoding="utf-8")


def build(project: Path, env: dict[str, str] | None = None) -> float:
    """Wall time of one ``mkdocs build`` process, start to exit (``env``: variables set on
    top of this process's)."""
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "mkdocs", "build", "-q"], cwd=project, check=True,
                   env={**os.environ, "NO_MKDOCS_2_WARNING": "1", **(env or {})})
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


# -- cold builds now and before a commit ----------------------------------------------------
BEFORE = "d11edbd"
THREE_PAGES = {
    "index.md": """\
        # An encoder layer

        ```model-trace
        model: torch.nn:TransformerEncoderLayer
        args: {d_model: 512, nhead: 8, batch_first: true}
        inputs: [[1, 128, 512]]
        ```
        """,
    "deepseek.md": """\
        # DeepSeek-V3

        ```model-trace
        model: deepseek-v3
        config: 671B
        depth: 1
        ```
        """,
    "gpt2.md": """\
        # GPT-2

        ```model-trace
        model: local_gpt2:gpt2
        inputs: local_gpt2:tokens
        ```
        """,
}
LOCAL_GPT2 = '''\
"""GPT-2 small (124M, transformers' default config): the site's own model code."""

import torch
from transformers import GPT2Config, GPT2LMHeadModel


def gpt2() -> torch.nn.Module:
    return GPT2LMHeadModel(GPT2Config()).eval()


def tokens() -> torch.Tensor:
    return torch.arange(128).unsqueeze(0)
'''
THREE_CONFIG = """\
site_name: three figures
theme: mkdocs
markdown_extensions: [pymdownx.superfences]
plugins:
  - model-trace:
      own_roots: [local_gpt2]
"""


@dataclass(frozen=True)
class Version:
    """A version of the code: its name in the table and the tree its package, zoo and docs
    come from."""

    name: str
    root: Path

    def environment(self, shared: Path) -> dict[str, str]:
        """A build of this version, with ``shared`` as the folder of shared traces."""
        python_path = os.pathsep.join([str(self.root / "plugin"), str(self.root)])
        return {"PYTHONPATH": python_path, "MODEL_TRACE_CACHE_DIR": str(shared)}


def check_imports(version: Version) -> None:
    """Stop unless a build of ``version`` imports model-trace and the zoo from its tree (as
    a build does: run outside this checkout)."""
    found = subprocess.run(
        [sys.executable, "-c", "import model_trace, model_zoo; "
         "print(model_trace.__file__); print(model_zoo.__file__)"],
        env={**os.environ, **version.environment(version.root)}, check=True,
        capture_output=True, text=True, cwd=tempfile.gettempdir()).stdout.split()
    if not all(Path(path).is_relative_to(version.root) for path in found):
        raise SystemExit(f"{version.name}: a build would import {found}, not {version.root}")


def unpack(commit: str, target: Path) -> Version:
    """The tree of ``commit`` in ``target``."""
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", commit], check=True,
                             capture_output=True).stdout
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(target, filter="data")
    return Version(f"before {commit}", target)


def three_site(target: Path, *, fences: bool, source: Path = ROOT) -> Path:
    """The three-fence site (``source`` is unused: the site is the same for every version)."""
    (target / "docs").mkdir(parents=True)
    for name, text in THREE_PAGES.items():
        (target / "docs" / name).write_text(textwrap.dedent(text), encoding="utf-8")
    (target / "local_gpt2").mkdir()
    (target / "local_gpt2" / "__init__.py").write_text(LOCAL_GPT2, encoding="utf-8")
    (target / "mkdocs.yml").write_text(THREE_CONFIG, encoding="utf-8")
    if not fences:
        plain_fences(target / "docs")
    return target


SITES = {"docs": copy_site, "three": three_site}


def fence_count(docs: Path) -> int:
    from model_trace.markdown_ext import find_fences

    return sum(len(find_fences(page.read_text(encoding="utf-8").splitlines()))
               for page in docs.rglob("*.md"))


def measure(site: str, version: Version, now: Version, folder: Path,
            repeat: int) -> dict[str, float]:
    """Build one site by one version, printing a row per build: the cold build, (now) a new
    site reading the shared traces, and the reference around them (this checkout's site with
    plain YAML blocks, built by it ``repeat`` times before and after: their mean, so that a
    change of load during the builds weighs on it too). Returns each build's ratio to the
    reference."""
    make = SITES[site]
    work = folder / site / version.name.replace(" ", "-")
    shared = work / "shared"
    plain = make(work / "reference", fences=False)
    builds = {"cold": make(work / "cold", fences=True, source=version.root)}
    if version == now:  # the code before had no shared folder
        builds["shared"] = make(work / "new-site", fences=True, source=version.root)
    label = f"{site} ({fence_count(builds['cold'] / 'docs')} fences)"
    references = [build(plain, now.environment(shared)) for _ in range(repeat)]
    measured = {}
    for kind, project in builds.items():
        measured[kind] = (build(project, version.environment(shared)), os.getloadavg()[0])
    references += [build(plain, now.environment(shared)) for _ in range(repeat)]
    measured["reference"] = (statistics.mean(references), os.getloadavg()[0])
    reference = measured["reference"][0]
    for kind, (seconds, load) in measured.items():
        print(f"{label:<20} {version.name:<15} {kind:<9} {seconds:7.1f} s "
              f"{seconds / reference:6.2f} x  {load:5.1f}", flush=True)
    return {kind: seconds / reference for kind, (seconds, _) in measured.items()}


def compare_versions(before: str, sites: list[str], repeat: int) -> None:
    """Print the cold builds of ``sites`` by the tree of ``before`` and by this checkout."""
    with tempfile.TemporaryDirectory(prefix="model-trace-cold-") as name:
        folder = Path(name)
        old, now = unpack(before, folder / "before-tree"), Version("now", ROOT)
        for version in (old, now):
            check_imports(version)
        print(f"machine: {os.cpu_count()} CPUs, python {sys.version.split()[0]}, load average "
              f"{' '.join(f'{x:.1f}' for x in os.getloadavg())} at the start")
        print(f"{'site':<20} {'version':<15} {'build':<9} {'wall':>9} {'ratio':>8}  load",
              flush=True)
        for site in sites:
            earlier, later = (measure(site, v, now, folder, repeat) for v in (old, now))
            print(f"{site}, ratios to the reference: cold now / cold {old.name} = "
                  f"{later['cold'] / earlier['cold']:.2f}, new site reading shared traces / "
                  f"cold {old.name} = {later['shared'] / earlier['cold']:.2f}", flush=True)
        print(f"load average at the end: {' '.join(f'{x:.1f}' for x in os.getloadavg())}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--edits", type=int, default=5)
    parser.add_argument("--before", nargs="?", const=BEFORE, metavar="COMMIT",
                        help=f"cold builds now and at COMMIT (default {BEFORE}) instead")
    parser.add_argument("--sites", nargs="+", choices=sorted(SITES), default=["three", "docs"],
                        help="the sites --before builds")
    args = parser.parse_args()
    if args.before:
        compare_versions(args.before, args.sites, args.repeat)
        return
    with tempfile.TemporaryDirectory(prefix="model-trace-site-") as folder:
        site = copy_site(Path(folder) / "site", fences=True)
        baseline = copy_site(Path(folder) / "baseline", fences=False)
        alone = {"MODEL_TRACE_CACHE_DIR": str(Path(folder) / "shared")}  # no other site's
        cold = build(site, alone)
        warm = statistics.median(build(site, alone) for _ in range(args.repeat))
        plain = statistics.median(build(baseline, alone) for _ in range(args.repeat))
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
