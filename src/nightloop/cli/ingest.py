"""CLI commands: `nightloop ingest`, `nightloop failures`, `nightloop quarantine`."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

import typer
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from nightloop.cli.common import (
    ConfigOption,
    DbOption,
    JsonOption,
    console,
    err_console,
    fail,
    open_store,
    print_json,
    settings_from,
)
from nightloop.errors import NightloopError
from nightloop.models import FAILURE_KINDS, Failure, IngestStats, Quarantined
from nightloop.sources import FORMATS

__all__ = ["register"]

SourcesArg = Annotated[
    list[str],
    typer.Argument(
        help="Files, directories (read recursively: *.jsonl, *.jsonl.gz, *.json), quoted globs, "
        "or SQLite specs (path.db, path.db::table, sqlite:///path.db?query=SELECT …).",
        show_default=False,
        metavar="SOURCE...",
    ),
]
FormatOption = Annotated[
    str | None,
    typer.Option("--format", "-f", help=f"Source format ({', '.join(FORMATS)}); default: detected per file."),
]
StrictOption = Annotated[bool, typer.Option("--strict", help="Exit non-zero when any record was quarantined.")]
WorkersOption = Annotated[
    int | None,
    typer.Option("--workers", min=0, help="Processes that read OTLP span files and merge and classify span conversations (0: this one; default: up to 2 idle cores, for 32 MB+ of OTLP files or 10,000+ conversations)."),
]
PromptOption = Annotated[str | None, typer.Option("--prompt", "-p", help="Only this prompt's conversations.")]
KindOption = Annotated[str | None, typer.Option("--kind", "-k", help=f"Only this failure kind ({', '.join(FAILURE_KINDS)}).")]
SinceOption = Annotated[
    str | None, typer.Option("--since", help="Only conversations ending at or after this date/time (e.g. 2026-11-23).")
]
LimitOption = Annotated[int | None, typer.Option("--limit", "-n", help="Show at most this many rows.", min=1)]
TABLE_ROWS = 50
FailuresLimitOption = Annotated[
    int | None,
    typer.Option("--limit", "-n", help=f"Show at most this many failures (table default: {TABLE_ROWS}; JSON default: all).", min=1),
]


def register(app: typer.Typer) -> None:
    """Add this area's commands to the app."""
    app.command("ingest")(ingest)
    app.command("failures")(failures)
    app.command("quarantine")(quarantine)


def ingest(
    sources: SourcesArg,
    format: FormatOption = None,
    db: DbOption = None,
    config: ConfigOption = None,
    strict: StrictOption = False,
    as_json: JsonOption = False,
    workers: WorkersOption = None,
) -> None:
    """Read conversations into the store and classify the new ones; unreadable records are quarantined.

    Example: nightloop ingest logs/ --json
    """

    from nightloop.ingest import ingest as run_ingest

    if format is not None and format not in FORMATS:
        from nightloop.plugins import registered

        if format not in (known := registered("sources")):
            fail(f"Unknown format {format!r}; use one of: {', '.join(known)}.")
    settings = settings_from(db, config)
    with _progress() as progress:
        task = progress.add_task("ingesting", total=None)

        def show(stats: IngestStats) -> None:
            progress.update(
                task, completed=stats.ingested + stats.duplicates, description=_progress_text(stats)
            )

        try:
            with open_store(settings) as store:
                stats = run_ingest(
                    store, sources, format=format, classify_config=settings.classify, on_progress=show, workers=workers
                )
                stored_quarantine = store.conversations.quarantine_count()
        except NightloopError as exc:
            fail(str(exc))
    _report(stats, as_json, stored_quarantine)
    if strict and stats.quarantined:
        fail(f"{stats.quarantined} record(s) were quarantined (--strict); fix them or drop --strict.")


def _progress() -> Progress:
    return Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        TimeElapsedColumn(),
        console=err_console,
        transient=True,
        disable=not err_console.is_terminal,
    )


def _progress_text(stats: IngestStats) -> str:
    return f"{stats.ingested} new · {stats.updated} updated · {stats.duplicates} duplicate · {stats.quarantined} quarantined"


