"""The replay stage: every candidate on the train cases, then the chosen one and the baseline on the gated cases."""

from __future__ import annotations

from typing import Any

from nightloop.evidence import (
    faulted,
)
from nightloop.evidence import summary as evidence_summary
from nightloop.models import (
    BASELINE,
    JudgeResult,
    ReplayCase,
    ReplayOutcome,
    ReplaySetOutput,
)
from nightloop.night import Night, held_challenger, night_candidates, run_async


def stage_replay(night: Night, replay_set: ReplaySetOutput, judged: JudgeResult) -> ReplayOutcome:
    """Every candidate on the train cases, then the chosen challenger and the baseline on the gated cases; saved as they land.

    The gated cases start with their first repeats (``[replay] repeats``, ``regression_repeats``) and come in batches, the
    cases where an arm failed getting extra repeats a step at a time, until tonight's verdict is settled.
    """
    previous = night.saved("replay", ReplayOutcome)
    if previous is not None:
        return previous
    from nightloop.gate import is_train, select_challenger
    from nightloop.gate_select import by_first_repeats, cases_worth_more_repeats, extra_steps, first_repeats, testing_batches
    from nightloop.runners import make_runner, run_closing

    base = night.store.prompts.get(night.prompt_name, replay_set.base_version)
    carried = held_challenger(night, replay_set)
    candidates = night_candidates(judged, carried)
    templates = {BASELINE: base.template, **{c.id: c.template for c in candidates}}
    # Tonight's arms only: the search's minibatch replays of revisions it did not keep are not this stage's evidence.
    stored = {
        (r.candidate_id, r.case_id, r.repeat): r for r in night.store.runs.eval_results(night.run_id) if r.candidate_id in templates
    }
    done = {key for key, result in stored.items() if not faulted(result)}  # faulted ones are tried again
    stopped, done_before = "", set(done)
    night.say("replay", f"{len(done)} evaluations already done" if done else "choosing on train cases, then testing")
    agent_cases = {case.id: case for case in cases_for_the_agent(night, replay_set.cases)}
    repeats = night.settings.replay.repeats
    firsts = first_repeats(replay_set.cases, repeats, night.settings.replay.regression_repeats)
    planned: set[tuple[str, str, int]] = set()  # this stage's evaluations (the search's own replays are its own)

    def replay(phase: str, cases: list[ReplayCase], arms: dict[str, str], extra: int = 0, first: int = repeats):
        repeat_range = range(first, first + extra) if extra else range(first)
        planned.update((arm, case.id, repeat) for arm in arms for case in cases for repeat in repeat_range)
        night.say("replay", f"{phase}: {len(arms)} arm(s) on {len(cases)} cases × {extra or first} repeat(s)")
        outcome = run_async(
            night,
            run_closing(
                make_runner(night.settings.replay.runner, night.clients.agent),  # closed after each phase
                night.clients.agent,
                [agent_cases[case.id] for case in cases],
                arms,
                repeats=first + extra,  # the first ``repeats`` are done when extra repeats are asked for
                done=done,
                on_result=lambda result: night.store.runs.save_eval(night.run_id, result),
                **replay_options(night),
            ),
        )
        done.update((r.candidate_id, r.case_id, r.repeat) for r in outcome.results if not faulted(r))
        return outcome

    # Select, then test: every candidate on the train cases, then only the chosen one (and the baseline) on the gated ones.
    train = [c for c in replay_set.cases if is_train(c)]
    phases = []
    if len(candidates) > 1 and train:
        # Train replays only choose (production's would decide nothing): each candidate once per case by default.
        arms = {c.id: c.template for c in candidates}
        phases.append(replay("train", train, arms, first=night.settings.replay.train_repeats))
    if not (phases and phases[0].budget_exhausted):
        results = night.store.runs.eval_results(night.run_id)
        chosen = select_challenger(
            results, replay_set.cases, [c.id for c in candidates], carried.prior.challenger_id,
            margin=night.settings.gate.min_effect,
        )
        gated = [c for c in replay_set.cases if not is_train(c)]
        arms = {k: v for k, v in templates.items() if k in (BASELINE, chosen.challenger_id)}
        gate = night.settings.gate
        # Looking between batches and between extra repeats is safe only for the e-process (evidence = "nights").
        batches = testing_batches(gated, gate.batch_cases if gate.evidence == "nights" else 0)
        extra_step = gate.extra_step if gate.evidence == "nights" else 0
        for number, batch in enumerate(batches, 1):
            for first, group in by_first_repeats(batch, firsts):  # regression cases start with fewer repeats
                if not (phases and phases[-1].budget_exhausted):
                    phases.append(replay("gated", group, arms, first=first))
            verdict = None
            if gate.extra_repeats and chosen.challenger_id is not None and not phases[-1].budget_exhausted:
                # More paired repeats on the gated cases where an arm's first repeats failed (nightloop.gate_stats).
                # Faulted calls decide nothing (a re-run retries them); a case once extended stays so, so its extras are retried.
                results = [r for r in night.store.runs.eval_results(night.run_id) if not faulted(r)]
                wanted = set(cases_worth_more_repeats(results, [c.id for c in batch], chosen.challenger_id, firsts))
                wanted |= {case_id for arm, case_id, repeat in stored if repeat >= firsts.get(case_id, repeats) and arm == chosen.challenger_id}
                for step in extra_steps([c for c in batch if c.id in wanted], firsts, gate.extra_repeats, extra_step):
                    if phases[-1].budget_exhausted or (verdict := _settled(night, replay_set, candidates, carried.prior)):
                        break
                    for group, first, count in step:
                        if not phases[-1].budget_exhausted:
                            phases.append(replay("extra repeats", group, arms, count, first))
            if phases[-1].budget_exhausted:
                break
            if number < len(batches) and (verdict := verdict or _settled(night, replay_set, candidates, carried.prior)):
                tested = sum(len(b) for b in batches[:number])
                stopped = f"the replay stopped after {tested} of {len(gated)} gated cases: tonight's verdict was already {verdict}"
                night.say("replay", stopped)
                break
    for phase in phases:
        stored.update({(r.candidate_id, r.case_id, r.repeat): r for r in phase.results})
    stored = {key: result for key, result in stored.items() if key in planned}
    status, note = evidence_summary(stored.values(), len(planned))
    output = ReplayOutcome(
        stopped=stopped,
        results=[r for p in phases for r in p.results],
        skipped=len(done_before & planned),
        budget_exhausted=phases[-1].budget_exhausted,
        errors=sum(p.errors for p in phases),
        planned=len(planned),
        faulted=sum(faulted(r) for r in stored.values()),
        note=note,
        unrecorded_tool_calls=sum(p.unrecorded_tool_calls for p in phases),
    )
    # An exhausted or faulted replay stays open, so a re-run resumes it (retrying only the faulted evaluations).
    if not output.budget_exhausted and status == "done":
        night.save("replay", output)
    return output


