"""The judge stage: K candidates addressing the train failures."""

from __future__ import annotations

from nightloop.errors import (
    ProviderError,
)
from nightloop.models import (
    ClassifyOutput,
    JudgeResult,
    ReplaySetOutput,
)
from nightloop.night import Night, conversations_of, once, run_async


def stage_judge(night: Night, classified: ClassifyOutput, replay_set: ReplaySetOutput) -> JudgeResult:
    """Ask the judge for K candidates addressing the train failures; invalid ones are refused with reasons."""

    def compute() -> JudgeResult:
        from nightloop.judge import propose

        base = night.store.prompts.get(night.prompt_name, replay_set.base_version)
        train_ids = set(replay_set.train_failure_ids)
        train = [f for f in classified.failures if f.id in train_ids]
        conversations = {c.id: c for c in conversations_of(night, sorted({f.conversation_id for f in train}))}
        result = run_async(
            night,
            propose(
                night.clients.judge,
                prompt_name=night.prompt_name,
                base=base,
                failures=train,
                conversations=conversations,
                config=night.settings.judge,
                rejected_hashes=night.store.runs.rejected_hashes(night.prompt_name),
                seed=night.settings.seed,
                protected=night.store.prompts.get_meta(night.prompt_name).protected,
                guard=night.clients.guard,
                guard_model=night.settings.llm.guard.model,
            )
        )
        if result.errors and not result.candidates and not result.invalid:
            # A judge fault is not a finished stage: raising lets Prefect retry and a re-run try again.
            raise ProviderError("; ".join(result.errors))
        return result

    return once(night, "judge", JudgeResult, compute)
