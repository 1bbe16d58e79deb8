"""Opening the SQLite store: one file, WAL, migrations per area, transactions."""

from __future__ import annotations

import errno
import fcntl
import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import sqlite_utils

from nightloop.errors import ConfigError, NotFound, StoreFull

__all__ = ["NoStore", "is_disk_full", "is_store_error", "open_db", "savepoint", "store_full", "transaction"]


class NoStore(NotFound, ConfigError):
    """A command that only reads was pointed at a path where no store exists."""

MIGRATIONS_TABLE = "_sqlite_migrations"


def open_db(
    path: Path | str | None, migration_sets: Sequence[sqlite_utils.Migrations] = (), *, read_only: bool = False
) -> sqlite_utils.Database:
    """Open (creating) the store at ``path`` (``None`` = in memory) and apply pending migrations.

    A path that is not a nightloop store (a directory, another file, another app's SQLite database) raises
    :class:`ConfigError`; processes opening one new store together migrate it one at a time.
    ``read_only`` opens an existing store for reading only: nothing is created, migrated or switched to WAL,
    so it works on a read-only file or mount; a missing file raises :class:`NoStore`.
    """
    if read_only and path is not None and str(path) != ":memory:":
        return _open_read_only(Path(path), migration_sets)
    if path is None or str(path) == ":memory:":
        db = sqlite_utils.Database(memory=True)
        _configure(db)
        for migrations in migration_sets:
            migrations.apply(db)
        return db
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        # isolation_level=None: we issue BEGIN/COMMIT ourselves, so a transaction means exactly what it says.
        conn = sqlite3.connect(str(path), timeout=30.0, isolation_level=None, check_same_thread=False)
    except (OSError, sqlite3.Error) as exc:
        raise _not_a_store(path, exc) from exc
    db = sqlite_utils.Database(conn)
    try:
        _configure(db)
        if any(migrations.pending(db) for migrations in migration_sets):
            with _migration_lock(path):
                _refuse_foreign(db, path)
                _use_wal(db)
                for migrations in migration_sets:
                    migrations.apply(db)
        else:
            _use_wal(db)
    except sqlite3.DatabaseError as exc:  # OperationalError too: "file is not a database", unreadable file
        conn.close()
        if "locked" in str(exc):  # busy for longer than the timeout: a store, just a busy one
            raise
        if is_disk_full(exc):  # a store, on a full disk (a migration that did not fit)
            raise store_full(path) from exc
        raise _not_a_store(path, exc) from exc
    except BaseException:
        conn.close()
        raise
    return db


def _open_read_only(path: Path, migration_sets: Sequence[sqlite_utils.Migrations]) -> sqlite_utils.Database:
    if not path.is_file():
        raise NoStore(
            f"No nightloop store at {path}: check --db (or NIGHTLOOP_DB / db in nightloop.toml). "
            "Commands that only read never create one; `nightloop ingest` or `nightloop prompts import` does."
        )
    uri = path.resolve().as_uri()
    conn = None
    try:
        try:
            conn = sqlite3.connect(f"{uri}?mode=ro", uri=True, timeout=30.0, isolation_level=None, check_same_thread=False)
            conn.execute("select count(*) from sqlite_master").fetchone()
        except sqlite3.OperationalError:
            # A WAL store on a read-only mount: its -shm cannot be created, so read the file as it is.
            if conn is not None:
                conn.close()
            conn = sqlite3.connect(f"{uri}?immutable=1", uri=True, isolation_level=None, check_same_thread=False)
            conn.execute("select count(*) from sqlite_master").fetchone()
        db = sqlite_utils.Database(conn)
        db.execute("PRAGMA busy_timeout=30000")
        if MIGRATIONS_TABLE not in db.table_names():
            raise _not_a_store(path, "it has no nightloop tables")
        if any(migrations.pending(db) for migrations in migration_sets):
            raise ConfigError(
                f"The store {path} was written by an older nightloop; run a writing command on it once "
                "(e.g. `nightloop ingest`) to upgrade it, then read it again."
            )
    except sqlite3.DatabaseError as exc:
        if conn is not None:
            conn.close()
        raise _not_a_store(path, exc) from exc
    except BaseException:
        if conn is not None:
            conn.close()
        raise
    return db


