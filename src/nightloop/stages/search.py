"""The search stage: reflective rounds on the train cases after the judge's first answer (``[search]``).

Its output is the night's candidates for the replay and the gate: the search's challenger, or the judge's own
candidates when no revision beat production on a minibatch; the judge's refused candidates are kept for the report. Every replay it
pays for is stored with the night's results, so a re-run resumes from them (and the judge's calls from the cache).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pydantic import Field

from nightloop.models import ClassifyOutput, EvalResult, JudgeResult, ReplayCase, ReplaySetOutput
from nightloop.night import Night, conversations_of, run_async
from nightloop.search_world import NightSearchWorld

__all__ = ["SearchOutput", "StoredReplays", "stage_search"]


class SearchOutput(JudgeResult):
    """Tonight's candidates after the search (a :class:`JudgeResult` to the stages after it) and what each round did."""

    rounds: list[str] = Field(default_factory=list)


class StoredReplays(NightSearchWorld):
    """The night's world: replays already stored for this run are read back, not paid for again."""

    def __init__(self, *, stored: Sequence[EvalResult], on_result: Any, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.stored = {(r.candidate_id, r.case_id, r.repeat): r for r in stored}
        self.on_result = on_result

    async def replay(self, templates: dict[str, str], cases: Sequence[ReplayCase]) -> list[EvalResult]:
        wanted = {(cid, c.id, repeat) for cid in templates for c in cases for repeat in range(self.repeats)}
        done = {key for key in wanted if key in self.stored and self.stored[key].error is None}
        self.replay_options = {**self.replay_options, "done": done, "on_result": self.on_result}
        new = await super().replay(templates, cases)
        self.stored.update({(r.candidate_id, r.case_id, r.repeat): r for r in new})
        return [self.stored[key] for key in sorted(done)] + new


def stage_search(night: Night, classified: ClassifyOutput, replay_set: ReplaySetOutput, judged: JudgeResult) -> SearchOutput:
    """The search's challenger as tonight's candidate; ``[search] rounds = 0`` hands the judge's candidates on as they are."""
    if (previous := night.saved("search", SearchOutput)) is not None:
        return previous
    from nightloop.gate import is_train

    train = [c for c in replay_set.cases if is_train(c)]
    if night.settings.search.rounds == 0 or not train or not judged.candidates:
        output = SearchOutput.model_validate(judged.model_dump())
    else:
        output = _search(night, classified, replay_set, judged, train)
        if output is None:  # the budget or a provider fault cut the search short: redone (from the stored replays) on the re-run
            return SearchOutput.model_validate(judged.model_dump())
    night.save("search", output)
    return output


def _search(
    night: Night, classified: ClassifyOutput, replay_set: ReplaySetOutput, judged: JudgeResult, train: list[ReplayCase]
) -> SearchOutput | None:
    from nightloop.runners import make_runner
    from nightloop.search import SearchRound, reflective_search
    from nightloop.stages.replay import cases_for_the_agent, replay_options

    config = night.settings.search
    night.say("search", f"{config.rounds} rounds on {len(train)} train cases, minibatch {config.minibatch}")
    base = night.store.prompts.get(night.prompt_name, replay_set.base_version)
    train_ids = set(replay_set.train_failure_ids)
    failures = [f for f in classified.failures if f.id in train_ids]
    world = StoredReplays(
        stored=night.store.runs.eval_results(night.run_id),
        on_result=lambda result: night.store.runs.save_eval(night.run_id, result),
        judge=night.clients.judge,
        agent=night.clients.agent,
        production=base,
        failures=failures,
        conversations={c.id: c for c in conversations_of(night, sorted({f.conversation_id for f in failures}))},
        judge_config=night.settings.judge,
        candidates=config.candidates,
        repeats=config.repeats,
        replay_options=replay_options(night),
        make_runner=lambda: make_runner(night.settings.replay.runner, night.clients.agent),
        judge_options={
            "rejected_hashes": night.store.runs.rejected_hashes(night.prompt_name),
            "protected": night.store.prompts.get_meta(night.prompt_name).protected,
            "guard": night.clients.guard,
            "guard_model": night.settings.llm.guard.model,
        },
    )

    def progress(one: SearchRound) -> None:
        night.say("search", one.line())

    found = run_async(
        night,
        reflective_search(
            world, base_template=base.template, train=cases_for_the_agent(night, train), results=[],
            config=config, seed=night.settings.seed, seeds=judged.candidates, on_round=progress,
        ),
    )
    if found.budget_exhausted or found.stopped:
        if found.stopped:
            night.say("search", found.stopped)
        return None
    # Nothing kept: the judge's candidates go to select-then-test as they would without the search.
    return SearchOutput(
        candidates=[found.challenger] if found.challenger else judged.candidates,
        invalid=judged.invalid,
        errors=judged.errors,
        rounds=[one.line() for one in found.rounds],
    )
