"""Shared fixtures: building real MkDocs sites in temporary folders."""

from __future__ import annotations

import sys
import textwrap
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from folded_graph_checks import assert_sound_folded_graph
from mkdocs.commands.build import build
from mkdocs.config import load_config

from model_trace.graph import Graph

SiteBuilder = Callable[..., Path]

SLOW_MARKERS = ("slow", "browser")
"""Tests that run only with ``--slow`` (or when ``-m`` selects them): the whole docs site, the
browser, the 671B model, Triton's interpreter, the Hugging Face cross-checks."""
SLOW_FILES = {
    "test_kernels_triton.py": "Triton's interpreter runs the FP8 kernels on the CPU",
    "test_deepseek_v3_hf.py": "cross-checks against Hugging Face's DeepSeek-V3",
    "test_docs_site.py": "builds the whole docs site",
    "test_deepseek_v3_forward.py": "runs DeepSeek-V3's forward for real on the CPU",
}
"""Test files that are slow as a whole (marked here, so their owners' files stay as they are)."""
SLOW_FIXTURES = {"traced_671b": "traces the 671B model"}
SLOW_TESTS = {"test_triton_kernels_in_interpreter": "runs test_kernels_triton.py under "
              "Triton's interpreter"}


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--slow", action="store_true", default=False,
                     help="also run the slow tests (marked slow or browser); CI runs them")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if (item.path.name in SLOW_FILES or getattr(item, "originalname", "") in SLOW_TESTS
                or SLOW_FIXTURES.keys() & set(getattr(item, "fixturenames", ()))):
            item.add_marker(pytest.mark.slow)
    if config.getoption("--slow") or "slow" in (config.option.markexpr or ""):
        return
    skip = pytest.mark.skip(reason="slow: run with --slow")
    for item in items:
        if any(item.get_closest_marker(name) for name in SLOW_MARKERS):
            item.add_marker(skip)

TINY_MODELS = '''\
"""Models for tests; building one appends a line to BUILD_LOG, so tests can count traces."""
import os
import time

import torch
from torch import nn

BUILD_LOG = {log!r}


class Tiny(nn.Module):
    def __init__(self, width: int = 8, sleep_s: float = 0.0) -> None:
        super().__init__()
        self.proj = nn.Linear(width, width)
        self.sleep_s = sleep_s
        with open(BUILD_LOG, "a") as log:
            log.write(f"{{type(self).__name__}} {{width}}\\n")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.sleep_s:
            start = time.time()
            with open(BUILD_LOG, "a") as log:
                log.write(f"sleeping {{os.getpid()}}\\n")
            time.sleep(self.sleep_s)
            with open(BUILD_LOG, "a") as log:
                log.write(f"slept {{os.getpid()}} {{start}} {{time.time()}}\\n")
        return torch.relu(self.proj(x))


def make_inputs() -> list[torch.Tensor]:
    return [torch.empty(3, 8, device="meta")]


class Misbehaving(nn.Module):
    """Ends its trace the way ``how`` says: sys.exit, os._exit, interrupt, loop (forever)."""

    def __init__(self, how: str, code: int = 3) -> None:
        super().__init__()
        self.how, self.code = how, code

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with open(BUILD_LOG, "a") as log:
            log.write(f"misbehaving {{os.getpid()}}\\n")
        if self.how == "sys.exit":
            raise SystemExit(self.code)
        if self.how == "os._exit":
            os._exit(self.code)
        if self.how == "interrupt":
            raise KeyboardInterrupt
        while self.how == "loop":
            time.sleep(0.05)
        return x
'''


@pytest.fixture
def build_site(tmp_path: Path) -> SiteBuilder:
    """Write ``pages`` (name -> Markdown) and a mkdocs.yml, build, return the site folder.

    ``plugin`` holds the model-trace options; ``theme`` is a theme name ("mkdocs",
    "material") or a mapping. Calling it again rebuilds the same project (pages are added or
    replaced), as a second ``mkdocs build`` would.
    """

    def _build(pages: dict[str, str], *, strict: bool = False, plugin: dict | None = None,
               theme: str | dict = "mkdocs", extra: dict | None = None) -> Path:
        docs = tmp_path / "docs"
        docs.mkdir(exist_ok=True)
        for name, text in pages.items():
            (docs / name).parent.mkdir(parents=True, exist_ok=True)
            (docs / name).write_text(textwrap.dedent(text), encoding="utf-8")
        config = {
            "site_name": "test",
            "theme": theme,
            "markdown_extensions": ["admonition", "pymdownx.superfences",
                                    {"pymdownx.tabbed": {"alternate_style": True}}],
            "plugins": [{"model-trace": plugin or {}}],
            **(extra or {}),
        }
        config_file = tmp_path / "mkdocs.yml"
        config_file.write_text(yaml.safe_dump(config), encoding="utf-8")
        loaded = load_config(str(config_file), strict=strict)
        build(loaded)
        return Path(loaded.site_dir)

    return _build


@dataclass(frozen=True)
class TinyModels:
    """A model package written for one test: its module file and its build log."""

    source: Path
    log: Path

    def builds(self) -> list[str]:
        """One line per model built (in any process) since the package was written."""
        return self.log.read_text(encoding="utf-8").splitlines()


@pytest.fixture
def tiny_models(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> TinyModels:
    """A package ``tiny_models`` on sys.path (and so on the trace workers')."""
    root = tmp_path / "models"
    package = root / "tiny_models"
    package.mkdir(parents=True)
    log = tmp_path / "build_log.txt"
    log.touch()
    source = package / "__init__.py"
    source.write_text(TINY_MODELS.format(log=str(log)), encoding="utf-8")
    monkeypatch.syspath_prepend(str(root))
    monkeypatch.delitem(sys.modules, "tiny_models", raising=False)  # an earlier test's, if any
    return TinyModels(source, log)


@pytest.fixture(autouse=True)
def folded_graphs_are_sound(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every graph ``fold_repeats`` returns during a test passes ``folded_graph_checks``
    (wherever the package imported it from)."""
    from model_trace.tracing import folding

    original = folding.fold_repeats

    def checked(graph: Graph, *args: Any) -> Graph:
        folded = original(graph, *args)
        assert_sound_folded_graph(folded)
        return folded

    for name, module in list(sys.modules.items()):
        if name.startswith("model_trace") and getattr(module, "fold_repeats", None) is original:
            monkeypatch.setattr(module, "fold_repeats", checked)


@pytest.fixture(autouse=True)
def own_shared_traces(tmp_path_factory: pytest.TempPathFactory,
                      monkeypatch: pytest.MonkeyPatch) -> Path:
    """A folder of traces shared between sites (``cache.SharedTraces``) for each test alone:
    no test reads another's traces, or the user's."""
    folder = tmp_path_factory.mktemp("shared-traces")
    monkeypatch.setenv("MODEL_TRACE_CACHE_DIR", str(folder))
    return folder
