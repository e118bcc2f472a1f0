"""Browser fixtures: headless Chromium (Debian's ``chromium``) driven by Playwright, and sites
served from 127.0.0.1.

Tests that use ``browser`` (or ``open_page``) are skipped when ``chromium`` is not installed,
except when the ``CI`` environment variable is set: then a missing browser is a failure, so a
CI image without it cannot pass silently. Playwright's own browser download is not used.
"""

from __future__ import annotations

import functools
import http.server
import os
import shutil
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
LOCAL_HOSTS = frozenset({"127.0.0.1", "localhost"})
LOCAL_SCHEMES = frozenset({"data", "blob", "about"})


def chromium_executable() -> str:
    """Path of Debian's chromium; skips the test without it (fails instead when CI is set)."""
    found = shutil.which("chromium")
    if found is None:
        message = "chromium is not installed (apt-get install chromium); browser tests need it"
        if os.environ.get("CI"):
            pytest.fail(message + " and CI is set", pytrace=False)
        pytest.skip(message)
    return found


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    """One headless Chromium for the whole session."""
    executable = chromium_executable()
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        if os.environ.get("CI"):
            pytest.fail("playwright is not installed and CI is set", pytrace=False)
        pytest.skip("playwright is not installed (pip install playwright)")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        yield launched
        launched.close()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture(scope="session")
def serve() -> Iterator[Callable[[Path], str]]:
    """``serve(folder)`` -> base URL of a local HTTP server for that folder (one per folder)."""
    servers: dict[Path, http.server.ThreadingHTTPServer] = {}

    def _serve(folder: Path) -> str:
        folder = Path(folder).resolve()
        if folder not in servers:
            handler = functools.partial(_QuietHandler, directory=str(folder))
            server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
            threading.Thread(target=server.serve_forever, daemon=True).start()
            servers[folder] = server
        return f"http://127.0.0.1:{servers[folder].server_address[1]}/"

    yield _serve
    for server in servers.values():
        server.shutdown()
        server.server_close()


@dataclass
class PageProblems:
    """What went wrong while a page was open: console errors, page errors, foreign requests."""

    console_errors: list[str] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)
    foreign_requests: list[str] = field(default_factory=list)
    dialogs: list[str] = field(default_factory=list)

    def assert_clean(self) -> None:
        assert not self.foreign_requests, f"requests to other origins: {self.foreign_requests}"
        assert not self.page_errors, f"uncaught errors: {self.page_errors}"
        assert not self.console_errors, f"console errors: {self.console_errors}"
        assert not self.dialogs, f"dialogs opened (injected script?): {self.dialogs}"


def _is_local(url: str) -> bool:
    parts = urlsplit(url)
    return parts.scheme in LOCAL_SCHEMES or parts.hostname in LOCAL_HOSTS


@pytest.fixture
def open_page(browser: Any) -> Iterator[Callable[..., Any]]:
    """``open_page(url, **context_options)`` -> a Playwright page in a fresh context.

    ``foreign_scripts_ok`` names scripts (theme files) whose own uncaught errors are not the
    test's concern, e.g. the mkdocs theme's ``darkmode.js`` without highlight.js.

    Every request is routed: anything not on 127.0.0.1 is aborted and recorded, so a test
    fails if a page reaches another origin. ``page.problems`` (``PageProblems``) collects
    console errors, uncaught exceptions and dialogs; call ``page.problems.assert_clean()``.
    """
    contexts: list[Any] = []

    def _open(url: str, *, foreign_scripts_ok: tuple[str, ...] = (), **context_options: Any) -> Any:
        context = browser.new_context(**{"viewport": {"width": 1200, "height": 900},
                                         **context_options})
        contexts.append(context)
        problems = PageProblems()

        def route(request_route: Any) -> None:
            url = request_route.request.url
            if _is_local(url):
                request_route.continue_()
            else:
                problems.foreign_requests.append(url)
                request_route.abort()

        context.route("**/*", route)
        page = context.new_page()
        page.problems = problems
        page.on("console", lambda message: problems.console_errors.append(message.text)
                if message.type == "error" else None)
        def on_error(error: Any) -> None:
            stack = getattr(error, "stack", "") or ""
            if not any(script in stack for script in foreign_scripts_ok):
                problems.page_errors.append(f"{error}\n{stack}")

        page.on("pageerror", on_error)

        def on_dialog(dialog: Any) -> None:
            problems.dialogs.append(dialog.message)
            dialog.dismiss()

        page.on("dialog", on_dialog)
        page.goto(url)
        return page

    yield _open
    for context in contexts:
        context.close()
