"""The gate stage: test the night's challenger against production and record its evidence."""

from __future__ import annotations

import random

from nightloop.evidence import (
    incomplete_arms,
)
from nightloop.models import (
    BASELINE,
    GateDecision,
    GateOutput,
    JudgeResult,
    ReplayOutcome,
    ReplaySetOutput,
)
from nightloop.night import Night, held_challenger, night_candidates, once


def stage_gate(night: Night, replay_set: ReplaySetOutput, judged: JudgeResult) -> GateOutput:
    """Decide per candidate with the paired test, corrections and vetoes; pick at most one winner."""

    def compute() -> GateOutput:
        from nightloop.challenger import record_night
        from nightloop.gate import choose_winner, is_train
        from nightloop.reproduction import mismatch_warning, summary

        results = night.store.runs.eval_results(night.run_id)
        carried = held_challenger(night, replay_set)
        candidates = night_candidates(judged, carried)
        gate, reproduction = tonight_gate(night, replay_set, candidates, carried.prior, results)
        replayed = night.saved("replay", ReplayOutcome)
        if replayed is not None and replayed.stopped and gate.challenger_id is not None:
            decision = next(d for d in gate.decisions if d.candidate_id == gate.challenger_id)
            decision.reasons.insert(len(decision.reasons) - 1, replayed.stopped)
        warning = mismatch_warning(reproduction, night.settings.replay.runner.name)
        for decision in gate.decisions:  # context first: the verdict stays the last reason
            decision.reasons[:0] = [summary(reproduction), *([warning] if warning else [])]
        replayed_ids = {r.case_id for r in results if r.candidate_id == BASELINE}  # batches the replay stopped before are not short
        gated_cases = [c for c in replay_set.cases if not is_train(c) and c.id in replayed_ids]
        gated_ids = {c.id for c in gated_cases}
        ids = [c.id for c in candidates]
        tested = [i for i in ids if any(r.candidate_id == i and r.case_id in gated_ids for r in results)]
        _name_incomplete_arms(gate.decisions, incomplete_arms(results, gated_cases, tested, first_repeats_of(night, replay_set)))
        # Gate rejections are not remembered as "rejected before": a good template rejected by chance one night
        # deserves another try. Reviewer rejections and watch rollbacks are remembered.
        winner = choose_winner(gate.decisions)
        output = GateOutput(
            decisions=gate.decisions, winner=winner.candidate_id if winner else None, notes=carried.notes,
            held=carried.candidate, reproduction=reproduction,
        )
        with night.store.transaction():  # tonight's evidence and the stage land together: a re-run never counts it twice
            record_night(
                night.store, prompt_name=night.prompt_name, logical_date=night.logical_date, run_id=night.run_id,
                base_version=replay_set.base_version, gate=gate, candidates=candidates, config=night.settings.gate,
            )
            night.save("gate", output)
        return output

    return once(night, "gate", GateOutput, compute)


def tonight_gate(night: Night, replay_set: ReplaySetOutput, candidates: list, prior, results: list) -> tuple:
    """Tonight's gate on ``results`` so far (the replay stage asks after each batch), and the reproduction check."""
    from nightloop.gate import gate_night, get_paired_test
    from nightloop.reproduction import check_reproduction, gate_cases

    reproduction = check_reproduction(replay_set.cases, results)  # before judging: does replay match production?
    cases = gate_cases(replay_set.cases, reproduction)
    test = get_paired_test(night.settings.gate.test, random.Random(night.settings.seed))  # the night's seed
    gate = gate_night(
        results, cases, [c.id for c in candidates], night.settings.gate, prior=prior, test=test,
        repeats=first_repeats_of(night, replay_set),
    )
    return gate, reproduction


def first_repeats_of(night: Night, replay_set: ReplaySetOutput) -> dict[str, int]:
    """Each replay case's first repeats, as the replay stage planned them (before any case moved group)."""
    from nightloop.gate_select import first_repeats

    replay = night.settings.replay
    return first_repeats(replay_set.cases, replay.repeats, replay.regression_repeats)



def _name_incomplete_arms(decisions: list[GateDecision], missing: dict[str, list[str]]) -> None:
    """Each decision names the cases where its arms (or baseline's) have fewer results than their first repeats."""
    for decision in decisions:
        short = [f"baseline {c}" for c in missing.get(BASELINE, [])] + missing.get(decision.candidate_id, [])
        if short:
            shown = ", ".join(short[:10]) + (f" and {len(short) - 10} more" if len(short) > 10 else "")
            decision.reasons.append(f"fewer results than planned for: {shown}")
