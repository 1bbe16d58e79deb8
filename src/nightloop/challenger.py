"""Challengers across nights: which candidate is held, the evidence so far, and what tonight adds.

A night's gate tests one challenger (:func:`nightloop.gate.gate_night`). When it is neither promoted
nor rejected it is *held*: the next night replays it next to that night's new candidates, and its
evidence keeps adding up. This module folds the store's ledger (``store.challengers``, one row per
prompt night) into the :class:`~nightloop.gate.Prior` the gate needs and records tonight's row.

The evidence of a production version's era
  counts every night since the version became production, or since the last promotion on it
  (a promotion spends the evidence: the next promotion must earn its own). A held challenger is
  dropped when production moves under it — the next judge proposes against the new production —
  when a newer candidate beats it on train cases, or after ``carry_nights`` nights.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from typing import Any

from nightloop.candidate_checks import validate_candidate
from nightloop.config import GateConfig, JudgeConfig
from nightloop.gate import NightGate, Prior
from nightloop.gate_stats import Evidence
from nightloop.high_risk import high_risk_reasons
from nightloop.models import Candidate
from nightloop.store import Store

__all__ = ["Carried", "carried_challenger", "rebase", "record_night"]

_STATUS = {"promote": "promoted", "reject": "rejected"}


@dataclass
class Carried:
    """What earlier nights hand tonight: the prior for the gate, the held candidate and notes for the report."""

    prior: Prior = field(default_factory=Prior)
    candidate: Candidate | None = None
    notes: list[str] = field(default_factory=list)
    #: The challenger that production moved under, rebased onto the new production: a new candidate tonight.
    rebased: Candidate | None = None


def carried_challenger(
    store: Store,
    prompt_name: str,
    base_version: int,
    logical_date: date,
    config: GateConfig,
    judge: JudgeConfig | None = None,
) -> Carried:
    """The held challenger (if any) and the era's evidence, from the nights before ``logical_date``.

    ``judge`` configures the candidate checks a rebased challenger must pass (default: the defaults).
    """
    if config.evidence != "nights":
        return Carried()
    rows = store.challengers.nights_before(prompt_name, logical_date.isoformat())
    notes: list[str] = []
    rebased = None
    last = rows[-1] if rows else None
    if last is not None and last["status"] == "held" and last["base_version"] != base_version:
        since = _since(rows, last["challenger_id"])
        rebased = _rebase_moved(store, prompt_name, last, since, base_version, notes, judge or JudgeConfig())
    era_rows = _era(rows, base_version)
    era = _total(era_rows)
    if not era_rows or era_rows[-1]["status"] != "held":
        return Carried(prior=Prior(era=era), notes=notes, rebased=rebased)
    held = era_rows[-1]
    own_rows = _trailing(era_rows, held["challenger_id"])
    prior = Prior(challenger_id=held["challenger_id"], own=_total(own_rows), era=era, since=own_rows[0]["logical_date"])
    notes.append(
        f"challenger {held['challenger_id']} held since {prior.since} is tested again tonight "
        f"(running evidence {prior.era.e_value:.2f}, bar {1 / config.alpha:g})"
    )
    return Carried(prior=prior, candidate=Candidate.model_validate(held["candidate"]), notes=notes)


def rebase(candidate: Candidate, old_base: str, new_base: str, new_version: int) -> Candidate | None:
    """The candidate's edits from ``old_base`` merged onto ``new_base``; None when they conflict or change nothing."""
    import merge3  # only a production move under a held challenger needs it

    merge = merge3.Merge3(old_base.splitlines(True), candidate.template.splitlines(True), new_base.splitlines(True))
    if any(region[0] == "conflict" for region in merge.merge_regions()):
        return None
    template = "".join(merge.merge_lines())
    if template == new_base:
        return None
    # The guard's verdict stays: it judged the candidate's own added lines, which the merge leaves as they were.
    return candidate.model_copy(update={"id": f"{candidate.id}-on-v{new_version}", "base_version": new_version, "template": template})


def _rebase_moved(
    store: Store, prompt_name: str, last: dict[str, Any], since: str, base_version: int, notes: list[str], judge: JudgeConfig
) -> Candidate | None:
    """The held challenger that production moved under, rebased onto it (and a note saying what happened)."""
    held = Candidate.model_validate(last["candidate"])
    moved = f"challenger {held.id} (held since {since}) was dropped: production moved from v{last['base_version']} to v{base_version}"
    old_base = store.prompts.get(prompt_name, last["base_version"]).template
    new_base = store.prompts.get(prompt_name, base_version).template
    rebased = rebase(held, old_base, new_base, base_version)
    if rebased is None:
        notes.append(f"{moved}; its edits conflict with v{base_version}'s changes (or are already in it), so it is not proposed again")
        return None
    refused = _refusals(store, prompt_name, rebased, new_base, judge)
    if refused:
        notes.append(f"{moved}; rebased onto v{base_version}, it fails the candidate checks: {'; '.join(refused)}")
        return None
    notes.append(f"{moved}; rebased onto v{base_version} as {rebased.id}, a new candidate tonight judged from no evidence")
    return rebased


def _refusals(store: Store, prompt_name: str, rebased: Candidate, new_base: str, judge: JudgeConfig) -> list[str]:
    """The judge's candidate checks on the rebased template (its lines were copy-checked on the night it was written)."""
    rebased.risks = high_risk_reasons(new_base, rebased.template)
    return validate_candidate(
        rebased,
        base_template=new_base,
        conversation_texts=[],
        config=judge,
        rejected_hashes=store.runs.rejected_hashes(prompt_name),
        protected=store.prompts.get_meta(prompt_name).protected,
    )


def record_night(
    store: Store,
    *,
    prompt_name: str,
    logical_date: date,
    run_id: str,
    base_version: int,
    gate: NightGate,
    candidates: list[Candidate],
    config: GateConfig,
) -> None:
    """Record tonight's challenger, its evidence and whether it is held (re-running the night replaces the row)."""
    if config.evidence != "nights" or gate.challenger_id is None or gate.evidence is None:
        return
    decision = next(d for d in gate.decisions if d.candidate_id == gate.challenger_id)
    candidate = next(c for c in candidates if c.id == gate.challenger_id)
    status = _STATUS.get(decision.verdict, "held" if gate.carry else "dropped")
    store.challengers.record(
        prompt_name=prompt_name,
        logical_date=logical_date.isoformat(),
        run_id=run_id,
        base_version=base_version,
        challenger_id=gate.challenger_id,
        candidate=candidate.model_dump(mode="json"),
        evidence=gate.evidence.model_dump(mode="json"),
        status=status,
        verdict=decision.verdict,
        reasons=decision.reasons,
    )


def _era(rows: list[dict[str, Any]], base_version: int) -> list[dict[str, Any]]:
    """The trailing rows on ``base_version``, after its last promotion."""
    era: list[dict[str, Any]] = []
    for row in reversed(rows):
        if row["base_version"] != base_version or row["status"] == "promoted":
            break
        era.append(row)
    return era[::-1]


def _trailing(rows: list[dict[str, Any]], challenger_id: str) -> list[dict[str, Any]]:
    own: list[dict[str, Any]] = []
    for row in reversed(rows):
        if row["challenger_id"] != challenger_id:
            break
        own.append(row)
    return own[::-1]


def _total(rows: list[dict[str, Any]]) -> Evidence:
    total = Evidence()
    for row in rows:
        total = total.plus(Evidence.model_validate(row["evidence"]))
    return total


def _since(rows: list[dict[str, Any]], challenger_id: str) -> str:
    return _trailing(rows, challenger_id)[0]["logical_date"]
