"""The watch stage on a real store: it rolls a breaking version back once, and never re-judges where a rollback put it."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from nightloop.config import load_settings
from nightloop.models import Conversation, Failure, Message, WatchOutput
from nightloop.night import Night
from nightloop.stages.watch import stage_watch
from nightloop.store import Store

PROMPT = "support_agent"
START = datetime(2026, 11, 1, tzinfo=UTC)


def _ran(store: Store, version: int, total: int, failed: int) -> None:
    """``total`` conversations under ``version``, the first ``failed`` of them with a detected failure."""
    base = store.conversations.count()
    conversations = [
        Conversation(id=f"v{version}-{base + n}", prompt_name=PROMPT, prompt_version=version,
                     ended_at=START + timedelta(minutes=base + n), messages=[Message(role="user", content="hi")])
        for n in range(total)
    ]
    store.conversations.add(conversations)
    store.conversations.save_failures_many(
        {c.id: [Failure(conversation_id=c.id, kind="timeout", detector="test")] for c in conversations[:failed]}
    )


def _chain(store: Store, versions: int) -> None:
    for n in range(1, versions + 1):
        store.prompts.create_version(PROMPT, f"You help customers, take {n}.", created_by="test")
        store.prompts.move_label(PROMPT, "production", n, expected_version=n - 1 or None, moved_by="test")


def _watch(store: Store, day: date) -> WatchOutput:
    return stage_watch(Night(load_settings(db=store.path), store, PROMPT, day))


def test_a_breaking_version_is_rolled_back_and_its_parent_is_not_judged_again(tmp_path: Path) -> None:
    with Store(tmp_path / "nightloop.db") as store:
        _chain(store, 3)  # v1 -> v2 -> v3 (production)
        _ran(store, 1, total=200, failed=10)  # v1: 5 %
        _ran(store, 2, total=200, failed=60)  # v2: 30 %, far worse than v1 (it shipped anyway)
        _ran(store, 3, total=200, failed=160)  # v3: 80 %, far worse than v2

        first = _watch(store, date(2026, 11, 20))
        assert (first.checked_version, first.rolled_back_to) == (3, 2)
        assert store.prompts.label_version(PROMPT, "production") == 2

        # v2 is worse than its own parent, but production is where the watch's rollback put it.
        second = _watch(store, date(2026, 11, 21))
        assert second.rolled_back_to is None
        assert "set by a rollback" in " ".join(second.reasons)
        assert store.prompts.label_version(PROMPT, "production") == 2


def test_the_watch_compares_each_version_s_latest_window_of_conversations(tmp_path: Path) -> None:
    with Store(tmp_path / "nightloop.db") as store:
        _chain(store, 2)
        _ran(store, 1, total=100, failed=5)
        _ran(store, 2, total=100, failed=0)  # v2 started well ...
        _ran(store, 2, total=60, failed=45)  # ... and then broke: its latest 60 fail 75 %
        (tmp_path / "nightloop.toml").write_text("[watch]\nwindow = 60\n")
        settings = load_settings(tmp_path / "nightloop.toml", db=store.path)
        windowed = stage_watch(Night(settings, store, PROMPT, date(2026, 11, 20)))
        assert windowed.rolled_back_to == 1, windowed.reasons
        assert "45/60" in " ".join(windowed.reasons)
