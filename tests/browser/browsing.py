"""A real browser for the course's tests: headless Chromium, driven by Playwright for Python.

Playwright never downloads a browser here: it drives the system's Chromium (Debian's
``chromium`` package, or ``$SLOTLAB_CHROMIUM``). Where there is no Chromium, no Playwright or no
built site, these tests skip with a one-line reason, except with ``SLOTLAB_REQUIRE_BROWSER=1``
(CI), where that is a failure. ``make browser`` builds the site first and runs them.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import pytest

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

ROOT = Path(__file__).resolve().parents[2]
BOOK = ROOT / "build" / "book"
ARTIFACTS = ROOT / "build" / "artifacts"
VIEWPORT = {"width": 1280, "height": 800}


def require_browser() -> bool:
    """True where a missing browser must fail the run (CI sets SLOTLAB_REQUIRE_BROWSER=1)."""
    return os.environ.get("SLOTLAB_REQUIRE_BROWSER", "") not in ("", "0")


def unavailable(reason: str) -> NoReturn:
    """Skip with ``reason``, or fail with it where the browser tests are required."""
    if require_browser():
        pytest.fail(f"SLOTLAB_REQUIRE_BROWSER is set but: {reason}", pytrace=False)
    pytest.skip(reason)


def chromium_executable() -> str:
    """The system Chromium: ``$SLOTLAB_CHROMIUM``, else ``chromium`` on PATH."""
    explicit = os.environ.get("SLOTLAB_CHROMIUM")
    if explicit:
        if not os.access(explicit, os.X_OK):
            unavailable(f"SLOTLAB_CHROMIUM={explicit!r} is not an executable; fix or unset it")
        return explicit
    for name in ("chromium", "chromium-browser"):
        found = shutil.which(name)
        if found:
            return found
    unavailable("no chromium on PATH (Debian: sudo apt-get install chromium)")


class PageLog:
    """What a page said that a reader would not want: console errors, uncaught exceptions,
    requests that failed, and any request that left this machine."""

    def __init__(self, page: Page, local: tuple[str, ...]) -> None:
        self.problems: list[str] = []
        self._local = local
        page.on("console", self._console)
        page.on("pageerror", lambda exc: self.problems.append(f"uncaught: {exc}"))
        page.on("requestfailed", self._failed)
        page.on("request", self._request)

    def _console(self, message: Any) -> None:
        if message.type == "error":
            self.problems.append(f"console error: {message.text} ({message.location})")

    def _failed(self, request: Any) -> None:
        self.problems.append(f"request failed: {request.url} ({request.failure})")

    def _request(self, request: Any) -> None:
        if not request.url.startswith(self._local):
            self.problems.append(f"request off this machine: {request.url}")

    def take(self) -> list[str]:
        """The problems seen since the last call."""
        seen, self.problems = self.problems, []
        return seen


def new_page(browser: Browser, local: tuple[str, ...]) -> tuple[Page, PageLog]:
    """A fresh page whose log counts any request to a URL not starting with ``local``.

    Requests are watched, not routed: routing every one through Python would slow each page
    several-fold, and the failure is the same (a test fails naming the URL).
    """
    context = browser.new_context(viewport=VIEWPORT)  # type: ignore[arg-type]
    page = context.new_page()
    return page, PageLog(page, local)
