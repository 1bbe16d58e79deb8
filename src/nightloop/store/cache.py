"""Store area: cache (tables, migrations and queries)."""

from __future__ import annotations

import sqlite_utils

__all__ = ["CacheRepo", "migrations"]

migrations = sqlite_utils.Migrations("nightloop.cache")


class CacheRepo:
    def __init__(self, db: sqlite_utils.Database) -> None:
        self.db = db
