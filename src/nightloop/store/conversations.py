"""Store area: conversations, their failures, and quarantined records (writes and queries; the tables and their
migrations are in :mod:`nightloop.store.conversations_schema`).

Timestamps are stored as fixed-width UTC ISO text (``2026-11-23T10:00:00.000000+00:00``) so that
SQL comparisons order them correctly. A conversation's ``ended_at`` column falls back to its start
time when the end is unknown, and to its ingest time when it has no timestamp at all, so every conversation
has a place in ``recent()``.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Iterable, Iterator
from datetime import datetime, timezone
from typing import Any

import sqlite_utils

from nightloop.conversation_rows import StoredForm, stored_form, utc_text
from nightloop.errors import NotFound
from nightloop.models import Conversation, Failure, IngestStats, Quarantined
from nightloop.redact import storage_id, with_storage_id
from nightloop.store.conversations_schema import migrations, quarantine_digest
from nightloop.store.db import savepoint, transaction

__all__ = ["ConversationRepo", "OnBatch", "migrations", "utc_text"]

#: Called inside each batch's transaction with the batch's new conversations and the running stats;
#: whatever it writes commits (or rolls back) together with the batch. Conversations re-merged from spans come as
#: their :class:`StoredForm` (``.id``; ``.failures`` when a worker classified it; ``.conversation()``).
OnBatch = Callable[[list[Conversation | StoredForm], IngestStats], None]

#: How many quarantined records an IngestStats carries (the store keeps all of them).
STATS_QUARANTINE_SAMPLE = 1000


def _now_text() -> str:
    return utc_text(datetime.now(timezone.utc))


def _conversation_row(conversation: Conversation, ingested_at: str) -> tuple[Any, ...]:
    return stored_form(conversation).row(ingested_at)


def _failure_row(failure: Failure) -> tuple[Any, ...]:
    return (failure.conversation_id, failure.kind, failure.turn, failure.evidence, failure.detector, failure.confidence)


FAILURE_COLUMNS = "conversation_id, kind, turn, evidence, detector, confidence"
INSERT_CONVERSATION = (
    "insert into conversations (id, prompt_name, prompt_version, started_at, ended_at, status, json, ingested_at)"
    " values (?, ?, ?, ?, ?, ?, ?, ?)"
)


def _unstorable(conversation: Conversation, exc: BaseException) -> Quarantined:
    from nightloop.sources.base import unreadable_reason  # the one wording of "this record is odd"

    return Quarantined(
        source="store",
        locator=f"conversation:{_printable(conversation.id)}",
        raw_excerpt=_printable(repr(conversation.messages[:1]))[:200],
        reason=f"the store could not save it: {unreadable_reason(exc)}",
    )


def _conflict(conversation: Conversation, content: str) -> Quarantined:
    return Quarantined(
        source="store",
        locator=f"conversation:{conversation.id}",
        raw_excerpt=content[:200],
        reason=(
            f"id {conversation.id!r} is already stored with different content; the first one is kept. "
            "Give changed conversations new ids, or delete the stored one to replace it."
        ),
    )


def _printable(value: Any) -> Any:
    """Text the database can hold (lone surrogates escaped); other values unchanged."""
    if isinstance(value, str):
        return value.encode("utf-8", "backslashreplace").decode("utf-8")
    return value


class ConversationRepo:
    """Conversations (stored once per id), their failures, and the quarantine."""

    def __init__(self, db: sqlite_utils.Database) -> None:
        self.db = db

    # --- writing ---

    def add(
        self,
        items: Iterable[Conversation | Quarantined],
        batch_size: int = 1000,
        on_batch: OnBatch | None = None,
    ) -> IngestStats:
        """Store conversations (an id already stored is a duplicate, not an error) and quarantined records, in batches."""
        stats = IngestStats()
        conversations: list[Conversation] = []
        quarantined: list[Quarantined] = []
        for item in items:
            if isinstance(item, Conversation):
                conversations.append(with_storage_id(item))  # no private data in the key every table repeats
            else:
                quarantined.append(item)
            if len(conversations) + len(quarantined) >= batch_size:
                self._add_batch(conversations, quarantined, stats, on_batch)
                conversations, quarantined = [], []
        if conversations or quarantined:
            self._add_batch(conversations, quarantined, stats, on_batch)
        return stats

    def _add_batch(
        self,
        conversations: list[Conversation],
        quarantined: list[Quarantined],
        stats: IngestStats,
        on_batch: OnBatch | None,
    ) -> None:
        now = _now_text()
        with transaction(self.db):
            new = self._insert_new(conversations, quarantined, stats, now)
            self._insert_quarantined(quarantined, now)
            stats.ingested += len(new)
            stats.new_ids.extend(c.id for c in new)
            stats.quarantined += len(quarantined)
            room = STATS_QUARANTINE_SAMPLE - len(stats.quarantined_records)
            stats.quarantined_records.extend(quarantined[: max(room, 0)])
            if on_batch is not None:
                on_batch(new, stats)

    def _insert_new(
        self, conversations: list[Conversation], quarantined: list[Quarantined], stats: IngestStats, now: str
    ) -> list[Conversation]:
        """Insert the batch's new conversations; duplicates are counted, conflicts and unstorable ones quarantined.

        An id already stored with the same content is a duplicate; with other content the first stays and the
        newcomer is quarantined. One record the database refuses is found by retrying the batch record by record.
        """
        conn = self.db.conn
        stored = {
            row[0]: row[1]
            for row in conn.execute(
                "select id, json from conversations where id in (select value from json_each(?))",
                [json.dumps([c.id for c in conversations])],
            )
        }
        rows: list[tuple[Conversation, tuple[Any, ...]]] = []
        for conversation in conversations:
            try:
                row = _conversation_row(conversation, now)
            except Exception as exc:  # noqa: BLE001 - a value the store cannot encode costs only its own record
                quarantined.append(_unstorable(conversation, exc))
                continue
            known = stored.get(conversation.id)
            if known is None:
                stored[conversation.id] = row[6]
                rows.append((conversation, row))
            elif known == row[6]:
                stats.duplicates += 1
            else:
                quarantined.append(_conflict(conversation, row[6]))
        try:
            with savepoint(conn):
                conn.executemany(INSERT_CONVERSATION, [row for _, row in rows])
            return [conversation for conversation, _ in rows]
        except (sqlite3.IntegrityError, sqlite3.InterfaceError, sqlite3.DataError, OverflowError, ValueError):
            pass  # one record the database refused: find it below; a locked or full store is raised as it is
        new = []
        for conversation, row in rows:
            try:
                with savepoint(conn):
                    conn.execute(INSERT_CONVERSATION, row)
            except (sqlite3.IntegrityError, sqlite3.InterfaceError, sqlite3.DataError, OverflowError, ValueError) as exc:
                quarantined.append(_unstorable(conversation, exc))
            else:
                new.append(conversation)
        return new

    def _insert_quarantined(self, quarantined: list[Quarantined], now: str) -> None:
        rows = [
            (q.source, q.locator, q.raw_excerpt, quarantine_digest(q.raw_excerpt, q.reason), q.reason, now)
            for q in quarantined
        ]
        self.db.conn.executemany(
            "insert or ignore into quarantine (source, locator, raw_excerpt, raw_sha256, reason, quarantined_at)"
            " values (?, ?, ?, ?, ?, ?)",
            [tuple(_printable(v) for v in row) for row in rows],
        )

    def upsert(
        self, conversations: list[Conversation | StoredForm], stats: IngestStats, on_batch: OnBatch | None = None, renamed: set[str] | None = None
    ) -> None:
        """Store conversations re-merged from spans, in one transaction: a new id is ingested, a changed one
        replaced and counted as updated (``on_batch`` gets both, to reclassify them), an unchanged one a duplicate.
        A new id in ``renamed`` is a stored conversation under its new id: counted as updated.

        A :class:`StoredForm` (built and validated in a span worker) is stored as it is: no second validation or dump."""
        conn = self.db.conn
        now = _now_text()
        forms = [c if isinstance(c, StoredForm) else stored_form(c) for c in conversations]
        with transaction(self.db):
            stored = dict(
                conn.execute("select id, json from conversations where id in (select value from json_each(?))", [json.dumps([f.id for f in forms])])
            )
            new = [f for f in forms if f.id not in stored]
            changed = [f for f in forms if f.id in stored and stored[f.id] != f.json]
            conn.executemany(INSERT_CONVERSATION, [f.row(now) for f in new])
            conn.executemany(
                "update conversations set prompt_name = ?, prompt_version = ?, started_at = ?, ended_at = ?, status = ?, json = ?,"
                " classified_with = null where id = ?",  # a changed conversation is classified anew
                [(*f.row(now)[1:7], f.id) for f in changed],
            )
            renamed_keys = {storage_id(i) for i in renamed or ()}
            fresh = [f.id for f in new if f.id not in renamed_keys]
            stats.ingested += len(fresh)
            stats.new_ids.extend(fresh)
            stats.updated += len(changed) + len(new) - len(fresh)
            stats.duplicates += len(forms) - len(new) - len(changed)
            if on_batch is not None:
                on_batch(new + changed, stats)

    def delete(self, conversation_ids: Iterable[str]) -> None:
        """Remove conversations (and their failures), e.g. one whose spans now belong to another conversation."""
        conversation_ids = [storage_id(i) for i in conversation_ids]
        with transaction(self.db):
            self.db.conn.execute("delete from conversations where id in (select value from json_each(?))", [json.dumps(list(conversation_ids))])

    def withdraw(self, conversation_ids: Iterable[str], stats: IngestStats) -> None:
        """Remove conversations this ingest stored as new (``upsert``), uncounting them and their failures from ``stats``,
        to store them again from more spans (``span_ingest.OnePass``)."""
        gone = set(conversation_ids)
        ids = json.dumps(sorted(gone))
        with transaction(self.db):
            for kind, count in self.db.conn.execute("select kind, count(*) from failures where conversation_id in (select value from json_each(?)) group by kind", [ids]):
                stats.failures[kind] = stats.failures.get(kind, 0) - count
                if stats.failures[kind] <= 0:
                    del stats.failures[kind]
            self.db.conn.execute("delete from conversations where id in (select value from json_each(?))", [ids])
        stats.ingested -= len(gone)
        stats.new_ids = [i for i in stats.new_ids if i not in gone]

    def add_quarantined(self, quarantined: list[Quarantined], stats: IngestStats) -> None:
        """Store quarantined records, counting them into ``stats``."""
        if not quarantined:
            return
        found = self.add(quarantined)
        stats.quarantined += found.quarantined
        room = STATS_QUARANTINE_SAMPLE - len(stats.quarantined_records)
        stats.quarantined_records.extend(found.quarantined_records[: max(room, 0)])

    def save_failures(self, conversation_id: str, failures: list[Failure]) -> None:
        """Replace one conversation's failures (saving the same list twice changes nothing)."""
        self.save_failures_many({conversation_id: failures})

    def save_failures_many(self, failures_by_conversation: dict[str, list[Failure]], rules: str | None = None) -> None:
        """Replace the failures of each conversation in the dict, in one transaction, noting the ``rules`` version
        that found them (None: another classifier; :meth:`classified_under` then does not count them)."""
        if not failures_by_conversation:
            return
        conn = self.db.conn
        ids = list(failures_by_conversation)
        rows = [_failure_row(f) for failures in failures_by_conversation.values() for f in failures]
        with transaction(self.db):
            conn.execute("delete from failures where conversation_id in (select value from json_each(?))", [json.dumps(ids)])
            conn.execute("update conversations set classified_with = ? where id in (select value from json_each(?))", [rules, json.dumps(ids)])
            try:
                conn.executemany(f"insert or replace into failures ({FAILURE_COLUMNS}) values (?, ?, ?, ?, ?, ?)", rows)
            except sqlite3.IntegrityError as exc:
                missing = [i for i in ids if not self.exists(i)]
                raise NotFound(f"Conversations {missing[:5]} are not in the store; ingest them before saving their failures.") from exc

    # --- reading conversations ---

    def exists(self, conversation_id: str) -> bool:
        return self.db.conn.execute("select 1 from conversations where id = ?", [storage_id(conversation_id)]).fetchone() is not None

    def get(self, conversation_id: str) -> Conversation | None:
        row = self.db.conn.execute("select json from conversations where id = ?", [storage_id(conversation_id)]).fetchone()
        return None if row is None else Conversation.model_validate_json(row[0])

    def count(self, prompt_name: str | None = None) -> int:
        if prompt_name is None:
            return self.db.conn.execute("select count(*) from conversations").fetchone()[0]
        return self.db.conn.execute("select count(*) from conversations where prompt_name = ?", [prompt_name]).fetchone()[0]

    def version_outcomes(
        self, prompt_name: str, version: int, until: datetime | None = None, *, latest: int | None = None
    ) -> tuple[int, int]:
        """(conversations with a detected failure, conversations) that ran ``version`` of the prompt and ended before
        ``until``: all of them, or the ``latest`` ones (an index range either way; no conversation is parsed)."""
        where, params = self._where(prompt_name=prompt_name, until=until, extra=[("c.prompt_version = ?", version)])
        limit = "" if latest is None else f" order by c.ended_at desc limit {int(latest)}"
        failed, total = self.db.conn.execute(
            "select coalesce(sum(failed), 0), count(*) from ("
            "select exists (select 1 from failures f where f.conversation_id = c.id) as failed "
            f"from conversations c {where}{limit})",
            params,
        ).fetchone()
        return failed, total

    def count_without_prompt(self) -> int:
        """Conversations that name no prompt (no night sees them)."""
        return self.db.conn.execute("select count(*) from conversations where prompt_name is null").fetchone()[0]

    def prompt_names(self) -> list[str]:
        rows = self.db.conn.execute("select distinct prompt_name from conversations where prompt_name is not null order by prompt_name")
        return [row[0] for row in rows]

    def recent(self, prompt_name: str, before: datetime | None, limit: int) -> list[Conversation]:
        """The last ``limit`` conversations of a prompt ending before ``before``, newest first."""
        sql = "select json from conversations where prompt_name = ?"
        params: list[Any] = [prompt_name]
        if before is not None:
            sql += " and ended_at < ?"
            params.append(utc_text(before))
        sql += " order by ended_at desc, id desc limit ?"
        params.append(limit)
        return [Conversation.model_validate_json(row[0]) for row in self.db.conn.execute(sql, params)]

    def iter_conversations(
        self,
        prompt_name: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> Iterator[Conversation]:
        """Conversations ending in ``[since, until)``, oldest first, streamed."""
        where, params = self._where(prompt_name=prompt_name, since=since, until=until)
        cursor = self.db.conn.execute(f"select json from conversations c {where} order by c.ended_at, c.id", params)
        while rows := cursor.fetchmany(500):
            for row in rows:
                yield Conversation.model_validate_json(row[0])

    @staticmethod
    def _where(
        prompt_name: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        *,
        extra: Iterable[tuple[str, Any]] = (),
    ) -> tuple[str, list[Any]]:
        """The ``where`` clause and its parameters for the filters given (``extra``: more ``(clause, value)``)."""
        conditions = [
            ("c.prompt_name = ?", prompt_name),
            ("c.ended_at >= ?", None if since is None else utc_text(since)),
            ("c.ended_at < ?", None if until is None else utc_text(until)),
            *extra,
        ]
        used = [(clause, value) for clause, value in conditions if value is not None]
        return ("where " + " and ".join(clause for clause, _ in used) if used else ""), [value for _, value in used]

    # --- reading failures ---

    def classified_under(self, conversation_ids: Iterable[str], rules: str) -> set[str]:
        """Those of ``conversation_ids`` whose stored failures the ``rules`` version found (reusable as they are)."""
        sql = "select id from conversations where classified_with = ? and id in (select value from json_each(?))"
        return {row[0] for row in self.db.conn.execute(sql, [rules, json.dumps(list(conversation_ids))])}

    def failures(
        self,
        prompt_name: str | None = None,
        kind: str | None = None,
        since: datetime | None = None,
        conversation_ids: Iterable[str] | None = None,
    ) -> list[Failure]:
        """Stored failures, filtered; ``since`` is on the conversation's end time. Ordered by conversation time, then turn."""
        ids = None if conversation_ids is None else json.dumps(list(conversation_ids))
        where, params = self._where(
            prompt_name=prompt_name,
            since=since,
            extra=[("f.kind = ?", kind), ("f.conversation_id in (select value from json_each(?))", ids)],
        )
        sql = (
            f"select f.conversation_id, f.kind, f.turn, f.evidence, f.detector, f.confidence"
            f" from failures f join conversations c on c.id = f.conversation_id {where}"
            f" order by c.ended_at, f.conversation_id, coalesce(f.turn, -1), f.kind, f.detector"
        )
        columns = ("conversation_id", "kind", "turn", "evidence", "detector", "confidence")
        return [Failure.model_validate(dict(zip(columns, row, strict=True))) for row in self.db.conn.execute(sql, params)]

    def where_and_when(self, conversation_ids: Iterable[str]) -> dict[str, tuple[str | None, datetime | None]]:
        """``(prompt_name, ended_at)`` of each of these conversations (those stored)."""
        sql = "select id, prompt_name, ended_at from conversations where id in (select value from json_each(?))"
        rows = self.db.conn.execute(sql, [json.dumps(list(conversation_ids))])
        return {cid: (name, datetime.fromisoformat(ended) if ended else None) for cid, name, ended in rows}

    def failure_counts(self, prompt_name: str | None = None, since: datetime | None = None) -> dict[str, int]:
        """Failures per kind."""
        where, params = self._where(prompt_name=prompt_name, since=since)
        rows = self.db.conn.execute(
            f"select f.kind, count(*) from failures f join conversations c on c.id = f.conversation_id {where}"
            " group by f.kind order by f.kind",
            params,
        )
        return {kind: n for kind, n in rows}

    # --- reading the quarantine ---

    def quarantined(self, limit: int | None = None) -> list[Quarantined]:
        """Quarantined records in the order they arrived (the latest ``limit`` when given)."""
        sql = "select source, locator, raw_excerpt, reason from quarantine order by id desc"
        params: list[Any] = []
        if limit is not None:
            sql += " limit ?"
            params.append(limit)
        rows = list(self.db.conn.execute(sql, params))
        rows.reverse()
        return [Quarantined(source=s, locator=loc, raw_excerpt=raw, reason=reason) for s, loc, raw, reason in rows]

    def quarantine_count(self) -> int:
        return self.db.conn.execute("select count(*) from quarantine").fetchone()[0]
