"""Store area: autonomy — every change of a prompt's autonomy level, append-only, with its reason."""

from __future__ import annotations

from datetime import UTC, datetime

import sqlite_utils
from pydantic import BaseModel

from nightloop.store.db import transaction

__all__ = ["AutonomyEvent", "AutonomyRepo", "migrations"]

migrations = sqlite_utils.Migrations("nightloop.autonomy")


@migrations()
def m001_autonomy_events(db: sqlite_utils.Database) -> None:
    db.execute(
        """CREATE TABLE autonomy_events (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            prompt_name TEXT NOT NULL,
            from_level TEXT NOT NULL,
            to_level TEXT NOT NULL,
            kind TEXT NOT NULL,
            reason TEXT NOT NULL,
            actor TEXT NOT NULL,
            at TEXT NOT NULL
        )"""
    )
    db.execute("CREATE INDEX idx_autonomy_events_prompt ON autonomy_events (prompt_name, id)")
    for action in ("UPDATE", "DELETE"):
        db.execute(
            f"""CREATE TRIGGER autonomy_events_no_{action.lower()} BEFORE {action} ON autonomy_events
            BEGIN SELECT RAISE(ABORT, 'autonomy_events is append-only'); END"""
        )


class AutonomyEvent(BaseModel):
    """One level change: ``kind`` is ``earned``, ``breakage`` or ``set`` (by a person)."""

    id: int
    prompt_name: str
    from_level: str
    to_level: str
    kind: str
    reason: str
    actor: str
    at: datetime


class AutonomyRepo:
    def __init__(self, db: sqlite_utils.Database) -> None:
        self.db = db

    def record(self, prompt_name: str, from_level: str, to_level: str, *, kind: str, reason: str, actor: str,
               at: datetime | None = None) -> AutonomyEvent:
        row = {
            "prompt_name": prompt_name, "from_level": from_level, "to_level": to_level, "kind": kind,
            "reason": reason, "actor": actor, "at": (at or datetime.now(UTC)).astimezone(UTC).isoformat(),
        }
        with transaction(self.db):
            row_id = self.db["autonomy_events"].insert(row).last_rowid
        return AutonomyEvent.model_validate({"id": row_id, **row})

    def events(self, prompt_name: str) -> list[AutonomyEvent]:
        rows = self.db.execute(
            "SELECT id, prompt_name, from_level, to_level, kind, reason, actor, at FROM autonomy_events "
            "WHERE prompt_name = ? ORDER BY id", [prompt_name],
        ).fetchall()
        keys = ("id", "prompt_name", "from_level", "to_level", "kind", "reason", "actor", "at")
        return [AutonomyEvent.model_validate(dict(zip(keys, row, strict=True))) for row in rows]
