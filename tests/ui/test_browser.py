"""The review page in a real headless Chromium against a real `nightloop ui` process (tests run in file order)."""

from __future__ import annotations

from pathlib import Path

import pytest

from nightloop.store import Store
from ui.seed import FAQ, OTHER, PROMPT, seed

pytestmark = pytest.mark.browser

from ui.server import ui_server

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def site(tmp_path_factory, chromium):
    db = tmp_path_factory.mktemp("ui") / "nightloop.db"
    seed(db)
    with ui_server(db) as base:
        context = chromium.new_context(viewport={"width": 1360, "height": 900})
        page = context.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        # Anything hostile that ran would call home or navigate: record every request the page makes.
        requests: list[str] = []
        page.on("request", lambda request: requests.append(request.url))
        try:
            yield {"base": base, "db": db, "page": page, "errors": errors, "requests": requests}
        finally:
            context.close()


def _pwned(page) -> object:
    return page.evaluate("() => window.__pwned === undefined ? null : window.__pwned")


def test_hostile_text_executes_nothing(site) -> None:
    page, base = site["page"], site["base"]
    for path in ("/", "/review/rev-fresh", "/history", f"/prompts/{PROMPT}", f"/prompts/{PROMPT}/diff?a=1&b=1"):
        page.goto(base + path)
        assert _pwned(page) is None, f"{path}: injected script ran"
        assert page.locator("script").count() == 0, f"{path}: a <script> element reached the DOM"
        assert page.locator("img[onerror]").count() == 0, f"{path}: an <img onerror> reached the DOM"
        assert page.locator('a[href^="javascript:"]').count() == 0, f"{path}: a javascript: link reached the DOM"
    page.goto(base + "/review/rev-fresh")
    body = page.locator("main").inner_text()
    # The payloads are shown as the text they are: in the conversation turns, the rationale, the template diff.
    assert "<script>window.__pwned = 1</script>" in body
    assert '<img src="x" onerror="window.__pwned = 2">' in body
    assert page.locator("blockquote.turn").filter(has_text="No, I asked for euros").count() >= 1
    assert not site["errors"]
    assert all(url.startswith(base) for url in site["requests"]), "the page fetched something from outside"


def test_candidate_page_shows_word_diff_evidence_evals_and_gate(site) -> None:
    page = site["page"]
    page.goto(site["base"] + "/review/rev-fresh")
    # The one-word change in the long line is highlighted as words, not as the whole line.
    deleted = page.locator("table.diff del").all_inner_texts()
    inserted = page.locator("table.diff ins").all_inner_texts()
    assert any("the currency the customer used" in d for d in deleted)
    assert "EUR" in " ".join(inserted)
    assert all(len(d) < 60 for d in deleted), deleted
    assert page.locator("#evals tbody tr").count() == 1
    assert page.locator("#evals .repeats").nth(1).inner_text().split() == ["pass", "pass", "fail"]
    assert "0.012" in page.locator("#gate").inner_text()
    assert page.locator("ul.reasons li").count() == 2


def test_stale_candidate_is_marked_and_refused(site) -> None:
    page = site["page"]
    page.goto(site["base"] + "/")
    assert "stale: made from v1, production is v2" in page.locator("tr", has_text="rev-stale").inner_text()
    page.goto(site["base"] + "/review/rev-stale")
    assert page.locator("#stale").is_visible()
    page.click("#approve")
    error = page.locator("#error").inner_text()
    assert "v1" in error and "v2" in error and "production is now v2" in error
    with Store(site["db"]) as store:
        assert store.prompts.label_version(OTHER, "production") == 2
        assert [v.version for v in store.prompts.versions(OTHER)] == [1, 2]
        assert store.runs.review_item("rev-stale").status == "pending"


def test_reject_with_comment_is_recorded(site) -> None:
    page = site["page"]
    page.goto(site["base"] + "/review/rev-reject")
    page.fill("#reject-form input[name=reviewer]", "dana")
    page.fill("#reject-comment", "too terse for new customers")
    page.click("#reject")
    assert page.locator("#status").inner_text() == "rejected"
    assert page.locator("#decision-comment").inner_text() == "too terse for new customers"
    with Store(site["db"]) as store:
        item = store.runs.review_item("rev-reject")
        assert (item.status, item.decided_by, item.comment) == ("rejected", "dana", "too terse for new customers")
        assert item.candidate.sha256 in store.runs.rejected_hashes(FAQ)
        assert store.prompts.label_version(FAQ, "production") == 1


def test_approve_creates_the_version_and_moves_production(site) -> None:
    page = site["page"]
    page.goto(site["base"] + "/review/rev-fresh")
    page.fill("#approve-form input[name=reviewer]", "erin")
    page.fill("#approve-form input[name=comment]", "prices in EUR, finally")
    page.click("#approve")
    assert "Approved: support_agent v2 is now production." in page.locator(".notice").inner_text()
    assert page.locator("#status").inner_text() == "approved"
    with Store(site["db"]) as store:
        assert store.prompts.label_version(PROMPT, "production") == 2
        version = store.prompts.get(PROMPT, 2)
        assert version.parent == 1 and version.created_by == "erin"
        move = store.prompts.label_history(PROMPT, "production")[-1]
        assert (move.from_version, move.to_version, move.moved_by) == (1, 2, "erin")
        assert "prices in EUR, finally" in move.reason
    page.goto(site["base"] + "/history")
    assert "approved" in page.locator("#history tr", has_text="cand-a").inner_text()
    assert "held" in page.locator("#history tr", has_text="cand-b").inner_text()


def test_dashboard_shows_its_plots(site) -> None:
    page = site["page"]
    page.goto(site["base"] + "/dashboard")
    plots = page.locator("figure.plot img")
    assert plots.count() == 5
    for n in range(plots.count()):
        # naturalWidth > 0 only when the browser decoded the SVG.
        assert plots.nth(n).evaluate("img => img.complete && img.naturalWidth > 0"), f"plot {n} did not render"
    totals = page.locator("#ops-totals").inner_text()
    assert "all prompts" in totals and "hard" in totals


def test_forged_post_is_refused(site) -> None:
    page = site["page"]
    page.goto(site["base"] + "/review/rev-stale")
    response = page.request.post(
        site["base"] + "/review/rev-stale/reject", form={"reviewer": "mallory", "comment": "x", "csrf_token": "guess"}
    )
    assert response.status == 403
    with Store(site["db"]) as store:
        assert store.runs.review_item("rev-stale").status == "pending"
