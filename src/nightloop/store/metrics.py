"""Store area: metrics — no tables of its own, only the index the operations metrics read conversations through.

The conversations area owns the table; this index lets :mod:`nightloop.metrics` count conversations by prompt,
version, day and difficulty without reading every conversation's JSON (20 prompts × 365 nights: 14 s → about 1 s).
The expression must stay identical to the one in ``nightloop.metrics._read_conversations``.
"""

from __future__ import annotations

import sqlite_utils

__all__ = ["DIFFICULTY_SQL", "migrations"]

migrations = sqlite_utils.Migrations("nightloop.metrics")

#: The difficulty of a stored conversation, as SQL over the ``conversations`` table.
DIFFICULTY_SQL = (
    "coalesce(json_extract(json, '$.metadata.difficulty'), json_extract(json, '$.outcome.difficulty'), 'unknown')"
)


@migrations()
def m001_conversations_by_difficulty(db: sqlite_utils.Database) -> None:
    db.execute(
        "CREATE INDEX IF NOT EXISTS conversations_ops ON conversations "
        f"(prompt_name, prompt_version, substr(ended_at, 1, 10), {DIFFICULTY_SQL}, id)"
    )
