"""Store area: prompts (tables, migrations and queries)."""

from __future__ import annotations

import sqlite_utils

__all__ = ["PromptRepo", "migrations"]

migrations = sqlite_utils.Migrations("nightloop.prompts")


class PromptRepo:
    def __init__(self, db: sqlite_utils.Database) -> None:
        self.db = db
