"""Operations metrics on a store whose every event has a known time: each figure checked against hand arithmetic."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner

from nightloop import metrics
from nightloop.models import Candidate, Conversation, Failure, GateDecision, Message, NightReport, ReviewItem
from nightloop.store import Store

P = "p"
T0 = datetime(2026, 11, 17, 12, tzinfo=UTC)  # a Tuesday: week of 2026-11-16


def _at(monkeypatch: pytest.MonkeyPatch, moment: datetime) -> None:
    monkeypatch.setattr("nightloop.store.prompts._now", lambda: moment.isoformat())


def _conversation(cid: str, version: int, ended: datetime, difficulty: str | None) -> Conversation:
    return Conversation(
        id=cid, prompt_name=P, prompt_version=version, started_at=ended - timedelta(minutes=1), ended_at=ended,
        messages=[Message(role="user", content="hi"), Message(role="assistant", content="hello")],
        metadata={"difficulty": difficulty} if difficulty else {},
    )


def _review(store: Store, rid: str, created: datetime, decided: datetime, status: str, by: str, promoted: int | None,
            addresses: list[str]) -> None:
    item = ReviewItem(
        id=rid, run_id=f"{P}:x:{rid}", prompt_name=P,
        candidate=Candidate(id=rid, prompt_name=P, base_version=1, template=rid, addresses=addresses),
        decision=GateDecision(candidate_id=rid, verdict="promote"), created_at=created,
    )
    store.runs.enqueue_review(item)
    with store.transaction():
        store.runs.update_review(item.model_copy(update={"status": status, "decided_at": decided, "decided_by": by,
                                                         "promoted_version": promoted}))


@pytest.fixture
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    with Store(tmp_path / "m.db") as s:
        for n in (1, 2, 3):
            s.prompts.create_version(P, f"template {n}", created_by="t")
        _at(monkeypatch, T0 - timedelta(days=1))
        s.prompts.move_label(P, "production", 1, expected_version=None, moved_by="t")  # where the record starts
        s.conversations.add([
            _conversation("early", 1, T0 - timedelta(hours=10), "hard"),   # the failure v2 fixes, first seen here
            _conversation("ok-1", 1, T0 - timedelta(hours=9), "easy"),
            _conversation("ok-2", 1, T0 - timedelta(hours=8), "easy"),
            _conversation("broken", 2, T0 + timedelta(hours=5), "hard"),   # first failure under v2
            _conversation("later", 3, T0 + timedelta(days=7), None),
        ])
        s.conversations.save_failures_many({
            "early": [Failure(conversation_id="early", kind="user_correction", turn=1, detector="d")],
            "broken": [Failure(conversation_id="broken", kind="timeout", turn=1, detector="d"),
                       Failure(conversation_id="broken", kind="user_correction", turn=1, detector="d")],
        })
        _review(s, "r2", T0, T0 + timedelta(hours=2), "approved", "alice", 2, ["early#user_correction@1"])
        _at(monkeypatch, T0 + timedelta(hours=2))
        s.prompts.move_label(P, "production", 2, expected_version=1, moved_by="alice")
        _at(monkeypatch, T0 + timedelta(hours=8))
        s.prompts.move_label(P, "production", 1, expected_version=2, moved_by="nightloop watch")  # the rollback
        _review(s, "r3", T0 + timedelta(days=7), T0 + timedelta(days=7, hours=1), "rejected", "bob", None, [])
        _review(s, "r4", T0 + timedelta(days=7), T0 + timedelta(days=7), "approved", "nightloop (autonomy: auto)", 3, [])
        _at(monkeypatch, T0 + timedelta(days=7, hours=3))
        s.prompts.move_label(P, "production", 3, expected_version=1, moved_by="nightloop (autonomy: auto)")
        for day, spent in ((date(2026, 11, 17), 0.1), (date(2026, 11, 24), 0.3)):
            run_id = f"{P}:{day}:h"
            s.runs.start(run_id, P, day.isoformat(), "h")
            s.runs.finish(NightReport(run_id=run_id, prompt_name=P, date=day, cost_usd=spent))
        yield s


def test_every_figure_in_total(store: Store) -> None:
    ops = metrics.operations(store)
    total = next(t for t in ops.totals if t.prompt == metrics.OVERALL)
    assert total.promotions == 2  # v2 and v3; the first production label is where the record starts
    assert total.promotions_per_week == 1.0  # two weeks of activity
    assert total.breakages == 1 and total.breakage_rate == 0.5
    assert total.time_to_restore_h == 3.0  # first failure under v2 at +5 h, rollback at +8 h
    assert total.lead_time_h == 12.0  # failure seen at -10 h, its fix in production at +2 h
    assert total.conversations == 5
    assert total.success_by_difficulty == {"easy": 1.0, "hard": 0.0, "unknown": 1.0}
    assert total.interventions_per_session == round(2 / 5, 4)
    assert (total.reviews_decided, total.approvals, total.approval_rate) == (2, 1, 0.5)  # the auto one is no review
    assert total.review_latency_h == 1.5  # medians of 2 h and 1 h
    assert total.nights == 2 and total.spend_per_night_usd == 0.2
    assert set(ops.sources) >= {"promotions", "breakage_rate", "lead_time_h", "success_by_difficulty"}


def test_by_week_and_by_version(store: Store) -> None:
    ops = metrics.operations(store, P)
    weeks = {w.week: w for w in ops.weeks[P]}
    first, second = weeks[date(2026, 11, 16)], weeks[date(2026, 11, 23)]
    assert (first.promotions, first.breakages, first.nights, first.spend_per_night_usd) == (1, 1, 1, 0.1)
    assert (second.promotions, second.breakages, second.reviews_decided) == (1, 0, 1)
    rates = {(v.version, v.week): v.failure_rate for v in ops.versions}
    assert rates[(1, date(2026, 11, 16))] == round(1 / 3, 4) and rates[(2, date(2026, 11, 16))] == 1.0


def test_report_shows_the_metrics_and_its_plots(store: Store, tmp_path: Path) -> None:
    from nightloop.cli import app

    out = tmp_path / "report.html"
    result = CliRunner().invoke(app, ["report", "--db", str(store.path), "--html", str(out), "--markdown", str(tmp_path / "r.md")])
    assert result.exit_code == 0, result.output
    page = out.read_text()
    assert str(store.path) in page and "generated" in page
    assert page.count("data:image/svg+xml;base64,") == 5
    assert "breakage rate" in (tmp_path / "r.md").read_text()
    as_json = CliRunner().invoke(app, ["report", "--db", str(store.path), "--operations", "--json"])
    assert '"breakage_rate": 0.5' in as_json.stdout
