"""Every place a user builds docs: Zensical (Markdown extensions, no MkDocs plugins) and
MkDocs' own `mkdocs` and `readthedocs` themes, each built for real and opened in Chromium."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
import yaml
from mkdocs.commands.build import build
from mkdocs.config import load_config

pytestmark = [pytest.mark.browser, pytest.mark.slow]

FENCE = textwrap.dedent("""\
    ```model-trace
    model: torch.nn:TransformerEncoderLayer
    args: {d_model: 32, nhead: 4, dim_feedforward: 64, batch_first: true}
    inputs: [[2, 8, 32]]
    export: [svg]
    ```
    """)
BAD = "# Bad\n\n```model-trace\nmodel: torch.nn:Linear\ncolour: red\n```\n"
ZENSICAL_CONFIG = {
    "site_name": "zensical test",
    "theme": {"font": False},  # no request to Google Fonts: the site works offline
    "extra_css": ["assets/model-trace/viewer.css"],
    "extra_javascript": ["assets/model-trace/viewer.js"],
    "markdown_extensions": ["admonition", "pymdownx.superfences", "model_trace.markdown_ext"],
}


def _zensical(project: Path) -> subprocess.CompletedProcess[str]:
    """``zensical build --clean`` in ``project``, as a user runs it (the script next to this
    interpreter, or ``python -m zensical``)."""
    script = Path(sys.executable).with_name("zensical")
    command = [str(script)] if script.is_file() else [sys.executable, "-m", "zensical"]
    python_path = os.pathsep.join([str(Path(__file__).parents[2] / "plugin"),
                                   os.environ.get("PYTHONPATH", "")])
    return subprocess.run([*command, "build", "--clean"], cwd=project, capture_output=True,
                          text=True, timeout=600, env={**os.environ, "PYTHONPATH": python_path})


def _project(root: Path, pages: dict[str, str], config: dict[str, Any]) -> Path:
    (root / "docs").mkdir(parents=True)
    for name, text in pages.items():
        (root / "docs" / name).parent.mkdir(parents=True, exist_ok=True)
        (root / "docs" / name).write_text(text, encoding="utf-8")
    (root / "mkdocs.yml").write_text(yaml.safe_dump(config), encoding="utf-8")
    return root


@pytest.fixture(scope="module")
def zensical_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if shutil.which("zensical") is None and not Path(sys.executable).with_name(
            "zensical").is_file():
        pytest.fail("zensical is not installed (pip install -e '.[test]')")
    nested = "# Nested\n\n!!! note\n\n" + textwrap.indent(FENCE, "    ")
    project = _project(tmp_path_factory.mktemp("zensical"),
                       {"index.md": "# Zensical\n\n" + FENCE, "guide/page.md": nested},
                       ZENSICAL_CONFIG)
    result = _zensical(project)
    assert result.returncode == 0, result.stdout + result.stderr
    return project / "site"


def test_zensical_ships_the_viewer_and_the_exports(zensical_site: Path) -> None:
    assert (zensical_site / "assets/model-trace/viewer.js").is_file()
    assert (zensical_site / "assets/model-trace/viewer.css").is_file()
    assert (zensical_site / "model-trace-1.svg").read_bytes().startswith(b"<svg")
    assert (zensical_site / "guide/page/model-trace-1.svg").is_file()
    assert '<figure class="model-trace"' in (zensical_site / "guide/page/index.html").read_text()


def test_a_bad_fence_fails_a_zensical_build_naming_page_and_line(tmp_path: Path) -> None:
    project = _project(tmp_path, {"index.md": "# Fine\n", "bad.md": BAD}, ZENSICAL_CONFIG)
    result = _zensical(project)
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert "model-trace: bad.md:5: unknown field 'colour'" in output


def _colours(page: Any, figure: str = "model-trace-1") -> dict[str, float]:
    """Brightness (0 dark .. 1 light) of the page's background and of the figure's canvas."""
    return page.evaluate("""(figure) => {
        const brightness = (element) => {
            let node = element;
            while (node) {
                const colour = getComputedStyle(node).backgroundColor;
                const parts = colour.match(/[\\d.]+/g) || [];
                if (parts.length >= 3 && (parts.length < 4 || parseFloat(parts[3]) > 0)) {
                    const [r, g, b] = parts.map(Number);
                    return (0.299 * r + 0.587 * g + 0.114 * b) / 255;
                }
                node = node.parentElement;
            }
            return 1;  // nothing painted: the canvas of a light page
        };
        const canvas = document.querySelector(`#${figure} .mt-canvas`);
        return {page: brightness(canvas.closest('figure').parentElement),
                figure: brightness(canvas)};
    }""", figure)


def _toolbar_fits(page: Any, figure: str = "model-trace-1") -> None:
    box = page.locator(f"#{figure}").bounding_box()
    toolbar = page.locator(f"#{figure} .mt-toolbar")
    bar = toolbar.bounding_box()
    assert bar is not None and box is not None
    assert bar["x"] >= box["x"] - 1 and bar["x"] + bar["width"] <= box["x"] + box["width"] + 1
    hidden = toolbar.evaluate("t => t.scrollWidth - t.clientWidth")
    assert hidden <= 0, f"{hidden} px of the toolbar's controls are scrolled out of sight"
    buttons = toolbar.locator(".mt-btn")
    assert buttons.count() >= 3
    for index in range(buttons.count()):
        button = buttons.nth(index).bounding_box()
        assert button is not None and button["height"] < 48, "a toolbar button is squashed"


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_zensical_site_in_chromium(zensical_site: Path, serve, open_page, scheme: str) -> None:
    page = open_page(serve(zensical_site) + "guide/page/", color_scheme=scheme,
                     viewport={"width": 1280, "height": 800})
    page.wait_for_selector("#model-trace-1[data-mt-ready]")
    _toolbar_fits(page)
    colours = _colours(page)
    assert abs(colours["page"] - colours["figure"]) < 0.5, colours
    page.problems.assert_clean()


@pytest.fixture(scope="module")
def theme_sites(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    sites = {}
    for theme in ({"name": "mkdocs", "highlightjs": False, "color_mode": "auto"},
                  {"name": "readthedocs", "highlightjs": False}):
        root = _project(tmp_path_factory.mktemp(theme["name"]), {"index.md": "# G\n\n" + FENCE},
                        {"site_name": "themes", "theme": theme,
                         "markdown_extensions": ["pymdownx.superfences"],
                         "plugins": [{"model-trace": {"cache": False}}]})
        config = load_config(str(root / "mkdocs.yml"), strict=True)
        build(config)
        sites[theme["name"]] = Path(config.site_dir)
    return sites


@pytest.mark.parametrize("scheme", ["light", "dark"])
@pytest.mark.parametrize("theme", ["mkdocs", "readthedocs"])
def test_mkdocs_default_themes_in_chromium(theme_sites: dict[str, Path], serve, open_page,
                                           theme: str, scheme: str) -> None:
    """The toolbar fits the figure; a theme without dark mode (readthedocs) keeps a light
    figure on its light page when the system prefers dark; mkdocs's own follows the page."""
    page = open_page(serve(theme_sites[theme]), color_scheme=scheme,
                     viewport={"width": 1280, "height": 800},
                     foreign_scripts_ok=("darkmode.js", "theme.js", "theme_extra.js"))
    page.wait_for_selector("#model-trace-1[data-mt-ready]")
    _toolbar_fits(page)
    colours = _colours(page)
    assert abs(colours["page"] - colours["figure"]) < 0.5, colours
    if theme == "readthedocs":
        assert colours["page"] > 0.5, "readthedocs has no dark mode: its page stays light"
