"""The versioned store on SQLite (sqlite-utils): the source of truth.

Each area (conversations, prompts, cache, runs, challengers) owns its tables and its own
append-only migration set; :class:`Store` opens the file and composes them.
"""

from __future__ import annotations

from pathlib import Path

from nightloop.store import (
    autonomy,
    cache,
    challengers,
    conversations,
    figures,
    leases,
    metrics,
    prompts,
    runs,
    spans,
    spend,
)
from nightloop.store.autonomy import AutonomyRepo
from nightloop.store.cache import CacheRepo
from nightloop.store.challengers import ChallengerRepo
from nightloop.store.conversations import ConversationRepo
from nightloop.store.db import NoStore, open_db, transaction
from nightloop.store.figures import FiguresRepo
from nightloop.store.leases import LeaseRepo
from nightloop.store.prompts import PromptRepo
from nightloop.store.runs import RunRepo
from nightloop.store.spans import SpanRepo
from nightloop.store.spend import SpendRepo

__all__ = [
    "AutonomyRepo",
    "CacheRepo",
    "ChallengerRepo",
    "ConversationRepo",
    "FiguresRepo",
    "LeaseRepo",
    "NoStore",
    "PromptRepo",
    "RunRepo",
    "SpanRepo",
    "SpendRepo",
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
    spend.migrations,
    figures.migrations,
]


class Store:
    """One store file; ``Store(None)`` is in memory (tests).

    ``read_only=True`` opens an existing store for reading (a read-only file or mount works; a missing one
    raises :class:`NoStore` instead of being created).
    """

    def __init__(self, path: Path | str | None, *, read_only: bool = False) -> None:
        self.path = None if path is None else Path(path)
        self.read_only = read_only
        self.db = open_db(path, MIGRATION_SETS, read_only=read_only)
        self.conversations = ConversationRepo(self.db)
        self.prompts = PromptRepo(self.db)
        self.cache = CacheRepo(self.db)
        self.runs = RunRepo(self.db)
        self.leases = LeaseRepo(self.db)
        self.autonomy = AutonomyRepo(self.db)
        self.spans = SpanRepo(self.db)
        self.challengers = ChallengerRepo(self.db)
        self.spend = SpendRepo(self.db)
        self.figures = FiguresRepo(self.db)

    def transaction(self):
        return transaction(self.db)

    def close(self) -> None:
        self.db.conn.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
