"""The viewer's files (script, stylesheet, vendored libraries) as a site ships them.

Every front end that writes a site puts them under ``ASSET_DIR``: the MkDocs plugin as
generated files, the Markdown extension straight into Zensical's output folder.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from model_trace.cache import write_atomic

ASSET_DIR = "assets/model-trace"
"""Where the viewer's files go, relative to the site's root."""


def asset_names() -> list[str]:
    """The viewer's files, relative to the package's ``assets`` folder; scripts load in name
    order. Files in subfolders (``vendor/``) are shipped but not linked: the viewer loads them
    itself when it needs them."""
    package = resources.files("model_trace") / "assets"
    names: list[str] = []
    folders = [(package, "")]
    while folders:
        folder, prefix = folders.pop()
        for entry in folder.iterdir():
            if entry.is_file():
                names.append(prefix + entry.name)
            elif entry.is_dir() and not entry.name.startswith(("_", ".")):
                folders.append((entry, f"{prefix}{entry.name}/"))
    return sorted(names)


def linked_names() -> list[str]:
    """The files a page links: the top-level scripts and stylesheets."""
    return [name for name in asset_names() if "/" not in name and name.endswith((".js", ".css"))]


def asset_bytes(name: str) -> bytes:
    return (resources.files("model_trace") / "assets").joinpath(*name.split("/")).read_bytes()


def write_assets(site_dir: Path) -> None:
    """Write the viewer's files under ``site_dir / ASSET_DIR`` where they are missing or
    differ."""
    for name in asset_names():
        target = site_dir / ASSET_DIR / name
        data = asset_bytes(name)
        if not target.is_file() or target.read_bytes() != data:
            write_atomic(target, data)
