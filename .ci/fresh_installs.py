"""Install the package the ways users do, each into an environment of its own, and build a
small site with each from a shell where that environment is not activated.

    python .ci/fresh_installs.py              # every way; exits 1 if one fails
    python .ci/fresh_installs.py uv-tool pipx  # some of them

The ways: ``uv pip install`` into a fresh ``uv venv``; ``uv tool install mkdocs --with`` the
package; ``uv run --with`` the package; ``pipx install mkdocs`` + ``pipx inject``; and the
``model-trace`` command from ``uv tool install`` and ``pipx install`` of the package. Each
site is built with ``mkdocs build --strict`` and PATH holding only the system's folders, and
must show its figure; each ``model-trace render`` must write an SVG. Nothing outside a temporary
folder is changed: uv and pipx themselves are installed into a virtual environment there.

Needs the package registries (PyPI) only. torch is the build already installed here (on this
project's machines a CPU wheel on disk; ``pip download`` fetches it the way pip is configured),
so no environment pulls the CUDA build.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch

CHECKOUT = Path(__file__).resolve().parents[1]
FENCE = """\
# Fresh install

```model-trace
model: torch.nn:Linear
args: {in_features: 8, out_features: 4}
inputs: [[3, 8]]
```
"""
MKDOCS_YML = "site_name: fresh\nmarkdown_extensions: [pymdownx.superfences]\nplugins:\n" \
             "  - model-trace\n"
SPEC = "model: torch.nn:Linear\nargs: {in_features: 8, out_features: 4}\ninputs: [[3, 8]]\n"
BARE_PATH = "/usr/bin:/bin"
"""PATH of a shell where no environment is activated."""
NETWORK_SETTINGS = {"SSL_CERT_FILE", "SSL_CERT_DIR", "REQUESTS_CA_BUNDLE", "HTTP_PROXY",
                    "HTTPS_PROXY", "NO_PROXY", "ALL_PROXY"}
"""Variables (any case) that tell the installers how to reach the registries: kept."""


class Installs:
    """The temporary folder, the installers in it, and the environment variables that keep
    uv's and pipx's homes, caches and command folders inside it."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.bin = root / "bin"
        self.env = {
            "HOME": str(root / "home"), "PATH": BARE_PATH,
            "UV_CACHE_DIR": str(root / "uv-cache"), "UV_TOOL_DIR": str(root / "uv-tools"),
            "UV_TOOL_BIN_DIR": str(self.bin), "UV_PYTHON": sys.executable,
            "UV_PYTHON_DOWNLOADS": "never", "PIPX_HOME": str(root / "pipx"),
            "PIPX_BIN_DIR": str(self.bin), "PIPX_DEFAULT_PYTHON": sys.executable,
        }
        self.env.update({k: v for k, v in os.environ.items()
                         if k.startswith("PIP_") or k.upper() in NETWORK_SETTINGS})
        tools = root / "tools"
        run([sys.executable, "-m", "venv", str(tools)])
        run([str(tools / "bin/pip"), "install", "--quiet", "uv", "pipx"])
        self.uv = str(tools / "bin/uv")
        self.pipx = str(tools / "bin/pipx")
        run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps",
             f"torch=={torch.__version__}", "-d", str(root / "wheels")])
        (self.torch,) = (root / "wheels").glob("torch-*.whl")

    def run(self, *command: str | Path, cwd: Path | None = None) -> str:
        """Run a command with nothing activated (PATH: the system's folders only)."""
        return run([str(c) for c in command], env=self.env, cwd=cwd)

    def site(self, name: str) -> Path:
        """A new small MkDocs project with one fence."""
        folder = self.root / "sites" / name
        (folder / "docs").mkdir(parents=True)
        (folder / "docs/index.md").write_text(FENCE, encoding="utf-8")
        (folder / "mkdocs.yml").write_text(MKDOCS_YML, encoding="utf-8")
        return folder


