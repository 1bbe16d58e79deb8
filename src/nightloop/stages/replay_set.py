"""The replay-set stage: the cases to replay, from the night's failures plus regression cases."""

from __future__ import annotations

from nightloop.models import (
    ClassifyOutput,
    IngestOutput,
    ReplayCase,
    ReplaySetOutput,
)
from nightloop.night import Night, conversations_of, production_of


def stage_replay_set(night: Night, ingested: IngestOutput, classified: ClassifyOutput) -> ReplaySetOutput:
    """Cases to replay: from the night's failures (train/holdout) plus regression cases that went well."""

    def compute() -> ReplaySetOutput:
        from nightloop.replay_cases import (
            build_replay_set,
            replay_set_hash,
            train_failure_ids,
        )

        base = production_of(night)
        conversations = {c.id: c for c in conversations_of(night, ingested.conversation_ids)}
        failed_ids = set(classified.failed_ids)
        cases = build_replay_set(
            night.prompt_name,
            failures=classified.failures,
            failed={i: c for i, c in conversations.items() if i in failed_ids},
            succeeded=[c for i, c in conversations.items() if i not in failed_ids],
            config=night.settings.replay,
            seed=night.settings.seed,
        )
        cases, notes = _replayable(cases, base.template)
        failing = {f.conversation_id for f in classified.failures}
        covered = {c.metadata.get("conversation_id") for c in cases if c.origin != "regression"}
        if failing - covered:
            notes.append(
                f"{len(failing - covered)} failed conversation(s) gave no replay case "
                "(no user turn before the failure, the failure-case cap, or unrenderable variables)"
            )
        return ReplaySetOutput(
            hash=replay_set_hash(cases),
            base_version=base.version,
            cases=cases,
            train_failure_ids=sorted(train_failure_ids(cases)),
            notes=notes,
        )

    from nightloop.stored_cases import stored_cases, with_content

    # Kept by reference: the cases' content (conversation turns, variables, expected answers) stays in `conversations`.
    if (previous := night.saved("replay_set", ReplaySetOutput)) is not None:
        return with_content(night.store, previous)
    night.say("replay_set", "running")
    output = compute()
    night.save("replay_set", output.model_copy(update={"cases": stored_cases(output.cases)}))
    return output



def _replayable(cases: list[ReplayCase], template: str) -> tuple[list[ReplayCase], list[str]]:
    """Keep the cases whose recorded variables render the base template (the candidates need the same ones)."""
    from nightloop.errors import TemplateError
    from nightloop.templates import render

    kept, missing = [], []
    for case in cases:
        try:
            render(template, case.variables)
        except TemplateError:
            missing.append(case.id)
        else:
            kept.append(case)
    notes = []
    if missing:
        notes.append(
            f"{len(missing)} case(s) left out: their conversations did not record the template's variables "
            f"(log `variables` with each conversation), e.g. {missing[0]}"
        )
    return kept, notes
