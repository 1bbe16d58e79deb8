"""Earned autonomy over simulated weeks: earned after the record, never above the ceiling, lost on a rollback, all on record."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner

from nightloop import autonomy
from nightloop.cli import app
from nightloop.config import AutonomyConfig
from nightloop.errors import NightloopError
from nightloop.models import Candidate, GateDecision, PromptMeta, ReviewItem
from nightloop.review import approve
from nightloop.store import Store

P = "support"
START = datetime(2026, 11, 2, 9, tzinfo=UTC)  # a Monday
POLICY = AutonomyConfig(promotions=3, days=14)


class Clock:
    """The simulated wall clock every timestamp in the store and in nightloop.autonomy reads."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.now = START
        monkeypatch.setattr("nightloop.store.prompts._now", lambda: self.now.isoformat())
        monkeypatch.setattr("nightloop.autonomy._now", lambda: self.now)

    def day(self, n: float) -> None:
        self.now = START + timedelta(days=n)


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    return Clock(monkeypatch)


def _store(tmp_path: Path, **meta) -> Store:
    store = Store(tmp_path / "trust.db")
    v1 = store.prompts.create_version(P, "You are helpful.\n", created_by="alice")
    store.prompts.move_label(P, "production", v1.version, expected_version=None, moved_by="alice")
    store.prompts.set_meta(P, PromptMeta(**meta))
    return store


def _approve_next(store: Store, reviewer: str = "alice", config: AutonomyConfig = POLICY) -> int:
    """A gate-passed candidate on top of production, approved by a person (the CLI's and the UI's code path)."""
    base = store.prompts.label_version(P, "production")
    n = len(store.prompts.versions(P)) + 1
    item = ReviewItem(
        id=f"r{n}", run_id=f"{P}:night:{n}", prompt_name=P,
        candidate=Candidate(id=f"c{n}", prompt_name=P, base_version=base, template=f"You are helpful.\nRule {n}.\n"),
        decision=GateDecision(candidate_id=f"c{n}", verdict="promote"), created_at=datetime.now(UTC),
    )
    store.runs.enqueue_review(item)
    return approve(store, item.id, reviewer=reviewer, autonomy=config).version


def _rollback(store: Store, by: str = "nightloop watch") -> None:
    before = store.prompts.label_version(P, "production")
    after = store.prompts.rollback(P, moved_by=by, reason="failure rate rose")
    autonomy.after_breakage(store, P, POLICY, actor=by, reason=f"v{before} rolled back to v{after}")


def test_auto_is_earned_after_the_record_and_lost_on_a_rollback(tmp_path: Path, clock: Clock) -> None:
    with _store(tmp_path, max_autonomy="auto") as store:
        assert autonomy.current_level(store, P, POLICY) == "review"
        for day in (1, 4):
            clock.day(day)
            _approve_next(store)
        record = autonomy.trust_record(store, P, POLICY)
        assert record.level == "review" and len(record.counted) == 2 and record.needs.startswith("1 more approved promotion")
        clock.day(8)
        _approve_next(store)
        assert autonomy.current_level(store, P, POLICY) == "auto"
        earned = store.autonomy.events(P)[-1]
        assert (earned.kind, earned.from_level, earned.to_level) == ("earned", "review", "auto")
        assert "v2, v3, v4" in earned.reason and earned.at == START + timedelta(days=8)

        clock.day(10)
        _rollback(store)
        assert autonomy.current_level(store, P, POLICY) == "review"  # one level, at once
        # Two approvals after the breakage are not three: the record restarts at the breakage.
        for day in (11, 12):
            clock.day(day)
            _approve_next(store)
        assert autonomy.current_level(store, P, POLICY) == "review"
        # Weeks later those two have left the 14-day window: one more approval is still not enough.
        clock.day(30)
        _approve_next(store)
        assert autonomy.current_level(store, P, POLICY) == "review"
        assert len(autonomy.trust_record(store, P, POLICY).counted) == 1
        for day in (33, 36):
            clock.day(day)
            _approve_next(store)
        assert autonomy.current_level(store, P, POLICY) == "auto"
        assert [(e.kind, e.to_level) for e in store.autonomy.events(P)] == [
            ("earned", "auto"), ("breakage", "review"), ("earned", "auto"),
        ]


