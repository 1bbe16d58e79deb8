"""Store area: runs — nights, their finished stages, eval results, the review queue, rejected-candidate memory."""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

import sqlite_utils

from nightloop.errors import NotFound
from nightloop.models import EvalResult, NightReport, ReviewItem
from nightloop.store.db import transaction

__all__ = ["RunRepo", "migrations"]

migrations = sqlite_utils.Migrations("nightloop.runs")


@migrations()
def m001_runs(db: sqlite_utils.Database) -> None:
    db["runs"].create(
        {
            "run_id": str,
            "prompt_name": str,
            "logical_date": str,
            "config_hash": str,
            "status": str,
            "started_at": str,
            "finished_at": str,
            "report": str,
        },
        pk="run_id",
    )
    db["runs"].create_index(["prompt_name", "logical_date"])
    db["stages"].create(
        {"run_id": str, "stage": str, "output": str, "finished_at": str},
        pk=("run_id", "stage"),
    )
    db["eval_results"].create(
        {"run_id": str, "candidate_id": str, "case_id": str, "repeat": int, "result": str},
        pk=("run_id", "candidate_id", "case_id", "repeat"),
    )
    db["run_conversations"].create(
        {"prompt_name": str, "conversation_id": str, "run_id": str},
        pk=("prompt_name", "conversation_id", "run_id"),
    )
    db["review_queue"].create(
        {
            "id": str,
            "run_id": str,
            "prompt_name": str,
            "status": str,
            "created_at": str,
            "item": str,
        },
        pk="id",
    )
    db["review_queue"].create_index(["status"])
    db["rejected_templates"].create(
        {"prompt_name": str, "sha256": str, "source": str, "comment": str, "rejected_at": str},
        pk=("prompt_name", "sha256"),
    )
    db["rollbacks"].create(
        {
            "id": int,
            "prompt_name": str,
            "from_version": int,
            "to_version": int,
            "run_id": str,
            "reasons": str,
            "at": str,
        },
        pk="id",
    )


@migrations()
def m002_run_spend(db: sqlite_utils.Database) -> None:
    db["runs"].add_column("spent_usd", float)
    db["runs"].add_column("tokens", int)


def _now() -> str:
    return datetime.now(UTC).isoformat()


