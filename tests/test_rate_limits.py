"""Provider-wide rate limits (`[llm.limits]`): no 60 s window ever holds more than rpm requests or tpm tokens,
calls from several threads' event loops share max_concurrency, and a 429 pauses every call to that provider."""

from __future__ import annotations

import asyncio
import heapq
import threading
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nightloop.config import RateLimitConfig, RoleConfig, load_settings
from nightloop.errors import ProviderError
from nightloop.llm.client import LLMClient, build_provider
from nightloop.models import Message
from nightloop.rate_limits import WINDOW_S, RateLimits, limit_key
from nightloop.rate_window import MemoryWindow, per_window
from nightloop.testing import Answer
from nightloop.testing.rate_limited import RateLimitedOpenAIServer


@settings(max_examples=150, deadline=None)
@given(
    rpm=st.integers(1, 12),
    tpm=st.integers(50, 400),
    calls=st.lists(
        st.tuples(st.floats(0, 40), st.integers(1, 120), st.floats(0.01, 30), st.floats(0, 1)), min_size=1, max_size=60
    ),
)
def test_no_window_the_provider_counts_ever_holds_more_than_the_limits(
    rpm: int, tpm: int, calls: list[tuple[float, int, float, float]]
) -> None:
    """Calls ask at random times, take random latencies, and reach the provider anywhere between their start and
    their answer: counted at arrival, as the provider counts, no 60 s window exceeds rpm or tpm."""
    window = MemoryWindow(RateLimitConfig(rpm=rpm, tpm=tpm))
    events: list[tuple[float, int, str, int]] = []  # (time, order, what, call number)
    asked = 1000.0
    for number, (gap, _, _, _) in enumerate(calls):
        asked += gap
        heapq.heappush(events, (asked, number, "ask", number))
    arrivals, places, order = [], {}, len(calls)
    while events:
        now, _, what, number = heapq.heappop(events)
        _, tokens, latency, transit = calls[number]
        tokens = min(tokens, tpm)
        if what == "end":
            window.end(places[number], now)
            continue
        booked = window.book(tokens, now)
        order += 1
        if booked is None:  # in-flight calls fill the window: ask again a little later
            heapq.heappush(events, (now + 0.5, order, "ask", number))
            continue
        places[number], start = booked
        assert start >= now
        arrivals.append((start + transit * latency, tokens))
        heapq.heappush(events, (start + latency, order, "end", number))
    assert len(arrivals) == len(calls)
    for arrival, _ in arrivals:
        inside = [n for a, n in arrivals if arrival - WINDOW_S < a <= arrival]
        assert len(inside) <= rpm
        assert sum(inside) <= tpm


def test_a_call_waits_only_as_long_as_the_limit_needs() -> None:
    window = MemoryWindow(RateLimitConfig(rpm=2))
    first, second = window.book(1, 1000.0), window.book(1, 1000.0)
    assert first is not None and second is not None and first[1] == second[1] == 1000.0
    assert window.book(1, 1000.5) is None  # both in flight: no window the provider counts has room yet
    window.end(first[0], 1002.0)
    window.end(second[0], 1003.0)
    # The third waits for the first answer's window to pass: its request may have arrived as late as then.
    assert window.book(1, 1010.0) == (3, 1002.0 + WINDOW_S)


def test_concurrency_counts_calls_in_flight_in_the_window() -> None:
    window = MemoryWindow(RateLimitConfig(max_concurrency=1))
    first = window.book(1, 0.0)
    assert first is not None and window.book(1, 0.1) is None
    window.end(first[0], 0.2)
    assert window.book(1, 0.3) is not None


def test_limits_are_found_by_base_url_then_provider() -> None:
    limits = {"openai": RateLimitConfig(rpm=1), "http://127.0.0.1:9/v1": RateLimitConfig(rpm=2)}
    assert limit_key(RoleConfig(provider="openai", base_url="http://127.0.0.1:9/v1/"), limits) == "http://127.0.0.1:9/v1"
    assert limit_key(RoleConfig(provider="openai", base_url="http://elsewhere/v1"), limits) == "openai"
    assert limit_key(RoleConfig(provider="sim"), limits) is None


