"""Provider-wide rate limits: ``[llm.limits."<provider or base_url>"] rpm / tpm / max_concurrency``.

One :class:`RateLimits` is shared by every night a process runs (``pipeline.run_nights`` builds it), and built
from the settings it shares its windows with every other process using the same store on this machine (two
``nightloop run`` processes, or two Prefect workers): see :mod:`nightloop.rate_window`. A call first takes a
concurrency slot, then *books* the earliest start at which its place in the provider's window keeps every window
the provider may count within rpm and tpm, and sleeps until then; it holds that place until its answer comes,
and for a window after. So the limit holds by construction, not by retrying 429s away. Every HTTP attempt the SDK
makes for a call (its retries, the repair re-ask) books a place of its own (``attempt_starts``). A 429 that
still arrives (another client on the same account) pauses every call to that provider, in every process, for the
``retry-after`` it asked (at most a minute; ``PAUSE_AFTER_429_S`` if it named none).
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from contextlib import asynccontextmanager, contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path

from nightloop.config import RateLimitConfig, RoleConfig, Settings
from nightloop.rate_window import WINDOW_S, MemoryWindow, SharedWindow, Window, per_window

__all__ = [
    "PAUSE_AFTER_429_S", "POLL_S", "WINDOW_S", "LimiterStats", "ProviderLimiter", "RateLimits", "attempt_starts",
    "limit_key", "rate_limited_answer", "retry_after_of", "shared_limits_path",
]

#: How long every call to a provider waits after it answered 429 without a retry-after.
PAUSE_AFTER_429_S = 1.0
#: How often a call asks again for a place while calls in flight fill the window.
POLL_S = 0.05


@dataclass
class LimiterStats:
    """What one provider's limiter let through, for progress lines and artifacts."""

    calls: int = 0
    tokens: int = 0
    in_flight: int = 0
    waiting: int = 0
    waited_s: float = 0.0
    rate_limited: int = 0


@dataclass
class _Waiter:
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[None]


@dataclass
class _Call:
    """The places one call holds: its first HTTP attempt uses the slot's, each further attempt books its own."""

    limiter: ProviderLimiter
    tokens: int
    places: list[int]
    first_attempt_sent: bool = False
    paused: bool = False


#: The call running in this task (the SDK's HTTP hooks run in the caller's task).
_CALL: ContextVar[_Call | None] = ContextVar("nightloop_rate_limited_call", default=None)


@dataclass
class ProviderLimiter:
    """One provider's limits, safe to share between threads each running its own event loop."""

    key: str
    limits: RateLimitConfig
    clock: Callable[[], float] = time.monotonic
    stats: LimiterStats = field(default_factory=LimiterStats)
    window: Window | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _slots_taken: int = 0
    _waiters: deque[_Waiter] = field(default_factory=deque, repr=False)

    def __post_init__(self) -> None:
        if self.window is None:
            self.window = MemoryWindow(self.limits)

    @asynccontextmanager
    async def slot(self, tokens: int) -> AsyncIterator[None]:
        """Wait until a call of ``tokens`` may start within the limits; hold a concurrency slot while it runs,
        and its place in the window until it answered."""
        asked = self.clock()
        call = _Call(self, tokens, [])
        with self._counting_waiters():
            await self._take_concurrency_slot()
            try:
                call.places.append(await self._book(tokens))
            except BaseException:
                self._release_concurrency_slot()
                raise
        with self._lock:
            self.stats.waited_s += max(0.0, self.clock() - asked)
            self.stats.in_flight += 1
        token = _CALL.set(call)
        try:
            yield
        except Exception as exc:
            if getattr(exc, "status", None) == 429 and not call.paused:
                self.pause(retry_after_of(exc))
            raise
        finally:
            _CALL.reset(token)
            self._end(call.places)
            with self._lock:
                self.stats.in_flight -= 1
            self._release_concurrency_slot()

    def pause(self, seconds: float) -> None:
        """No call to this provider starts for ``seconds`` (the provider said it is over its limit)."""
        with self._lock:
            self.stats.rate_limited += 1
        assert self.window is not None
        self.window.pause(self.clock() + seconds)

    async def _book(self, tokens: int) -> int:
        """A place in the window for a call of ``tokens``, once its start has come; its id."""
        assert self.window is not None
        if (tpm := per_window(self.limits).tpm) is not None:
            tokens = min(tokens, tpm)  # a call larger than the whole budget still runs, alone in its window
        while (booked := self.window.book(tokens, self.clock())) is None:
            await asyncio.sleep(POLL_S)
        place, start = booked
        with self._lock:
            self.stats.calls += 1
            self.stats.tokens += tokens
        try:
            while (delay := start - self.clock()) > 0:
                await asyncio.sleep(delay)
        except BaseException:
            self._end([place])
            raise
        return place

    def _end(self, places: list[int]) -> None:
        assert self.window is not None
        now = self.clock()
        for place in places:
            self.window.end(place, now)

    async def _take_concurrency_slot(self) -> None:
        limit = self.limits.max_concurrency
        if limit is None:
            return
        loop = asyncio.get_running_loop()
        with self._lock:
            if self._slots_taken < limit and not self._waiters:
                self._slots_taken += 1
                return
            waiter = _Waiter(loop, loop.create_future())
            self._waiters.append(waiter)
        try:
            await waiter.future
        except asyncio.CancelledError:
            with self._lock:
                if waiter in self._waiters:
                    self._waiters.remove(waiter)
                    raise
            # The slot was handed over as we were cancelled: pass it on.
            self._release_concurrency_slot()
            raise

    def _release_concurrency_slot(self) -> None:
        if self.limits.max_concurrency is None:
            return
        with self._lock:
            while self._waiters:
                waiter = self._waiters.popleft()
                if not waiter.loop.is_closed():
                    waiter.loop.call_soon_threadsafe(self._hand_over, waiter.future)
                    return  # the slot passes to the waiter: _slots_taken is unchanged
            self._slots_taken -= 1

    def _hand_over(self, future: asyncio.Future[None]) -> None:
        if future.done():  # cancelled meanwhile
            self._release_concurrency_slot()
        else:
            future.set_result(None)

    @contextmanager
    def _counting_waiters(self) -> Iterator[None]:
        with self._lock:
            self.stats.waiting += 1
        try:
            yield
        finally:
            with self._lock:
                self.stats.waiting -= 1


