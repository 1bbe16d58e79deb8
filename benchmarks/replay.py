"""Replay throughput: 4 templates × 50 cases × 3 repeats = 600 agent calls over real HTTP.

The agent is the real OpenAIProvider + LLMClient (cache off) talking to the loopback
fake OpenAI server, which answers every call after a fixed 200 ms; the runner has a
concurrency of 16. With the HTTP client and the runner adding nothing, the run takes
calls × latency / concurrency = 7.5 s; the figure printed is wall / ideal (target ≤ 1.15).
The fake runs in its own process so its CPU work does not share the client's GIL, and
one untimed warm-up call pays the SDK's one-off imports. A second pass with the
response cache on shows a re-run costing no provider calls.

    .venv/bin/python benchmarks/replay.py [--latency 0.2] [--concurrency 16] [--cases 50]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import multiprocessing
import sys
import time
from collections.abc import Iterator

from nightloop.config import RoleConfig
from nightloop.llm.client import LLMClient
from nightloop.llm.openai import OpenAIProvider
from nightloop.models import BASELINE, Expectation, Message, ReplayCase, ReplayOutcome
from nightloop.replay import run_replay
from nightloop.store import Store
from nightloop.testing import FakeOpenAIServer

TARGET_RATIO = 1.15


def _serve(latency_s: float, conn) -> None:
    """Child process: run the fake server until told to stop, then report how many calls it served."""
    with FakeOpenAIServer(latency_s=latency_s) as fake:
        conn.send(fake.base_url)
        while conn.recv() == "count":
            conn.send(fake.calls)


class RemoteFake:
    """The fake server in its own process, so its CPU work does not compete with the client for the GIL."""

    def __init__(self, conn) -> None:
        self.conn = conn
        self.base_url: str = conn.recv()

    def served(self) -> int:
        self.conn.send("count")
        return self.conn.recv()


@contextlib.contextmanager
def fake_server(latency_s: float) -> Iterator[RemoteFake]:
    parent, child = multiprocessing.Pipe()
    process = multiprocessing.get_context("spawn").Process(target=_serve, args=(latency_s, child), daemon=True)
    process.start()
    try:
        yield RemoteFake(parent)
    finally:
        parent.send("stop")
        process.join(timeout=5)
        process.terminate()
        process.join(timeout=5)


def _sdk_connection_limits() -> str:
    try:
        from openai._constants import (
            DEFAULT_CONNECTION_LIMITS,  # the SDK's own default pool size
        )
    except ImportError:
        return "unknown"
    limits = DEFAULT_CONNECTION_LIMITS
    return f"max_connections={limits.max_connections} keepalive={limits.max_keepalive_connections}"


def make_cases(count: int) -> list[ReplayCase]:
    # The fake echoes the last user message, so a `contains` expectation is deterministic and costs no scorer call.
    return [
        ReplayCase(
            id=f"bench-{i:03d}@1",
            prompt_name="support_agent",
            messages=[Message(role="user", content=f"Where is my order #{4400 + i}?")],
            variables={"shop": "Acme"},
            expectation=Expectation(kind="contains", value=f"#{4400 + i}"),
            origin=f"bench-{i:03d}#wrong_output@1",
        )
        for i in range(count)
    ]


def make_templates() -> dict[str, str]:
    base = "You are the support assistant of {{ shop }}."
    return {
        BASELINE: base,
        "cand-eur": base + " Quote prices in EUR.",
        "cand-order": base + " Always include the order number.",
        "cand-tool": base + " Call the lookup tool at most once.",
    }


async def run_once(
    agent: LLMClient, cases: list[ReplayCase], *, repeats: int, concurrency: int
) -> tuple[float, ReplayOutcome]:
    started = time.perf_counter()
    outcome = await run_replay(agent, cases, make_templates(), repeats=repeats, concurrency=concurrency)
    return time.perf_counter() - started, outcome


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--latency", type=float, default=0.2, help="fake server latency per call, seconds")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--cases", type=int, default=50)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)

    cases = make_cases(args.cases)
    calls = len(make_templates()) * len(cases) * args.repeats
    ideal = calls * args.latency / args.concurrency
    print(f"http client pool: {_sdk_connection_limits()} (concurrency {args.concurrency} stays below it)")
    with fake_server(args.latency) as fake:
        role = RoleConfig(provider="openai", model="gpt-4o-mini", base_url=fake.base_url, timeout_s=30, max_retries=0)
        agent = LLMClient(OpenAIProvider(role, api_key="bench"), role)  # cache off: every evaluation is a call
        # Warm-up (not timed): the SDK's first request pays one-off imports and schema building.
        warm_started = time.perf_counter()
        asyncio.run(agent.complete([Message(role="user", content="warm-up")]))
        print(f"warm-up call: {time.perf_counter() - warm_started:.2f}s (not counted)")
        wall, outcome = asyncio.run(run_once(agent, cases, repeats=args.repeats, concurrency=args.concurrency))
        served = fake.served()
        passed = sum(r.passed for r in outcome.results)
        print(f"evaluations={len(outcome.results)} provider_calls={served} passed={passed} errors={outcome.errors}")
        print(f"latency={args.latency * 1000:.0f}ms concurrency={args.concurrency} (fake server in its own process)")
        print(f"wall={wall:.2f}s ideal={ideal:.2f}s ratio={wall / ideal:.3f} (target <= {TARGET_RATIO})")

        with Store(None) as store:
            cached_agent = LLMClient(OpenAIProvider(role, api_key="bench"), role, cache=store.cache)
            asyncio.run(run_once(cached_agent, cases, repeats=args.repeats, concurrency=args.concurrency))
            before = fake.served()
            rerun_wall, rerun = asyncio.run(
                run_once(cached_agent, cases, repeats=args.repeats, concurrency=args.concurrency)
            )
            calls_again = fake.served() - before
            print(f"cached re-run: evaluations={len(rerun.results)} provider_calls={calls_again} "
                  f"wall={rerun_wall:.2f}s")

    ratio = wall / ideal
    print(f"target {'met' if ratio <= TARGET_RATIO else 'MISSED'}: ratio={ratio:.3f} <= {TARGET_RATIO}")
    # Timing depends on the machine's load, so only a functional fault fails the script.
    ok = len(outcome.results) == calls and served == calls + 1 and outcome.errors == 0 and calls_again == 0
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
