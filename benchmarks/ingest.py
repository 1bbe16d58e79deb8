"""Ingest benchmark: 100,000 synthetic conversations -> JSONL -> store, with and without classification.

Prints conversations/second and peak memory (max RSS). Target: the classified ingest in <= 30 s on 2 cores.
Usage: python benchmarks/ingest.py [N]
"""

from __future__ import annotations

import json
import random
import resource
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

from nightloop.config import ClassifyConfig
from nightloop.ingest import ingest
from nightloop.store import Store

KINDS = ("ok", "ok", "ok", "timeout", "correction", "tool_error", "expected_right", "expected_wrong")
T0 = datetime(2026, 11, 1, tzinfo=timezone.utc)


def synthetic(i: int, rng: random.Random) -> dict:
    """One canonical conversation of a random kind (a support agent for an online shop)."""
    kind = rng.choice(KINDS)
    order = rng.randint(1000, 99999)
    started = T0 + timedelta(seconds=i * 13)
    messages = [
        {"role": "system", "content": "You are the support assistant of Acme. Quote prices in EUR."},
        {"role": "user", "content": f"Where is my order {order}? It was supposed to arrive yesterday."},
    ]
    outcome: dict = {"status": "ok", "latency_ms": rng.randint(500, 20000)}
    if kind == "tool_error":
        messages += [
            {"role": "assistant", "content": None, "tool_calls": [{"id": "t1", "type": "function", "function": {"name": "lookup_order", "arguments": json.dumps({"id": order})}}]},
            {"role": "tool", "tool_call_id": "t1", "content": json.dumps({"error": "order service unavailable"})},
            {"role": "assistant", "content": "Sorry, I cannot look that up right now."},
        ]
    elif kind == "timeout":
        for n in range(4):
            messages += [
                {"role": "assistant", "content": None, "tool_calls": [{"id": f"t{n}", "type": "function", "function": {"name": "lookup_order", "arguments": json.dumps({"id": order})}}]},
                {"role": "tool", "tool_call_id": f"t{n}", "content": json.dumps({"status": "pending"})},
            ]
        outcome = {"status": "timeout", "latency_ms": 120000, "error": "step limit"}
    else:
        messages.append({"role": "assistant", "content": f"Order {order} is on its way and should arrive tomorrow."})
        if kind == "correction":
            messages += [
                {"role": "user", "content": "No, I asked about the refund for that order, not the delivery."},
                {"role": "assistant", "content": "Sorry! The refund was issued on Monday."},
            ]
            outcome["feedback"] = {"score": 0.0, "comment": "thumbs down"}
        if kind.startswith("expected"):
            right = kind == "expected_right"
            messages[-1]["content"] += f" <solution>{order if right else order // 2}</solution>"
            outcome["expected"] = str(order)
    return {
        "id": f"bench-{i:06d}",
        "prompt_name": rng.choice(("support_agent", "billing_agent")),
        "prompt_version": 1,
        "started_at": started.isoformat(),
        "ended_at": (started + timedelta(milliseconds=outcome["latency_ms"])).isoformat(),
        "messages": messages,
        "outcome": outcome,
        "metadata": {"channel": rng.choice(("web", "api", "email"))},
    }


def write_jsonl(path: Path, n: int, seed: int = 0) -> None:
    rng = random.Random(seed)
    with path.open("w", encoding="utf-8") as handle:
        for i in range(n):
            handle.write(json.dumps(synthetic(i, rng)) + "\n")


def max_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def run(label: str, path: Path, db: Path, **kwargs) -> None:
    start = time.perf_counter()
    with Store(db) as store:
        stats = ingest(store, [path], **kwargs)
    elapsed = time.perf_counter() - start
    print(
        f"{label:<28} {stats.ingested:>7} new {stats.duplicates:>7} dup {stats.quarantined:>3} quarantined"
        f"  {elapsed:6.1f} s  {stats.ingested + stats.duplicates:>9,.0f} conv  {(stats.ingested + stats.duplicates) / elapsed:8,.0f} conv/s"
        f"  max RSS {max_rss_mb():.0f} MB"
    )
    if stats.failures:
        print(f"{'':<28} failures: {dict(sorted(stats.failures.items()))}")


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "conversations.jsonl"
        started = time.perf_counter()
        write_jsonl(path, n)
        size_mb = path.stat().st_size / 1e6
        print(f"generated {n:,} conversations ({size_mb:.0f} MB) in {time.perf_counter() - started:.1f} s; max RSS {max_rss_mb():.0f} MB")
        run("ingest, no classification", path, Path(tmp) / "plain.db", classifier=lambda conversation: [])
        run("ingest + classify", path, Path(tmp) / "classified.db", classify_config=ClassifyConfig())
        run("re-ingest (all duplicates)", path, Path(tmp) / "classified.db", classify_config=ClassifyConfig())


if __name__ == "__main__":
    main()