def _report(stats: IngestStats, as_json: bool, stored_quarantine: int) -> None:
    shown = stats.quarantined_records
    if as_json:
        print_json(
            {
                "ingested": stats.ingested,
                "updated": stats.updated,
                "duplicates": stats.duplicates,
                "quarantined": stats.quarantined,
                "failures": stats.failures,
                "errors": stats.errors,
                "quarantine": [{"locator": q.locator, "reason": q.reason} for q in shown],
                "quarantine_total_in_store": stored_quarantine,
            }
        )
        return
    for record in shown:
        err_console.print(_quarantine_line(record), highlight=False, markup=False, soft_wrap=True)
    if stats.quarantined > len(shown):
        err_console.print(f"… and {stats.quarantined - len(shown)} more: see `nightloop quarantine`", highlight=False)
    for error in stats.errors:
        err_console.print(f"warning: {error}", highlight=False, markup=False)
    kinds = ", ".join(f"{kind} {n}" for kind, n in sorted(stats.failures.items())) or "none"
    updated = f"updated {stats.updated} (later spans re-merged), " if stats.updated else ""
    console.print(
        f"ingested {stats.ingested}, {updated}duplicates {stats.duplicates}, quarantined {stats.quarantined}; "
        f"failures found: {kinds}",
        highlight=False,
    )


def _quarantine_line(record: Quarantined) -> str:
    return f"{record.locator}: {record.reason}"


def _parse_since(since: str | None) -> datetime | None:
    if since is None:
        return None
    try:
        return datetime.fromisoformat(since)
    except ValueError:
        fail(f"--since {since!r} is not a date; use e.g. 2026-11-23 or 2026-11-23T10:00:00Z.")


def failures(
    prompt: PromptOption = None,
    kind: KindOption = None,
    since: SinceOption = None,
    limit: FailuresLimitOption = None,
    db: DbOption = None,
    config: ConfigOption = None,
    as_json: JsonOption = False,
) -> None:
    """List the failures found in stored conversations, with a per-kind summary.

    Example: nightloop failures --kind timeout --since 2026-11-23 --json
    """
    if kind is not None and kind not in FAILURE_KINDS:
        fail(f"Unknown failure kind {kind!r}; use one of: {', '.join(FAILURE_KINDS)}.")
    moment = _parse_since(since)
    settings = settings_from(db, config)
    with open_store(settings, read_only=True) as store:
        found = store.conversations.failures(prompt_name=prompt, kind=kind, since=moment)
        shown = found[:limit] if limit is not None else (found if as_json else found[:TABLE_ROWS])
        context = store.conversations.where_and_when({f.conversation_id for f in shown})
    if as_json:
        print_json([{"id": f.id, **f.model_dump(mode="json"), **_where_and_when(context, f)} for f in shown])
        return
    _print_failures(shown, found, context)


def _where_and_when(context: dict, failure: Failure) -> dict[str, str | None]:
    prompt_name, ended_at = context.get(failure.conversation_id, (None, None))
    return {"prompt_name": prompt_name, "ended_at": ended_at.isoformat() if ended_at else None}


def _print_failures(shown: list[Failure], found: list[Failure], context: dict) -> None:
    if not found:
        console.print("No failures stored (run `nightloop ingest` first, or widen the filters).")
        return
    title = f"Failures ({len(shown)} of {len(found)}: --limit or --json for more)" if len(shown) < len(found) else "Failures"
    table = Table(title=title)
    for column in ("date", "prompt", "conversation", "kind", "turn", "detector", "conf.", "evidence"):
        table.add_column(column, overflow="fold", no_wrap=column == "date")
    from nightloop.invisible import escape_invisible
    from nightloop.redact import redact

    for failure in shown:
        where = _where_and_when(context, failure)
        table.add_row(
            (where["ended_at"] or "")[:10] or "—",
            where["prompt_name"] or "—",
            # Ids and evidence are written by whoever talks to the agent: shown redacted, invisible text escaped.
            escape_invisible(redact(failure.conversation_id)),
            failure.kind,
            "" if failure.turn is None else str(failure.turn),
            failure.detector,
            f"{failure.confidence:.2f}",
            escape_invisible(failure.evidence[:160]),
        )
    console.print(table)
    summary = Table(title="Per kind")
    summary.add_column("kind")
    summary.add_column("failures", justify="right")
    summary.add_column("conversations", justify="right")
    for kind in sorted({f.kind for f in found}):
        of_kind = [f for f in found if f.kind == kind]
        summary.add_row(kind, str(len(of_kind)), str(len({f.conversation_id for f in of_kind})))
    console.print(summary)


def quarantine(
    limit: LimitOption = None,
    db: DbOption = None,
    config: ConfigOption = None,
    as_json: JsonOption = False,
) -> None:
    """List records that could not be read, with where they are and why.

    Example: nightloop quarantine --json
    """
    settings = settings_from(db, config)
    with open_store(settings, read_only=True) as store:
        records = store.conversations.quarantined(limit=limit)
        total = store.conversations.quarantine_count()
    if as_json:
        print_json(records)
        return
    if not records:
        console.print("Nothing is quarantined.")
        return
    for record in records:
        console.print(_quarantine_line(record), highlight=False, markup=False, soft_wrap=True)
    console.print(f"{len(records)} of {total} quarantined record(s).", highlight=False)
