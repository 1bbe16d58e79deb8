"""Provider-wide rate limits: ``[llm.limits."<provider or base_url>"] rpm / tpm / max_concurrency``.

One :class:`RateLimits` is shared by every night a process runs (``pipeline.run_nights`` builds it), so nights of
different prompts, on their own threads and event loops, draw on one budget of requests and tokens per provider.
A call first takes a concurrency slot, then *reserves* the earliest start time at which neither the requests nor
the tokens of any 60 s window would exceed the limit, and sleeps until then: the limit holds by construction,
not by retrying 429s away. A 429 that still arrives (another client on the same account) pauses every call to
that provider for the ``retry-after`` it asked (at most ``WINDOW_S``; ``PAUSE_AFTER_429_S`` if it named none).

Across processes on one machine the limits are not shared: one process (one flow run, or one ``nightloop run``)
should run the night's prompts (see "Many prompts" in the README).
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field

from nightloop.config import RateLimitConfig, RoleConfig, Settings

__all__ = ["PAUSE_AFTER_429_S", "WINDOW_S", "MARGIN_S", "LimiterStats", "ProviderLimiter", "RateLimits", "limit_key", "retry_after_of"]

#: The window providers count requests and tokens per minute over.
WINDOW_S = 60.0
#: Added to the window when booking: a request sent later may reach the provider a little sooner than the one
#: before it, and the provider's clock counts arrivals.
MARGIN_S = 0.5
#: How long every call to a provider waits after it answered 429 without a retry-after.
PAUSE_AFTER_429_S = 1.0


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
class ProviderLimiter:
    """One provider's limits, safe to share between threads each running its own event loop."""

    key: str
    limits: RateLimitConfig
    clock: Callable[[], float] = time.monotonic
    stats: LimiterStats = field(default_factory=LimiterStats)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    #: (start time, tokens) of every call reserved in the last window, in start order.
    _starts: deque[tuple[float, int]] = field(default_factory=deque, repr=False)
    _slots_taken: int = 0
    _waiters: deque[_Waiter] = field(default_factory=deque, repr=False)
    _paused_until: float = 0.0

    @asynccontextmanager
    async def slot(self, tokens: int) -> AsyncIterator[None]:
        """Wait until a call of ``tokens`` may start within the limits; hold a concurrency slot while it runs."""
        asked = self.clock()
        with self._counting_waiters():
            await self._take_concurrency_slot()
            try:
                start = self._reserve(tokens)
                delay = start - self.clock()
                if delay > 0:
                    await asyncio.sleep(delay)
            except BaseException:
                self._release_concurrency_slot()
                raise
        with self._lock:
            self.stats.waited_s += max(0.0, self.clock() - asked)
            self.stats.in_flight += 1
        try:
            yield
        except Exception as exc:
            if getattr(exc, "status", None) == 429:
                self.pause(retry_after_of(exc))
            raise
        finally:
            with self._lock:
                self.stats.in_flight -= 1
            self._release_concurrency_slot()

    def pause(self, seconds: float) -> None:
        """No call to this provider starts for ``seconds`` (the provider said it is over its limit)."""
        with self._lock:
            self.stats.rate_limited += 1
            self._paused_until = max(self._paused_until, self.clock() + seconds)

    def _reserve(self, tokens: int) -> float:
        """The earliest start at which this call keeps every 60 s window within rpm and tpm; booked at once."""
        rpm, tpm = self.limits.rpm, self.limits.tpm
        if tpm is not None:
            tokens = min(tokens, tpm)  # a call larger than the whole budget still runs, alone in its window
        with self._lock:
            now = self.clock()
            while self._starts and self._starts[0][0] <= now - WINDOW_S - MARGIN_S:
                self._starts.popleft()
            start = max(now, self._paused_until, self._starts[-1][0] if self._starts else now)
            if rpm is not None and len(self._starts) >= rpm:
                start = max(start, self._starts[-rpm][0] + WINDOW_S + MARGIN_S)
            if tpm is not None:
                start = max(start, self._tokens_fit_at(start, tokens, tpm))
            self._starts.append((start, tokens))
            self.stats.calls += 1
            self.stats.tokens += tokens
            return start

    def _tokens_fit_at(self, start: float, tokens: int, tpm: int) -> float:
        """The first time from ``start`` at which the window ending then has room for ``tokens``."""
        in_window = [(t, n) for t, n in self._starts if t > start - WINDOW_S - MARGIN_S]
        used = sum(n for _, n in in_window)
        for t, n in in_window:  # oldest first: each one leaving the window frees its tokens
            if used + tokens <= tpm:
                break
            used -= n
            start = max(start, t + WINDOW_S + MARGIN_S)
        return start

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


def retry_after_of(error: BaseException) -> float:
    """The wait a 429 asked for (``retry-after-ms`` / ``retry-after`` of the SDK error behind ``error``), at most
    ``WINDOW_S``; ``PAUSE_AFTER_429_S`` when it named none."""
    from nightloop.llm.common import retry_after_seconds

    headers = getattr(getattr(error.__cause__, "response", None), "headers", None) or {}
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
    """Every provider's limiter for one process: build once, hand to every night (``run_nights`` does)."""

    def __init__(self, limits: dict[str, RateLimitConfig], clock: Callable[[], float] = time.monotonic) -> None:
        self._limits = limits
        self._limiters = {key: ProviderLimiter(key, config, clock) for key, config in limits.items()}

    @classmethod
    def from_settings(cls, settings: Settings) -> RateLimits:
        return cls(settings.llm.limits)

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
            shown = ", ".join(f"{name} {value}" for name, value in limits.model_dump().items() if value is not None)
            parts.append(
                f"{key}: {stats.calls} calls, {stats.tokens} tokens ({shown}); "
                f"{stats.in_flight} in flight, {stats.waiting} waiting; 429s {stats.rate_limited}"
            )
        return " · ".join(parts)
