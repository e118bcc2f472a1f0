"""The viewer's files as a site ships them: ``viewer.css`` and ``viewer.js``.

The viewer's source is split by role in ``assets/viewer/`` (text widths, state, layout,
render, panels, interaction: classic scripts, since a site opened from ``file://`` cannot
load ES modules); a site ships them as one ``viewer.js``, concatenated in name order, so a
page makes one request. The build-time engine (``engine``) loads the first four alone.

Every front end that writes a site puts the files under ``ASSET_DIR``: the MkDocs plugin as
generated files, the Markdown extension straight into Zensical's output folder, the Sphinx
extension into ``_static``, ``model-trace render`` inline in its page.
"""

from __future__ import annotations

from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path

from model_trace.cache import write_atomic
from model_trace.dataviews.palette import stylesheet

ASSET_DIR = "assets/model-trace"
"""Where the viewer's files go, relative to the site's root."""
VIEWER_STYLE = "viewer.css"
VIEWER_SCRIPT = "viewer.js"


def _assets() -> Traversable:
    return resources.files("model_trace") / "assets"


def viewer_modules() -> list[tuple[str, str]]:
    """(file name, source) of each module of the viewer, in load order."""
    folder = _assets() / "viewer"
    entries = sorted((e for e in folder.iterdir() if e.name.endswith(".js")),
                     key=lambda e: e.name)
    return [(e.name, e.read_text(encoding="utf-8")) for e in entries]


def asset_names() -> list[str]:
    """The files a site ships and every page links, stylesheet first."""
    return [VIEWER_STYLE, VIEWER_SCRIPT]


def linked_names() -> list[str]:
    """The files a page links (all of them)."""
    return asset_names()


def asset_bytes(name: str) -> bytes:
    if name == VIEWER_SCRIPT:
        return "".join(f"/* --- {module} --- */\n{source}"
                       for module, source in viewer_modules()).encode("utf-8")
    styles = sorted((e for e in (_assets() / "viewer").iterdir() if e.name.endswith(".css")),
                    key=lambda e: e.name)  # the data views' rules, after the viewer's
    return ((_assets() / name).read_bytes() + b"".join(e.read_bytes() for e in styles)
            + stylesheet().encode("utf-8"))  # and their colours, from their one table


def write_assets(site_dir: Path) -> None:
    """Write the viewer's files under ``site_dir / ASSET_DIR`` where they are missing or
    differ."""
    for name in asset_names():
        target = site_dir / ASSET_DIR / name
        data = asset_bytes(name)
        if not target.is_file() or target.read_bytes() != data:
            write_atomic(target, data)
