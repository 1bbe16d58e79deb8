"""How the store commits: WAL, synced at checkpoints (``synchronous=NORMAL``), so a write on a night's event loop
does not stall the timers of the calls in flight for an fsync; a crashed process still loses nothing."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from nightloop.store import Store

NORMAL = 1


def _modes(store: Store) -> tuple[str, int]:
    return store.db.execute("PRAGMA journal_mode").fetchone()[0], store.db.execute("PRAGMA synchronous").fetchone()[0]


def test_a_new_and_an_existing_store_commit_to_the_wal_without_an_fsync_each(tmp_path: Path) -> None:
    path = tmp_path / "nightloop.db"
    with Store(path) as store:  # created and migrated
        assert _modes(store) == ("wal", NORMAL)
    with Store(path) as store:  # already migrated
        assert _modes(store) == ("wal", NORMAL)


def test_a_process_killed_after_a_commit_loses_nothing(tmp_path: Path) -> None:
    path = tmp_path / "nightloop.db"
    commit_then_hang = (
        "import sys, time; from nightloop.store import Store; db = Store(sys.argv[1]).db; "
        "db.execute('create table kept (x)'); db.execute('begin'); db.execute('insert into kept values (1)'); "
        "db.execute('commit'); print('committed', flush=True); time.sleep(60)"
    )
    writer = subprocess.Popen([sys.executable, "-c", commit_then_hang, str(path)], stdout=subprocess.PIPE, text=True)
    try:
        assert writer.stdout is not None and writer.stdout.readline().strip() == "committed"
    finally:
        writer.kill()  # SIGKILL: no close, no checkpoint
        writer.wait(timeout=30)
    with Store(path) as store:
        assert store.db.execute("select x from kept").fetchall() == [(1,)]
