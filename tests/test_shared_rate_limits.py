"""Rate limits shared by the processes of one machine (``<db>.limits``): two real processes bursting at one
loopback server stay within its window together; a 429 seen by one pauses the other; a dead process's places end."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from nightloop.config import RateLimitConfig
from nightloop.rate_limits import shared_limits_path
from nightloop.rate_window import SharedWindow
from nightloop.testing.rate_limited import RateLimitedOpenAIServer

#: One process's nights: ``calls`` concurrent agent calls, ``rpm`` a minute counted over 1 s windows (``rpm / 60``
#: a window), through limits shared via ``limits_file``.
NIGHTS_PROCESS = textwrap.dedent(
    """
    import asyncio, sys
    from pathlib import Path
    from nightloop.config import RateLimitConfig, RoleConfig
    from nightloop.llm.client import LLMClient, build_provider
    from nightloop.models import Message
    from nightloop.rate_limits import RateLimits

    base_url, limits_file, calls, rpm = sys.argv[1], Path(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    role = RoleConfig(provider="openai", model="gpt-4o-mini", base_url=base_url, max_retries=0, max_tokens=16)
    limits = RateLimits({base_url: RateLimitConfig(rpm=rpm, window_s=1.0)}, shared=limits_file)
    client = LLMClient(build_provider(role), role, limiter=limits.for_role(role))

    async def main():
        asked = [client.complete([Message(role="user", content=f"call {i}")]) for i in range(calls)]
        outcomes = await asyncio.gather(*asked, return_exceptions=True)
        await client.aclose()
        failed = [o for o in outcomes if isinstance(o, BaseException)]
        print(f"{len(failed)} failed: {failed[:1]}")
        sys.exit(1 if failed else 0)

    asyncio.run(main())
    """
)


def test_two_processes_share_one_providers_window(tmp_path: Path) -> None:
    limits_file = shared_limits_path(tmp_path / "nightloop.db")
    env = {**os.environ, "OPENAI_API_KEY": "test-key-not-real"}
    with RateLimitedOpenAIServer(rpm=6, window_s=1.0, arrival_delay_s=0.2, hold_s=0.05) as server:
        runs = [
            subprocess.Popen(
                [sys.executable, "-c", NIGHTS_PROCESS, server.base_url, str(limits_file), "9", "360"],  # 6 a window
                env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            )
            for _ in range(2)
        ]
        outputs = [run.communicate(timeout=120)[0] for run in runs]
        assert [run.returncode for run in runs] == [0, 0], outputs
        assert server.rejected == 0 and server.accepted == 18


def test_a_429_received_by_one_process_pauses_the_next_process(tmp_path: Path) -> None:
    """A process whose limits are wrong (600 a window at a server allowing 1) gets a 429 asking for 3 s: a process
    started after it waits out those 3 s before its own call."""
    limits_file = shared_limits_path(tmp_path / "nightloop.db")
    env = {**os.environ, "OPENAI_API_KEY": "test-key-not-real"}
    with RateLimitedOpenAIServer(rpm=1, window_s=1.0, retry_after_s=3.0) as server:
        asked = time.monotonic()
        wrong = [sys.executable, "-c", NIGHTS_PROCESS, server.base_url, str(limits_file), "2", "36000"]
        told = subprocess.run(wrong, env=env, capture_output=True, text=True, timeout=60)
        assert told.returncode == 1 and server.rejected == 1, told.stdout
        window = SharedWindow(limits_file, server.base_url, RateLimitConfig(rpm=36000, window_s=1.0))
        booked = window.book(1, time.monotonic())
    assert booked is not None and asked + 3.0 <= booked[1] <= time.monotonic() + 3.0


def test_a_429_seen_by_one_process_pauses_the_others(tmp_path: Path) -> None:
    limits, path = RateLimitConfig(rpm=100), tmp_path / "nightloop.db.limits"
    here, there = SharedWindow(path, "openai", limits), SharedWindow(path, "openai", limits)
    now = time.monotonic()
    here.pause(now + 1.5)
    booked = there.book(1, now)
    assert booked is not None and booked[1] == now + 1.5


def test_the_places_of_a_process_that_died_mid_call_end(tmp_path: Path) -> None:
    path = tmp_path / "nightloop.db.limits"
    crash = (
        "import os, sys, time; from pathlib import Path; from nightloop.config import RateLimitConfig; "
        "from nightloop.rate_window import SharedWindow; "
        "SharedWindow(Path(sys.argv[1]), 'openai', RateLimitConfig(rpm=1)).book(1, time.monotonic()); os._exit(9)"
    )
    assert subprocess.run([sys.executable, "-c", crash, str(path)], timeout=60).returncode == 9
    window = SharedWindow(path, "openai", RateLimitConfig(rpm=12, window_s=5.0))  # 1 a window
    now = time.monotonic()
    booked = window.book(1, now)
    assert booked is not None, "the dead process's call still holds the only place"
    assert now + 5.0 <= booked[1] <= time.monotonic() + 5.0  # it may have reached the provider until it was found dead
