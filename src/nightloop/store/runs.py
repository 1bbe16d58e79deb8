"""Store area: runs (tables, migrations and queries)."""

from __future__ import annotations

import sqlite_utils

__all__ = ["RunRepo", "migrations"]

migrations = sqlite_utils.Migrations("nightloop.runs")


class RunRepo:
    def __init__(self, db: sqlite_utils.Database) -> None:
        self.db = db
