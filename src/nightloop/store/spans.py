"""Store area: the spans conversations were merged from, so spans that arrive later re-merge their conversation.

A span is stored once per ``(trace_id, span_id)`` (OTLP delivery is at least once). Each span has the
conversation it belongs to: its own conversation id, else its trace's (the smallest explicit id any span
of that trace carries, whenever it arrived; else the smallest chain key, see ``sources.spans.chain_key``, or for a
call whose content is in log events ``log_chain_key``), else the trace id.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence

import sqlite_utils

from nightloop.sources.spans import Span, SpanRow, log_chain_key, span_rows
from nightloop.store.db import transaction

__all__ = ["SpanRepo", "SpanRow", "migrations", "span_rows"]

migrations = sqlite_utils.Migrations("nightloop.spans")


@migrations(name="m001_spans")
def m001_spans(db: sqlite_utils.Database) -> None:
    db.execute(
        """
        create table spans (
            trace_id text not null,
            span_id text not null,
            conversation_id text not null,
            explicit_key text,
            start_ns integer not null default 0,
            json text not null,
            primary key (trace_id, span_id)
        )
        """
    )
    db.execute("create index spans_conversation on spans (conversation_id)")


@migrations(name="m002_chain_key")
def m002_chain_key(db: sqlite_utils.Database) -> None:
    """Model calls with no parent span and no conversation id are chained into conversations (sources.spans.chain_key)."""
    db.execute("alter table spans add column chain_key text")


def _ids_json(ids: Iterable[str]) -> str:
    return json.dumps(list(ids))


def _whole_traces(rows: Sequence[SpanRow], fresh: dict[tuple[str, str], tuple], stored: set[tuple[str, str]]) -> dict[str, set[str]]:
    """The traces of ``rows`` that are wholly in them, each with its conversations (see :meth:`SpanRepo.add`)."""
    partial = {trace for trace, _ in stored} | {trace for trace, span, *_ in rows if not trace or span.startswith("log:")}
    if len(fresh) < len(rows):  # a span re-sent within the batch: its trace takes the rekey's path
        kept = Counter(trace for trace, _ in fresh)
        partial |= {trace for trace, sent in Counter(row[0] for row in rows).items() if sent > kept[trace]}
    whole: dict[str, set[str]] = {}
    for trace, _, conversation, *_ in fresh.values():
        if trace not in partial:
            whole.setdefault(trace, set()).add(conversation)
    return whole


class SpanRepo:
    """Spans by conversation; every write is one transaction per call."""

    def __init__(self, db: sqlite_utils.Database) -> None:
        self.db = db

    def add(self, spans: Sequence[Span]) -> tuple[set[str], int, dict[str, set[str]]]:
        """Store new spans (a stored ``(trace_id, span_id)`` is skipped); returns (traces that got new spans, new span
        count, the traces whose every span came in this batch: trace -> its conversations).

        A span's conversation is already its trace's when the batch holds the span that names it, so :meth:`rekey`
        seldom has to move one, and a trace wholly in one batch (no span stored before, none twice in the batch, no log
        record: those are chained from all of them) not at all, unless a later batch adds to it.
        """
        return self.add_rows(span_rows(spans))

    def add_rows(self, rows: Sequence[SpanRow]) -> tuple[set[str], int, dict[str, set[str]]]:
        """:meth:`add` for spans already turned into rows (:func:`span_rows`, e.g. in a worker process)."""
        conn = self.db.conn
        with transaction(self.db):
            stored = {
                (trace, span)
                for trace, span in conn.execute(
                    "select trace_id, span_id from spans where trace_id in (select value from json_each(?))", [_ids_json({r[0] for r in rows})]
                )
            }
            fresh: dict[tuple[str, str], tuple] = {}
            for row in rows:
                if (row[0], row[1]) not in stored:
                    fresh.setdefault((row[0], row[1]), row)  # the first copy of a span re-sent within the batch wins
            conn.executemany(
                "insert into spans (trace_id, span_id, conversation_id, explicit_key, start_ns, json, chain_key) values (?, ?, ?, ?, ?, ?, ?)", list(fresh.values())
            )
        return {trace or f"span:{span}" for trace, span in fresh}, len(fresh), _whole_traces(rows, fresh, stored)

    def conversations_of(self, traces: Iterable[str]) -> set[str]:
        """The conversations the spans of these traces belong to now (``span:<id>``: a span without a trace id)."""
        traces = list(traces)
        lone = [t.removeprefix("span:") for t in traces if t.startswith("span:")]
        found: set[str] = set()
        for sql, ids in (
            ("select distinct conversation_id from spans where trace_id in (select value from json_each(?))", [t for t in traces if not t.startswith("span:")]),
            ("select distinct conversation_id from spans where trace_id = '' and span_id in (select value from json_each(?))", lone),
        ):
            for start in range(0, len(ids), 5000):
                found.update(row[0] for row in self.db.conn.execute(sql, [_ids_json(ids[start : start + 5000])]))
        return found

    def rekey(self, traces: Iterable[str]) -> tuple[set[str], dict[str, set[str]]]:
        """Give every span of these traces its conversation (its own id, else its trace's).

        Returns the conversations before and after, and which conversations each one took spans from (``after ->
        {before, …}``, e.g. one first keyed by its trace id, then by the id a later span named).
        """
        traces = [t for t in traces if not t.startswith("span:")]
        touched: set[str] = set()
        moved: dict[str, set[str]] = {}
        with transaction(self.db):
            for start in range(0, len(traces), 5000):
                rows = self.db.conn.execute(
                    "select rowid, trace_id, conversation_id, explicit_key, chain_key, span_id from spans where trace_id in (select value from json_each(?))",
                    [_ids_json(traces[start : start + 5000])],
                ).fetchall()
                keys: dict[str, str] = {}
                chains: dict[str, str] = {}
                for _, trace, _, key, chain, _ in rows:  # the smallest of each trace (str order = SQLite's binary order)
                    if key is not None and (trace not in keys or key < keys[trace]):
                        keys[trace] = key
                    if chain is not None and (trace not in chains or chain < chains[trace]):
                        chains[trace] = chain
                logged = {trace for _, trace, _, _, _, span in rows if span.startswith("log:") and trace not in keys and trace not in chains}
                chains.update(self._log_chains(logged))
                moves = []
                for rowid, trace, before, key, _, _ in rows:
                    after = key or keys.get(trace) or chains.get(trace) or trace
                    touched.update((before, after))
                    if after != before:
                        moves.append((after, rowid))
                        moved.setdefault(after, set()).add(before)
                self.db.conn.executemany("update spans set conversation_id = ? where rowid = ?", moves)
        return touched, moved

    def _log_chains(self, traces: set[str]) -> dict[str, str]:
        """The chain key of each trace whose model call's content is in log events (``sources.spans.log_chain_key``)."""
        if not traces:
            return {}
        records: dict[str, list[Span]] = {}
        for trace, text in self.db.conn.execute("select trace_id, json from spans where trace_id in (select value from json_each(?))", [_ids_json(traces)]):
            records.setdefault(trace, []).append(Span.from_json(text))
        return {trace: key for trace, spans in records.items() if (key := log_chain_key(spans))}

    def spans_of_many(self, conversation_ids: Sequence[str]) -> dict[str, list[Span]]:
        """Spans of each conversation (one query for the lot), in time order (sorted here: SQLite would sort them all at once)."""
        found = {cid: [Span.from_json(text) for text in texts] for cid, texts in self.span_texts_of_many(conversation_ids).items()}
        for spans in found.values():
            spans.sort(key=lambda span: (span.start_ns, span.span_id))
        return found

    def span_texts_of_many(self, conversation_ids: Sequence[str]) -> dict[str, list[str]]:
        """The stored JSON of each conversation's spans (``Span.from_json``), in no order; one query for the lot."""
        found: dict[str, list[str]] = {cid: [] for cid in conversation_ids}
        rows = self.db.conn.execute(
            "select conversation_id, json from spans where conversation_id in (select value from json_each(?))", [_ids_json(conversation_ids)]
        )
        for conversation_id, text in rows:
            found[conversation_id].append(text)
        return found

    def spans_of(self, conversation_id: str) -> list[Span]:
        rows = self.db.conn.execute("select json from spans where conversation_id = ? order by start_ns, span_id", [conversation_id])
        return [Span.from_json(row[0]) for row in rows]

    def conversations_with_spans(self, conversation_ids: Sequence[str]) -> set[str]:
        """Those of ``conversation_ids`` that have a stored span."""
        sql = "select distinct conversation_id from spans where conversation_id in (select value from json_each(?))"
        return {row[0] for row in self.db.conn.execute(sql, [_ids_json(conversation_ids)])}

    def has(self, conversation_id: str) -> bool:
        return self.db.conn.execute("select 1 from spans where conversation_id = ? limit 1", [conversation_id]).fetchone() is not None

    def iter_conversation_ids(self) -> Iterator[str]:
        for row in self.db.conn.execute("select distinct conversation_id from spans order by conversation_id"):
            yield row[0]

    def count(self) -> int:
        return self.db.conn.execute("select count(*) from spans").fetchone()[0]
