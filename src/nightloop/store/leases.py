"""Store area: leases — at most one running night per prompt and store.

A night holds its prompt's lease while it runs and renews it from a heartbeat thread. Another process that wants
the same prompt is refused, naming the holder, unless the lease is dead: its holder process is gone (same host), or
it was not renewed for ``ttl`` (a holder on another host that crashed, or a frozen one). A dead lease is taken over.
"""

from __future__ import annotations

import os
import socket
import sqlite3
import threading
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import sqlite_utils

from nightloop.errors import NightAlreadyRunning
from nightloop.store.db import transaction

__all__ = ["DEFAULT_TTL", "HeldLease", "Lease", "LeaseRepo", "migrations"]

migrations = sqlite_utils.Migrations("nightloop.leases")

DEFAULT_TTL = timedelta(minutes=10)


@migrations()
def m001_night_leases(db: sqlite_utils.Database) -> None:
    db["night_leases"].create(
        {
            "prompt_name": str,
            "run_id": str,
            "holder": str,
            "host": str,
            "pid": int,
            "acquired_at": str,
            "expires_at": str,
        },
        pk="prompt_name",
    )


def _now() -> datetime:
    return datetime.now(UTC)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


@dataclass(frozen=True)
class Lease:
    prompt_name: str
    run_id: str
    holder: str
    host: str
    pid: int
    acquired_at: datetime
    expires_at: datetime

    def dead(self, now: datetime) -> str | None:
        """Why this lease no longer protects a running night (None while it does)."""
        if self.expires_at <= now:
            return f"not renewed since {self.expires_at:%Y-%m-%d %H:%M:%S} UTC"
        if self.host == socket.gethostname() and not _pid_alive(self.pid):
            return f"process {self.pid} is gone"
        return None

    def describe(self) -> str:
        return (
            f"night {self.run_id} (process {self.pid} on {self.host}, running since "
            f"{self.acquired_at:%Y-%m-%d %H:%M:%S} UTC)"
        )


def _lease(row: dict) -> Lease:
    return Lease(
        prompt_name=row["prompt_name"],
        run_id=row["run_id"],
        holder=row["holder"],
        host=row["host"],
        pid=row["pid"],
        acquired_at=datetime.fromisoformat(row["acquired_at"]),
        expires_at=datetime.fromisoformat(row["expires_at"]),
    )


class LeaseRepo:
    def __init__(self, db: sqlite_utils.Database) -> None:
        self.db = db

    def current(self, prompt_name: str) -> Lease | None:
        rows = list(self.db["night_leases"].rows_where("prompt_name = ?", [prompt_name]))
        return _lease(rows[0]) if rows else None

    def acquire(self, prompt_name: str, run_id: str, *, ttl: timedelta = DEFAULT_TTL) -> Lease:
        """Take the prompt's lease, or raise :class:`NightAlreadyRunning` naming the live holder."""
        now = _now()
        lease = Lease(
            prompt_name=prompt_name,
            run_id=run_id,
            holder=uuid.uuid4().hex,
            host=socket.gethostname(),
            pid=os.getpid(),
            acquired_at=now,
            expires_at=now + ttl,
        )
        with transaction(self.db):  # BEGIN IMMEDIATE: two processes cannot both see the lease free
            held = self.current(prompt_name)
            if held is not None and held.dead(now) is None:
                raise NightAlreadyRunning(
                    f"Another night for prompt {prompt_name!r} is running on this store: {held.describe()}. "
                    "Wait for it to finish (`nightloop report` lists it then) and re-run; a night whose process "
                    f"died is taken over automatically (at the latest after {held.expires_at:%H:%M:%S} UTC)."
                )
            self.db["night_leases"].upsert(
                {
                    "prompt_name": prompt_name,
                    "run_id": run_id,
                    "holder": lease.holder,
                    "host": lease.host,
                    "pid": lease.pid,
                    "acquired_at": lease.acquired_at.isoformat(),
                    "expires_at": lease.expires_at.isoformat(),
                },
                pk="prompt_name",
            )
        return lease

    def release(self, lease: Lease) -> None:
        with transaction(self.db):
            self.db.execute(
                "DELETE FROM night_leases WHERE prompt_name = ? AND holder = ?", [lease.prompt_name, lease.holder]
            )

    def hold(self, prompt_name: str, run_id: str, *, ttl: timedelta = DEFAULT_TTL) -> HeldLease:
        """Take the lease and keep renewing it every ``ttl / 4`` (a thread with its own connection) until released."""
        return HeldLease(self, self.acquire(prompt_name, run_id, ttl=ttl), ttl)


class HeldLease:
    """A lease this process holds; ``release()`` (or leaving the ``with`` block) stops the heartbeat and frees it."""

    def __init__(self, repo: LeaseRepo, lease: Lease, ttl: timedelta) -> None:
        self.repo = repo
        self.lease = lease
        self._stop = threading.Event()
        self._heartbeat: threading.Thread | None = None
        path = _db_path(repo.db)
        if path is not None:
            self._heartbeat = threading.Thread(target=_renew_until, args=(path, lease, ttl, self._stop), daemon=True)
            self._heartbeat.start()

    def release(self) -> None:
        if self._stop.is_set():
            return
        self._stop.set()
        if self._heartbeat is not None:
            self._heartbeat.join(timeout=5)
        self.repo.release(self.lease)

    def __enter__(self) -> HeldLease:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def _db_path(db: sqlite_utils.Database) -> str | None:
    rows = db.execute("PRAGMA database_list").fetchall()
    path = rows[0][2] if rows else ""
    return path or None  # "" for an in-memory store: one process, nothing to race


def _renew_until(path: str, lease: Lease, ttl: timedelta, stop: threading.Event) -> None:
    """Push the lease's expiry forward until ``stop``; a lease taken over by another process is left alone."""
    interval = max(ttl.total_seconds() / 4, 0.05)
    conn = sqlite3.connect(path, timeout=30.0, isolation_level=None)
    try:
        while not stop.wait(interval):
            try:
                conn.execute(
                    "UPDATE night_leases SET expires_at = ? WHERE prompt_name = ? AND holder = ?",
                    [(_now() + ttl).isoformat(), lease.prompt_name, lease.holder],
                )
            except sqlite3.Error:  # busy past the timeout: try again at the next beat
                continue
    finally:
        conn.close()
