"""The versioned store on SQLite (sqlite-utils): the source of truth.

Each area (conversations, prompts, cache, runs, challengers) owns its tables and its own
append-only migration set; :class:`Store` opens the file and composes them.
"""

from __future__ import annotations

from pathlib import Path

from nightloop.store import autonomy, cache, challengers, conversations, leases, metrics, prompts, runs, spans
from nightloop.store.autonomy import AutonomyRepo
from nightloop.store.cache import CacheRepo
from nightloop.store.challengers import ChallengerRepo
from nightloop.store.conversations import ConversationRepo
from nightloop.store.db import open_db, transaction
from nightloop.store.leases import LeaseRepo
from nightloop.store.prompts import PromptRepo
from nightloop.store.runs import RunRepo
from nightloop.store.spans import SpanRepo

__all__ = [
    "AutonomyRepo",
    "CacheRepo",
    "ChallengerRepo",
    "ConversationRepo",
    "LeaseRepo",
    "PromptRepo",
    "RunRepo",
    "SpanRepo",
    "Store",
    "open_db",
    "transaction",
]

MIGRATION_SETS = [
    conversations.migrations,
    prompts.migrations,
    cache.migrations,
    runs.migrations,
    autonomy.migrations,
    metrics.migrations,
    spans.migrations,
    leases.migrations,
    challengers.migrations,
]


class Store:
    """One store file; ``Store(None)`` is in memory (tests)."""

    def __init__(self, path: Path | str | None) -> None:
        self.path = None if path is None else Path(path)
        self.db = open_db(path, MIGRATION_SETS)
        self.conversations = ConversationRepo(self.db)
        self.prompts = PromptRepo(self.db)
        self.cache = CacheRepo(self.db)
        self.runs = RunRepo(self.db)
        self.leases = LeaseRepo(self.db)
        self.autonomy = AutonomyRepo(self.db)
        self.spans = SpanRepo(self.db)
        self.challengers = ChallengerRepo(self.db)

    def transaction(self):
        return transaction(self.db)

    def close(self) -> None:
        self.db.conn.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
