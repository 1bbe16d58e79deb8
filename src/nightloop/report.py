"""Night reports: per-night figures, the failure-rate trend by prompt version, Markdown and HTML."""

from __future__ import annotations

import html
from collections import Counter
from datetime import UTC, date, datetime, time, timedelta

from pydantic import BaseModel, Field

from nightloop.metrics import Operations
from nightloop.models import NightReport
from nightloop.store import Store

__all__ = [
    "DENOMINATORS",
    "NightRow",
    "VersionTrend",
    "day_rate",
    "day_traffic",
    "night_rows",
    "to_html",
    "to_markdown",
    "version_trend",
]



class NightRow(BaseModel):
    """One night of one prompt, as `nightloop report --json` prints it."""

    date: str
    prompt: str
    status: str
    #: The night's window: the last N conversations ending before the night's date (what the night learns from).
    conversations: int
    failures: dict[str, int] = Field(default_factory=dict)
    #: Failed conversations / ``conversations`` (the window's rate; consecutive windows overlap).
    failure_rate: float
    #: How many of the window's conversations an earlier night's window already held.
    seen_before: int = 0
    #: The day's own traffic: conversations that ended on the day before the night's date (UTC), and how many failed.
    day_conversations: int = 0
    day_failed: int = 0
    day_failure_rate: float | None = None
    prompt_version: int | None = None
    candidates: int = 0
    verdicts: dict[str, int] = Field(default_factory=dict)
    review_id: str | None = None
    review_status: str | None = None
    promoted_version: int | None = None
    #: The gate's challenger that night (short id) and its running evidence, e.g. "c7418476 held e=18.8 (1 night)".
    challenger: str | None = None
    tokens: int = 0
    cost_usd: float = 0.0
    notes: list[str] = Field(default_factory=list)
    #: Roles that ran on the offline simulator: this night's verdicts and cost are simulated.
    simulated: list[str] = Field(default_factory=list)
    #: "17/35 (49%)": production failures the baseline replay failed again; None when no replay ran.
    reproduced: str | None = None


class VersionTrend(BaseModel):
    prompt: str
    version: int | None
    conversations: int
    failed: int
    failure_rate: float


def _row(store: Store, report: NightReport) -> NightRow:
    review_status, promoted = None, report.promoted_version
    if report.review_id:
        review_status = store.runs.review_item(report.review_id).status
    # A night's promotion stays its own even when a forced re-run later wrote a new report.
    approved = [i for i in store.runs.review_items_for_run(report.run_id) if i.promoted_version]
    if approved:
        review_status, promoted = "approved", promoted or approved[-1].promoted_version
    day_total, day_failed = day_traffic(store, report.prompt_name, report.date)
    return NightRow(
        date=report.date.isoformat(),
        prompt=report.prompt_name,
        status=report.status,
        conversations=report.conversations,
        failures=report.failures,
        failure_rate=round(report.failure_rate, 4),
        seen_before=report.conversations - report.new_conversations,
        day_conversations=day_total,
        day_failed=day_failed,
        day_failure_rate=round(day_failed / day_total, 4) if day_total else None,
        prompt_version=report.prompt_version,
        candidates=report.candidates,
        verdicts=dict(Counter(d.verdict for d in report.decisions)),
        review_id=report.review_id,
        review_status=review_status,
        promoted_version=promoted,
        challenger=_challenger(store, report),
        tokens=report.tokens,
        cost_usd=round(report.cost_usd, 6),
        notes=report.notes,
        simulated=report.simulated,
        reproduced=_reproduced(report),
    )


def day_traffic(store: Store, prompt: str, night: date) -> tuple[int, int]:
    """(conversations, failed conversations) of ``prompt`` that ended on the day before the night's date, UTC."""
    end = datetime.combine(night, time.min, tzinfo=UTC)
    ids = [c.id for c in store.conversations.iter_conversations(prompt_name=prompt, since=end - timedelta(days=1), until=end)]
    failed = {f.conversation_id for f in store.conversations.failures(conversation_ids=ids)} if ids else set()
    return len(ids), len(failed)


def _reproduced(report: NightReport) -> str | None:
    r = report.reproduction
    return None if r is None else f"{r.reproduced}/{r.cases} ({r.rate:.0%})"


def _challenger(store: Store, report: NightReport) -> str | None:
    """The night's challenger from the gate's ledger: what became of it and the evidence it had reached."""
    rows = [r for r in store.challengers.nights(report.prompt_name) if r["logical_date"] == report.date.isoformat()]
    if not rows:
        return None
    row = rows[-1]
    short = row["challenger_id"].rsplit("-", 1)[-1]
    decision = next((d for d in report.decisions if d.candidate_id == row["challenger_id"]), None)
    if decision is None or decision.evidence is None:
        return f"{short} {row['status']}"
    nights = f"{decision.nights} night{'s' if decision.nights != 1 else ''}"
    return f"{short} {row['status']} e={decision.evidence:.3g} ({nights})"


