"""The build cache: what re-traces a fence and what does not, in memory and on disk."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from model_trace.cache import FenceOutput, PackageSource, SourceHasher, TraceCache, cache_key

TINY_FENCE = """\
```model-trace
model: tiny_models:Tiny
inputs: [[3, 8]]
```
"""
PLUGIN = {"allowed_roots": ["tiny_models", "torch"]}
WARM_BUILD_IMPORTS_TORCH = """\
import sys
from mkdocs.commands.build import build
from mkdocs.config import load_config
build(load_config("mkdocs.yml"))
print("torch imported:", "torch" in sys.modules)
"""


def _cache_dir(site: Path) -> Path:
    return site.parent / ".cache/plugin/model-trace"


def _figure(page: Path) -> str:
    html = page.read_text(encoding="utf-8")
    return html[html.index("<figure"):html.index("</figure>")]


def test_unchanged_site_rebuilds_without_tracing(build_site, tiny_models) -> None:
    site = build_site({"index.md": TINY_FENCE}, plugin=PLUGIN)
    assert tiny_models.builds() == ["Tiny 8"]
    first = _figure(site / "index.html")
    build_site({}, plugin=PLUGIN)
    assert tiny_models.builds() == ["Tiny 8"]
    assert _figure(site / "index.html") == first


def test_editing_the_model_source_retraces_only_its_fences(build_site, tiny_models) -> None:
    pages = {"index.md": TINY_FENCE, "other.md": "```model-trace\nmodel: torch.nn:Linear\n"
             "args: {in_features: 8, out_features: 2}\ninputs: [[1, 8]]\n```\n"}
    build_site(pages, plugin=PLUGIN)
    assert tiny_models.builds() == ["Tiny 8"]
    build_site({"other.md": pages["other.md"] + "\nSome new prose.\n"}, plugin=PLUGIN)
    assert tiny_models.builds() == ["Tiny 8"]  # a page edit is not a model edit
    source = tiny_models.source.read_text(encoding="utf-8")
    tiny_models.source.write_text(source.replace("torch.relu", "torch.sigmoid"),
                                  encoding="utf-8")
    site = build_site({}, plugin=PLUGIN)
    assert tiny_models.builds() == ["Tiny 8", "Tiny 8"]
    html = (site / "index.html").read_text(encoding="utf-8")
    assert ">sigmoid</text>" in html and ">relu</text>" not in html  # re-imported, not stale


def test_editing_a_fence_retraces_that_fence(build_site, tiny_models) -> None:
    build_site({"index.md": TINY_FENCE}, plugin=PLUGIN)
    build_site({"index.md": TINY_FENCE.replace("inputs:", "args: {width: 8}\ninputs:")},
               plugin=PLUGIN)
    assert tiny_models.builds() == ["Tiny 8", "Tiny 8"]


def test_cache_dir_holds_entries_and_a_manifest(build_site, tiny_models) -> None:
    site = build_site({"index.md": TINY_FENCE}, plugin=PLUGIN)
    manifest = json.loads((_cache_dir(site) / "manifest.json").read_text())
    (key, about), = manifest["entries"].items()
    assert about == {"model": "tiny_models:Tiny", "origin": "index.md:1"}
    assert (_cache_dir(site) / f"{key}.json").is_file()
    # a fence removed from the site is dropped from the cache by the next full build
    build_site({"index.md": "# No fences any more\n"}, plugin=PLUGIN)
    assert not (_cache_dir(site) / f"{key}.json").exists()


def test_cache_false_traces_every_build(build_site, tiny_models) -> None:
    site = build_site({"index.md": TINY_FENCE}, plugin={**PLUGIN, "cache": False})
    build_site({}, plugin={**PLUGIN, "cache": False})
    assert tiny_models.builds() == ["Tiny 8", "Tiny 8"]
    assert not _cache_dir(site).exists()


def test_damaged_entries_and_leftover_temporaries_are_ignored(tmp_path: Path) -> None:
    cache = TraceCache(tmp_path)
    cache.put("good", FenceOutput("<figure/>", {"png": b"\x89PNG"}), {"origin": "a.md:1"})
    (tmp_path / "bad.json").write_text('{"html": "<fig')  # as if cut off mid-write
    (tmp_path / "good.json.123.456.tmp").write_text("half")
    fresh = TraceCache(tmp_path)
    assert fresh.get("bad") is None and not (tmp_path / "bad.json").exists()
    assert fresh.get("good") == FenceOutput("<figure/>", {"png": b"\x89PNG"})


@pytest.mark.parametrize("entry", [
    {"html": 5, "exports": []},
    {"schema": 1, "key": "k", "about": {}, "html": "<figure/>", "exports": {"png": 5}},
    {"schema": 1, "key": "k", "about": {}, "html": "<figure/>", "exports": {"exe": "AAAA"}},
    {"schema": 1, "key": "k", "about": {}, "html": "<figure/>", "exports": {"png": "not b64!"}},
    {"schema": 1, "key": "other", "about": {}, "html": "<figure/>", "exports": {}},
    {"schema": 99, "key": "k", "about": {}, "html": "<figure/>", "exports": {}},
    [1, 2, 3],
])
def test_entries_of_another_shape_are_misses(tmp_path: Path, entry: object) -> None:
    (tmp_path / "k.json").write_text(json.dumps(entry))
    assert TraceCache(tmp_path).get("k") is None
    assert not (tmp_path / "k.json").exists()


def _mkdocs(project: Path, env: dict[str, str], *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "mkdocs", "build", "-f", str(project / "mkdocs.yml"), *args],
        cwd=project, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        start_new_session=True)


def test_a_killed_build_leaves_a_usable_cache(tmp_path: Path, tiny_models) -> None:
    """Kill a real ``mkdocs build`` while one fence is still tracing; the next build re-uses
    the fence that had finished and traces only the other one."""
    project = tmp_path / "project"
    (project / "docs").mkdir(parents=True)
    (project / "docs/index.md").write_text(TINY_FENCE + "\n" + TINY_FENCE.replace(
        "inputs:", "args: {width: 8, sleep_s: 60}\ninputs:"))
    (project / "mkdocs.yml").write_text(textwrap.dedent("""\
        site_name: killed
        plugins:
          - model-trace:
              allowed_roots: [tiny_models, torch]
        """))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(tiny_models.source.parent.parent), os.environ.get("PYTHONPATH", "")])}
    build = _mkdocs(project, env)
    cache = project / ".cache/plugin/model-trace"
    deadline = time.monotonic() + 60
    while not list(cache.glob("[0-9a-f]*.json")) and time.monotonic() < deadline:
        time.sleep(0.2)
    os.killpg(build.pid, signal.SIGKILL)  # the build and its trace workers
    build.wait()
    assert len(list(cache.glob("[0-9a-f]*.json"))) == 1
    # the sleeping model is fixed; only it traces again
    (project / "docs/index.md").write_text(
        (project / "docs/index.md").read_text().replace("sleep_s: 60", "sleep_s: 0"))
    before = len(tiny_models.builds())
    rebuild = _mkdocs(project, env)
    output, _ = rebuild.communicate(timeout=120)
    assert rebuild.returncode == 0, output
    assert ("2 figures: 1 traced (1 new trace), 0 from the shared cache (0 traces), "
            "1 from the site's cache") in output
    assert len(tiny_models.builds()) == before + 1


def test_unchanged_site_in_a_new_process_reads_the_disk_cache(tmp_path: Path,
                                                              tiny_models) -> None:
    project = tmp_path / "project"
    (project / "docs").mkdir(parents=True)
    (project / "docs/index.md").write_text(TINY_FENCE)
    (project / "mkdocs.yml").write_text(
        "site_name: t\nplugins:\n  - model-trace:\n      allowed_roots: [tiny_models]\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(tiny_models.source.parent.parent), os.environ.get("PYTHONPATH", "")])}
    outputs = [_mkdocs(project, env).communicate(timeout=120)[0] for _ in range(2)]
    assert ("1 figures: 1 traced (1 new trace), 0 from the shared cache (0 traces), "
            "0 from the site's cache") in outputs[0]
    assert ("1 figures: 0 traced (0 new traces), 0 from the shared cache (0 traces), "
            "1 from the site's cache") in outputs[1]
    assert tiny_models.builds() == ["Tiny 8"]
    # what keeps a warm rebuild cheap: the build process never imports torch (only trace
    # workers do), and with every figure cached no worker starts
    check = subprocess.run([sys.executable, "-c", WARM_BUILD_IMPORTS_TORCH], cwd=project, env=env,
                           capture_output=True, text=True, timeout=120)
    assert check.stdout.strip() == "torch imported: False", check.stderr
    assert tiny_models.builds() == ["Tiny 8"]


def test_installed_packages_count_by_version_local_ones_by_content(tiny_models) -> None:
    hasher = SourceHasher()
    torch_source = hasher.package("torch.nn")
    assert torch_source.fingerprint.startswith("torch ") and torch_source.local_path is None
    before = hasher.package("tiny_models")
    assert before.local_path == tiny_models.source.parent
    assert hasher.package("tiny_models") == before
    tiny_models.source.write_text(tiny_models.source.read_text() + "\n# edited\n")
    assert hasher.package("tiny_models").fingerprint != before.fingerprint
    assert hasher.package("no_such_package_here").fingerprint == "missing"


@pytest.mark.parametrize("layout", ["module", "package"])
def test_a_single_file_module_is_hashed_too(tmp_path: Path, monkeypatch, layout: str) -> None:
    if layout == "module":
        (tmp_path / "single_file_model.py").write_text("X = 1\n")
    else:
        (tmp_path / "single_file_model").mkdir()
        (tmp_path / "single_file_model/__init__.py").write_text("X = 1\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    source = SourceHasher().package("single_file_model")
    assert source.local_path is not None and len(source.fingerprint) == 64


def test_the_key_covers_spec_theme_versions_and_sources() -> None:
    spec = {"model": "tiny_models:Tiny", "depth": 1}
    toolchain = "0.1.0|ownsourcehash|torch 2.13.0"
    sources = [PackageSource("tiny_models", "abc")]
    key = cache_key(spec, "auto", toolchain, sources)
    assert key == cache_key(dict(spec), "auto", toolchain, list(sources))
    changed = [
        cache_key({**spec, "depth": 2}, "auto", toolchain, sources),
        cache_key(spec, "dark", toolchain, sources),
        cache_key(spec, "auto", toolchain.replace("0.1.0", "0.2.0"), sources),  # model-trace
        cache_key(spec, "auto", toolchain.replace("torch 2.13.0", "torch 2.14.0"), sources),
        cache_key(spec, "auto", toolchain, [PackageSource("tiny_models", "abd")]),  # an edit
    ]
    assert len({key, *changed}) == 6
