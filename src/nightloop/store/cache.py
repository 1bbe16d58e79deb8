"""Store area: cache (tables, migrations and queries).

``llm_cache`` holds model responses by content hash (see :func:`nightloop.llm.cache.cache_key`):
one row per distinct request, written once, never updated.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import sqlite_utils

from nightloop.store.db import transaction

__all__ = ["CacheRepo", "migrations"]

migrations = sqlite_utils.Migrations("nightloop.cache")


@migrations()
def create_llm_cache(db: sqlite_utils.Database) -> None:
    db["llm_cache"].create(
        {"key": str, "provider": str, "model": str, "response": str, "created_at": str},
        pk="key",
        not_null={"response", "created_at"},
    )


class CacheRepo:
    """Model responses by content hash."""

    def __init__(self, db: sqlite_utils.Database) -> None:
        self.db = db

    def get(self, key: str) -> dict[str, Any] | None:
        """The stored response JSON, or None when the key was never stored."""
        row = self.db.execute("SELECT response FROM llm_cache WHERE key = ?", [key]).fetchone()
        if row is None:
            return None
        try:
            return json.loads(row[0])
        except ValueError:  # a damaged row is a miss, not a crash
            return None

    def put(self, key: str, response_json: dict[str, Any]) -> None:
        """Store a response (an ``LLMResponse`` dumped as JSON); storing an existing key is a no-op."""
        with transaction(self.db):
            self.db.execute(
                "INSERT OR IGNORE INTO llm_cache (key, provider, model, response, created_at) VALUES (?, ?, ?, ?, ?)",
                [
                    key,
                    str(response_json.get("provider") or ""),
                    str(response_json.get("model") or ""),
                    json.dumps(response_json, ensure_ascii=False, separators=(",", ":")),
                    datetime.now(UTC).isoformat(),
                ],
            )

    def delete(self, key: str) -> None:
        """Forget one entry (e.g. one that no longer validates against its schema)."""
        with transaction(self.db):
            self.db.execute("DELETE FROM llm_cache WHERE key = ?", [key])

    def count(self) -> int:
        return self.db.execute("SELECT count(*) FROM llm_cache").fetchone()[0]
