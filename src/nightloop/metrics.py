"""Operations metrics: how often working prompt versions ship, how often they break, how fast they are restored.

One home for the figures that `nightloop report` and the UI dashboard show, per prompt and overall, by ISO week
(weeks start on Monday, UTC). Every figure says where it comes from (:data:`SOURCES`), and the definitions are:

- **ship frequency**: promotions per week. A promotion is a move of ``production`` to a version it never pointed at
  before, dated when the label moved (``label_history``).
- **breakage rate**: promotions later rolled back ÷ promotions. A rollback is a move of ``production`` from a
  version straight back to an older one (by `watch`, `prompts rollback` or the UI).
- **time to restore**: from the first failing production conversation that ran the broken version (the first
  evidence of the breakage) to the rollback.
- **lead time**: from the earliest production conversation among the failures a promoted candidate addresses to the
  moment that candidate reached ``production``.
- **success by difficulty**: share of conversations with no detected failure, by ``metadata.difficulty``
  (``outcome.difficulty`` when absent; ``unknown`` when neither is set), dated by the conversation's end.
- **interventions per session**: ``user_correction`` failures per conversation.
- **review latency / approval rate**: from a candidate entering the review queue to a person's decision; approvals
  ÷ decisions. Promotions made by autonomy are not reviews and are left out.
- **spend per night**: recorded USD per finished night (``runs.spent_usd``), by the night's logical date.
- **failure rate by prompt version**: failed ÷ conversations per version and week, from the conversations'
  ``prompt_version``.
"""

from __future__ import annotations

import json
import statistics
from collections import defaultdict
from datetime import UTC, date, datetime, timedelta
from typing import Any, Literal

from pydantic import BaseModel, Field

from nightloop.store import Store
from nightloop.store.metrics import DIFFICULTY_SQL

__all__ = [
    "OVERALL",
    "SOURCES",
    "Operations",
    "ProductionMove",
    "VersionWeek",
    "WeekMetrics",
    "operations",
    "production_moves",
    "week_of",
]

OVERALL = "all prompts"
AUTO_MARK = "autonomy: auto"

SOURCES: dict[str, str] = {
    "promotions": "label_history: production moved to a version it never pointed at before (dated by the move)",
    "promotions_per_week": "promotions ÷ ISO weeks from the first to the last week with any recorded activity",
    "breakage_rate": "promotions whose version production later left straight for an older version (a rollback) ÷ promotions",
    "time_to_restore_h": "rollback time − end of the first failing conversation that ran the broken version (hours, median)",
    "lead_time_h": "promotion time − end of the earliest conversation among the failures the promoted candidate addresses (hours, median)",
    "success_by_difficulty": "conversations with no detected failure ÷ conversations, by metadata.difficulty (outcome.difficulty, else 'unknown')",
    "interventions_per_session": "user_correction failures ÷ conversations",
    "review_latency_h": "review decision time − time the candidate entered the queue, human decisions only (hours, median)",
    "approval_rate": "approved ÷ decided reviews (human decisions only)",
    "spend_per_night_usd": "runs.spent_usd of finished nights ÷ nights, by the night's logical date",
    "failure_rate_by_version": "conversations with a detected failure ÷ conversations, per prompt_version and week",
}


def week_of(day: date) -> date:
    """The Monday starting the ISO week of ``day``."""
    return day - timedelta(days=day.weekday())


def _day(text: str | None) -> date | None:
    return date.fromisoformat(text[:10]) if text else None


def _time(text: str | None) -> datetime | None:
    if not text:
        return None
    moment = datetime.fromisoformat(text)
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _hours(delta: timedelta) -> float:
    return max(delta.total_seconds(), 0.0) / 3600


def _median(values: list[float]) -> float | None:
    return round(statistics.median(values), 3) if values else None


class WeekMetrics(BaseModel):
    """One week (or the whole period, ``week=None``) of one prompt (or :data:`OVERALL`)."""

    prompt: str
    week: date | None = None
    promotions: int = 0
    #: Ship frequency: promotions ÷ weeks in the period (in totals; a week's own row has ``promotions``).
    promotions_per_week: float | None = None
    breakages: int = 0
    breakage_rate: float | None = None
    time_to_restore_h: float | None = None
    lead_time_h: float | None = None
    conversations: int = 0
    success_by_difficulty: dict[str, float] = Field(default_factory=dict)
    conversations_by_difficulty: dict[str, int] = Field(default_factory=dict)
    interventions_per_session: float | None = None
    reviews_decided: int = 0
    approvals: int = 0
    approval_rate: float | None = None
    review_latency_h: float | None = None
    nights: int = 0
    spend_usd: float = 0.0
    spend_per_night_usd: float | None = None


