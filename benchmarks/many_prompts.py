"""Many prompts in one night within a provider's rate limits: parallel nights vs the sequential loop.

Makes two identical stores of ``--prompts`` simulated prompts (one simulated day each) and runs the night of the
next day with ``pipeline.run_nights`` (what `nightloop run --no-prefect` and the Prefect flows call): all prompts
with ``[schedule] max_parallel_prompts = --parallel``, and ``--sequential-prompts`` of them with 1 (the sequential
loop, its wall time scaled to all prompts: the sequential run of 200 prompts would take most of an hour). The agent
is the simulator over the real OpenAI SDK, served by a loopback server that holds every request ``--latency``
seconds and enforces ``--rpm`` / ``--tpm`` per sliding 60 s window, answering 429 beyond them; the judge and
scorers are the local simulator. Both runs configure the same ``[llm.limits]`` for that server (shared through
``<db>.limits``, as in production); the cache is off.

Prints for each run: wall time, agent calls, tokens, 429s received, and for the parallel run the
rate-limit-bound ideal (calls / rpm or tokens / tpm, in minutes, whichever is larger) and the ratio.
Targets: parallel wall <= 1.2 x the ideal, 0 x 429.

    .venv/bin/python benchmarks/many_prompts.py [--prompts 200] [--rpm 1800] [--tpm 3000000] [--latency 2]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path

from nightloop import pipeline
from nightloop.config import load_settings
from nightloop.prompt_files import import_prompts
from nightloop.store import Store
from nightloop.testing.many_prompts import seed_many_prompts, write_prompts
from nightloop.testing.sim_wire import sim_agent
from nightloop.testing.rate_limited import RateLimitedOpenAIServer

DAY = date(2026, 11, 17)
NIGHT = DAY + timedelta(days=1)
SMALL = {"judge": {"candidates": 2}, "replay": {"repeats": 1, "max_failure_cases": 12, "regression_cases": 4}}


def make_store(root: Path, prompts: int, per_night: int) -> list[str]:
    names = write_prompts(root / "prompts", prompts)
    with Store(root / "nightloop.db") as store:
        import_prompts(store, root / "prompts", created_by="benchmark")
        seed_many_prompts(store, names, root / "logs", day=DAY, per_night=per_night)
    return names


def one_run(root: Path, names: list[str], args: argparse.Namespace, parallel: int) -> dict:
    with RateLimitedOpenAIServer(rpm=args.rpm, tpm=args.tpm, hold_s=args.latency, responder=sim_agent) as server:
        agent = {"provider": "openai", "model": "gpt-4o-mini", "base_url": server.base_url, "max_retries": 2, "max_tokens": 256}
        limits = {server.base_url: {"rpm": args.rpm, "tpm": args.tpm}}
        settings = load_settings(
            db=root / "nightloop.db", seed=3, schedule={"max_parallel_prompts": parallel},
            llm={"agent": agent, "cache": False, "limits": limits}, **SMALL,
        )
        started = time.monotonic()
        reports = pipeline.run_nights(settings, names, [NIGHT])
        wall = time.monotonic() - started
        from nightloop.testing.rate_limited import request_tokens

        tokens = sum(request_tokens(r) for r in server.requests)
        statuses: dict[str, int] = {}
        for report in reports:
            statuses[report.status] = statuses.get(report.status, 0) + 1
        return {"wall": wall, "calls": server.accepted, "rejected": server.rejected, "tokens": tokens, "statuses": statuses}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--prompts", type=int, default=200)
    parser.add_argument("--parallel", type=int, default=32, help="[schedule] max_parallel_prompts of the parallel run")
    parser.add_argument("--rpm", type=int, default=1800)
    parser.add_argument("--tpm", type=int, default=3_000_000)
    parser.add_argument("--latency", type=float, default=2.0, help="seconds the server holds each agent request")
    parser.add_argument("--per-night", type=int, default=20)
    parser.add_argument(
        "--sequential-prompts", type=int, default=20,
        help="prompts the sequential run measures (its wall time is scaled to --prompts; 0 = all of them)",
    )
    args = parser.parse_args()
    os.environ.setdefault("OPENAI_API_KEY", "benchmark-key-not-real")

    with tempfile.TemporaryDirectory(prefix="nightloop-many-") as tmp:
        base = Path(tmp)
        started = time.monotonic()
        names = make_store(base / "parallel", args.prompts, args.per_night)
        make_store(base / "sequential", args.prompts, args.per_night)
        print(f"{args.prompts} prompts x {args.per_night} conversations seeded twice in {time.monotonic() - started:.0f} s")
        print(f"server: rpm {args.rpm}, tpm {args.tpm}, latency {args.latency} s; parallel = {args.parallel}")

        sample = names[: args.sequential_prompts or len(names)]
        runs = {
            "parallel": one_run(base / "parallel", names, args, args.parallel),
            "sequential": one_run(base / "sequential", sample, args, 1),
        }
        for label, run in runs.items():
            print(
                f"{label:10s} {len(names) if label == 'parallel' else len(sample)} prompts: wall {run['wall']:7.1f} s · "
                f"{run['calls']} agent calls · {run['tokens']} tokens · 429s {run['rejected']} · nights {run['statuses']}"
            )
        fast = runs["parallel"]
        ideal = 60.0 * max(fast["calls"] / args.rpm, fast["tokens"] / args.tpm)
        print(f"rate-limit-bound ideal {ideal:.1f} s; parallel / ideal = {fast['wall'] / ideal:.2f} (target <= 1.2); "
              f"429s received {fast['rejected']} (target 0)")
        sequential = runs["sequential"]["wall"] * len(names) / len(sample)
        scaled = "" if len(sample) == len(names) else f" (measured on {len(sample)} prompts, scaled to {len(names)})"
        print(f"sequential {sequential:.0f} s{scaled}; sequential / parallel = {sequential / fast['wall']:.1f}x")
        print("load average (1, 5, 15 min) at the end: " + ", ".join(f"{x:.1f}" for x in os.getloadavg()))


if __name__ == "__main__":
    main()
