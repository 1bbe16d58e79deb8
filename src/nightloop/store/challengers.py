"""Store area: challengers — one row per prompt night: the gate's challenger, its evidence and what became of it.

The rows are the ledger the gate folds to carry a held challenger and its evidence across nights
(:mod:`nightloop.challenger`); a re-run of a night replaces that night's row, so evidence is never
counted twice.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import sqlite_utils

from nightloop.store.db import transaction

__all__ = ["ChallengerRepo", "migrations"]

migrations = sqlite_utils.Migrations("nightloop.challengers")


@migrations()
def m001_challenger_nights(db: sqlite_utils.Database) -> None:
    db["challenger_nights"].create(
        {
            "prompt_name": str,
            "logical_date": str,
            "run_id": str,
            "base_version": int,
            "challenger_id": str,
            "candidate": str,
            "evidence": str,
            "status": str,
            "verdict": str,
            "reasons": str,
            "recorded_at": str,
        },
        pk=("prompt_name", "logical_date"),
    )


class ChallengerRepo:
    def __init__(self, db: sqlite_utils.Database) -> None:
        self.db = db

    def record(
        self,
        *,
        prompt_name: str,
        logical_date: str,
        run_id: str,
        base_version: int,
        challenger_id: str,
        candidate: dict[str, Any],
        evidence: dict[str, Any],
        status: str,
        verdict: str,
        reasons: list[str],
    ) -> None:
        """Record (or, for a re-run night, replace) the night's challenger row."""
        with transaction(self.db):
            self.db["challenger_nights"].insert(
                {
                    "prompt_name": prompt_name,
                    "logical_date": logical_date,
                    "run_id": run_id,
                    "base_version": base_version,
                    "challenger_id": challenger_id,
                    "candidate": json.dumps(candidate),
                    "evidence": json.dumps(evidence),
                    "status": status,
                    "verdict": verdict,
                    "reasons": json.dumps(reasons),
                    "recorded_at": datetime.now(UTC).isoformat(),
                },
                replace=True,
            )

    def nights_before(self, prompt_name: str, logical_date: str) -> list[dict[str, Any]]:
        """The prompt's rows for nights before ``logical_date``, oldest first, JSON columns decoded."""
        if "challenger_nights" not in self.db.table_names():
            return []
        rows = self.db["challenger_nights"].rows_where(
            "prompt_name = ? and logical_date < ?", [prompt_name, logical_date], order_by="logical_date"
        )
        return [_decoded(r) for r in rows]

    def nights(self, prompt_name: str | None = None) -> list[dict[str, Any]]:
        """Every row (of one prompt), oldest first."""
        if "challenger_nights" not in self.db.table_names():
            return []
        where, args = ("prompt_name = ?", [prompt_name]) if prompt_name else (None, [])
        return [_decoded(r) for r in self.db["challenger_nights"].rows_where(where, args, order_by="logical_date")]


def _decoded(row: dict[str, Any]) -> dict[str, Any]:
    return {**row, **{k: json.loads(row[k]) for k in ("candidate", "evidence", "reasons")}}
