"""The dashboard's figures: counted and drawn in a worker process that lives as long as the app, kept in the store."""

from __future__ import annotations

import json
import multiprocessing
import os
import re
import time
from pathlib import Path

from fastapi.testclient import TestClient

from nightloop.store import Store
from nightloop.ui.app import UIConfig, create_app
from ui.seed import PROMPT, csrf_token


def _promotions(client: TestClient) -> tuple[str, bool]:
    """The prompt's promotions on its dashboard, and whether the page says newer data is being counted."""
    page = client.get(f"/dashboard?prompt={PROMPT}").text
    return re.search(rf"<td>{PROMPT}</td><td>(\d+)</td>", page).group(1), "newer data is being counted" in page


def _until(condition, what: str, timeout_s: float = 30.0):
    deadline = time.monotonic() + timeout_s
    while not (found := condition()):
        assert time.monotonic() < deadline, f"{what} never happened"
        time.sleep(0.05)
    return found


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as stat:  # a zombie (exited, not yet reaped) is not alive either
        return stat.read().rsplit(")", 1)[1].split()[0] != "Z"


def test_the_figures_worker_process_ends_with_the_app(db: Path) -> None:
    before = {p.pid for p in multiprocessing.active_children()}
    with TestClient(create_app(UIConfig(db, fresh_wait_s=30))) as client:
        assert client.get("/dashboard").status_code == 200
        workers = [p.pid for p in multiprocessing.active_children() if p.pid not in before]
        assert len(workers) == 1, workers  # one worker counts and draws, whatever the number of pages
        assert client.get(f"/dashboard?prompt={PROMPT}").status_code == 200
        assert [p.pid for p in multiprocessing.active_children() if p.pid not in before] == workers
    assert not _alive(workers[0]), "the worker outlived the app"


def test_the_dashboard_follows_a_decision(db: Path) -> None:
    with TestClient(create_app(UIConfig(db, fresh_wait_s=30))) as client:  # waits for every recount: a busy CI machine too
        assert _promotions(client) == ("0", False)
        assert _promotions(client) == ("0", False)  # served from the cache
        client.post("/review/rev-fresh/approve", data={"reviewer": "bob", "csrf_token": csrf_token(client)})
        assert _promotions(client) == ("1", False)


def test_each_dashboard_plot_is_an_svg_that_follows_the_data(db: Path) -> None:
    with TestClient(create_app(UIConfig(db, fresh_wait_s=30))) as client:

        def plot_urls() -> list[str]:
            return re.findall(r'<img src="(/dashboard/plots/[^"]+)"', client.get(f"/dashboard?prompt={PROMPT}").text)

        before = plot_urls()
        assert [re.search(r"plots/(\w+)\.svg", u).group(1) for u in before] == ["ship", "difficulty", "interventions", "versions", "spend"]
        for url in before:
            response = client.get(url.replace("&amp;", "&"))
            assert response.status_code == 200 and response.headers["content-type"].startswith("image/svg+xml")
            assert response.text.startswith("<svg") and "script" not in response.text.lower()
            assert "script-src 'none'" in response.headers["content-security-policy"]
        ship = client.get(before[0].replace("&amp;", "&")).text
        assert "no promotions yet" in ship
        client.post("/review/rev-fresh/approve", data={"reviewer": "bob", "csrf_token": csrf_token(client)})
        after = plot_urls()
        assert after[0] != before[0]  # a new version in the URL: the browser fetches the changed plot again
        assert "no promotions yet" not in client.get(after[0].replace("&amp;", "&")).text
        unknown = client.get(f"/dashboard/plots/ship.svg?prompt={PROMPT}&v=0000")  # an old page's version
        assert unknown.status_code == 200 and "no promotions yet" not in unknown.text
        assert unknown.headers["cache-control"] == "no-store"
        assert client.get("/dashboard/plots/nope.svg").status_code == 404


def test_a_dashboard_never_waits_on_a_recount_it_shows_the_previous_figures_and_says_so(db: Path) -> None:
    with TestClient(create_app(UIConfig(db, fresh_wait_s=0.0))) as client:  # as on a store too big to recount in time
        assert _promotions(client) == ("0", False)  # the first figures are always waited for
        client.post("/review/rev-fresh/approve", data={"reviewer": "bob", "csrf_token": csrf_token(client)})
        assert _promotions(client) == ("0", True)
        _until(lambda: _promotions(client) == ("1", False), "the recount arriving")


def _saved(db: Path, prompt: str | None):
    with Store(db) as store:
        return store.figures.load(prompt)


def test_a_restarted_ui_shows_the_figures_it_kept_in_the_store(db: Path) -> None:
    with TestClient(create_app(UIConfig(db, fresh_wait_s=30))) as client:
        assert _promotions(client) == ("0", False)
        saved = _until(lambda: _saved(db, PROMPT), "keeping the figures")
    assert set(saved.plots) == {"ship", "difficulty", "interventions", "versions", "spend"}
    # Mark the kept figures (as if counted from other data): a restarted UI that shows them did not recount.
    ops = json.loads(saved.ops)
    total = next(t for t in ops["totals"] if t["prompt"] == PROMPT)
    total["promotions"] = 777
    with Store(db) as store:
        store.figures.save(PROMPT, saved._replace(ops=json.dumps(ops)))
    with TestClient(create_app(UIConfig(db, fresh_wait_s=30))) as client:
        assert _promotions(client) == ("777", False)  # the store is unchanged: the kept figures are current
        client.post("/review/rev-fresh/approve", data={"reviewer": "bob", "csrf_token": csrf_token(client)})
        assert _promotions(client) == ("1", False)  # the store changed: recounted (and waited for)

        def recount_kept():
            kept = _saved(db, PROMPT)
            totals = json.loads(kept.ops)["totals"]
            return next(t for t in totals if t["prompt"] == PROMPT)["promotions"] == 1

        _until(recount_kept, "keeping the recount")
