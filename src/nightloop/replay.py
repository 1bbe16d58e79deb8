"""Replay: run the agent on the night's cases under each template, and score each answer.

Running (:func:`run_replay`): every (candidate, case, repeat) not already done,
at most ``concurrency`` at a time, each answered by an agent runner (:mod:`nightloop.runners`:
``recorded``, ``python``, ``http`` or a plug-in) and scored, each result handed to
``on_result`` as it lands.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Callable, Collection, Iterator, Sequence
from typing import TYPE_CHECKING, Any

from nightloop.config import ClassifyConfig
from nightloop.errors import BudgetExceeded
from nightloop.evidence import faulted
from nightloop.models import (
    BASELINE,
    EvalResult,
    ReplayCase,
    ReplayOutcome,
)
from nightloop.runners import AgentRequest, AgentRunner, RecordedRunner
from nightloop.score import Scorer, Scoring
from nightloop.store.db import is_store_error
from nightloop.templates import render

if TYPE_CHECKING:
    from nightloop.llm.client import LLMClient


__all__ = ["replay", "run_replay"]

log = logging.getLogger(__name__)


def _paired_seed(seed: int, case_id: str, repeat: int) -> int:
    """One sampling seed per (night seed, case, repeat), shared by the baseline and every candidate.

    Common random numbers where the provider honours one (OpenAI's ``seed``; the simulator's draws), so the
    paired difference carries less noise.
    """
    return int(hashlib.sha256(f"{seed}|{case_id}|{repeat}".encode()).hexdigest()[:8], 16)


def _work(
    cases: Sequence[ReplayCase], candidate_ids: list[str], repeats: int, done: Collection[tuple[str, str, int]]
) -> Iterator[tuple[str, ReplayCase, int]]:
    # Repeat-major, then case, then candidate: if the budget stops the run early,
    # the results so far are paired (both arms of a case) for the gate.
    for repeat in range(repeats):
        for case in cases:
            for candidate_id in candidate_ids:
                if (candidate_id, case.id, repeat) not in done:
                    yield candidate_id, case, repeat


async def run_replay(
    agent: LLMClient | None,
    cases: Sequence[ReplayCase],
    templates: dict[str, str],
    *,
    repeats: int,
    concurrency: int,
    scorer_client: LLMClient | None = None,
    declared_scorers: Sequence[Any] = (),
    seed: int = 0,
    answer_rules: ClassifyConfig | None = None,
    scoring: Scoring | None = None,
    done: Collection[tuple[str, str, int]] = frozenset(),
    on_result: Callable[[EvalResult], None] | None = None,
    max_steps: int = 6,
    tools: list[dict[str, Any]] | None = None,
    fault_retries: int = 2,
    fault_backoff_s: float = 0.5,
    runner: AgentRunner | None = None,
    other_prompts: dict[str, str] | None = None,
) -> ReplayOutcome:
    """Evaluate every (candidate, case, repeat) not in ``done``; ``templates`` maps candidate id -> template.

    ``runner`` answers each case (:mod:`nightloop.runners`); the default is the ``recorded`` runner
    over ``agent`` (the rendered template becomes the system message, tool calls are answered from the
    case's recorded results, ``tools`` overrides the specs derived from them, at most ``max_steps`` calls).
    ``other_prompts`` (name -> template) are the agent's other managed prompts, rendered with the case's
    variables and given to the runner alongside the candidate. Repeats are distinct cache entries
    (``sample=repeat``), so a re-run replays from the cache. A runner, provider or template fault becomes
    a failed result with ``error``; ``BudgetExceeded`` stops launching work, lets the calls in flight
    finish, drops the evaluation that hit it and returns with ``budget_exhausted=True``.
    An evaluation a provider fault spoiled (agent or scorer) is tried again up to ``fault_retries`` times,
    waiting ``fault_backoff_s`` and then twice as long each time; one still faulted is returned as it is.
    ``on_result`` stores each result: if it raises (a write that failed), no new work starts and the
    error is raised once the evaluations in flight are done, so no result is silently lost.
    An unknown declared scorer raises ``ValueError`` before any call is made.
    ``answer_rules`` (``[classify]``) make the reference scorer judge answers as the classifier does.
    """
    if runner is None:
        if agent is None:
            raise ValueError("run_replay needs an agent model or a runner")
        runner = RecordedRunner(agent, max_steps=max_steps, tools=tools)
    scoring = scoring or Scoring(client=scorer_client, declared=tuple(declared_scorers), seed=seed, rules=answer_rules)
    scorers: dict[str, Scorer] = {case.id: scoring.scorer(case) for case in cases}
    systems = _render_all(cases, templates)
    others = _render_all(cases, other_prompts or {})
    candidate_ids = sorted(templates, key=lambda c: (c != BASELINE, c))  # baseline first
    work = _work(cases, candidate_ids, repeats, done)
    planned = len(candidate_ids) * len(cases) * repeats
    outcome = ReplayOutcome(skipped=planned - sum(1 for _ in _work(cases, candidate_ids, repeats, done)))

    def request_for(candidate_id: str, case: ReplayCase, repeat: int, system: str) -> AgentRequest:
        prompts = {name: text for name in (other_prompts or {}) if isinstance(text := others[(name, case.id)], str)}
        prompts[case.prompt_name] = system
        return AgentRequest(
            case=case, candidate_id=candidate_id, repeat=repeat, prompt=system, prompts=prompts,
            seed=_paired_seed(seed, case.id, repeat),
        )

    async def evaluate(candidate_id: str, case: ReplayCase, repeat: int) -> EvalResult:
        system = systems[(candidate_id, case.id)]
        base = {"candidate_id": candidate_id, "case_id": case.id, "repeat": repeat}
        if isinstance(system, Exception):
            return EvalResult(**base, error=f"template: {system}", reason="the template does not render")
        try:
            turn = await runner.run(request_for(candidate_id, case, repeat, system))
        except BudgetExceeded:
            raise
        except Exception as exc:  # one case's fault must never abort the night
            if is_store_error(exc):  # the store's write (the model call's cache or spend) failed: that stops the stage
                raise
            return EvalResult(**base, error=f"{type(exc).__name__}: {exc}", reason=f"the {runner.name} agent runner failed")
        rng = scoring.rng_for(case.id, candidate_id, repeat)
        scored = await scorers[case.id].score(
            case, turn.text, tool_calls=turn.tool_calls, client=scoring.client, rng=rng
        )
        steps = sum(m.role == "assistant" for m in turn.messages)
        reason = scored.reason + (f" (stopped after {steps} agent steps)" if turn.capped else "")
        if turn.unrecorded_tool_calls:
            reason += f" ({turn.unrecorded_tool_calls} tool call(s) had no recorded result)"
        return EvalResult(
            **base,
            output=turn.text,
            score=scored.score,
            passed=scored.passed,
            reason=reason,
            tokens=turn.tokens,
            cost_usd=turn.cost_usd,
            latency_ms=turn.latency_ms,
            unrecorded_tool_calls=turn.unrecorded_tool_calls,
            error=None if scored.error is None else f"scorer: {scored.error}",
        )

    async def evaluate_retrying_faults(candidate_id: str, case: ReplayCase, repeat: int) -> EvalResult:
        result = await evaluate(candidate_id, case, repeat)
        for attempt in range(fault_retries):
            if not faulted(result) or outcome.budget_exhausted or write_errors:
                break
            await asyncio.sleep(fault_backoff_s * 2**attempt)
            result = await evaluate(candidate_id, case, repeat)
        return result

    write_errors: list[Exception] = []

    async def worker() -> None:
        for candidate_id, case, repeat in work:
            if outcome.budget_exhausted or write_errors:  # launch nothing new; evaluations in flight finish
                return
            try:
                result = await evaluate_retrying_faults(candidate_id, case, repeat)
            except BudgetExceeded:
                outcome.budget_exhausted = True
                return
            try:
                if on_result is not None:
                    on_result(result)
            except Exception as exc:  # a write that failed stops the stage: raised below
                write_errors.append(exc)
                return
            outcome.results.append(result)
            outcome.errors += result.error is not None
            outcome.unrecorded_tool_calls += result.unrecorded_tool_calls

    await asyncio.gather(*(worker() for _ in range(max(1, concurrency))))
    if write_errors:
        raise write_errors[0]
    return outcome


def _render_all(cases: Sequence[ReplayCase], templates: dict[str, str]) -> dict[tuple[str, str], str | Exception]:
    """Each (candidate, case) system message, or the error that prevented rendering it."""
    rendered: dict[tuple[str, str], str | Exception] = {}
    for candidate_id, template in templates.items():
        for case in cases:
            try:
                rendered[(candidate_id, case.id)] = render(template, case.variables)
            except Exception as exc:  # TemplateError, or anything the sandbox raises
                rendered[(candidate_id, case.id)] = exc
    return rendered


def replay(agent: LLMClient, cases: Sequence[ReplayCase], templates: dict[str, str], **options: Any) -> ReplayOutcome:
    """Synchronous :func:`run_replay` (for scripts and the CLI)."""
    return asyncio.run(run_replay(agent, cases, templates, **options))