def is_disk_full(exc: BaseException) -> bool:
    """SQLite's SQLITE_FULL (no space on the disk, or the database at its size limit), or the OS's ENOSPC."""
    if isinstance(exc, sqlite3.Error):
        return getattr(exc, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL or "database or disk is full" in str(exc)
    return isinstance(exc, OSError) and exc.errno == errno.ENOSPC


def is_store_error(exc: BaseException) -> bool:
    """An error of the store itself (SQLite's, or a full disk), as opposed to a fault of what called it: raised from
    inside a model call (its cache or its spend are written there), it is a write that failed, which stops the stage,
    not a fault of the case being evaluated."""
    return isinstance(exc, sqlite3.Error) or is_disk_full(exc)


def store_full(path: Path | str | None, resume: str = "the same command") -> StoreFull:
    """What to say when a write to the store found the disk full (the failed transaction was rolled back)."""
    where = f"the disk holding {path}" if path is not None else "the disk holding the store"
    return StoreFull(
        f"{where[0].upper()}{where[1:]} is full (SQLite: database or disk is full): free space there and re-run "
        f"{resume} to resume; nothing was lost (the write that failed was rolled back, finished work is kept)."
    )


def _configure(db: sqlite_utils.Database) -> None:
    db.execute("PRAGMA busy_timeout=30000")
    db.execute("PRAGMA foreign_keys=ON")


#: The page size of a new store: rows of conversations and spans are a few KB of JSON, and on 4 KB pages (SQLite's
#: default) a quarter of the file was the unused ends of pages (measured: 171 vs 131 MB for 100,000 spans).
PAGE_SIZE = 16384


def _use_wal(db: sqlite_utils.Database) -> None:
    db.execute(f"PRAGMA page_size={PAGE_SIZE}")  # only a new database takes it (an existing one keeps its own)
    # NORMAL: a commit is appended to the WAL without an fsync (3 ms here, on the event loop of a night's replay,
    # where it delayed the deadline timers of calls in flight); the WAL is synced at checkpoints. A crash of the
    # process loses nothing and the file never corrupts; a power cut may undo the last commits before it.
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")


def _not_a_store(path: Path, reason: object) -> ConfigError:
    return ConfigError(f"{path} is not a nightloop store: {reason}; point --db at a new or existing nightloop store.")


def _refuse_foreign(db: sqlite_utils.Database, path: Path) -> None:
    """A database with tables but no migration record belongs to another application: never migrate it."""
    names = set(db.table_names())
    if names and MIGRATIONS_TABLE not in names:
        shown = ", ".join(sorted(names)[:5])
        raise _not_a_store(path, f"it already holds tables ({shown}) that nightloop did not create")


@contextmanager
def _migration_lock(path: Path) -> Iterator[None]:
    """An exclusive lock on ``<db>.migrate.lock`` while checking and applying migrations."""
    lock_path = path.with_name(path.name + ".migrate.lock")
    try:
        handle = open(lock_path, "a")  # noqa: SIM115 - held for the whole block
    except OSError as exc:
        raise _not_a_store(path, f"cannot create its lock file {lock_path}: {exc}") from exc
    with handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


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
        if conn.in_transaction:  # SQLite itself rolls back after some errors (SQLITE_FULL): keep that error
            conn.execute("ROLLBACK")
        raise
    else:
        conn.execute("COMMIT")


@contextmanager
def savepoint(conn: sqlite3.Connection, name: str = "record") -> Iterator[None]:
    """A nested part of the current transaction that rolls back alone (one record of a batch)."""
    conn.execute(f"SAVEPOINT {name}")
    try:
        yield
    except BaseException:
        if conn.in_transaction:  # not when SQLite already rolled the whole transaction back (SQLITE_FULL)
            conn.execute(f"ROLLBACK TO {name}")
            conn.execute(f"RELEASE {name}")
        raise
    conn.execute(f"RELEASE {name}")
