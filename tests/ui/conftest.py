"""A real headless Chromium driven by Playwright (the system browser; nothing is downloaded)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from ui.seed import seed
from ui.server import CHROMIUM, CHROMIUM_FLAGS, INSTALL_HINT


@pytest.fixture(scope="module")
def chromium():
    """A headless Chromium (the system one; nothing is downloaded). Skips, saying what to install, where absent."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip(f"playwright is not installed: {INSTALL_HINT}")
    if not (Path(CHROMIUM).exists() or shutil.which(CHROMIUM)):
        pytest.skip(f"{CHROMIUM} not found: {INSTALL_HINT}")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS, headless=True, timeout=60_000)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def db(tmp_path: Path) -> Path:
    """A store seeded with the UI tests' prompts, nights and review items (``ui.seed``), in this test's own folder."""
    path = tmp_path / "ui.db"
    seed(path)
    return path
