"""Challengers across nights: a held challenger that production moves under is rebased and re-judged."""

from __future__ import annotations

from datetime import date
from pathlib import Path

from nightloop.challenger import carried_challenger
from nightloop.config import GateConfig
from nightloop.gate_stats import Evidence
from nightloop.models import Candidate
from nightloop.store import Store

PROMPT = "support_agent"
V1 = "You are a support agent for {{ shop }}.\nAnswer briefly.\nUse JSON for API answers.\n"
HELD = "You are a support agent for {{ shop }}.\nAnswer briefly.\nUse JSON for API answers.\nQuote the order number.\n"


def _store_with_held(path: Path, v2: str) -> Store:
    """v1 in production with a challenger held on it since Nov 3, then production moved to ``v2``."""
    store = Store(path)
    store.prompts.create_version(PROMPT, V1, created_by="test")
    store.prompts.set_label(PROMPT, "production", 1, moved_by="test")
    held = Candidate(id="c-held", prompt_name=PROMPT, base_version=1, template=HELD)
    store.challengers.record(
        prompt_name=PROMPT, logical_date="2026-11-03", run_id="r3", base_version=1, challenger_id=held.id,
        candidate=held.model_dump(mode="json"), evidence=Evidence.from_differences([1.0] * 5).model_dump(mode="json"),
        status="held", verdict="hold", reasons=["hold: the evidence has not reached 20"],
    )
    store.prompts.create_version(PROMPT, v2, created_by="reviewer", parent=1)
    store.prompts.set_label(PROMPT, "production", 2, moved_by="reviewer")
    return store


def test_a_held_challenger_is_rebased_onto_the_new_production_and_starts_from_no_evidence(tmp_path: Path) -> None:
    v2 = V1.replace("Answer briefly.", "Answer briefly and politely.")
    with _store_with_held(tmp_path / "n.db", v2) as store:
        carried = carried_challenger(store, PROMPT, 2, date(2026, 11, 4), GateConfig())
    assert carried.rebased is not None and carried.rebased.base_version == 2
    assert carried.rebased.template == v2 + "Quote the order number.\n"  # production's change and the challenger's
    assert carried.rebased.id != "c-held" and carried.candidate is None  # a new candidate, not the held one
    assert carried.prior.own.cases == 0 and carried.prior.era.cases == 0  # re-judged from no evidence
    assert any("rebased onto v2" in note for note in carried.notes)


def test_a_held_challenger_whose_edits_conflict_with_the_new_production_is_dropped_and_says_so(tmp_path: Path) -> None:
    v2 = V1.replace("Use JSON for API answers.\n", "Use JSON for API answers.\nNever quote order numbers.\n")
    with _store_with_held(tmp_path / "n.db", v2) as store:
        carried = carried_challenger(store, PROMPT, 2, date(2026, 11, 4), GateConfig())
    assert carried.rebased is None and carried.candidate is None
    assert any("conflict with v2" in note for note in carried.notes)


def test_a_rebased_challenger_must_pass_the_candidate_checks_again(tmp_path: Path) -> None:
    from nightloop.config import JudgeConfig

    v2 = V1.replace("Answer briefly.", "Answer briefly and politely.")
    with _store_with_held(tmp_path / "n.db", v2) as store:
        carried = carried_challenger(store, PROMPT, 2, date(2026, 11, 4), GateConfig(), judge=JudgeConfig(max_diff_lines=1))
        assert carried.rebased is not None  # one added line is within the limit
        v3 = v2.replace("You are a support agent", "You are a friendly support agent")
        store.prompts.create_version(PROMPT, v3, created_by="reviewer", parent=2)
        store.challengers.record(  # held again on v2, then production moved to v3 as well
            prompt_name=PROMPT, logical_date="2026-11-04", run_id="r4", base_version=2, challenger_id=carried.rebased.id,
            candidate={**carried.rebased.model_dump(mode="json"), "template": v2 + "Quote the order number.\nBe kind.\n"},
            evidence=Evidence().model_dump(mode="json"), status="held", verdict="hold", reasons=[],
        )
        store.prompts.set_label(PROMPT, "production", 3, moved_by="reviewer")
        refused = carried_challenger(store, PROMPT, 3, date(2026, 11, 5), GateConfig(), judge=JudgeConfig(max_diff_lines=1))
    assert refused.rebased is None
    assert any("fails the candidate checks: diff too large" in note for note in refused.notes), refused.notes
