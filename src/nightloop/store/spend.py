"""Store area: spend — the budget ledger of every night, shared by every process that runs or retries it.

Each provider call's cost is charged here as it happens (one small transaction), under an *account*: a night's
is ``<prompt>:<logical date>`` (whatever its config), an evaluation's is its own key. The budget is checked against
the account's total, so a retry, a resumed night after a SIGKILL, and a second process all draw on one budget.
"""

from __future__ import annotations

from datetime import UTC, datetime

import sqlite_utils

from nightloop.store.db import transaction

__all__ = ["SpendAccount", "SpendRepo", "migrations"]

migrations = sqlite_utils.Migrations("nightloop.spend")


@migrations()
def m001_spend(db: sqlite_utils.Database) -> None:
    db["spend"].create(
        {"id": int, "account": str, "run_id": str, "usd": float, "tokens": int, "calls": int, "at": str},
        pk="id",
        not_null={"account", "run_id", "usd", "tokens", "calls", "at"},
    )
    db["spend"].create_index(["account"])
    db["spend"].create_index(["run_id"])


@migrations()
def m002_spend_totals(db: sqlite_utils.Database) -> None:
    """Each account's running total, kept with every charge: a budget check reads one row, not the whole night."""
    db.execute(
        "create table spend_totals (account text primary key, usd float not null, tokens integer not null)"
    )
    db.execute(
        "insert into spend_totals select account, sum(usd), sum(tokens) from spend group by account"
    )


_ADD_TO_TOTAL = (
    "insert into spend_totals (account, usd, tokens) values (?, ?, ?) on conflict (account) do update"
    " set usd = usd + excluded.usd, tokens = tokens + excluded.tokens"
)


class SpendRepo:
    def __init__(self, db: sqlite_utils.Database) -> None:
        self.db = db

    def charge(self, account: str, run_id: str, usd: float, tokens: int, calls: int = 1) -> None:
        """Record spend now (its own transaction, so a process killed later has still paid for it)."""
        with transaction(self.db):
            self.db.execute(
                "insert into spend (account, run_id, usd, tokens, calls, at) values (?, ?, ?, ?, ?, ?)",
                [account, run_id, usd, tokens, calls, datetime.now(UTC).isoformat()],
            )
            self.db.execute(_ADD_TO_TOTAL, [account, usd, tokens])

    def total(self, account: str) -> tuple[float, int]:
        """(USD, tokens) charged to ``account`` by every process so far."""
        row = self.db.execute("select usd, tokens from spend_totals where account = ?", [account]).fetchone()
        return (float(row[0]), int(row[1])) if row else (0.0, 0)

    def of_run(self, run_id: str) -> tuple[float, int]:
        """(USD, tokens) charged by one run (one config of a night), every attempt of it."""
        row = self.db.execute(
            "select coalesce(sum(usd), 0.0), coalesce(sum(tokens), 0) from spend where run_id = ?", [run_id]
        ).fetchone()
        return float(row[0]), int(row[1])

    def forget_run(self, run_id: str) -> None:
        """Drop one run's charges (``--force`` starts that run's budget again)."""
        with transaction(self.db):
            charged = self.db.execute(
                "select account, sum(usd), sum(tokens) from spend where run_id = ? group by account", [run_id]
            ).fetchall()
            self.db.conn.executemany(
                "update spend_totals set usd = usd - ?, tokens = tokens - ? where account = ?",
                [(usd, tokens, account) for account, usd, tokens in charged],
            )
            self.db["spend"].delete_where("run_id = ?", [run_id])

    def account(self, account: str, run_id: str) -> SpendAccount:
        return SpendAccount(self, account, run_id)


class SpendAccount:
    """One account of the ledger as :class:`nightloop.llm.budget.BudgetLedger` uses it: charge, and read the total."""

    def __init__(self, repo: SpendRepo, account: str, run_id: str) -> None:
        self._repo, self.account, self.run_id = repo, account, run_id

    def charge(self, usd: float, tokens: int) -> None:
        self._repo.charge(self.account, self.run_id, usd, tokens)

    def total(self) -> tuple[float, int]:
        return self._repo.total(self.account)
