"""Fixtures of the browser tests: one headless Chromium per session, and where screenshots go.

Where there is no Chromium or no Playwright these tests skip with a one-line reason, except with
``SLOTLAB_REQUIRE_BROWSER=1`` (CI), where that is a failure (browsing.py says how).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from browsing import ARTIFACTS, chromium_executable, unavailable

if TYPE_CHECKING:
    from playwright.sync_api import Browser


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    """Headless Chromium, shared by the session's tests."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        unavailable("no Playwright for Python (pip install -e '.[book]')")
    executable = chromium_executable()
    # Chromium's sandbox refuses to start as root (CI runs as root); anyone else keeps it.
    # A container's /dev/shm is often 64 MB, too small for a page's renderer: use /tmp.
    args = ["--disable-dev-shm-usage"] + (["--no-sandbox"] if os.geteuid() == 0 else [])
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=executable, args=args)
        yield chromium
        chromium.close()



@pytest.fixture(scope="session")
def artifacts() -> Path:
    """Where screenshots go (build/artifacts/, kept by CI)."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS
