"""Store area: conversations (tables, migrations and queries)."""

from __future__ import annotations

import sqlite_utils

__all__ = ["ConversationRepo", "migrations"]

migrations = sqlite_utils.Migrations("nightloop.conversations")


class ConversationRepo:
    def __init__(self, db: sqlite_utils.Database) -> None:
        self.db = db