class VersionWeek(BaseModel):
    prompt: str
    version: int | None
    week: date
    conversations: int
    failed: int
    failure_rate: float


class Operations(BaseModel):
    """Everything the dashboard and the report show; ``store`` and ``generated_at`` say where and when."""

    store: str
    generated_at: datetime
    prompt: str | None = None
    totals: list[WeekMetrics] = Field(default_factory=list)
    weeks: dict[str, list[WeekMetrics]] = Field(default_factory=dict)
    versions: list[VersionWeek] = Field(default_factory=list)
    sources: dict[str, str] = Field(default_factory=lambda: dict(SOURCES))

    def overall_weeks(self) -> list[WeekMetrics]:
        return self.weeks.get(OVERALL, [])


# --- the raw events, read once ---------------------------------------------------------------------------------


class _Events:
    """Per prompt: dated events, each a small tuple; folded into weeks by :func:`_fold`."""

    def __init__(self) -> None:
        self.promotions: list[tuple[str, datetime, int]] = []  # (prompt, when, version)
        self.breakages: list[tuple[str, datetime, float | None]] = []  # (prompt, promotion time, restore hours)
        self.lead_times: list[tuple[str, datetime, float]] = []
        self.reviews: list[tuple[str, datetime, bool, float]] = []  # (prompt, decided, approved, latency hours)
        self.nights: list[tuple[str, date, float]] = []
        # (prompt, day, difficulty) -> [conversations, failed, corrections]
        self.conversations: dict[tuple[str, date, str], list[int]] = defaultdict(lambda: [0, 0, 0])
        self.versions: dict[tuple[str, int | None, date], list[int]] = defaultdict(lambda: [0, 0])


class ProductionMove(BaseModel):
    """A move of ``production``, classified: ``start`` (first set), ``promotion``, ``rollback`` or ``other``."""

    prompt: str
    kind: Literal["start", "promotion", "rollback", "other"]
    from_version: int | None
    to_version: int
    at: datetime
    by: str


def production_moves(store: Store, prompt: str | None = None) -> list[ProductionMove]:
    """Every move of ``production`` (of one prompt or all), oldest first, with what kind of move it was.

    A promotion moves production to a version it never pointed at before; a rollback moves it from a version
    straight back to an older one. The one definition both these metrics and earned autonomy use.
    """
    sql = "select name, from_version, to_version, moved_at, moved_by from label_history where label = 'production'"
    params: list[Any] = []
    if prompt:
        sql, params = sql + " and name = ?", [prompt]
    seen: dict[str, set[int]] = defaultdict(set)
    moves = []
    for name, old, new, moved_at, by in store.db.execute(sql + " order by id", params).fetchall():
        if old is None:
            kind = "start"
        elif new not in seen[name]:
            kind = "promotion"
        elif new < old:
            kind = "rollback"
        else:
            kind = "other"
        seen[name].add(new)
        moves.append(ProductionMove(prompt=name, kind=kind, from_version=old, to_version=new, at=_time(moved_at), by=by))
    return moves


def _read_promotions(store: Store, prompt: str | None, events: _Events) -> None:
    approvals = _approved_reviews(store, prompt)
    first_failures = _first_failures(store, prompt)
    open_promotions: dict[tuple[str, int], datetime] = {}
    for move in production_moves(store, prompt):
        if move.kind == "promotion":
            events.promotions.append((move.prompt, move.at, move.to_version))
            open_promotions[(move.prompt, move.to_version)] = move.at
            addressed_since = approvals.get((move.prompt, move.to_version))
            if addressed_since is not None:
                events.lead_times.append((move.prompt, move.at, _hours(move.at - addressed_since)))
        elif move.kind == "rollback" and (move.prompt, move.from_version) in open_promotions:
            promoted_at = open_promotions.pop((move.prompt, move.from_version))
            first_failure = first_failures.get((move.prompt, move.from_version))
            restore = _hours(move.at - first_failure) if first_failure else None
            events.breakages.append((move.prompt, promoted_at, restore))


