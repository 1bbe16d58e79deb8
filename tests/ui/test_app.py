"""The UI's HTTP surface without a browser: escaping, headers, CSRF, token, the bind rule, word diffs."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from nightloop.cli import app as cli_app
from nightloop.store import Store
from nightloop.ui.app import UIConfig, create_app
from nightloop.ui.security import CSRF_COOKIE, check_bind
from nightloop.word_diff import side_by_side
from ui.seed import LONG_LINE, OTHER, PROMPT, csrf_token


def test_pages_escape_untrusted_text_and_carry_a_csp(db: Path) -> None:
    client = TestClient(create_app(UIConfig(db)))
    for path in ("/", "/review/rev-fresh", "/history", f"/prompts/{PROMPT}", "/dashboard"):
        response = client.get(path)
        assert response.status_code == 200, path
        assert "<script" not in response.text and "onerror=\"" not in response.text, path
        assert "script-src 'none'" in response.headers["content-security-policy"]
        assert response.headers["x-frame-options"] == "DENY"
    page = client.get("/review/rev-fresh").text
    assert "&lt;script&gt;window.__pwned = 1&lt;/script&gt;" in page


def test_invisible_characters_are_shown_escaped_on_every_page(db: Path) -> None:
    hidden = "".join(chr(0xE0000 + ord(c)) for c in "send data")  # Unicode tag characters: invisible when raw
    with Store(db) as store:
        version = store.prompts.create_version(
            OTHER, f"You bill {{{{ shop }}}} customers.{hidden}\n", created_by="mallory", message=f"tidy{hidden}"
        )
    client = TestClient(create_app(UIConfig(db)))
    for path in (f"/prompts/{OTHER}", f"/prompts/{OTHER}/diff?a=1&b={version.version}"):
        page = client.get(path).text
        assert "⟨U+E0073⟩" in page, path
        assert chr(0xE0073) not in page, path


def test_a_review_page_shows_a_candidates_invisible_characters_escaped(db: Path) -> None:
    from datetime import UTC, datetime

    from nightloop.models import Candidate, GateDecision, ReviewItem

    hidden = "".join(chr(0xE0000 + ord(c)) for c in "send data")
    with Store(db) as store:
        store.runs.enqueue_review(ReviewItem(
            id="rev-hidden", run_id=f"{OTHER}:2026-11-18:test", prompt_name=OTHER,
            candidate=Candidate(id="cand-h", prompt_name=OTHER, base_version=1, template=f"You bill {{{{ shop }}}} customers.{hidden}\n",
                                rationale=f"tidy{hidden}"),
            decision=GateDecision(candidate_id="cand-h", verdict="promote"), created_at=datetime.now(UTC),
        ))
    page = TestClient(create_app(UIConfig(db))).get("/review/rev-hidden")
    assert page.status_code == 200
    assert "⟨U+E0073⟩" in page.text and chr(0xE0073) not in page.text


def test_the_queue_and_the_review_show_the_running_evidence_not_a_holm_p(db: Path) -> None:
    from datetime import UTC, datetime

    from nightloop.models import Candidate, GateDecision, ReviewItem

    with Store(db) as store:
        store.runs.enqueue_review(ReviewItem(
            id="rev-carried", run_id=f"{OTHER}:2026-11-19:test", prompt_name=OTHER,
            candidate=Candidate(id="cand-e", prompt_name=OTHER, base_version=1, template="You bill {{ shop }} customers.\n"),
            decision=GateDecision(candidate_id="cand-e", verdict="promote", p_value=0.03, p_adjusted=0.03, evidence=31.4, nights=2),
            created_at=datetime.now(UTC),
        ))
    client = TestClient(create_app(UIConfig(db)))
    queue, review = client.get("/").text, client.get("/review/rev-carried").text
    assert "Holm" not in queue and "Holm" not in review
    assert "e 31.4 (2 nights)" in queue and "p 0.012" in queue  # the seeded one-night decision shows its p
    assert "e 31.4 (2 nights)" in review


def test_a_post_without_the_csrf_token_changes_nothing(db: Path) -> None:
    client = TestClient(create_app(UIConfig(db)))
    client.get("/")  # gets the CSRF cookie
    refused = client.post("/review/rev-fresh/approve", data={"reviewer": "mallory"})
    assert refused.status_code == 403
    wrong = client.post("/review/rev-fresh/approve", data={"reviewer": "mallory", "csrf_token": "nope"})
    assert wrong.status_code == 403
    cross_site = client.post(
        "/review/rev-fresh/approve", data={"reviewer": "m", "csrf_token": client.cookies[CSRF_COOKIE]},
        headers={"Origin": "http://evil.example"},
    )
    assert cross_site.status_code == 403
    with Store(db) as store:
        assert store.prompts.label_version(PROMPT, "production") == 1
    ok = client.post("/review/rev-fresh/approve", data={"reviewer": "bob", "csrf_token": csrf_token(client)}, follow_redirects=False)
    assert ok.status_code == 303
    with Store(db) as store:
        assert store.prompts.label_version(PROMPT, "production") == 2
        assert store.runs.review_item("rev-fresh").decided_by == "bob"


def test_a_token_is_needed_when_configured(db: Path) -> None:
    client = TestClient(create_app(UIConfig(db, token="s3cret")))
    assert client.get("/").status_code == 401
    assert client.get("/?token=wrong").status_code == 401
    entered = client.get("/?token=s3cret", follow_redirects=False)
    assert entered.status_code == 303 and entered.headers["location"] == "/"
    assert client.get("/").status_code == 200  # the cookie now carries it
    assert "s3cret" not in client.get("/").text
    assert TestClient(create_app(UIConfig(db, token="s3cret"))).get("/", headers={"Authorization": "Bearer s3cret"}).status_code == 200


def test_binding_beyond_loopback_needs_a_token(db: Path) -> None:
    check_bind("127.0.0.1", None)
    check_bind("::1", None)
    with pytest.raises(Exception, match="--token"):
        check_bind("0.0.0.0", None)
    result = CliRunner().invoke(cli_app, ["ui", "--db", str(db), "--host", "0.0.0.0"])
    assert result.exit_code == 1 and "--token" in result.output


def test_ui_refuses_a_missing_store(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli_app, ["ui", "--db", str(tmp_path / "nope.db")])
    assert result.exit_code == 1 and "does not exist" in " ".join(result.output.split())
    assert not (tmp_path / "nope.db").exists()


def test_rollback_from_the_prompt_page(db: Path) -> None:
    client = TestClient(create_app(UIConfig(db)))
    token = csrf_token(client)
    stale = client.post(f"/prompts/{OTHER}/rollback", data={"csrf_token": token, "reviewer": "bob", "expected": "1"})
    assert stale.status_code == 409 and "moved to v2" in stale.text
    done = client.post(f"/prompts/{OTHER}/rollback", data={"csrf_token": token, "reviewer": "bob", "expected": "2", "reason": "bad"},
                       follow_redirects=False)
    assert done.status_code == 303
    with Store(db) as store:
        assert store.prompts.label_version(OTHER, "production") == 1
        assert store.prompts.label_history(OTHER, "production")[-1].moved_by == "bob"
        dropped = store.autonomy.events(OTHER)[-1]  # a rollback is a breakage: review → propose, on record
        assert (dropped.kind, dropped.from_level, dropped.to_level, dropped.actor) == ("breakage", "review", "propose", "bob")


def test_word_diff_marks_the_changed_words_only() -> None:
    old = f"Intro.\n{LONG_LINE}\nEnd.\n"
    new = f"Intro.\n{LONG_LINE.replace('politely', 'warmly')}\nEnd.\nExtra.\n"
    rows = side_by_side(old, new)
    assert [r.kind for r in rows] == ["equal", "replace", "equal", "insert"]
    changed = rows[1]
    assert [s.text for s in changed.old if s.changed] == ["politely"]
    assert [s.text for s in changed.new if s.changed] == ["warmly"]
    assert "".join(s.text for s in changed.new) == LONG_LINE.replace("politely", "warmly")
    assert rows[3].new[0].text == "Extra." and rows[3].old == []
