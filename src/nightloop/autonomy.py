"""Earned autonomy: a prompt's level (``propose`` < ``review`` < ``auto``) moves on its record, and every move is kept.

- A prompt starts at the level its ``prompts/<name>.yaml`` declares (``autonomy:``, ``review`` by default).
- At ``review`` it earns ``auto`` after ``promotions`` approved promotions within ``days`` days with no breakage in
  between (``[autonomy]`` in nightloop.toml; ``autonomy_promotions`` / ``autonomy_days`` per prompt) — never above
  its ceiling: ``max_autonomy`` (per prompt, else ``[autonomy] max_autonomy``, ``review`` by default, so nothing
  turns autonomous unless a person allowed it). Declaring ``autonomy: auto`` is such a permission.
- A breakage (a rollback of ``production``) drops it one level at once.
- A person may set the level (`nightloop trust NAME --set LEVEL`), up to the ceiling.

Each change is an :class:`~nightloop.store.autonomy.AutonomyEvent` with its reason. Promotions and breakages are
read from the label history (:func:`nightloop.metrics.production_moves`), the one definition the metrics use too.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from pydantic import BaseModel, Field

from nightloop.config import AutonomyConfig
from nightloop.errors import NightloopError
from nightloop.metrics import ProductionMove, production_moves
from nightloop.store import Store
from nightloop.store.autonomy import AutonomyEvent

__all__ = [
    "AUTO_ACTOR",
    "LEVELS",
    "Policy",
    "TrustRecord",
    "after_breakage",
    "after_promotion",
    "current_level",
    "policy_for",
    "set_level",
    "trust_record",
]

LEVELS = ("propose", "review", "auto")
#: Who a promotion made by autonomy is recorded as (the review queue's ``decided_by`` and the label move's author).
AUTO_ACTOR = "nightloop (autonomy: auto)"
_SYSTEM_ACTORS = (AUTO_ACTOR, "nightloop watch")


def _now() -> datetime:
    return datetime.now(UTC)


def _rank(level: str) -> int:
    return LEVELS.index(level)


class Policy(BaseModel):
    declared: str
    ceiling: str
    promotions: int
    days: int


class TrustRecord(BaseModel):
    """What `nightloop trust NAME` shows: the level, the record behind it, and what the next level needs."""

    prompt: str
    level: str
    policy: Policy
    window_start: datetime
    counted: list[ProductionMove] = Field(default_factory=list)
    last_breakage: datetime | None = None
    next_level: str | None = None
    needs: str
    events: list[AutonomyEvent] = Field(default_factory=list)


def policy_for(store: Store, name: str, config: AutonomyConfig) -> Policy:
    meta = store.prompts.get_meta(name)
    ceiling = meta.max_autonomy or config.max_autonomy
    if _rank(meta.autonomy) > _rank(ceiling):  # a level a person declared is a level a person allowed
        ceiling = meta.autonomy
    return Policy(
        declared=meta.autonomy,
        ceiling=ceiling,
        promotions=meta.autonomy_promotions or config.promotions,
        days=meta.autonomy_days or config.days,
    )


def current_level(store: Store, name: str, config: AutonomyConfig) -> str:
    """The prompt's level now: its last recorded change (else what it declares), never above its ceiling."""
    policy = policy_for(store, name, config)
    events = store.autonomy.events(name)
    level = events[-1].to_level if events else policy.declared
    return level if _rank(level) <= _rank(policy.ceiling) else policy.ceiling


def trust_record(store: Store, name: str, config: AutonomyConfig, *, now: datetime | None = None) -> TrustRecord:
    now = now or _now()
    policy = policy_for(store, name, config)
    level = current_level(store, name, config)
    moves = production_moves(store, name)
    breakages = [m.at for m in moves if m.kind == "rollback" and m.at <= now]
    last_breakage = max(breakages, default=None)
    window_start = now - timedelta(days=policy.days)
    if last_breakage is not None and last_breakage > window_start:
        window_start = last_breakage
    counted = [m for m in moves if m.kind == "promotion" and m.by not in _SYSTEM_ACTORS and window_start < m.at <= now]
    next_level, needs = _next(level, policy, counted, window_start)
    return TrustRecord(
        prompt=name, level=level, policy=policy, window_start=window_start, counted=counted,
        last_breakage=last_breakage, next_level=next_level, needs=needs, events=store.autonomy.events(name),
    )


def _next(level: str, policy: Policy, counted: list[ProductionMove], window_start: datetime) -> tuple[str | None, str]:
    if level == "auto":
        return None, "auto is the highest level; a breakage would drop it to review"
    if level == "propose":
        return "review", "a person sets it: `nightloop trust NAME --set review` (candidates then wait for review)"
    if policy.ceiling != "auto":
        return "auto", (
            f"the ceiling is {policy.ceiling}: a person allows auto with `max_autonomy: auto` in prompts/NAME.yaml "
            "(or [autonomy] max_autonomy in nightloop.toml)"
        )
    missing = policy.promotions - len(counted)
    return "auto", (
        f"{missing} more approved promotion(s) with no breakage "
        f"({len(counted)} of {policy.promotions} within {policy.days} days, counted since {window_start:%Y-%m-%d %H:%M} UTC)"
    )


def after_promotion(store: Store, name: str, config: AutonomyConfig, *, now: datetime | None = None) -> AutonomyEvent | None:
    """Call after a person's approval moved production: earn ``auto`` when the record is there."""
    now = now or _now()
    record = trust_record(store, name, config, now=now)
    if record.level != "review" or record.policy.ceiling != "auto" or len(record.counted) < record.policy.promotions:
        return None
    versions = ", ".join(f"v{m.to_version}" for m in record.counted)
    return store.autonomy.record(
        name, "review", "auto", kind="earned", actor="nightloop", at=now,
        reason=(
            f"{len(record.counted)} approved promotions ({versions}) within {record.policy.days} days and no "
            f"breakage since {record.window_start:%Y-%m-%d}"
        ),
    )


def after_breakage(store: Store, name: str, config: AutonomyConfig, *, reason: str, actor: str,
                   now: datetime | None = None) -> AutonomyEvent | None:
    """Call when production was rolled back: drop one level at once (nothing below ``propose``)."""
    now = now or _now()
    level = current_level(store, name, config)
    if level == "propose":
        return None
    lower = LEVELS[_rank(level) - 1]
    return store.autonomy.record(name, level, lower, kind="breakage", reason=f"breakage: {reason}", actor=actor, at=now)


def set_level(store: Store, name: str, level: str, config: AutonomyConfig, *, actor: str, reason: str) -> AutonomyEvent:
    """A person sets the level (up to the ceiling)."""
    if level not in LEVELS:
        raise NightloopError(f"{level!r} is not an autonomy level; use one of {', '.join(LEVELS)}.")
    policy = policy_for(store, name, config)
    if _rank(level) > _rank(policy.ceiling):
        raise NightloopError(
            f"{name}'s ceiling is {policy.ceiling}; allow {level} first with `max_autonomy: {level}` in "
            f"prompts/{name}.yaml (then `nightloop prompts import`)."
        )
    if not reason.strip():
        raise NightloopError("Say why: --reason is recorded with the change.")
    current = current_level(store, name, config)
    return store.autonomy.record(name, current, level, kind="set", reason=reason, actor=actor, at=_now())
