"""The places calls to one provider hold in its rate-limit window, in this process or shared by every process on
the machine (a small SQLite file beside the store).

A provider counts a request in its sliding window from when the request *arrives*, somewhere between the moment
we let it go and the moment its answer comes back. So a call holds its place from its booking until its answer,
and for a window after it: no window the provider can count then holds more than ``rpm`` requests or ``tpm``
tokens, however late the request reached it (a call booked last sees every other call in that window still
holding its place). A call that answered with 429 holds its place the same way.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from nightloop.config import RateLimitConfig

__all__ = ["WINDOW_S", "MemoryWindow", "Place", "SharedWindow", "Window", "earliest_start", "per_window"]

#: The minute ``rpm`` and ``tpm`` are counted over (a provider's window, ``window_s``, may be shorter).
WINDOW_S = 60.0


@dataclass(frozen=True)
class Place:
    """A booked call: from ``start`` it may be sent; ``end`` is when its answer came (None: not yet)."""

    start: float
    tokens: int
    end: float | None = None


def per_window(limits: RateLimitConfig) -> RateLimitConfig:
    """The requests and tokens one window of ``limits.window_s`` holds (``rpm`` and ``tpm`` are per minute)."""

    def scaled(per_minute: int | None) -> int | None:
        return None if per_minute is None else max(1, int(round(per_minute * limits.window_s / WINDOW_S, 6)))

    return limits.model_copy(update={"rpm": scaled(limits.rpm), "tpm": scaled(limits.tpm)})


def earliest_start(places: list[Place], now: float, tokens: int, limits: RateLimitConfig) -> float | None:
    """The first time from ``now`` a call of ``tokens`` may start within ``limits`` (already :func:`per_window`),
    given the places held; None while calls in flight alone leave no room (ask again when one has answered)."""
    rpm, tpm, most, window_s = limits.rpm, limits.tpm, limits.max_concurrency, limits.window_s
    held = [p for p in places if p.end is None or p.end > now - window_s]
    in_flight = [p for p in held if p.end is None]
    count, used = len(held), sum(p.tokens for p in held)
    flight_tokens = sum(p.tokens for p in in_flight)
    if (rpm is not None and len(in_flight) >= rpm) or (most is not None and len(in_flight) >= most):
        return None
    if tpm is not None and in_flight and flight_tokens + tokens > tpm:
        return None
    start = max([now] + [p.start for p in in_flight])  # calls start in the order they asked
    for place in sorted((p for p in held if p.end is not None), key=lambda p: p.end or 0.0):
        if (rpm is None or count < rpm) and (tpm is None or used + tokens <= tpm):
            break
        count, used = count - 1, used - place.tokens
        start = max(start, (place.end or 0.0) + window_s)
    return start


class Window(Protocol):
    """One provider's booked places. ``book`` and ``end`` are atomic for every caller sharing the window (threads,
    and with :class:`SharedWindow` processes); ``book`` returns None when no place can be given yet."""

    def book(self, tokens: int, now: float) -> tuple[int, float] | None:
        """``(place id, start)`` of a new place for a call of ``tokens``, at the earliest start the limits allow."""
        ...

    def end(self, place_id: int, now: float) -> None:
        """The call of ``place_id`` has its answer (or gave up) at ``now``."""
        ...

    def pause(self, until: float) -> None:
        """No call starts before ``until`` (the provider answered 429)."""
        ...


class MemoryWindow:
    """The places of one process's calls (threads each running an event loop share it)."""

    def __init__(self, limits: RateLimitConfig) -> None:
        self.limits, self.window_s = per_window(limits), limits.window_s
        self._lock = threading.Lock()
        self._places: dict[int, Place] = {}
        self._next_id = 0
        self._paused_until = 0.0

    def book(self, tokens: int, now: float) -> tuple[int, float] | None:
        with self._lock:
            self._places = {i: p for i, p in self._places.items() if p.end is None or p.end > now - self.window_s}
            start = earliest_start(list(self._places.values()), now, tokens, self.limits)
            if start is None:
                return None
            start = max(start, self._paused_until)
            self._next_id += 1
            self._places[self._next_id] = Place(start, tokens)
            return self._next_id, start

    def end(self, place_id: int, now: float) -> None:
        with self._lock:
            place = self._places.get(place_id)
            if place is not None:
                self._places[place_id] = Place(place.start, place.tokens, max(now, place.start))

    def pause(self, until: float) -> None:
        with self._lock:
            self._paused_until = max(self._paused_until, until)


