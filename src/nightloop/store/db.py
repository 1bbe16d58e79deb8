"""Opening the SQLite store: one file, WAL, migrations per area, transactions."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import sqlite_utils

__all__ = ["open_db", "transaction"]


def open_db(path: Path | str | None, migration_sets: list[sqlite_utils.Migrations] = ()) -> sqlite_utils.Database:
    """Open (creating) the store at ``path`` (``None`` = in memory) and apply pending migrations."""
    if path is None or str(path) == ":memory:":
        db = sqlite_utils.Database(memory=True)
    else:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        # isolation_level=None: we issue BEGIN/COMMIT ourselves, so a transaction means exactly what it says.
        conn = sqlite3.connect(str(path), timeout=30.0, isolation_level=None, check_same_thread=False)
        db = sqlite_utils.Database(conn)
        db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA busy_timeout=30000")
    db.execute("PRAGMA foreign_keys=ON")
    for migrations in migration_sets:
        migrations.apply(db)
    return db


@contextmanager
def transaction(db: sqlite_utils.Database, *, immediate: bool = True) -> Iterator[sqlite_utils.Database]:
    """Run the block in one transaction; ``immediate`` takes the write lock up front (for compare-and-swap)."""
    conn = db.conn
    if conn.in_transaction:  # nested: the outer transaction owns commit/rollback
        yield db
        return
    conn.execute("BEGIN IMMEDIATE" if immediate else "BEGIN")
    try:
        yield db
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    else:
        conn.execute("COMMIT")