def run(command: list[str], **options: object) -> str:
    result = subprocess.run(command, capture_output=True, text=True, timeout=1200,
                            **options)  # type: ignore[call-overload]
    if result.returncode != 0:
        raise Failed(f"{' '.join(command)} exited {result.returncode}:\n"
                     f"{result.stdout[-3000:]}{result.stderr[-3000:]}")
    return result.stdout + result.stderr


class Failed(Exception):
    """A command failed or its result lacked what it should hold."""


def check_site(folder: Path) -> None:
    page = (folder / "site/index.html").read_text(encoding="utf-8")
    if '<figure class="model-trace"' not in page:
        raise Failed(f"{folder}/site/index.html has no figure")
    if not list((folder / "site").rglob("viewer.js")):
        raise Failed(f"{folder}/site has no viewer script")


def check_render(installs: Installs, command: Path) -> None:
    spec = installs.root / "linear.yml"
    spec.write_text(SPEC, encoding="utf-8")
    out = installs.root / f"linear-{command.parent.parent.name}.svg"
    installs.run(command, "render", spec, "-o", out)
    if not out.read_text(encoding="utf-8").startswith("<svg"):
        raise Failed(f"{command} render wrote no SVG")


def uv_pip(installs: Installs) -> None:
    venv = installs.root / "venv-uv"
    installs.run(installs.uv, "venv", "--quiet", venv)
    installs.run(installs.uv, "pip", "install", "--quiet", "--python", venv / "bin/python",
                 installs.torch, CHECKOUT)
    site = installs.site("uv-pip")
    installs.run(venv / "bin/mkdocs", "build", "--strict", cwd=site)
    check_site(site)
    check_render(installs, venv / "bin/model-trace")


def uv_tool(installs: Installs) -> None:
    installs.run(installs.uv, "tool", "install", "--quiet", "mkdocs", "--with", CHECKOUT,
                 "--with", installs.torch)
    site = installs.site("uv-tool")
    installs.run(installs.bin / "mkdocs", "build", "--strict", cwd=site)
    check_site(site)
    installs.run(installs.uv, "tool", "install", "--quiet", CHECKOUT, "--with", installs.torch)
    check_render(installs, installs.bin / "model-trace")


def uv_run(installs: Installs) -> None:
    site = installs.site("uv-run")
    installs.run(installs.uv, "run", "--quiet", "--no-project", "--with", CHECKOUT, "--with",
                 installs.torch, "mkdocs", "build", "--strict", cwd=site)
    check_site(site)


def pipx(installs: Installs) -> None:
    installs.run(installs.pipx, "install", "mkdocs")
    installs.run(installs.pipx, "inject", "mkdocs", installs.torch, CHECKOUT)
    site = installs.site("pipx")
    installs.run(installs.bin / "mkdocs", "build", "--strict", cwd=site)
    check_site(site)
    installs.run(installs.pipx, "install", "--force", "--preinstall", installs.torch, CHECKOUT)
    check_render(installs, installs.bin / "model-trace")


WAYS: dict[str, Callable[[Installs], None]] = {
    "uv-pip": uv_pip, "uv-tool": uv_tool, "uv-run": uv_run, "pipx": pipx}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("ways", nargs="*", metavar="WAY",
                        help=f"which ways to try: {', '.join(WAYS)} (default: all)")
    options = parser.parse_args(argv)
    unknown = sorted(set(options.ways) - WAYS.keys())
    if unknown:
        parser.error(f"unknown way(s) {', '.join(unknown)}; choose from {', '.join(WAYS)}")
    failed = 0
    with tempfile.TemporaryDirectory(prefix="fresh-installs-") as folder:
        started = time.perf_counter()
        installs = Installs(Path(folder))
        print(f"uv and pipx installed, torch {torch.__version__} fetched: "
              f"{time.perf_counter() - started:.0f} s", flush=True)
        for name in options.ways or WAYS:
            started = time.perf_counter()
            try:
                WAYS[name](installs)
            except Failed as failure:
                failed += 1
                print(f"{name}: FAILED: {failure}", flush=True)
            else:
                print(f"{name}: ok ({time.perf_counter() - started:.0f} s)", flush=True)
        started = time.perf_counter()
    print(f"removing the environments: {time.perf_counter() - started:.0f} s", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
