"""CLI commands: report — per-night figures and the failure-rate trend by prompt version."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape
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

if TYPE_CHECKING:
    from nightloop.report import NightRow, VersionTrend


def nights_table(rows: list[NightRow]) -> Table:
    from nightloop.report import DENOMINATORS, day_rate

    table = Table(title="nights", caption=DENOMINATORS)
    columns = ("date", "prompt", "status", "window: conv. fail", "seen before", "day: conv. fail", "failures (window)",
               "reproduced", "cand.", "verdicts", "promoted", "cost $")
    for column in columns:
        table.add_column(column, no_wrap=column == "date")
    for r in rows:
        promoted = f"v{r.promoted_version}" if r.promoted_version else (r.review_status or "—")
        table.add_row(
            r.date, r.prompt, r.status, f"{r.conversations} {r.failure_rate:.1%}", str(r.seen_before),
            f"{r.day_conversations} {day_rate(r)}", failures_text(r.failures), r.reproduced or "—", str(r.candidates),
            ", ".join(f"{k} {n}" for k, n in sorted(r.verdicts.items())) or "—", promoted,
            f"{r.cost_usd:.4f}" + (" simulated" if r.simulated else ""),
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


def operations_table(ops) -> Table:
    """The operations metrics in total, per prompt and overall (``nightloop report``'s last table)."""
    table = Table(title=f"operations (from {ops.store}; `--operations --json` for every week and where each number comes from)")
    for column in ("prompt", "promotions", "/week", "breakage", "restore h", "lead h", "success by difficulty", "interv./conv.",
                   "review h", "approved", "$/night"):
        table.add_column(column)

    def fmt(value, pattern="{:.2f}"):
        return "—" if value is None else pattern.format(value)

    for m in ops.totals:
        table.add_row(
            m.prompt, str(m.promotions), fmt(m.promotions_per_week), f"{fmt(m.breakage_rate, '{:.0%}')} ({m.breakages})", fmt(m.time_to_restore_h, "{:.1f}"),
            fmt(m.lead_time_h, "{:.1f}"),
            ", ".join(f"{k} {v:.0%}" for k, v in m.success_by_difficulty.items()) or "—",
            fmt(m.interventions_per_session), fmt(m.review_latency_h, "{:.1f}"), fmt(m.approval_rate, "{:.0%}"),
            fmt(m.spend_per_night_usd, "{:.4f}"),
        )
    return table


def register(app: typer.Typer) -> None:
    """Add the `report` command."""

    @app.command()
    def report(
        last: Annotated[int | None, typer.Option("--last", help="Only the last N nights.")] = None,
        prompt: Annotated[str | None, typer.Option("--prompt", help="Only this prompt.")] = None,
        html: Annotated[Path | None, typer.Option("--html", help="Also write an HTML report to this file.")] = None,
        markdown: Annotated[Path | None, typer.Option("--markdown", help="Also write a Markdown report to this file.")] = None,
        operations: Annotated[
            bool, typer.Option("--operations", help="Only the operations metrics (ship frequency, breakage rate, …), by week.")
        ] = False,
        db: DbOption = None,
        config: ConfigOption = None,
        as_json: JsonOption = False,
    ) -> None:
        """Per night: conversations, failures by kind, failure rate, candidates, verdicts, promotions, cost; the trend by
        version; and the operations metrics (ship frequency, breakage rate, time to restore, lead time, success by
        difficulty, interventions, review latency, spend), with plots in the HTML report.

        Example: nightloop report --last 7 --html report.html
        """

        from nightloop.metrics import operations as operations_metrics
        from nightloop.report import night_rows, to_html, to_markdown, version_trend
        from nightloop.simulated import simulated_label

        with open_store(settings_from(db, config), read_only=True) as store:
            rows = night_rows(store, last=last, prompt=prompt)
            prompts = [prompt] if prompt else sorted({r.prompt for r in rows})
            trends = [t for name in prompts for t in version_trend(store, name)]
            ops = operations_metrics(store, prompt)
        for path, render in ((html, to_html), (markdown, to_markdown)):
            if path is None:
                continue
            try:
                path.write_text(render(rows, trends, ops), encoding="utf-8")
            except OSError as exc:
                fail(f"Cannot write {path}: {exc.strerror}; check that its directory exists and is writable.")
        if operations and as_json:
            print_json(ops)
            return
        if operations:
            console.print(operations_table(ops))
            return
        if as_json:
            print_json(rows)
            return
        if not rows:
            console.print("No finished nights yet; run one with `nightloop run --no-prefect`.")
            return
        console.print(nights_table(rows))
        for roles in sorted({tuple(r.simulated) for r in rows if r.simulated}):
            console.print(f"[yellow]{escape(simulated_label(list(roles)))}[/]", highlight=False)
        from nightloop.reproduction import MISMATCH

        for r in rows:
            for note in (n for n in r.notes if n.startswith(MISMATCH)):
                console.print(f"[yellow]{r.date} {r.prompt}:[/] {note}", highlight=False)
        console.print(trend_table(trends))
        console.print(operations_table(ops))
