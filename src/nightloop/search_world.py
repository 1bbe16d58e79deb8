"""The night's side of the search: the judge stage proposes, the replay stage answers and scores.

:class:`NightSearchWorld` is the :class:`~nightloop.search.SearchWorld` a night (and ``benchmarks/vs_gepa.py``)
hands to :func:`~nightloop.search.reflective_search`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from nightloop.config import JudgeConfig
from nightloop.errors import BudgetExceeded, SearchFaulted
from nightloop.evidence import faulted
from nightloop.judge import JudgeClient, propose
from nightloop.llm.client import LLMClient
from nightloop.models import Candidate, Conversation, EvalResult, Failure, PromptVersion, ReplayCase, sha256_text
from nightloop.replay import run_replay
from nightloop.runners import run_closing

__all__ = ["NightSearchWorld", "failures_still_failing"]

#: How much of the parent's replayed answer a failure's evidence quotes.
_ANSWER_QUOTE = 300


def failures_still_failing(
    failing: Sequence[ReplayCase], results: Sequence[EvalResult], failures: Mapping[str, Failure]
) -> list[Failure]:
    """The night's failures behind ``failing`` cases, each with what the parent answered and why it still fails."""
    by_case: dict[str, list[EvalResult]] = {}
    for result in results:
        by_case.setdefault(result.case_id, []).append(result)
    still: list[Failure] = []
    for case in failing:
        failed = [r for r in by_case.get(case.id, []) if not r.passed]
        for failure_id in case.metadata.get("failure_ids") or [case.origin]:
            failure = failures.get(failure_id)
            if failure is None:
                continue
            if failed:
                answer = " ".join(failed[0].output.split())[:_ANSWER_QUOTE]
                failure = failure.model_copy(
                    update={"evidence": f"{failure.evidence}\nstill fails with the current template: {failed[0].reason}; it answered: {answer}"}
                )
            still.append(failure)
    return still


class NightSearchWorld:
    """Revisions from the judge stage (every candidate check applies), replays through ``run_replay``.

    ``replay_options`` are :func:`~nightloop.replay.run_replay`'s keyword arguments for the night (scorers,
    seed, concurrency); ``make_runner`` makes the night's agent runner for each replay (default: the recorded
    runner over ``agent``); ``repeats`` replaces the night's repeats in the rounds.
    """

    def __init__(
        self,
        *,
        judge: JudgeClient,
        agent: LLMClient | None,
        production: PromptVersion,
        failures: Sequence[Failure],
        conversations: dict[str, Conversation],
        judge_config: JudgeConfig,
        candidates: int,
        repeats: int,
        replay_options: dict[str, Any],
        judge_options: dict[str, Any] | None = None,
        make_runner: Callable[[], Any] | None = None,
    ) -> None:
        self.judge = judge
        self.agent = agent
        self.production = production
        self.failures = {f.id: f for f in failures}
        self.conversations = conversations
        self.judge_config = judge_config.model_copy(update={"candidates": candidates})
        self.repeats = repeats
        self.replay_options = replay_options
        self.judge_options = judge_options or {}
        self.make_runner = make_runner
        self.judge_calls = 0

    async def propose(
        self, parent_template: str, failing: Sequence[ReplayCase], results: Sequence[EvalResult]
    ) -> list[Candidate]:
        failures = failures_still_failing(failing, results, self.failures)
        if not failures:
            return []
        # Judged as a revision of the parent, numbered after production: its diff is against the parent.
        parent = self.production.model_copy(update={"template": parent_template, "sha256": sha256_text(parent_template)})
        self.judge_calls += 1
        result = await propose(
            self.judge,
            prompt_name=self.production.name,
            base=parent,
            failures=failures,
            conversations=self.conversations,
            config=self.judge_config,
            seed=self.judge_calls,
            **self.judge_options,
        )
        return result.candidates

    async def replay(self, templates: dict[str, str], cases: Sequence[ReplayCase]) -> list[EvalResult]:
        if self.make_runner is None:
            outcome = await run_replay(self.agent, cases, templates, repeats=self.repeats, **self.replay_options)
        else:  # the night's configured runner, closed after each replay
            outcome = await run_closing(self.make_runner(), self.agent, cases, templates, repeats=self.repeats, **self.replay_options)
        if outcome.budget_exhausted:
            raise BudgetExceeded("the night's budget ran out during the search")
        spoiled = sum(faulted(r) for r in outcome.results)
        if spoiled:  # the provider is failing: replaying more revisions would only pay for more faults
            raise SearchFaulted(f"{spoiled} of the search's replays still faulted after retries; the search stopped")
        return outcome.results