def test_config_refuses_a_zero_limit_and_keeps_the_run_id() -> None:
    from nightloop.errors import ConfigError

    with pytest.raises(ConfigError, match="llm.limits.openai.rpm"):
        load_settings(llm={"limits": {"openai": {"rpm": 0}}})
    # How fast calls may go does not change what a night finds: finished nights are not re-run for it.
    assert load_settings(llm={"limits": {"openai": {"rpm": 5}}}).config_hash() == load_settings().config_hash()


def _role(server: RateLimitedOpenAIServer) -> RoleConfig:
    return RoleConfig(provider="openai", model="gpt-4o-mini", base_url=server.base_url, max_retries=0, max_tokens=16)


def _nights_calling(client_for_thread, threads: int, calls_each: int) -> list[BaseException]:
    """``threads`` threads, each with its own event loop (as parallel nights have), making concurrent calls."""
    errors: list[BaseException] = []

    def night(number: int) -> None:
        client = client_for_thread()

        async def calls() -> None:
            asked = [client.complete([Message(role="user", content=f"night {number} call {i}")]) for i in range(calls_each)]
            for outcome in await asyncio.gather(*asked, return_exceptions=True):
                if isinstance(outcome, BaseException):
                    errors.append(outcome)
            await client.aclose()

        asyncio.run(calls())

    workers = [threading.Thread(target=night, args=(n,)) for n in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=60)
    return errors


def test_threads_share_max_concurrency_and_the_server_never_says_429(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "test-key-not-real")
    with RateLimitedOpenAIServer(max_concurrency=3, hold_s=0.05) as server:
        role = _role(server)
        limits = RateLimits({server.base_url: RateLimitConfig(max_concurrency=3)})
        errors = _nights_calling(lambda: LLMClient(build_provider(role), role, limiter=limits.for_role(role)), 4, 10)
        assert errors == [] and server.rejected == 0
        assert server.accepted == 40 and server.peak_in_flight == 3
        stats = limits.usage()[server.base_url][0]
        assert stats.calls == 40 and stats.in_flight == 0 and stats.waiting == 0


def test_without_limits_the_same_calls_meet_429s(monkeypatch: pytest.MonkeyPatch) -> None:
    """The control for the test above: the server does refuse what exceeds its limit."""
    monkeypatch.setenv("OPENAI_API_KEY", "test-key-not-real")
    with RateLimitedOpenAIServer(max_concurrency=3, hold_s=0.05) as server:
        role = _role(server)
        errors = _nights_calling(lambda: LLMClient(build_provider(role), role), 4, 10)
        assert server.rejected > 0 and errors and all(getattr(e, "status", None) == 429 for e in errors)


def test_a_429_pauses_every_call_to_that_provider_for_its_retry_after(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "test-key-not-real")
    with RateLimitedOpenAIServer() as server:
        server.push(Answer.error(429, headers={"retry-after": "1.5"}, message="slow down"))
        role = _role(server)
        limits = RateLimits({"openai": RateLimitConfig(max_concurrency=8)})
        client = LLMClient(build_provider(role), role, limiter=limits.for_role(role))

        async def two_calls() -> float:
            with pytest.raises(ProviderError):
                await client.complete([Message(role="user", content="first")])
            refused = time.monotonic()
            await client.complete([Message(role="user", content="second")])
            await client.aclose()
            return time.monotonic() - refused

        waited = asyncio.run(two_calls())
        assert waited >= 1.4, f"the next call started {waited:.2f} s after the 429 asked for 1.5 s"
        assert limits.usage()["openai"][0].rate_limited == 1


