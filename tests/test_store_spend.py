"""The budget ledger: one total per account, shared by every process, kept with every charge."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlite_utils

from nightloop.store import Store
from nightloop.store.spend import migrations


def test_every_process_charges_one_total_and_a_forced_run_gives_back_only_its_own(tmp_path: Path) -> None:
    with Store(tmp_path / "n.db") as one, Store(tmp_path / "n.db") as other:  # two connections, as two processes
        one.spend.charge("p:2026-11-18", "run-a", 0.25, 100)
        other.spend.charge("p:2026-11-18", "run-b", 0.5, 40)
        one.spend.charge("p:2026-11-19", "run-c", 1.0, 7)
        assert other.spend.total("p:2026-11-18") == (pytest.approx(0.75), 140)
        one.spend.forget_run("run-a")
        assert other.spend.total("p:2026-11-18") == (pytest.approx(0.5), 40)
        assert one.spend.total("p:2026-11-19") == (pytest.approx(1.0), 7)
        assert one.spend.total("never charged") == (0.0, 0)


def test_a_store_from_before_the_totals_counts_what_it_had_already_spent(tmp_path: Path) -> None:
    old = sqlite_utils.Database(tmp_path / "n.db")
    migrations.apply(old, stop_before="m002_spend_totals")
    old["spend"].insert_all(
        [{"account": "p:d", "run_id": "r", "usd": usd, "tokens": 10, "calls": 1, "at": "2026-11-18T00:00:00+00:00"}
         for usd in (0.1, 0.2)]
    )
    old.close()
    with Store(tmp_path / "n.db") as store:
        assert store.spend.total("p:d") == (pytest.approx(0.3), 20)
        store.spend.charge("p:d", "r", 0.05, 1)
        assert store.spend.total("p:d") == (pytest.approx(0.35), 21)