def _approved_reviews(store: Store, prompt: str | None) -> dict[tuple[str, int], datetime]:
    """(prompt, promoted version) -> end of the earliest conversation among the failures its candidate addresses."""
    sql = (
        "select prompt_name, json_extract(item, '$.promoted_version'), json_extract(item, '$.candidate') "
        "from review_queue where status = 'approved'"
    )
    params: list[Any] = []
    if prompt:
        sql, params = sql + " and prompt_name = ?", [prompt]
    addressed: dict[tuple[str, int], set[str]] = {}
    for name, version, candidate in store.db.execute(sql, params).fetchall():
        if version is None:
            continue
        parsed = json.loads(candidate)
        ids = list(parsed.get("addresses") or []) + [a for e in parsed.get("edits") or [] for a in e.get("addresses") or []]
        if ids:
            addressed[(name, version)] = {i.split("#", 1)[0] for i in ids}
    wanted = sorted(set().union(*addressed.values())) if addressed else []
    ended: dict[str, datetime] = {}
    for start in range(0, len(wanted), 500):
        chunk = wanted[start : start + 500]
        rows = store.db.execute(
            f"select id, ended_at from conversations where id in ({','.join('?' * len(chunk))})", chunk
        ).fetchall()
        ended.update((cid, _time(at)) for cid, at in rows if at)
    found = {}
    for key, ids in addressed.items():
        times = [ended[i] for i in ids if i in ended]
        if times:
            found[key] = min(times)
    return found


def _first_failures(store: Store, prompt: str | None) -> dict[tuple[str, int], datetime]:
    """(prompt, version) -> end of the first conversation with a detected failure that ran that version."""
    where, params = ("and c.prompt_name = ?", [prompt]) if prompt else ("", [])
    rows = store.db.execute(
        "select c.prompt_name, c.prompt_version, min(c.ended_at) from conversations c "
        f"join (select distinct conversation_id from failures) f on f.conversation_id = c.id "
        f"where c.prompt_version is not null {where} group by 1, 2",
        params,
    ).fetchall()
    return {(name, version): _time(first) for name, version, first in rows if first}


def _read_reviews(store: Store, prompt: str | None, events: _Events) -> None:
    sql = (
        "select prompt_name, created_at, json_extract(item, '$.decided_at'), json_extract(item, '$.decided_by'), status "
        "from review_queue where status in ('approved', 'rejected')"
    )
    params: list[Any] = []
    if prompt:
        sql, params = sql + " and prompt_name = ?", [prompt]
    for name, created, decided, by, status in store.db.execute(sql, params).fetchall():
        if not decided or (by and AUTO_MARK in by):
            continue
        decided_at = _time(decided)
        events.reviews.append((name, decided_at, status == "approved", _hours(decided_at - _time(created))))


def _read_nights(store: Store, prompt: str | None, events: _Events) -> None:
    sql = "select prompt_name, logical_date, coalesce(spent_usd, 0) from runs where report is not null"
    params: list[Any] = []
    if prompt:
        sql, params = sql + " and prompt_name = ?", [prompt]
    for name, logical, spent in store.db.execute(sql, params).fetchall():
        events.nights.append((name, date.fromisoformat(logical), float(spent)))


def _read_conversations(store: Store, prompt: str | None, events: _Events) -> None:
    where, params = ("where c.prompt_name = ?", [prompt]) if prompt else ("where c.prompt_name is not null", [])
    sql = f"""
        with per_conversation as (
            select conversation_id, sum(kind = 'user_correction') as corrections from failures group by conversation_id
        )
        select c.prompt_name, c.prompt_version, substr(c.ended_at, 1, 10), {DIFFICULTY_SQL},
               count(*), count(f.conversation_id), coalesce(sum(f.corrections), 0)
        from conversations c left join per_conversation f on f.conversation_id = c.id {where}
        group by 1, 2, 3, 4
    """
    for name, version, day_text, difficulty, total, failed, corrections in store.db.execute(sql, params).fetchall():
        day = _day(day_text)
        if day is None:
            continue
        bucket = events.conversations[(name, day, str(difficulty))]
        bucket[0] += total
        bucket[1] += failed
        bucket[2] += corrections
        per_version = events.versions[(name, version, week_of(day))]
        per_version[0] += total
        per_version[1] += failed


# --- folding events into weeks ---------------------------------------------------------------------------------


