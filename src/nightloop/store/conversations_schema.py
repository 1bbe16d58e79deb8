"""The conversations area's tables (conversations, failures, quarantine) and their append-only migrations."""

from __future__ import annotations

import sqlite_utils

from nightloop.models import sha256_text

__all__ = ["migrations", "quarantine_digest"]

migrations = sqlite_utils.Migrations("nightloop.conversations")


def quarantine_digest(raw_excerpt: str, reason: str) -> str:
    """What tells two quarantined records at the same locator apart: their excerpt and reason."""
    return sha256_text(raw_excerpt + "\0" + reason)


@migrations(name="m001_conversations")
def m001_conversations(db: sqlite_utils.Database) -> None:
    db["conversations"].create(
        {
            "id": str,
            "prompt_name": str,
            "prompt_version": int,
            "started_at": str,
            "ended_at": str,
            "status": str,
            "json": str,
            "ingested_at": str,
        },
        pk="id",
        not_null={"json", "ingested_at"},
    )
    db["conversations"].create_index(["prompt_name", "ended_at"], index_name="conversations_prompt_ended")
    db["conversations"].create_index(["ended_at"], index_name="conversations_ended")


@migrations(name="m002_failures")
def m002_failures(db: sqlite_utils.Database) -> None:
    db.execute(
        """
        create table failures (
            conversation_id text not null references conversations(id) on delete cascade,
            kind text not null,
            turn integer,
            evidence text not null default '',
            detector text not null,
            confidence real not null default 1.0
        )
        """
    )
    # coalesce: a NULL turn is a value here, so "no turn" is unique too.
    db.execute(
        "create unique index failures_unique on failures (conversation_id, kind, coalesce(turn, -1), detector)"
    )
    db.execute("create index failures_kind on failures (kind)")


@migrations(name="m003_quarantine")
def m003_quarantine(db: sqlite_utils.Database) -> None:
    db.execute(
        """
        create table quarantine (
            id integer primary key autoincrement,
            source text not null,
            locator text not null unique,
            raw_excerpt text not null default '',
            reason text not null,
            quarantined_at text not null
        )
        """
    )


@migrations(name="m004_quarantine_by_content")
def m004_quarantine_by_content(db: sqlite_utils.Database) -> None:
    """A quarantined record is unique by (locator, content): a rotated or reused file keeps every bad line."""
    db.execute(
        """
        create table quarantine_new (
            id integer primary key autoincrement,
            source text not null,
            locator text not null,
            raw_excerpt text not null default '',
            raw_sha256 text not null,
            reason text not null,
            quarantined_at text not null
        )
        """
    )
    rows = db.execute("select id, source, locator, raw_excerpt, reason, quarantined_at from quarantine order by id").fetchall()
    db.conn.executemany(
        "insert into quarantine_new (id, source, locator, raw_excerpt, raw_sha256, reason, quarantined_at) values (?, ?, ?, ?, ?, ?, ?)",
        [(id_, source, locator, raw, quarantine_digest(raw, reason), reason, at) for id_, source, locator, raw, reason, at in rows],
    )
    db.execute("drop table quarantine")
    db.execute("alter table quarantine_new rename to quarantine")
    db.execute("create unique index quarantine_locator_content on quarantine (locator, raw_sha256)")


@migrations(name="m005_conversations_by_version")
def m005_conversations_by_version(db: sqlite_utils.Database) -> None:
    """The watch counts one version's conversations every night: an index range, not a scan of the history."""
    db.execute("create index if not exists conversations_version on conversations (prompt_name, prompt_version, ended_at)")


@migrations(name="m006_classified_with")
def m006_classified_with(db: sqlite_utils.Database) -> None:
    """The rules version (``classify.rules_version``) a conversation's stored failures were found with; NULL: not
    by the rule detectors (or before this column), so the night's classify stage classifies it again."""
    db.execute("alter table conversations add column classified_with text")
