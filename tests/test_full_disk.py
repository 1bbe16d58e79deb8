"""A full disk says what happened and how to recover, and the same command resumes once there is space.

The real ``nightloop`` CLI runs in its own process on a store file whose connections are capped with SQLite's
``PRAGMA max_page_count``: writes past the cap fail with SQLITE_FULL, the error a full disk raises.
"""

from __future__ import annotations

import shutil
import sqlite3
import subprocess
import sys
from datetime import date
from pathlib import Path

import pytest

from nightloop.simulate import simulate_from_store
from nightloop.store import Store

from test_night_budget import NIGHT, PROMPT
from worlds import FORTY, Worlds

RUN = ["run", "--no-prefect", "--date", NIGHT]

#: The CLI's own entry point, with every store connection capped at ``pages`` pages (the "disk").
LAUNCH_FULL = """
import sys
from nightloop.store import db
configure = db._configure
def capped(database):
    configure(database)
    database.execute("PRAGMA max_page_count = {pages}")
db._configure = capped
sys.argv = ["nightloop", *sys.argv[1:]]
from nightloop.cli import main
main()
"""


@pytest.fixture
def store_file(worlds: Worlds, tmp_path: Path) -> Path:
    return worlds.copy_traffic(FORTY, tmp_path)


def _pages(db: Path, room: int = 0) -> int:
    """The store's pages now, and ``room`` bytes more (in whole pages of its size)."""
    with sqlite3.connect(db) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        return conn.execute("PRAGMA page_count").fetchone()[0] + room // conn.execute("PRAGMA page_size").fetchone()[0]


def _nightloop(db: Path, *args: str, pages: int | None = None) -> subprocess.CompletedProcess:
    command = [sys.executable, "-c", LAUNCH_FULL.format(pages=pages)] if pages else [str(Path(sys.executable).parent / "nightloop")]
    return subprocess.run([*command, *args, "--db", str(db)], capture_output=True, text=True, timeout=180,
                          cwd=db.parent, env={"COLUMNS": "300", "PATH": str(Path(sys.executable).parent)})


def _evaluations(db: Path) -> dict[tuple[str, str, int], tuple]:
    """The night's evaluations: (candidate, case, repeat) -> (output, score, passed)."""
    [run] = _run_state(db)
    with Store(db, read_only=True) as store:
        return {(r.candidate_id, r.case_id, r.repeat): (r.output, r.score, r.passed) for r in store.runs.eval_results(run["run_id"])}


def _run_state(db: Path) -> list[dict]:
    with Store(db, read_only=True) as store:
        return store.runs.runs_for(PROMPT, NIGHT)


@pytest.mark.parametrize("room", [160 * 1024, 640 * 1024], ids=["early", "in-replay"])
def test_a_night_that_fills_the_disk_says_so_and_the_same_command_resumes_to_the_same_result(store_file: Path, room: int) -> None:
    """Wherever the disk fills: with 640 KB of room it fills during replay, inside a model call (its cache and spend
    are written there), which must stop the stage as a failed write, not count as the agent's fault."""
    reference = store_file.with_name("reference.db")
    shutil.copy(store_file, reference)
    expected = _nightloop(reference, *RUN, "--json")
    assert expected.returncode == 0, expected.stderr

    full = _nightloop(store_file, *RUN, pages=_pages(store_file, room=room))

    assert full.returncode == 1, full.stdout + full.stderr
    assert "Traceback" not in full.stderr and "sqlite3" not in full.stderr, full.stderr
    message = " ".join(full.stderr.split())
    assert f"disk holding {store_file} is full" in message and "nothing was lost" in message, message
    assert f"nightloop run --date {NIGHT} --no-prefect" in message, message
    [run] = _run_state(store_file)
    assert run["status"] in ("failed", "running")  # both resume on a plain re-run
    finished_before = run["run_id"]

    resumed = _nightloop(store_file, *RUN, "--json")  # space freed: no cap any more

    assert resumed.returncode == 0, resumed.stderr
    [run] = _run_state(store_file)
    assert run["run_id"] == finished_before and run["status"] == "done"
    [want], [got] = _reports(expected.stdout), _reports(resumed.stdout)
    assert got["status"] == want["status"] == "done"
    assert [d["verdict"] for d in got["decisions"]] == [d["verdict"] for d in want["decisions"]]
    assert got["faulted_evaluations"] == 0
    done, reference_done = _evaluations(store_file), _evaluations(reference)
    if room == 160 * 1024:  # filled before the replay: the resumed night replays all of it
        assert got["evaluations"] == want["evaluations"] and done == reference_done
    else:
        # Filled mid-replay: what the first run had finished is kept, so the resumed night may read enough evidence one
        # step of extra repeats sooner (the e-process may stop at any step) and do less: never another evaluation,
        # never another outcome than the uninterrupted night's.
        assert done and set(done) <= set(reference_done), set(done) - set(reference_done)
        assert all(done[key] == reference_done[key] for key in done)


def test_an_ingest_onto_a_full_disk_says_so_plainly(store_file: Path, tmp_path: Path) -> None:
    files = simulate_from_store(Store(store_file), PROMPT, nights=1, per_night=200, seed=9,
                                out=tmp_path / "more", start_date=date(2026, 11, 19))

    full = _nightloop(store_file, "ingest", *map(str, files), pages=_pages(store_file) + 2)

    assert full.returncode == 1, full.stdout + full.stderr
    assert "Traceback" not in full.stderr, full.stderr
    assert "is full" in full.stderr and "nothing was lost" in " ".join(full.stderr.split()), full.stderr


def _reports(stdout: str) -> list[dict]:
    import json

    value = json.loads(stdout)
    return value if isinstance(value, list) else [value]