_SCHEMA = """
CREATE TABLE IF NOT EXISTS places (
    id INTEGER PRIMARY KEY, key TEXT NOT NULL, start REAL NOT NULL, tokens INTEGER NOT NULL, end_at REAL, pid INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS places_by_key ON places (key, end_at);
CREATE TABLE IF NOT EXISTS pauses (key TEXT PRIMARY KEY, until REAL NOT NULL);
"""


class SharedWindow:
    """The places of every process on this machine calling one provider, in a SQLite file (``<store>.limits``).

    Times are ``time.monotonic()``, one clock for every process on a machine. The places of a process that died
    before its calls answered end when another process next books (their requests may have arrived until then).
    """

    def __init__(self, path: Path, key: str, limits: RateLimitConfig) -> None:
        self.key, self.limits, self.window_s = key, per_window(limits), limits.window_s
        self._lock = threading.Lock()
        self._db = sqlite3.connect(path, timeout=30, isolation_level=None, check_same_thread=False)
        # Bookings are worth nothing after a crash (the calls died with it): no fsync per booking.
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=OFF")
        self._db.executescript(_SCHEMA)

    def book(self, tokens: int, now: float) -> tuple[int, float] | None:
        with self._lock, self._transaction() as db:
            self._end_places_of_dead_processes(db, now)
            db.execute("DELETE FROM places WHERE key = ? AND end_at <= ?", (self.key, now - self.window_s))
            rows = db.execute("SELECT start, tokens, end_at FROM places WHERE key = ?", (self.key,)).fetchall()
            start = earliest_start([Place(*row) for row in rows], now, tokens, self.limits)
            if start is None:
                return None
            paused = db.execute("SELECT until FROM pauses WHERE key = ?", (self.key,)).fetchone()
            start = max(start, paused[0] if paused else 0.0)
            cursor = db.execute(
                "INSERT INTO places (key, start, tokens, pid) VALUES (?, ?, ?, ?)", (self.key, start, tokens, os.getpid())
            )
            return int(cursor.lastrowid or 0), start

    def end(self, place_id: int, now: float) -> None:
        with self._lock, self._transaction() as db:
            db.execute("UPDATE places SET end_at = MAX(?, start) WHERE id = ? AND end_at IS NULL", (now, place_id))

    def pause(self, until: float) -> None:
        with self._lock, self._transaction() as db:
            db.execute(
                "INSERT INTO pauses (key, until) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET until = MAX(until, excluded.until)",
                (self.key, until),
            )

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def _transaction(self) -> _Immediate:
        return _Immediate(self._db)

    def _end_places_of_dead_processes(self, db: sqlite3.Connection, now: float) -> None:
        pids = [row[0] for row in db.execute("SELECT DISTINCT pid FROM places WHERE key = ? AND end_at IS NULL", (self.key,))]
        for pid in pids:
            if pid != os.getpid() and not _alive(pid):
                db.execute("UPDATE places SET end_at = MAX(?, start) WHERE pid = ? AND end_at IS NULL", (now, pid))


class _Immediate:
    """``BEGIN IMMEDIATE`` … ``COMMIT`` (``ROLLBACK`` on error): one writer at a time across processes."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db

    def __enter__(self) -> sqlite3.Connection:
        self.db.execute("BEGIN IMMEDIATE")
        return self.db

    def __exit__(self, kind: object, error: object, trace: object) -> None:
        self.db.execute("ROLLBACK" if kind is not None else "COMMIT")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process of that number: alive
        return True
    return True
