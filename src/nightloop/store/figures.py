"""Store area: figures — the UI dashboard's last counted figures, so a restarted UI shows them at once.

``dashboard_figures`` holds, per prompt ('' for all prompts), the operations metrics as JSON, the store state they
were counted at (the UI's fingerprint), their version and their rendered SVG plots. It is a cache of what the other
areas say: losing it loses nothing, and a row whose state no longer matches is shown only as "being recounted".
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import NamedTuple

import sqlite_utils

from nightloop.store.db import transaction

__all__ = ["FiguresRepo", "SavedFigures", "migrations"]

migrations = sqlite_utils.Migrations("nightloop.figures")


@migrations()
def m001_dashboard_figures(db: sqlite_utils.Database) -> None:
    db["dashboard_figures"].create(
        {"prompt": str, "state": str, "version": str, "ops": str, "plots": str, "saved_at": str},
        pk="prompt",
        not_null={"state", "version", "ops", "plots", "saved_at"},
    )


class SavedFigures(NamedTuple):
    state: str
    version: str
    ops: str
    plots: dict[str, str]


class FiguresRepo:
    """The dashboard's figures per prompt (``None`` = all prompts), one row each, replaced when recounted."""

    def __init__(self, db: sqlite_utils.Database) -> None:
        self.db = db

    def save(self, prompt: str | None, figures: SavedFigures) -> None:
        with transaction(self.db):
            self.db["dashboard_figures"].upsert(
                {"prompt": prompt or "", "state": figures.state, "version": figures.version, "ops": figures.ops,
                 "plots": json.dumps(figures.plots), "saved_at": datetime.now(UTC).isoformat()},
                pk="prompt",
            )

    def load(self, prompt: str | None) -> SavedFigures | None:
        row = self.db.execute(
            "select state, version, ops, plots from dashboard_figures where prompt = ?", [prompt or ""]
        ).fetchone()
        return None if row is None else SavedFigures(row[0], row[1], row[2], json.loads(row[3]))
