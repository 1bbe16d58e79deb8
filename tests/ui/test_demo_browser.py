"""The demo's closing line works as printed, and the README's screenshots come from this browser.

The `nightloop ui` command the demo prints (:func:`nightloop.demo.ui_hint`) is started as printed on a seeded
store and driven in Chromium. To refresh the README screenshots from a real demo store:

    make demo && UI_SCREENSHOT_STORE=demo/nightloop.db UI_SCREENSHOTS_DIR=docs/screenshots \\
        .venv/bin/python -m pytest tests/ui/test_demo_browser.py
"""

from __future__ import annotations

import os
import re
import shlex
from pathlib import Path

import pytest

from nightloop.demo import ui_hint
from nightloop.store import Store
from ui.seed import seed
from ui.server import ui_server

pytestmark = pytest.mark.browser

REPO = Path(__file__).resolve().parents[2]


def test_the_printed_ui_command_serves_the_store(tmp_path: Path, chromium) -> None:
    given = os.environ.get("UI_SCREENSHOT_STORE")
    db = (REPO / given).resolve() if given else tmp_path / "demo" / "nightloop.db"
    if not given:
        db.parent.mkdir()
        seed(db)
    printed = re.search(r"`([^`]*nightloop ui [^`]+)`", ui_hint(db))  # `nightloop` or the venv's path to it
    assert printed, "the demo does not say how to open the UI"
    args = shlex.split(printed.group(1))
    assert Path(args[args.index("--db") + 1]) == db
    assert "http://127.0.0.1:8765/" in ui_hint(db)  # the default port the command listens on
    with Store(db) as store:
        items = store.runs.review_items(status=None)
    shown = next((i for i in reversed(items) if i.status == "approved"), items[-1])
    shots = Path(os.environ.get("UI_SCREENSHOTS_DIR") or tmp_path)
    with ui_server(db) as base:
        context = chromium.new_context(viewport={"width": 1280, "height": 900})
        page = context.new_page()
        try:
            page.goto(f"{base}/review/{shown.id}")
            assert page.locator("table.diff ins, table.diff del").count() >= 1
            assert page.locator("#gate").is_visible()
            page.screenshot(path=str(shots / "candidate.png"))
            page.goto(f"{base}/dashboard")
            images = page.locator("figure.plot img")
            assert images.count() == 5
            assert all(images.nth(n).evaluate("img => img.naturalWidth > 0") for n in range(5))
            page.screenshot(path=str(shots / "dashboard.png"))
        finally:
            context.close()
    for name in ("candidate.png", "dashboard.png"):
        assert (shots / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