def test_never_above_the_ceiling(tmp_path: Path, clock: Clock) -> None:
    with _store(tmp_path) as store:  # max_autonomy not set: [autonomy] max_autonomy = review
        for day in range(1, 6):
            clock.day(day)
            _approve_next(store)
        record = autonomy.trust_record(store, P, POLICY)
        assert record.level == "review" and len(record.counted) == 5
        assert "ceiling is review" in record.needs and "max_autonomy: auto" in record.needs
        assert store.autonomy.events(P) == []
        with pytest.raises(NightloopError, match="max_autonomy: auto"):
            autonomy.set_level(store, P, "auto", POLICY, actor="bob", reason="trust me")
        # A ceiling lowered by a person caps a level earned earlier.
        store.prompts.set_meta(P, PromptMeta(max_autonomy="auto"))
        clock.day(6)
        _approve_next(store)
        assert autonomy.current_level(store, P, POLICY) == "auto"
        store.prompts.set_meta(P, PromptMeta(max_autonomy="review"))
        assert autonomy.current_level(store, P, POLICY) == "review"


def test_a_breakage_at_review_drops_to_propose_and_a_person_can_restore_it(tmp_path: Path, clock: Clock) -> None:
    with _store(tmp_path) as store:
        clock.day(1)
        _approve_next(store)
        clock.day(2)
        _rollback(store, by="carol")
        assert autonomy.current_level(store, P, POLICY) == "propose"
        assert autonomy.after_breakage(store, P, POLICY, actor="x", reason="again") is None  # nothing below propose
        with pytest.raises(NightloopError, match="--reason"):
            autonomy.set_level(store, P, "review", POLICY, actor="dana", reason=" ")
        autonomy.set_level(store, P, "review", POLICY, actor="dana", reason="fixed the tool")
        events = store.autonomy.events(P)
        assert [(e.kind, e.from_level, e.to_level, e.actor) for e in events] == [
            ("breakage", "review", "propose", "carol"), ("set", "propose", "review", "dana"),
        ]


def test_history_is_append_only_and_migrating_twice_is_a_no_op(tmp_path: Path) -> None:
    with _store(tmp_path) as store:
        store.autonomy.record(P, "review", "propose", kind="breakage", reason="r", actor="a")
        with pytest.raises(Exception, match="append-only"):
            store.db.execute("delete from autonomy_events")
    with Store(tmp_path / "trust.db") as again:
        applied = again.db.execute("select count(*) from _sqlite_migrations where migration_set = 'nightloop.autonomy'").fetchone()
        assert applied == (1,) and len(again.autonomy.events(P)) == 1


def test_trust_and_prompts_show_print_the_record(tmp_path: Path, clock: Clock) -> None:
    with _store(tmp_path, max_autonomy="auto") as store:
        clock.day(1)
        _approve_next(store)
        clock.day(2)
        _rollback(store)
    db = str(tmp_path / "trust.db")
    shown = CliRunner().invoke(app, ["trust", P, "--db", db])
    assert shown.exit_code == 0, shown.output
    text = " ".join(shown.output.split())
    assert "autonomy propose" in text and "breakage" in text and "nightloop trust NAME --set review" in text
    as_json = json.loads(CliRunner().invoke(app, ["trust", P, "--db", db, "--json"]).stdout)
    assert as_json["level"] == "propose" and as_json["events"][0]["kind"] == "breakage"
    restored = CliRunner().invoke(app, ["trust", P, "--db", db, "--set", "review", "--reason", "fixed", "--by", "dana"])
    assert restored.exit_code == 0 and "propose → review" in restored.output
    refused = CliRunner().invoke(app, ["trust", P, "--db", db, "--set", "root"])
    assert refused.exit_code == 1 and "not an autonomy level" in refused.output
    show = CliRunner().invoke(app, ["prompts", "show", P, "--db", db])
    assert "earned autonomy: review" in show.output and "propose → review by dana" in show.output


def test_a_rollback_from_the_cli_is_a_breakage(tmp_path: Path, clock: Clock) -> None:
    with _store(tmp_path, autonomy="auto") as store:
        clock.day(1)
        _approve_next(store)
    result = CliRunner().invoke(app, ["prompts", "rollback", P, "--db", str(tmp_path / "trust.db"), "--by", "erin"])
    assert result.exit_code == 0, result.output
    assert "autonomy of support: auto → review" in result.output
    with Store(tmp_path / "trust.db") as store:
        assert autonomy.current_level(store, P, POLICY) == "review"
