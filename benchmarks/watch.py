"""The watch stage on a long history: 20,000 and 100,000 stored conversations (target: ≤ 1 s at 100k, flat).

Every night the watch compares production's failure rate with its parent's over all the conversations each version
ran. It counts them in SQL (an index range over (prompt, version, end time), one indexed probe into failures per
conversation); the Python version it replaced parsed the whole history (4.9 s at 20k, 25.7 s at 100k).
Builds each store once in a temp dir, then runs the real ``stage_watch`` for several fresh nights.

    .venv/bin/python benchmarks/watch.py [--sizes 20000 100000] [--nights 5]
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import tempfile
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from nightloop.config import load_settings
from nightloop.night import Night
from nightloop.stages.watch import stage_watch
from nightloop.store import Store

PROMPT = "support_agent"
FIRST = datetime(2025, 12, 1, tzinfo=UTC)


def build(path: Path, size: int, seed: int = 1) -> None:
    """``size`` conversations over a year, half under v1 (the parent) and half under v2 (production); 20 % failed."""
    rng = random.Random(seed)
    with Store(path) as store:
        store.prompts.create_version(PROMPT, "You help the customers of {{ shop }}.", created_by="bench")
        store.prompts.move_label(PROMPT, "production", 1, expected_version=None, moved_by="bench")
        store.prompts.create_version(PROMPT, "You help the customers of {{ shop }}, briefly.", created_by="bench")
        store.prompts.move_label(PROMPT, "production", 2, expected_version=1, moved_by="bench")
        rows, failures = [], []
        for n in range(size):
            ended = FIRST + timedelta(seconds=n * 365 * 86400 // size)
            cid = f"c{n:07d}"
            messages = [{"role": "user", "content": "Where is my order?"}, {"role": "assistant", "content": "On its way."}]
            record = {"id": cid, "prompt_name": PROMPT, "prompt_version": 1 + (n * 2 >= size), "messages": messages,
                      "ended_at": ended.isoformat()}
            rows.append({"id": cid, "prompt_name": PROMPT, "prompt_version": record["prompt_version"],
                         "started_at": ended.isoformat(), "ended_at": ended.isoformat(), "status": "ok",
                         "json": json.dumps(record), "ingested_at": ended.isoformat()})
            if rng.random() < 0.2:
                failures.append({"conversation_id": cid, "kind": "timeout", "turn": 1, "evidence": "", "detector": "bench",
                                 "confidence": 1.0})
        with store.transaction():  # straight into the tables: what is measured is the watch, not the ingest
            store.db["conversations"].insert_all(rows, batch_size=5000)
            store.db["failures"].insert_all(failures, batch_size=5000)


def time_watch(path: Path, nights: int) -> list[float]:
    settings = load_settings(db=path)
    timings = []
    with Store(path) as store:
        stage_watch(Night(settings, store, PROMPT, date(2026, 11, 30)))  # warm: imports scipy
        for n in range(nights):
            night = Night(settings, store, PROMPT, date(2026, 12, 1) + timedelta(days=n))
            started = time.perf_counter()
            output = stage_watch(night)
            timings.append(time.perf_counter() - started)
    print(f"    verdict: {output.reasons[-1]}")
    return timings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[20_000, 100_000])
    parser.add_argument("--nights", type=int, default=5)
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="nightloop-watch-"))
    medians = {}
    for size in args.sizes:
        path = folder / f"watch-{size}.db"
        started = time.perf_counter()
        build(path, size)
        print(f"{size:>7} conversations (store built in {time.perf_counter() - started:.1f} s)")
        timings = time_watch(path, args.nights)
        medians[size] = statistics.median(timings)
        print(f"    watch stage: median {medians[size] * 1000:.1f} ms, worst {max(timings) * 1000:.1f} ms over {args.nights} nights")
    smallest, largest = min(medians), max(medians)
    print(f"at {largest:,}: {medians[largest]:.3f} s (target ≤ 1 s); {largest:,} vs {smallest:,}: "
          f"{medians[largest] / medians[smallest]:.1f}× the time for {largest / smallest:.0f}× the conversations")


if __name__ == "__main__":
    main()
