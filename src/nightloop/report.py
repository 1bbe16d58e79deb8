"""Night reports: per-night figures, the failure-rate trend by prompt version, Markdown and HTML."""

from __future__ import annotations

import html
from collections import Counter

from pydantic import BaseModel, Field

from nightloop.metrics import Operations
from nightloop.models import NightReport
from nightloop.store import Store

__all__ = ["NightRow", "VersionTrend", "night_rows", "to_html", "to_markdown", "version_trend"]


class NightRow(BaseModel):
    """One night of one prompt, as `nightloop report --json` prints it."""

    date: str
    prompt: str
    status: str
    conversations: int
    failures: dict[str, int] = Field(default_factory=dict)
    failure_rate: float
    prompt_version: int | None = None
    candidates: int = 0
    verdicts: dict[str, int] = Field(default_factory=dict)
    review_id: str | None = None
    review_status: str | None = None
    promoted_version: int | None = None
    tokens: int = 0
    cost_usd: float = 0.0
    notes: list[str] = Field(default_factory=list)
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
    return NightRow(
        date=report.date.isoformat(),
        prompt=report.prompt_name,
        status=report.status,
        conversations=report.conversations,
        failures=report.failures,
        failure_rate=round(report.failure_rate, 4),
        prompt_version=report.prompt_version,
        candidates=report.candidates,
        verdicts=dict(Counter(d.verdict for d in report.decisions)),
        review_id=report.review_id,
        review_status=review_status,
        promoted_version=promoted,
        tokens=report.tokens,
        cost_usd=round(report.cost_usd, 6),
        notes=report.notes,
        reproduced=_reproduced(report),
    )


def _reproduced(report: NightReport) -> str | None:
    r = report.reproduction
    return None if r is None else f"{r.reproduced}/{r.cases} ({r.rate:.0%})"


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


def _kinds(failures: dict[str, int]) -> str:
    return ", ".join(f"{k} {n}" for k, n in sorted(failures.items())) or "—"


def to_markdown(rows: list[NightRow], trends: list[VersionTrend], ops: Operations | None = None) -> str:
    lines = [
        "# nightloop report",
        "",
        "| date | prompt | conversations | failure rate | failures | reproduced | candidates | verdicts | promoted | cost (USD) |",
        "|---|---|---:|---:|---|---:|---:|---|---|---:|",
    ]
    for r in rows:
        verdicts = ", ".join(f"{k} {n}" for k, n in sorted(r.verdicts.items())) or "—"
        promoted = f"v{r.promoted_version}" if r.promoted_version else (r.review_status or "—")
        lines.append(
            f"| {r.date} | {r.prompt} | {r.conversations} | {r.failure_rate:.1%} | {_kinds(r.failures)} "
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
        ["date", "prompt", "conversations", "failure rate", "failures", "reproduced", "candidates", "promoted", "cost (USD)"],
        [
            [r.date, r.prompt, str(r.conversations), f"{r.failure_rate:.1%}", _kinds(r.failures), r.reproduced or "—",
             str(r.candidates),
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
        f"<body><h1>nightloop report</h1>{operations}<h2>Nights</h2>{nights}<h2>Failure rate by prompt version</h2>{versions}</body></html>\n"
    )
