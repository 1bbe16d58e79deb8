"""CLI commands: report — per-night figures and the failure-rate trend by prompt version."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from nightloop.cli.common import (
    ConfigOption,
    DbOption,
    JsonOption,
    console,
    fail,
    failures_text,
    open_store,
    print_json,
    settings_from,
)
from nightloop.report import NightRow, VersionTrend, night_rows, to_html, to_markdown, version_trend


def nights_table(rows: list[NightRow]) -> Table:
    table = Table(title="nights")
    for column in ("date", "prompt", "status", "conv.", "fail rate", "failures", "cand.", "verdicts", "promoted", "cost $"):
        table.add_column(column, no_wrap=column == "date")
    for r in rows:
        promoted = f"v{r.promoted_version}" if r.promoted_version else (r.review_status or "—")
        table.add_row(
            r.date, r.prompt, r.status, str(r.conversations), f"{r.failure_rate:.1%}",
            failures_text(r.failures), str(r.candidates),
            ", ".join(f"{k} {n}" for k, n in sorted(r.verdicts.items())) or "—", promoted, f"{r.cost_usd:.4f}",
        )
    return table


def trend_table(trends: list[VersionTrend]) -> Table:
    table = Table(title="failure rate by prompt version")
    for column in ("prompt", "version", "conversations", "failed", "failure rate"):
        table.add_column(column)
    for t in trends:
        version = f"v{t.version}" if t.version is not None else "unknown"
        table.add_row(t.prompt, version, str(t.conversations), str(t.failed), f"{t.failure_rate:.1%}")
    return table


def register(app: typer.Typer) -> None:
    """Add the `report` command."""

    @app.command()
    def report(
        last: Annotated[int | None, typer.Option("--last", help="Only the last N nights.")] = None,
        prompt: Annotated[str | None, typer.Option("--prompt", help="Only this prompt.")] = None,
        html: Annotated[Path | None, typer.Option("--html", help="Also write an HTML report to this file.")] = None,
        markdown: Annotated[Path | None, typer.Option("--markdown", help="Also write a Markdown report to this file.")] = None,
        db: DbOption = None,
        config: ConfigOption = None,
        as_json: JsonOption = False,
    ) -> None:
        """Per night: conversations, failures by kind, failure rate, candidates, verdicts, promotions, cost; plus the trend by version.

        Example: nightloop report --last 7 --html report.html
        """
        with open_store(settings_from(db, config), read_only=True) as store:
            rows = night_rows(store, last=last, prompt=prompt)
            prompts = [prompt] if prompt else sorted({r.prompt for r in rows})
            trends = [t for name in prompts for t in version_trend(store, name)]
        for path, render in ((html, to_html), (markdown, to_markdown)):
            if path is None:
                continue
            try:
                path.write_text(render(rows, trends), encoding="utf-8")
            except OSError as exc:
                fail(f"Cannot write {path}: {exc.strerror}; check that its directory exists and is writable.")
        if as_json:
            print_json(rows)
            return
        if not rows:
            console.print("No finished nights yet; run one with `nightloop run --no-prefect`.")
            return
        console.print(nights_table(rows))
        console.print(trend_table(trends))
