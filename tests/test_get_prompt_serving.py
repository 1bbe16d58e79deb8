"""`nightloop.get_prompt`: the CLI's refs, the last-known copy when the store cannot be read, the caller's fallback."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

import nightloop
from nightloop.errors import NightloopError, NotFound, StoreUnavailable
from nightloop.store import Store


def _store_with_two_versions(path: Path) -> None:
    with Store(path) as store:
        store.prompts.create_version("support", "Old {{ shop }}", created_by="x")
        store.prompts.create_version("support", "New {{ shop }}", created_by="x")
        store.prompts.set_label("support", "production", 1, "x")
        store.prompts.set_label("support", "staging", 2, "x")


def _move_away(path: Path, to: Path) -> None:
    """Take the store away the way an unmount or a move does: the file and its WAL companions."""
    for suffix in ("", "-wal", "-shm"):
        source = path.with_name(path.name + suffix)
        if source.exists():
            source.rename(to.with_name(to.name + suffix))


def test_refs_in_the_cli_syntax(tmp_path: Path) -> None:
    db = tmp_path / "s.db"
    _store_with_two_versions(db)
    assert nightloop.get_prompt("support", db=db).version == 1
    assert nightloop.get_prompt("support@production", db=db).version == 1
    assert nightloop.get_prompt("support@staging", db=db).render(shop="A") == "New A"
    assert nightloop.get_prompt("support/2", db=db).version == 2
    assert nightloop.get_prompt("support@latest", db=db).version == 2
    served = nightloop.get_prompt("support@staging", db=db)
    assert (served.source, served.label) == ("store", "staging")
    assert nightloop.get_prompt("support", label="staging", db=db).version == 2  # the keyword form still works
    with pytest.raises(NightloopError, match="already says which version"):
        nightloop.get_prompt("support/2", label="staging", db=db)
    with pytest.raises(NotFound, match="has no version 7"):
        nightloop.get_prompt("support/7", db=db)


def test_an_unreadable_store_serves_the_last_known_version(tmp_path: Path, caplog) -> None:
    db = tmp_path / "s.db"
    _store_with_two_versions(db)
    assert nightloop.get_prompt("support@staging", db=db).source == "store"
    _move_away(db, tmp_path / "elsewhere.db")
    with caplog.at_level(logging.WARNING, logger="nightloop.serving"):
        served = nightloop.get_prompt("support@staging", db=db, fallback="never used")
    assert (served.source, served.version, served.template) == ("cache", 2, "New {{ shop }}")
    assert "serving the last-known support@staging v2" in caplog.text
    # A ref never read before has no copy: the fallback, with no version (nothing from the store ran).
    fallback = nightloop.get_prompt("support/1", db=db, fallback="Hi {{ shop }}")
    assert (fallback.source, fallback.version, fallback.render(shop="B")) == ("fallback", None, "Hi B")
    with pytest.raises(StoreUnavailable, match="fallback="):
        nightloop.get_prompt("support/1", db=db)


def test_a_damaged_store_is_an_outage_too(tmp_path: Path) -> None:
    db = tmp_path / "s.db"
    _store_with_two_versions(db)
    nightloop.get_prompt("support", db=db)
    _move_away(db, tmp_path / "elsewhere.db")
    db.write_bytes(b"this is not a database" * 100)
    assert nightloop.get_prompt("support", db=db).source == "cache"


def test_a_prompt_missing_from_a_readable_store_is_not_an_outage(tmp_path: Path) -> None:
    db = tmp_path / "s.db"
    _store_with_two_versions(db)
    with pytest.raises(NotFound, match="No prompt named 'billing'"):
        nightloop.get_prompt("billing", db=db)
    served = nightloop.get_prompt("billing", db=db, fallback="You handle invoices.")
    assert (served.source, served.version) == ("fallback", None)


def test_copies_are_kept_per_store(tmp_path: Path) -> None:
    one, two = tmp_path / "one.db", tmp_path / "two.db"
    _store_with_two_versions(one)
    with Store(two) as store:
        store.prompts.create_version("support", "Other {{ shop }}", created_by="x")
        store.prompts.set_label("support", "production", 1, "x")
    nightloop.get_prompt("support", db=one)
    nightloop.get_prompt("support", db=two)
    _move_away(one, tmp_path / "gone.db")
    assert nightloop.get_prompt("support", db=one).template == "Old {{ shop }}"


AGENT = """
import json, sys, time
import nightloop
db, deadline = sys.argv[1], time.monotonic() + 60
while time.monotonic() < deadline:
    prompt = nightloop.get_prompt("support@production", db=db, fallback="fallback {{ shop }}")
    print(json.dumps({"version": prompt.version, "source": prompt.source, "text": prompt.render(shop="A")}), flush=True)
    time.sleep(0.05)
"""


def test_an_agent_process_keeps_serving_while_its_store_disappears(tmp_path: Path) -> None:
    db = tmp_path / "mount" / "s.db"
    db.parent.mkdir()
    _store_with_two_versions(db)
    agent = subprocess.Popen(
        [sys.executable, "-c", AGENT, str(db)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "NIGHTLOOP_PROMPT_CACHE": str(tmp_path / "agent-cache")},
    )

    def next_where(condition, timeout: float = 30.0) -> dict:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            line = agent.stdout.readline()
            if not line:
                raise AssertionError(f"the agent stopped: {agent.stderr.read()}")
            served = json.loads(line)
            if condition(served):
                return served
        raise AssertionError("the agent never served what was expected")

    try:
        assert next_where(lambda s: s["source"] == "store")["version"] == 1
        _move_away(db, tmp_path / "away.db")
        served = next_where(lambda s: s["source"] != "store")
        assert (served["source"], served["version"], served["text"]) == ("cache", 1, "Old A")
        # The store comes back with production moved on: the agent picks the new version up.
        _move_away(tmp_path / "away.db", db)
        with Store(db) as store:
            store.prompts.set_label("support", "production", 2, "x")
        served = next_where(lambda s: s["source"] == "store" and s["version"] == 2)
        assert served["text"] == "New A"
        assert agent.poll() is None, "the agent never crashed"
    finally:
        agent.kill()
        agent.wait(timeout=10)