def _bucketed(events: _Events) -> dict[tuple[str, date], _Events]:
    """The events split by (prompt, week)."""
    buckets: dict[tuple[str, date], _Events] = defaultdict(_Events)
    for e in events.promotions:
        buckets[(e[0], week_of(e[1].date()))].promotions.append(e)
    for e in events.breakages:
        buckets[(e[0], week_of(e[1].date()))].breakages.append(e)
    for e in events.lead_times:
        buckets[(e[0], week_of(e[1].date()))].lead_times.append(e)
    for e in events.reviews:
        buckets[(e[0], week_of(e[1].date()))].reviews.append(e)
    for e in events.nights:
        buckets[(e[0], week_of(e[1]))].nights.append(e)
    for key, counts in events.conversations.items():
        buckets[(key[0], week_of(key[1]))].conversations[key] = counts
    return buckets


def _merged(parts: list[_Events]) -> _Events:
    merged = _Events()
    for part in parts:
        merged.promotions += part.promotions
        merged.breakages += part.breakages
        merged.lead_times += part.lead_times
        merged.reviews += part.reviews
        merged.nights += part.nights
        merged.conversations.update(part.conversations)
    return merged


def _fold(prompt: str, week: date | None, events: _Events) -> WeekMetrics:
    """One :class:`WeekMetrics` of already-selected events."""
    m = WeekMetrics(prompt=prompt, week=week)
    m.promotions = len(events.promotions)
    m.breakages = len(events.breakages)
    m.breakage_rate = round(m.breakages / m.promotions, 4) if m.promotions else None
    m.time_to_restore_h = _median([h for _, _, h in events.breakages if h is not None])
    m.lead_time_h = _median([h for _, _, h in events.lead_times])
    totals: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0])
    for (_, _, difficulty), (total, failed, corrections) in events.conversations.items():
        bucket = totals[difficulty]
        bucket[0], bucket[1], bucket[2] = bucket[0] + total, bucket[1] + failed, bucket[2] + corrections
    m.conversations = sum(t for t, _, _ in totals.values())
    m.conversations_by_difficulty = {d: t for d, (t, _, _) in sorted(totals.items())}
    m.success_by_difficulty = {d: round(1 - f / t, 4) for d, (t, f, _) in sorted(totals.items()) if t}
    corrections = sum(c for _, _, c in totals.values())
    m.interventions_per_session = round(corrections / m.conversations, 4) if m.conversations else None
    m.reviews_decided = len(events.reviews)
    m.approvals = sum(1 for _, _, approved, _ in events.reviews if approved)
    m.approval_rate = round(m.approvals / m.reviews_decided, 4) if events.reviews else None
    m.review_latency_h = _median([hours for _, _, _, hours in events.reviews])
    spends = [spent for _, _, spent in events.nights]
    m.nights = len(spends)
    m.spend_usd = round(sum(spends), 6)
    m.spend_per_night_usd = round(m.spend_usd / m.nights, 6) if spends else None
    return m


def _per_week(total: WeekMetrics, weeks: int) -> WeekMetrics:
    total.promotions_per_week = round(total.promotions / weeks, 4) if weeks else None
    return total


def operations(store: Store, prompt: str | None = None, *, now: datetime | None = None) -> Operations:
    """The operations metrics of the store (or one prompt), per prompt and overall, by week and in total."""
    events = _Events()
    _read_promotions(store, prompt, events)
    _read_reviews(store, prompt, events)
    _read_nights(store, prompt, events)
    _read_conversations(store, prompt, events)
    buckets = _bucketed(events)
    names = [prompt] if prompt else sorted({name for name, _ in buckets})
    weeks = sorted({week for _, week in buckets})
    by_prompt: dict[str, list[WeekMetrics]] = {}
    totals = []
    for name in names:
        mine = [buckets.get((name, week), _Events()) for week in weeks]
        by_prompt[name] = [_fold(name, week, part) for week, part in zip(weeks, mine, strict=True)]
        totals.append(_per_week(_fold(name, None, _merged(mine)), len(weeks)))
    by_prompt[OVERALL] = [
        _fold(OVERALL, week, _merged([buckets[(n, week)] for n in names if (n, week) in buckets])) for week in weeks
    ]
    totals.append(_per_week(_fold(OVERALL, None, events), len(weeks)))
    versions = [
        VersionWeek(prompt=name, version=version, week=week, conversations=total, failed=failed,
                    failure_rate=round(failed / total, 4))
        for (name, version, week), (total, failed) in sorted(
            events.versions.items(), key=lambda kv: (kv[0][0], kv[0][2], kv[0][1] is None, kv[0][1] or 0)
        )
        if total
    ]
    return Operations(
        store=str(store.path) if store.path else ":memory:",
        generated_at=now or datetime.now(UTC),
        prompt=prompt,
        totals=totals,
        weeks=by_prompt,
        versions=versions,
    )