class RunRepo:
    def __init__(self, db: sqlite_utils.Database) -> None:
        self.db = db

    # --- runs ---

    def start(self, run_id: str, prompt_name: str, logical_date: str, config_hash: str) -> None:
        """Record a run as running (a resumed run keeps its original start time)."""
        with transaction(self.db):
            existing = self._row("runs", run_id)
            if existing is None:
                self.db["runs"].insert(
                    {
                        "run_id": run_id,
                        "prompt_name": prompt_name,
                        "logical_date": logical_date,
                        "config_hash": config_hash,
                        "status": "running",
                        "started_at": _now(),
                        "finished_at": None,
                        "report": None,
                    }
                )
            else:
                self.db["runs"].update(run_id, {"status": "running", "finished_at": None})

    def finish(self, report: NightReport, spent: tuple[float, int] | None = None) -> None:
        """Record the run's end; ``spent`` (USD, tokens) is what this run itself spent, else the report's figures."""
        spent_usd, tokens = spent if spent is not None else (report.cost_usd, report.tokens)
        with transaction(self.db):
            self.db["runs"].update(
                report.run_id,
                {
                    "status": report.status,
                    "finished_at": _now(),
                    "report": report.model_dump_json(),
                    "spent_usd": spent_usd,
                    "tokens": tokens,
                },
            )

    def spent(self, run_id: str) -> tuple[float, int]:
        """(USD, tokens) recorded by earlier attempts of this run."""
        row = self._row("runs", run_id)
        return (row.get("spent_usd") or 0.0, row.get("tokens") or 0) if row else (0.0, 0)

    def status(self, run_id: str) -> str | None:
        row = self._row("runs", run_id)
        return row["status"] if row else None

    def report(self, run_id: str) -> NightReport | None:
        row = self._row("runs", run_id)
        return NightReport.model_validate_json(row["report"]) if row and row["report"] else None

    def reports(self, prompt_name: str | None = None, last: int | None = None) -> list[NightReport]:
        """Finished nights' reports, oldest first (the ``last`` most recent nights when given)."""
        where = "report is not null" + (" and prompt_name = ?" if prompt_name else "")
        params = [prompt_name] if prompt_name else []
        rows = list(
            self.db["runs"].rows_where(where, params, order_by="logical_date desc, finished_at desc", limit=last)
        )
        return [NightReport.model_validate_json(r["report"]) for r in reversed(rows)]

    def runs_for(self, prompt_name: str, logical_date: str) -> list[dict[str, Any]]:
        return list(self.db["runs"].rows_where("prompt_name = ? and logical_date = ?", [prompt_name, logical_date]))

    def reset(self, run_id: str) -> None:
        """Forget a run's stage records (``--force``); the response cache still saves the model calls."""
        with transaction(self.db):
            for table in ("stages", "eval_results"):
                self.db[table].delete_where("run_id = ?", [run_id])
            self.db["run_conversations"].delete_where("run_id = ?", [run_id])
            self.db["runs"].delete_where("run_id = ?", [run_id])

    # --- stages ---

    def stage_output(self, run_id: str, stage: str) -> Any | None:
        rows = list(self.db["stages"].rows_where("run_id = ? and stage = ?", [run_id, stage]))
        return json.loads(rows[0]["output"]) if rows else None

    def save_stage(self, run_id: str, stage: str, output: Any) -> None:
        with transaction(self.db):
            self.db["stages"].upsert(
                {"run_id": run_id, "stage": stage, "output": json.dumps(output, default=str), "finished_at": _now()},
                pk=("run_id", "stage"),
            )

    def latest_stage(
        self, prompt_name: str, stage: str, *, logical_date: str | None = None, config_hash: str | None = None
    ) -> tuple[str, str, Any] | None:
        """``(run_id, logical_date, output)`` of the latest night of ``prompt_name`` that finished ``stage``.

        Only nights on ``logical_date`` when given; among a date's runs, the one with ``config_hash`` first.
        """
        sql = (
            "select s.run_id, r.logical_date, s.output from stages s join runs r on r.run_id = s.run_id "
            "where r.prompt_name = ? and s.stage = ?"
        )
        params: list[Any] = [prompt_name, stage]
        if logical_date is not None:
            sql, params = sql + " and r.logical_date = ?", [*params, logical_date]
        sql += " order by r.logical_date desc, r.config_hash = ? desc, s.finished_at desc limit 1"
        row = self.db.execute(sql, [*params, config_hash or ""]).fetchone()
        return None if row is None else (row[0], row[1], json.loads(row[2]))

    def finished_stages(self, run_id: str) -> list[str]:
        return [r["stage"] for r in self.db["stages"].rows_where("run_id = ?", [run_id], order_by="finished_at")]

    # --- conversations seen by nights ---

    def mark_seen(self, run_id: str, prompt_name: str, conversation_ids: Iterable[str]) -> None:
        rows = [{"prompt_name": prompt_name, "conversation_id": cid, "run_id": run_id} for cid in conversation_ids]
        with transaction(self.db):
            self.db["run_conversations"].insert_all(rows, ignore=True)

    def seen_before(self, prompt_name: str, logical_date: str, conversation_ids: list[str]) -> set[str]:
        """Which of these conversations a night of this prompt with an earlier logical date already processed.

        Runs of the same date (another config, a forced re-run) don't count: for them the conversations are as new.
        """
        seen: set[str] = set()
        for start in range(0, len(conversation_ids), 500):
            chunk = conversation_ids[start : start + 500]
            marks = ",".join("?" * len(chunk))
            sql = (
                "select distinct rc.conversation_id from run_conversations rc join runs r on r.run_id = rc.run_id "
                f"where rc.prompt_name = ? and r.logical_date < ? and rc.conversation_id in ({marks})"
            )
            seen.update(row[0] for row in self.db.execute(sql, [prompt_name, logical_date, *chunk]).fetchall())
        return seen

    # --- eval results ---

    def save_eval(self, run_id: str, result: EvalResult) -> None:
        with transaction(self.db):
            self.db["eval_results"].insert(
                {
                    "run_id": run_id,
                    "candidate_id": result.candidate_id,
                    "case_id": result.case_id,
                    "repeat": result.repeat,
                    "result": result.model_dump_json(),
                },
                replace=True,
            )

    def eval_results(self, run_id: str) -> list[EvalResult]:
        rows = self.db["eval_results"].rows_where("run_id = ?", [run_id], order_by="rowid")
        return [EvalResult.model_validate_json(r["result"]) for r in rows]

    # --- review queue ---

    def enqueue_review(self, item: ReviewItem) -> None:
        """Queue an item; an item already queued under this id (e.g. approved before a forced re-run) is kept."""
        with transaction(self.db):
            self.db["review_queue"].insert(
                {
                    "id": item.id,
                    "run_id": item.run_id,
                    "prompt_name": item.prompt_name,
                    "status": item.status,
                    "created_at": item.created_at.isoformat(),
                    "item": item.model_dump_json(),
                },
                ignore=True,
            )

    def review_item(self, item_id: str) -> ReviewItem:
        row = self._row("review_queue", item_id)
        if row is None:
            matches = list(self.db["review_queue"].rows_where("id like ?", [f"{item_id}%"]))
            if len(matches) != 1:
                raise NotFound(f"No review item {item_id!r}; `nightloop review` lists the pending ones.")
            row = matches[0]
        return ReviewItem.model_validate_json(row["item"])

    def review_items(self, status: str | None = "pending", prompt_name: str | None = None) -> list[ReviewItem]:
        clauses, params = [], []
        if status:
            clauses.append("status = ?")
            params.append(status)
        if prompt_name:
            clauses.append("prompt_name = ?")
            params.append(prompt_name)
        rows = self.db["review_queue"].rows_where(" and ".join(clauses) or None, params, order_by="created_at")
        return [ReviewItem.model_validate_json(r["item"]) for r in rows]

    def review_items_for_run(self, run_id: str) -> list[ReviewItem]:
        rows = self.db["review_queue"].rows_where("run_id = ?", [run_id], order_by="created_at")
        return [ReviewItem.model_validate_json(r["item"]) for r in rows]

    def update_review(self, item: ReviewItem) -> None:
        """Write a decided item (call inside the caller's transaction)."""
        self.db["review_queue"].update(item.id, {"status": item.status, "item": item.model_dump_json()})

    # --- memory of rejected templates ---

    def remember_rejected(self, prompt_name: str, sha256: str, source: str, comment: str = "") -> None:
        with transaction(self.db):
            self.db["rejected_templates"].insert(
                {"prompt_name": prompt_name, "sha256": sha256, "source": source, "comment": comment, "rejected_at": _now()},
                ignore=True,
            )

    def rejected_hashes(self, prompt_name: str) -> set[str]:
        return {r["sha256"] for r in self.db["rejected_templates"].rows_where("prompt_name = ?", [prompt_name])}

    # --- rollbacks by watch ---

    def record_rollback(self, prompt_name: str, from_version: int, to_version: int, run_id: str, reasons: list[str]) -> None:
        with transaction(self.db):
            self.db["rollbacks"].insert(
                {
                    "prompt_name": prompt_name,
                    "from_version": from_version,
                    "to_version": to_version,
                    "run_id": run_id,
                    "reasons": json.dumps(reasons),
                    "at": _now(),
                }
            )

    def rollbacks(self, prompt_name: str) -> list[dict[str, Any]]:
        return list(self.db["rollbacks"].rows_where("prompt_name = ?", [prompt_name], order_by="id"))

    def _row(self, table: str, key: str) -> dict[str, Any] | None:
        try:
            return self.db[table].get(key)
        except sqlite_utils.db.NotFoundError:
            return None