def night_rows(store: Store, *, last: int | None = None, prompt: str | None = None) -> list[NightRow]:
    """The last ``last`` finished nights (oldest first), with review outcomes filled in."""
    return [_row(store, r) for r in store.runs.reports(prompt, last)]


def version_trend(store: Store, prompt: str) -> list[VersionTrend]:
    """Production failure rate of each prompt version, from the conversations that ran with it."""
    totals: Counter[int | None] = Counter()
    ids_by_version: dict[int | None, list[str]] = {}
    for conversation in store.conversations.iter_conversations(prompt_name=prompt):
        totals[conversation.prompt_version] += 1
        ids_by_version.setdefault(conversation.prompt_version, []).append(conversation.id)
    trend = []
    for version in sorted(totals, key=lambda v: (v is None, v or 0)):
        ids = ids_by_version[version]
        failed = len({f.conversation_id for f in store.conversations.failures(conversation_ids=ids)})
        trend.append(
            VersionTrend(
                prompt=prompt, version=version, conversations=totals[version], failed=failed,
                failure_rate=round(failed / totals[version], 4),
            )
        )
    return trend


#: What the two failure rates count, said wherever they are shown.
DENOMINATORS = (
    "Window: the last N conversations ending before the night's date, what the night learns from (consecutive "
    "windows overlap: 'seen before' counts those an earlier night already had). Day: that day's own traffic, "
    "the conversations that ended on the day before the night's date (UTC)."
)


def day_rate(row: NightRow) -> str:
    return "—" if row.day_failure_rate is None else f"{row.day_failure_rate:.1%}"


def _kinds(failures: dict[str, int]) -> str:
    return ", ".join(f"{k} {n}" for k, n in sorted(failures.items())) or "—"


def to_markdown(rows: list[NightRow], trends: list[VersionTrend], ops: Operations | None = None) -> str:
    lines = [
        "# nightloop report",
        "",
        DENOMINATORS,
        "",
        "| date | prompt | window conv. | window fail rate | seen before | day conv. | day fail rate | failures (window) "
        "| reproduced | candidates | verdicts | promoted | cost (USD) |",
        "|---|---|---:|---:|---:|---:|---:|---|---:|---:|---|---|---:|",
    ]
    for r in rows:
        verdicts = ", ".join(f"{k} {n}" for k, n in sorted(r.verdicts.items())) or "—"
        promoted = f"v{r.promoted_version}" if r.promoted_version else (r.review_status or "—")
        lines.append(
            f"| {r.date} | {r.prompt} | {r.conversations} | {r.failure_rate:.1%} | {r.seen_before} "
            f"| {r.day_conversations} | {day_rate(r)} | {_kinds(r.failures)} "
            f"| {r.reproduced or '—'} | {r.candidates} | {verdicts} | {promoted} | {r.cost_usd:.4f} |"
        )
    if trends:
        lines += ["", "## Failure rate by prompt version", "", "| prompt | version | conversations | failure rate |", "|---|---|---:|---:|"]
        for t in trends:
            version = f"v{t.version}" if t.version is not None else "unknown"
            lines.append(f"| {t.prompt} | {version} | {t.conversations} | {t.failure_rate:.1%} |")
    if ops is not None:
        from nightloop.ops_report import operations_markdown

        lines += ["", operations_markdown(ops)]
    return "\n".join(lines) + "\n"


def to_html(rows: list[NightRow], trends: list[VersionTrend], ops: Operations | None = None) -> str:
    """A self-contained HTML page of the same tables (with ``ops``: its date, store, operations metrics and plots)."""

    def table(headers: list[str], body: list[list[str]]) -> str:
        head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
        rows_html = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in body)
        return f"<table><thead><tr>{head}</tr></thead><tbody>{rows_html}</tbody></table>"

    nights = table(
        ["date", "prompt", "window conv.", "window fail rate", "seen before", "day conv.", "day fail rate",
         "failures (window)", "reproduced", "candidates", "promoted", "cost (USD)"],
        [
            [r.date, r.prompt, str(r.conversations), f"{r.failure_rate:.1%}", str(r.seen_before),
             str(r.day_conversations), day_rate(r), _kinds(r.failures), r.reproduced or "—", str(r.candidates),
             f"v{r.promoted_version}" if r.promoted_version else (r.review_status or "—"), f"{r.cost_usd:.4f}"]
            for r in rows
        ],
    )
    versions = table(
        ["prompt", "version", "conversations", "failure rate"],
        [[t.prompt, f"v{t.version}" if t.version is not None else "unknown", str(t.conversations), f"{t.failure_rate:.1%}"]
         for t in trends],
    )
    style = "body{font-family:sans-serif;margin:2em}table{border-collapse:collapse;margin-bottom:2em}td,th{border:1px solid #ccc;padding:4px 8px}"
    operations = ""
    if ops is not None:
        from nightloop.ops_report import operations_html

        operations = operations_html(ops)
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>nightloop report</title><style>{style}</style></head>"
        f"<body><h1>nightloop report</h1>{operations}<h2>Nights</h2><p>{html.escape(DENOMINATORS)}</p>{nights}"
        f"<h2>Failure rate by prompt version</h2>{versions}</body></html>\n"
    )
