"""Label compare-and-swap under real concurrency: separate OS processes, one store file, a barrier."""

from __future__ import annotations

import multiprocessing
import queue
import time
from pathlib import Path

from nightloop.errors import LabelConflict
from nightloop.store import Store

WORKERS = 3
ROUNDS = 3
VERSIONS_PER_WORKER = 4
TIMEOUT_S = 60


def _race_labels(path: str, worker: int, barrier, results) -> None:
    """Each round: read production, wait for everyone to have read it, then try to move it to our version."""
    with Store(path) as store:
        for round_no in range(ROUNDS):
            target = 2 + round_no * WORKERS + worker  # distinct per worker and round
            expected = store.prompts.label_version("p", "production")
            barrier.wait(TIMEOUT_S)
            try:
                store.prompts.move_label("p", "production", target, expected_version=expected, moved_by=f"w{worker}")
                results.put((round_no, worker, "won", target, expected, ""))
            except LabelConflict as exc:
                results.put((round_no, worker, "conflict", target, expected, str(exc)))
            barrier.wait(TIMEOUT_S)  # nobody reads the next round's value before every move of this one


def _race_versions(path: str, worker: int, barrier, results) -> None:
    with Store(path) as store:
        barrier.wait(TIMEOUT_S)
        for i in range(VERSIONS_PER_WORKER):
            version = store.prompts.create_version("q", f"worker {worker} edit {i}", created_by=f"w{worker}")
            results.put(version.version)


def _run(target, path: Path, expected_results: int) -> list:
    # spawn: each worker is a fresh interpreter with its own SQLite connection, like two nightloop commands.
    ctx = multiprocessing.get_context("spawn")
    barrier, results = ctx.Barrier(WORKERS), ctx.Queue()
    processes = [ctx.Process(target=target, args=(str(path), w, barrier, results)) for w in range(WORKERS)]
    for process in processes:
        process.start()
    collected: list = []
    deadline = time.monotonic() + TIMEOUT_S
    try:
        # Drain before joining (a child cannot exit while its queued results are unread), and stop early
        # when a worker died, so a crash shows up as its exit code instead of a long wait.
        while len(collected) < expected_results and time.monotonic() < deadline:
            try:
                collected.append(results.get(timeout=0.2))
            except queue.Empty:
                crashed = [p.exitcode for p in processes if p.exitcode not in (None, 0)]
                assert not crashed, f"a worker crashed (exit codes {crashed}); see its traceback above"
    finally:
        for process in processes:
            process.join(TIMEOUT_S)
            if process.is_alive():
                process.kill()
    assert [p.exitcode for p in processes] == [0] * WORKERS
    return collected


def test_exactly_one_writer_wins_each_label_race(tmp_path: Path) -> None:
    path = tmp_path / "race.db"
    with Store(path) as store:
        for i in range(1 + ROUNDS * WORKERS):
            store.prompts.create_version("p", f"version {i + 1}", created_by="setup")
        store.prompts.move_label("p", "production", 1, expected_version=None, moved_by="setup")

    outcomes = _run(_race_labels, path, ROUNDS * WORKERS)

    assert len(outcomes) == ROUNDS * WORKERS
    winners = []
    for round_no in range(ROUNDS):
        this_round = [o for o in outcomes if o[0] == round_no]
        assert len({o[4] for o in this_round}) == 1  # everyone raced from the same expected version
        won = [o for o in this_round if o[2] == "won"]
        lost = [o for o in this_round if o[2] == "conflict"]
        assert len(won) == 1 and len(lost) == WORKERS - 1
        winners.append(won[0][3])
        for loser in lost:
            assert f"moved from v{loser[4]} to v{won[0][3]} since you read it" in loser[5]

    with Store(path) as store:
        history = store.prompts.label_history("p", "production")
        assert store.prompts.label_version("p", "production") == winners[-1]
    assert [(m.from_version, m.to_version) for m in history] == list(
        zip([None, 1, *winners[:-1]], [1, *winners], strict=True)
    )


def test_concurrent_writers_get_distinct_version_numbers(tmp_path: Path) -> None:
    path = tmp_path / "versions.db"
    Store(path).close()  # migrations applied once, before the race

    numbers = _run(_race_versions, path, WORKERS * VERSIONS_PER_WORKER)

    assert sorted(numbers) == list(range(1, WORKERS * VERSIONS_PER_WORKER + 1))
    with Store(path) as store:
        assert [v.version for v in store.prompts.versions("q")] == sorted(numbers)