async def attempt_starts() -> None:
    """Called by a provider before each HTTP attempt of the call in this task: every attempt after the first
    (an SDK retry, a repair re-ask) waits for a place in the window of its own."""
    call = _CALL.get()
    if call is None:
        return
    if not call.first_attempt_sent:
        call.first_attempt_sent = True
        return
    call.places.append(await call.limiter._book(call.tokens))


def rate_limited_answer(headers: Mapping[str, str]) -> None:
    """Called by a provider for each 429 the call in this task receives, before the SDK retries it: every call
    to that provider pauses for its ``retry-after``."""
    call = _CALL.get()
    if call is not None:
        call.paused = True
        call.limiter.pause(_asked_wait(headers))


def retry_after_of(error: BaseException) -> float:
    """The wait a 429 asked for (``retry-after-ms`` / ``retry-after`` of the SDK error behind ``error``), at most
    a minute; ``PAUSE_AFTER_429_S`` when it named none."""
    headers = getattr(getattr(error.__cause__, "response", None), "headers", None) or {}
    return _asked_wait(headers)


def _asked_wait(headers: Mapping[str, str]) -> float:
    from nightloop.llm.common import retry_after_seconds

    for name, milliseconds in (("retry-after-ms", True), ("retry-after", False)):
        asked = retry_after_seconds(headers.get(name), milliseconds=milliseconds)
        if asked is not None:
            return min(max(asked, 0.0), WINDOW_S)
    return PAUSE_AFTER_429_S


def limit_key(role: RoleConfig, limits: dict[str, RateLimitConfig]) -> str | None:
    """The ``[llm.limits]`` entry a role draws on: its base_url when listed, else its provider name."""
    if role.base_url:
        wanted = role.base_url.rstrip("/")
        for key in limits:
            if key.rstrip("/") == wanted:
                return key
    return role.provider if role.provider in limits else None


class RateLimits:
    """Every provider's limiter for one process: build once, hand to every night (``run_nights`` does).

    With ``shared`` (a file path) every process on the machine passing the same path shares the windows.
    """

    def __init__(
        self, limits: dict[str, RateLimitConfig], clock: Callable[[], float] = time.monotonic, *,
        shared: Path | None = None,
    ) -> None:
        self._limits = limits
        self._limiters = {
            key: ProviderLimiter(key, config, clock, window=_window(key, config, shared))
            for key, config in limits.items()
        }

    @classmethod
    def from_settings(cls, settings: Settings) -> RateLimits:
        """The limits of ``[llm.limits]``, shared with every process using the same store (``<db>.limits``)."""
        on_disk = settings.llm.limits and str(settings.db) != ":memory:"
        shared = shared_limits_path(settings.db) if on_disk else None
        return cls(settings.llm.limits, shared=shared)

    def for_role(self, role: RoleConfig) -> ProviderLimiter | None:
        """The limiter a role's calls go through (None: its provider has no configured limits)."""
        key = limit_key(role, self._limits)
        return None if key is None else self._limiters[key]

    def usage(self) -> dict[str, tuple[LimiterStats, RateLimitConfig]]:
        """Per limit key: what went through so far, and the limits it went through."""
        return {key: (limiter.stats, limiter.limits) for key, limiter in self._limiters.items()}

    def describe(self) -> str:
        """One line per provider: calls and tokens spent against its limits, calls waiting and in flight."""
        parts = []
        for key, (stats, limits) in self.usage().items():
            shown = ", ".join(f"{name} {value}" for name, value in limits.model_dump(exclude_defaults=True).items())
            parts.append(
                f"{key}: {stats.calls} calls, {stats.tokens} tokens ({shown}); "
                f"{stats.in_flight} in flight, {stats.waiting} waiting; 429s {stats.rate_limited}"
            )
        return " · ".join(parts)


def shared_limits_path(db: Path) -> Path:
    """The file the processes using the store ``db`` share their rate-limit windows through."""
    return db.with_name(db.name + ".limits")


def _window(key: str, limits: RateLimitConfig, shared: Path | None) -> Window:
    return MemoryWindow(limits) if shared is None else SharedWindow(shared, key, limits)
