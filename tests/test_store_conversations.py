"""The conversations store area: migrations, idempotent adds, queries, failures and the quarantine."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from nightloop.errors import NotFound
from nightloop.models import Conversation, Failure, IngestStats, Message, Outcome, Quarantined
from nightloop.store import Store
from nightloop.store.conversations import migrations

T0 = datetime(2026, 11, 23, 10, 0, tzinfo=timezone.utc)


def conv(cid: str, prompt: str | None = "support_agent", minutes: int | None = 0, status: str = "ok") -> Conversation:
    ended = None if minutes is None else T0 + timedelta(minutes=minutes)
    return Conversation(
        id=cid,
        prompt_name=prompt,
        started_at=None if ended is None else ended - timedelta(seconds=30),
        ended_at=ended,
        messages=[Message(role="user", content=f"hello from {cid}"), Message(role="assistant", content="hi")],
        outcome=Outcome(status=status),
    )


def bad(n: int) -> Quarantined:
    return Quarantined(source="f.jsonl", locator=f"f.jsonl:{n}", raw_excerpt="{oops", reason="invalid JSON")


@pytest.fixture
def store() -> Store:
    with Store(None) as s:
        yield s


def test_migrations_create_the_tables_and_are_idempotent(tmp_path: Path):
    path = tmp_path / "x.db"
    with Store(path) as first:
        assert {"conversations", "failures", "quarantine"} <= set(first.db.table_names())
        first.conversations.add([conv("a")])
    with Store(path) as again:  # migrating twice is a no-op and keeps the data
        assert again.conversations.count() == 1
        assert [m.name for m in migrations.pending(again.db)] == []
        assert [m.name for m in migrations.applied(again.db)] == [
            "m001_conversations",
            "m002_failures",
            "m003_quarantine",
            "m004_quarantine_by_content",
            "m005_conversations_by_version",
            "m006_classified_with",
        ]


def test_add_counts_new_duplicates_and_quarantined(store: Store):
    stats = store.conversations.add([conv("a"), conv("b"), bad(1), conv("a"), bad(2)])
    assert (stats.ingested, stats.duplicates, stats.quarantined) == (2, 1, 2)
    assert stats.new_ids == ["a", "b"]
    again = store.conversations.add([conv("b"), conv("c"), bad(1)])
    assert (again.ingested, again.duplicates, again.quarantined) == (1, 1, 1)
    assert again.new_ids == ["c"]
    assert store.conversations.count() == 3
    assert store.conversations.quarantine_count() == 2  # re-quarantining a locator is a no-op


def test_batches_commit_separately_and_call_on_batch_inside_the_transaction(store: Store):
    seen: list[tuple[list[str], bool, int]] = []

    def on_batch(new: list[Conversation], stats: IngestStats) -> None:
        seen.append(([c.id for c in new], store.db.conn.in_transaction, stats.ingested))

    items = [conv(f"c{i}", minutes=i) for i in range(7)] + [conv("c0")]
    stats = store.conversations.add(items, batch_size=3, on_batch=on_batch)
    assert seen == [(["c0", "c1", "c2"], True, 3), (["c3", "c4", "c5"], True, 6), (["c6"], True, 7)]
    assert (stats.ingested, stats.duplicates) == (7, 1)


def test_a_failing_batch_rolls_back_with_its_on_batch_writes(store: Store):
    def explode(new: list[Conversation], stats: IngestStats) -> None:
        store.conversations.save_failures(new[0].id, [Failure(conversation_id=new[0].id, kind="timeout", detector="t")])
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        store.conversations.add([conv("a")], on_batch=explode)
    assert store.conversations.count() == 0 and store.conversations.failures() == []


def test_get_round_trips_the_whole_conversation(store: Store):
    original = conv("a").model_copy(update={"variables": {"shop": "Acme"}, "metadata": {"channel": "web"}})
    store.conversations.add([original])
    assert store.conversations.get("a") == original
    assert store.conversations.get("missing") is None


def test_count_prompt_names_recent_and_iter(store: Store):
    store.conversations.add(
        [conv(f"s{i}", minutes=i) for i in range(5)]
        + [conv("b1", prompt="billing", minutes=2), conv("anon", prompt=None), conv("untimed", minutes=None)]
    )
    assert store.conversations.count() == 8
    assert store.conversations.count("support_agent") == 6
    assert store.conversations.prompt_names() == ["billing", "support_agent"]
    recent = store.conversations.recent("support_agent", before=T0 + timedelta(minutes=4), limit=3)
    assert [c.id for c in recent] == ["s3", "s2", "s1"]  # newest first, strictly before
    # An untimed conversation takes its arrival time (now), so it is the newest.
    assert [c.id for c in store.conversations.recent("support_agent", None, 2)] == ["untimed", "s4"]
    since, until = T0 + timedelta(minutes=1), T0 + timedelta(minutes=3)
    assert [c.id for c in store.conversations.iter_conversations("support_agent", since=since, until=until)] == ["s1", "s2"]
    assert {c.id for c in store.conversations.iter_conversations()} == {"s0", "s1", "s2", "s3", "s4", "b1", "anon", "untimed"}


def test_recent_compares_times_across_timezones(store: Store):
    store.conversations.add([conv("a", minutes=0), conv("b", minutes=10)])
    cet = timezone(timedelta(hours=1))
    before = (T0 + timedelta(minutes=5)).astimezone(cet)
    assert [c.id for c in store.conversations.recent("support_agent", before, 10)] == ["a"]
    naive_utc = (T0 + timedelta(minutes=5)).replace(tzinfo=None)
    assert [c.id for c in store.conversations.recent("support_agent", naive_utc, 10)] == ["a"]


def test_save_failures_replaces_and_is_idempotent(store: Store):
    store.conversations.add([conv("a"), conv("b", prompt="billing", minutes=5)])
    failures = [
        Failure(conversation_id="a", kind="user_correction", turn=2, evidence="No, euros", detector="correction", confidence=0.8),
        Failure(conversation_id="a", kind="timeout", turn=None, evidence="status timeout", detector="timeout"),
    ]
    store.conversations.save_failures("a", failures)
    store.conversations.save_failures("a", failures)
    assert store.conversations.failures() == sorted(failures, key=lambda f: (f.turn if f.turn is not None else -1))
    store.conversations.save_failures("a", failures[:1])
    assert store.conversations.failures() == failures[:1]
    store.conversations.save_failures_many(
        {"a": [], "b": [Failure(conversation_id="b", kind="wrong_output", turn=1, detector="expected")]}
    )
    assert [f.id for f in store.conversations.failures()] == ["b#wrong_output@1"]


def test_duplicate_failures_in_one_list_are_stored_once(store: Store):
    store.conversations.add([conv("a")])
    twice = [Failure(conversation_id="a", kind="timeout", detector="timeout", evidence=e) for e in ("first", "second")]
    store.conversations.save_failures("a", twice)
    assert [f.evidence for f in store.conversations.failures()] == ["second"]


def test_failure_filters(store: Store):
    store.conversations.add([conv("a", minutes=0), conv("b", prompt="billing", minutes=10), conv("c", minutes=20)])
    store.conversations.save_failures_many(
        {
            "a": [Failure(conversation_id="a", kind="timeout", detector="t")],
            "b": [Failure(conversation_id="b", kind="timeout", detector="t")],
            "c": [
                Failure(conversation_id="c", kind="user_correction", turn=3, detector="u"),
                Failure(conversation_id="c", kind="timeout", detector="t"),
            ],
        }
    )
    repo = store.conversations
    assert [f.conversation_id for f in repo.failures(prompt_name="support_agent")] == ["a", "c", "c"]
    assert [f.conversation_id for f in repo.failures(kind="timeout")] == ["a", "b", "c"]
    assert [f.conversation_id for f in repo.failures(since=T0 + timedelta(minutes=5))] == ["b", "c", "c"]
    assert [f.kind for f in repo.failures(conversation_ids=["c"])] == ["timeout", "user_correction"]
    assert repo.failures(conversation_ids=[]) == []
    assert repo.failure_counts() == {"timeout": 3, "user_correction": 1}
    assert repo.failure_counts(prompt_name="billing") == {"timeout": 1}


def test_failures_of_unknown_conversations_are_refused(store: Store):
    with pytest.raises(NotFound, match="ingest them"):
        store.conversations.save_failures("ghost", [Failure(conversation_id="ghost", kind="timeout", detector="t")])


def test_quarantine_listing(store: Store):
    store.conversations.add([bad(n) for n in range(1, 6)])
    assert [q.locator for q in store.conversations.quarantined()] == [f"f.jsonl:{n}" for n in range(1, 6)]
    assert [q.locator for q in store.conversations.quarantined(limit=2)] == ["f.jsonl:4", "f.jsonl:5"]
    assert store.conversations.quarantined()[0].reason == "invalid JSON"


def test_stats_keep_a_bounded_sample_of_quarantined_records(store: Store):
    stats = store.conversations.add([bad(n) for n in range(1500)], batch_size=400)
    assert stats.quarantined == 1500 and len(stats.quarantined_records) == 1000
    assert store.conversations.quarantine_count() == 1500


def test_a_rotated_file_keeps_every_bad_line_at_a_reused_locator(store: Store):
    store.conversations.add([bad(1)])
    rotated = Quarantined(source="f.jsonl", locator="f.jsonl:1", raw_excerpt="{another", reason="invalid JSON")
    store.conversations.add([rotated, bad(1)])  # the same bad line read again is still stored once
    assert [q.raw_excerpt for q in store.conversations.quarantined()] == ["{oops", "{another"]


def test_the_quarantine_migration_keeps_rows_of_an_older_store(tmp_path: Path):
    import sqlite_utils

    db = sqlite_utils.Database(tmp_path / "old.db")
    migrations.apply(db, stop_before="m004_quarantine_by_content")
    db.execute(
        "insert into quarantine (source, locator, raw_excerpt, reason, quarantined_at) values ('f.jsonl', 'f.jsonl:1', '{oops', 'invalid JSON', 'x')"
    )
    db.conn.commit()
    db.conn.close()
    with Store(tmp_path / "old.db") as upgraded:
        assert upgraded.conversations.quarantined() == [bad(1)]
        upgraded.conversations.add([bad(1), Quarantined(source="f.jsonl", locator="f.jsonl:1", raw_excerpt="{new", reason="invalid JSON")])
        assert upgraded.conversations.quarantine_count() == 2


# --- opening a store: foreign files are refused, concurrent first opens migrate once ---


def test_a_path_that_is_not_a_nightloop_store_is_a_config_error(tmp_path: Path):
    import sqlite3

    from nightloop.errors import ConfigError

    text = tmp_path / "notes.db"
    text.write_text("just some text, long enough to be read as a header by sqlite ....................................")
    foreign = tmp_path / "other_app.db"
    with sqlite3.connect(foreign) as conn:
        conn.execute("create table conversations (who text, said text)")
        conn.execute("insert into conversations values ('ann', 'hello')")
    conn.close()
    for path in (tmp_path, text, foreign):
        with pytest.raises(ConfigError, match="is not a nightloop store: .*point --db at a new or existing nightloop store"):
            Store(path)
    with sqlite3.connect(foreign) as conn:  # left exactly as it was
        assert [r[0] for r in conn.execute("select name from sqlite_master where type = 'table'")] == ["conversations"]
    conn.close()
    with Store(tmp_path / "fresh.db") as fresh:  # a new file is fine, and so is reopening it
        fresh.conversations.add([conv("a")])
    with Store(tmp_path / "fresh.db") as again:
        assert again.conversations.count() == 1


def test_several_processes_opening_one_new_store_migrate_it_once(tmp_path: Path):
    import subprocess
    import sys

    path = tmp_path / "race.db"
    script = "import sys; from nightloop.store import Store; Store(sys.argv[1]).conversations.count()"
    processes = [subprocess.Popen([sys.executable, "-c", script, str(path)], stderr=subprocess.PIPE, text=True) for _ in range(6)]
    errors = [p.communicate(timeout=120)[1] for p in processes]
    assert [p.returncode for p in processes] == [0] * 6, errors
    with Store(path) as store:
        assert [m.name for m in migrations.applied(store.db)][-1] == "m006_classified_with"
        assert len(migrations.applied(store.db)) == 6


def test_version_outcomes_count_each_failed_conversation_once_per_version_before_until(store: Store):
    start = datetime(2026, 11, 1, tzinfo=timezone.utc)
    conversations = [
        Conversation(id=f"c{n}", prompt_name="p", prompt_version=1 + n % 2, ended_at=start + timedelta(hours=n),
                     messages=[Message(role="user", content="hi")])
        for n in range(10)
    ]
    conversations.append(Conversation(id="other", prompt_name="q", prompt_version=1, ended_at=start, messages=[Message(role="user", content="hi")]))
    store.conversations.add(conversations)
    for cid in ("c0", "c2", "c3", "c8", "other"):  # c0 fails twice: still one failed conversation
        kinds = ["timeout", "tool_error"] if cid == "c0" else ["timeout"]
        store.conversations.save_failures(cid, [Failure(conversation_id=cid, kind=k, detector="t") for k in kinds])
    assert store.conversations.version_outcomes("p", 1) == (3, 5)  # c0 c2 c8 of c0 c2 c4 c6 c8
    assert store.conversations.version_outcomes("p", 2) == (1, 5)
    assert store.conversations.version_outcomes("p", 1, until=start + timedelta(hours=8)) == (2, 4)  # c8 ends at until
    assert store.conversations.version_outcomes("p", 3) == (0, 0)
    assert store.conversations.version_outcomes("p", 1, latest=2) == (1, 2)  # the latest two: c8 (failed), c6
