"""A SQLite source another program holds locked is named as locked, with what to do (not "pass --format")."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from typer.testing import CliRunner

from nightloop.cli import app


def test_ingesting_a_locked_sqlite_source_says_it_is_locked_and_how_to_read_it(tmp_path: Path) -> None:
    source = tmp_path / "agent_logs.db"
    with sqlite3.connect(source) as setup:
        setup.execute("create table conversations (id text, messages text)")
        setup.execute("""insert into conversations values ('c1', '[{"role": "user", "content": "hi"}]')""")
    holder = sqlite3.connect(source, isolation_level=None)  # another program, mid-write (rollback journal)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        result = CliRunner().invoke(app, ["ingest", str(source), "--db", str(tmp_path / "store.db")])
    finally:
        holder.execute("ROLLBACK")
        holder.close()

    output = " ".join(result.output.split())
    assert result.exit_code != 0, output
    assert "locked" in output and "retry when it is done" in output, output
    assert "pass --format" not in output, output