def _settled(night: Night, replay_set: ReplaySetOutput, candidates: list, prior) -> str | None:
    """``promote`` or ``reject`` when tonight's evidence so far already decides the challenger, else None.

    Safe to ask after every batch and every step of extra repeats: the e-process is a test supermartingale, so
    stopping when it crosses its bar keeps Ville's bound, and every regression case is in the first batch, so the
    harm test has read them all.
    """
    from nightloop.stages.gate import tonight_gate

    gate, _ = tonight_gate(night, replay_set, candidates, prior, night.store.runs.eval_results(night.run_id))
    verdict = next((d.verdict for d in gate.decisions if d.candidate_id == gate.challenger_id), None)
    return verdict if verdict in ("promote", "reject") else None


def replay_options(night: Night) -> dict[str, Any]:
    """:func:`~nightloop.replay.run_replay`'s settings for this night (scorers, seed, retries, other prompts)."""
    other_prompts = {n: night.store.prompts.get(n, night.store.prompts.label_version(n, "production")).template
                     for n in night.settings.replay.prompts if n != night.prompt_name}
    return {
        "concurrency": night.settings.replay.concurrency,
        "scorer_client": night.clients.scorer,
        "declared_scorers": [*night.store.prompts.get_meta(night.prompt_name).scorers, *night.settings.replay.scorers],
        "seed": night.settings.seed,
        "fault_retries": night.settings.replay.fault_retries,
        "fault_backoff_s": night.settings.replay.fault_backoff_s,
        "answer_rules": night.settings.classify,
        "other_prompts": other_prompts,
    }


def cases_for_the_agent(night: Night, cases: list) -> list:
    """Replay cases as the agent may see them: redacted when its provider is on another machine."""
    from nightloop.redact import Redactor, leaves_the_machine, redact_messages

    agent = night.settings.llm.agent
    if not leaves_the_machine(agent.provider, agent.base_url):
        return cases
    redactor = Redactor()
    return [c.model_copy(update={"messages": redact_messages(c.messages, redactor)}) for c in cases]