def test_a_burst_from_several_nights_never_exceeds_the_servers_window(monkeypatch: pytest.MonkeyPatch) -> None:
    """Four nights burst 24 calls at a server allowing 6 a (1 s) window; requests reach it up to 0.4 s after the
    limiter let them go, so late ones land in the next window, where the limiter must have counted them."""
    monkeypatch.setenv("OPENAI_API_KEY", "test-key-not-real")
    with RateLimitedOpenAIServer(rpm=6, window_s=1.0, arrival_delay_s=0.4, hold_s=0.05) as server:
        role = _role(server)
        limits = RateLimits({server.base_url: RateLimitConfig(rpm=360, window_s=1.0)})  # 6 a window
        errors = _nights_calling(lambda: LLMClient(build_provider(role), role, limiter=limits.for_role(role)), 4, 6)
        assert server.rejected == 0 and errors == []
        assert server.accepted == 24 and limits.usage()[server.base_url][0].calls == 24


def test_each_sdk_retry_takes_a_place_of_its_own(monkeypatch: pytest.MonkeyPatch) -> None:
    """A call the SDK retries (a 500 first) sends two requests: the retry waits for a place like any call."""
    monkeypatch.setenv("OPENAI_API_KEY", "test-key-not-real")
    with RateLimitedOpenAIServer(rpm=2, window_s=3.0) as server:
        server.push(Answer.error(500, message="try again"))
        role = _role(server).model_copy(update={"max_retries": 1})
        limits = RateLimits({server.base_url: RateLimitConfig(rpm=40, window_s=3.0)})  # 2 a window
        client = LLMClient(build_provider(role), role, limiter=limits.for_role(role))

        async def two_calls() -> list[object]:
            asked = [client.complete([Message(role="user", content=f"call {i}")]) for i in range(2)]
            outcomes = await asyncio.gather(*asked, return_exceptions=True)
            await client.aclose()
            return outcomes

        outcomes = asyncio.run(two_calls())
        assert not [o for o in outcomes if isinstance(o, BaseException)] and server.rejected == 0
        assert server.calls == 3 and limits.usage()[server.base_url][0].calls == 3


def test_a_429_the_sdk_retries_pauses_the_other_calls_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """The SDK retries the 429 itself (after its retry-after): the limiter hears of it before, and holds back a
    call another night makes meanwhile for the same retry-after."""
    monkeypatch.setenv("OPENAI_API_KEY", "test-key-not-real")
    with RateLimitedOpenAIServer() as server:
        server.push(Answer.error(429, headers={"retry-after": "1.5"}, message="slow down"))
        role = _role(server).model_copy(update={"max_retries": 1})
        limits = RateLimits({"openai": RateLimitConfig(rpm=1000)})
        client = LLMClient(build_provider(role), role, limiter=limits.for_role(role))

        async def retried_and_other() -> float:
            started = time.monotonic()
            retried = asyncio.create_task(client.complete([Message(role="user", content="refused, then retried")]))
            await asyncio.sleep(0.3)
            await client.complete([Message(role="user", content="another night's call")])
            other_done = time.monotonic() - started
            await retried
            await client.aclose()
            return other_done

        other_done = asyncio.run(retried_and_other())
        assert other_done >= 1.4, f"the other call went through {other_done:.2f} s after the 429 asked for 1.5 s"
        assert limits.usage()["openai"][0].rate_limited == 1 and server.calls == 3


def test_a_shorter_provider_window_holds_its_share_of_the_minute() -> None:
    """Azure-style 10 s windows: rpm 60 lets 10 calls start in one window, the 11th when the first has left it."""
    window = MemoryWindow(RateLimitConfig(rpm=60, tpm=6000, window_s=10.0))
    starts = [window.book(1, 100.0) for _ in range(10)]
    assert [s[1] for s in starts if s] == [100.0] * 10
    for place_id, _ in filter(None, starts):
        window.end(place_id, 100.5)
    assert window.book(1, 101.0) == (11, 110.5)
    assert per_window(RateLimitConfig(rpm=60, tpm=6000, window_s=10.0)).model_dump(include={"rpm", "tpm"}) == {"rpm": 10, "tpm": 1000}
