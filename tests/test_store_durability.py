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
    write_then_die = (
        "import os, sys; from nightloop.store import Store; s = Store(sys.argv[1]); "
        "s.db.execute('create table kept (x)'); s.db.execute('begin'); s.db.execute('insert into kept values (1)'); "
        "s.db.execute('commit'); os._exit(9)"
    )
    assert subprocess.run([sys.executable, "-c", write_then_die, str(path)], timeout=60).returncode == 9
    with Store(path) as store:
        assert store.db.execute("select x from kept").fetchall() == [(1,)]
