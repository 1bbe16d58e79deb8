"""The cases a night replays (:func:`build_replay_set`), built from its failed and successful conversations:

- One case per failed conversation, at its first failing assistant turn. An
  assistant *turn* is the whole block of assistant and tool messages that answers
  one user message, so the case's messages end with that user message: the agent
  redoes the entire answer, tool calls included. Leading system messages are
  removed (the runner puts the rendered candidate template in their place);
  earlier tool results stay, and every tool result the conversation recorded is
  kept in ``metadata["tool_results"]`` so the runner can answer the agent's tool
  calls.
- The expectation comes from what failed: ``reference`` for a wrong answer with a
  known expected answer; a ``rubric`` quoting the user's correction, the
  negative feedback, or the evidence; ``max_tool_calls`` for timeouts and tool loops.
- Regression cases: conversations that went well, sampled with the seeded Random,
  replayed up to their final answer and compared ``pairwise`` with it.
- Split: within each failure kind, cases ordered by a hash of their id; the first
  ``holdout_fraction`` go to holdout, the rest to train (each kind with two or
  more cases lands in both). Regression cases are always holdout.
"""

from __future__ import annotations

import logging
import random
from collections import defaultdict
from collections.abc import Sequence
from typing import Any, Literal

from nightloop.answers import final_answer_index
from nightloop.config import ReplayConfig
from nightloop.models import (
    Conversation,
    Expectation,
    Failure,
    Message,
    ReplayCase,
    canonical_json,
    sha256_text,
)

__all__ = ["REGRESSION", "build_replay_set", "case_reference", "rebuild_case", "recorded_tool_results", "replay_set_hash", "train_failure_ids"]

log = logging.getLogger(__name__)

#: ``ReplayCase.origin`` and ``metadata["kind"]`` of regression cases.
REGRESSION = "regression"
#: A timeout or tool loop is fixed when the agent answers within this many tool calls.
MAX_TOOL_CALLS_AFTER_TIMEOUT = 2
#: How much of a correction, feedback comment or evidence a rubric quotes.
MAX_RUBRIC_QUOTE = 500

# When one turn shows several failures, the one giving the most precise expectation names the case.
_KIND_PRIORITY = ("wrong_output", "user_correction", "timeout", "format", "refusal", "tool_error")




def _flat(text: str, limit: int = MAX_RUBRIC_QUOTE) -> str:
    flat = " ".join(text.split()).replace('"', "'")
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def _last_assistant_before(messages: list[Message], index: int) -> int | None:
    return next((i for i in range(index - 1, -1, -1) if messages[i].role == "assistant"), None)


def _is_correction(conversation: Conversation, failure: Failure) -> bool:
    """A user_correction pointing at a user turn (rather than at feedback about the whole conversation)."""
    turn = failure.turn
    return (
        failure.kind == "user_correction"
        and turn is not None
        and 0 < turn < len(conversation.messages)
        and conversation.messages[turn].role == "user"
    )


def _failing_assistant_index(conversation: Conversation, failure: Failure) -> int | None:
    """Index of the assistant message the failure is about (a correction blames the answer before it)."""
    messages = conversation.messages
    turn = failure.turn
    if turn is not None and 0 <= turn < len(messages):
        role = messages[turn].role
        if role == "assistant":
            return turn
        if role == "user":
            return _last_assistant_before(messages, turn)
        if role == "tool":
            following = next((i for i in range(turn + 1, len(messages)) if messages[i].role == "assistant"), None)
            return following if following is not None else _last_assistant_before(messages, turn)
    # No usable turn (outcome-level failures: status, feedback, expected answer): the agent's last turn.
    return _last_assistant_before(messages, len(messages))


def _turn_start(messages: list[Message], assistant_index: int) -> int:
    """Where the assistant turn containing ``assistant_index`` begins (after the user message it answers)."""
    start = assistant_index
    while start > 0 and messages[start - 1].role in ("assistant", "tool"):
        start -= 1
    return start


def _prefix(messages: list[Message], end: int) -> list[Message]:
    """messages[:end] without the leading system message(s)."""
    head = list(messages[:end])
    while head and head[0].role == "system":
        head.pop(0)
    return head


def recorded_tool_results(conversation: Conversation) -> list[dict[str, str]]:
    """Every tool result of the conversation as {name, arguments, content}, in order."""
    calls: dict[str, tuple[str, str]] = {}
    for message in conversation.messages:
        for call in message.tool_calls or []:
            calls[call.id] = (call.function.name, call.function.arguments)
    results = []
    for message in conversation.messages:
        if message.role != "tool":
            continue
        name, arguments = calls.get(message.tool_call_id or "", (message.name or "", "{}"))
        if name:
            results.append({"name": name, "arguments": arguments, "content": message.text})
    return results


def _tool_names(conversation: Conversation) -> list[str]:
    return sorted({c.function.name for m in conversation.messages for c in (m.tool_calls or [])})


def _expectation(conversation: Conversation, failure: Failure) -> Expectation:
    """What a replayed answer must do, derived from what failed."""
    outcome = conversation.outcome
    comment = (outcome.feedback.comment if outcome.feedback else None) or ""
    evidence = _flat(failure.evidence) if failure.evidence.strip() else ""
    if failure.kind == "wrong_output" and outcome.expected is not None:
        return Expectation(kind="reference", value=outcome.expected)
    if _is_correction(conversation, failure):
        correction = _flat(conversation.messages[failure.turn].text)  # type: ignore[index]
        return Expectation(kind="rubric", value=f'satisfies the user\'s correction: "{correction}"')
    if failure.kind == "user_correction":  # negative feedback on the whole conversation
        said = _flat(comment or failure.evidence) or "negative feedback"
        return Expectation(
            kind="rubric", value=f'addresses the user\'s negative feedback on the original answer: "{said}"'
        )
    if failure.kind == "timeout":
        return Expectation(kind="max_tool_calls", value=MAX_TOOL_CALLS_AFTER_TIMEOUT)
    rubrics = {
        "wrong_output": "gives a correct answer to the user's request; the original answer was judged wrong",
        "tool_error": "recovers from the tool error and still helps the user",
        "refusal": "helps with the user's request instead of refusing it",
        "format": "follows the required output format",
    }
    text = rubrics.get(failure.kind, "answers the user's request well")
    return Expectation(kind="rubric", value=f'{text}: "{evidence}"' if evidence else text)


def _failure_case(prompt_name: str, conversation: Conversation, failures: list[Failure]) -> ReplayCase | None:
    """The case for a conversation's first failing turn, or None when there is nothing to replay."""
    located = [(index, f) for f in failures if (index := _failing_assistant_index(conversation, f)) is not None]
    if not located:
        return None
    first = min(index for index, _ in located)
    at_first = [f for index, f in located if index == first]
    # A wrong answer only yields a precise (reference) expectation when the expected answer is known.
    has_expected = conversation.outcome.expected is not None

    def priority(f: Failure) -> tuple[int, str]:
        rank = _KIND_PRIORITY.index(f.kind) if f.kind in _KIND_PRIORITY else len(_KIND_PRIORITY)
        if f.kind == "wrong_output" and not has_expected:
            rank = len(_KIND_PRIORITY)
        return rank, f.id

    primary = min(at_first, key=priority)
    return _case_at(
        prompt_name,
        conversation,
        first,
        kind=primary.kind,
        expectation=_expectation(conversation, primary),
        origin=primary.id,
        failure_ids=sorted(f.id for f in failures),
    )


def _regression_case(prompt_name: str, conversation: Conversation) -> ReplayCase | None:
    final = final_answer_index(conversation.messages)
    if final is None:
        return None
    return _case_at(
        prompt_name,
        conversation,
        final,
        kind=REGRESSION,
        expectation=Expectation(kind="pairwise", reference_output=conversation.messages[final].text),
        origin=REGRESSION,
        split="holdout",
    )


def _case_at(
    prompt_name: str,
    conversation: Conversation,
    turn: int,
    *,
    kind: str,
    expectation: Expectation,
    origin: str,
    split: Literal["train", "holdout"] = "holdout",
    failure_ids: list[str] | None = None,
) -> ReplayCase | None:
    """The case replaying the turn that holds assistant message ``turn``; None without a user message before it."""
    messages = _prefix(conversation.messages, _turn_start(conversation.messages, turn))
    if not any(m.role == "user" for m in messages):
        log.debug("no user message before turn %d of %s; not replayable", turn, conversation.id)
        return None
    metadata: dict[str, Any] = {"kind": kind, "conversation_id": conversation.id, "turn": turn}
    if failure_ids is not None:
        metadata["failure_ids"] = failure_ids
    metadata["tool_results"] = recorded_tool_results(conversation)
    metadata["tool_names"] = _tool_names(conversation)
    return ReplayCase(
        id=f"{conversation.id}@{turn}",
        prompt_name=prompt_name,
        messages=messages,
        variables=dict(conversation.variables),
        expectation=expectation,
        origin=origin,
        split=split,
        metadata=metadata,
    )


def case_reference(case: ReplayCase) -> ReplayCase:
    """``case`` without what it quotes from its conversation (messages, variables, expected answers, recorded
    tool results): the form kept outside the conversations table. :func:`rebuild_case` gives the content back."""
    metadata = {key: value for key, value in case.metadata.items() if key != "tool_results"}
    expectation = Expectation(kind=case.expectation.kind, scorer=case.expectation.scorer)
    return case.model_copy(update={"messages": [], "variables": {}, "expectation": expectation, "metadata": metadata})


def rebuild_case(reference: ReplayCase, conversation: Conversation, failures: Sequence[Failure]) -> ReplayCase | None:
    """The case ``reference`` (see :func:`case_reference`) stands for, rebuilt from its conversation and
    failures the way :func:`build_replay_set` built it; None when they no longer give the same case."""
    if reference.origin == REGRESSION:
        case = _regression_case(reference.prompt_name, conversation)
    else:
        wanted = set(reference.metadata.get("failure_ids") or [reference.origin])
        case = _failure_case(reference.prompt_name, conversation, [f for f in failures if f.id in wanted])
    if case is None or case.id != reference.id or case.origin != reference.origin:
        return None
    return case.model_copy(update={"split": reference.split})


def _id_hash(case_id: str) -> str:
    """Orders cases for the split: stable across runs and machines, unlike ``hash()``."""
    return sha256_text(case_id)


def _cap_stratified(cases: list[ReplayCase], cap: int, rng: random.Random) -> list[ReplayCase]:
    """At most ``cap`` cases, taken round-robin across failure kinds so rare kinds stay represented."""
    if len(cases) <= cap:
        return cases
    by_kind: dict[str, list[ReplayCase]] = defaultdict(list)
    for case in sorted(cases, key=lambda c: c.id):
        by_kind[case.metadata["kind"]].append(case)
    for bucket in by_kind.values():
        rng.shuffle(bucket)
    kept: list[ReplayCase] = []
    queues = [by_kind[kind] for kind in sorted(by_kind)]
    while len(kept) < cap:
        for queue in queues:
            if queue and len(kept) < cap:
                kept.append(queue.pop(0))
    return kept


def _split(cases: list[ReplayCase], holdout_fraction: float) -> list[ReplayCase]:
    """Train/holdout by a hash of the case id, stratified by kind (each kind in both where it has ≥ 2 cases)."""
    by_kind: dict[str, list[ReplayCase]] = defaultdict(list)
    for case in cases:
        by_kind[case.metadata["kind"]].append(case)
    split: dict[str, str] = {}
    for bucket in by_kind.values():
        bucket.sort(key=lambda c: _id_hash(c.id))
        n = len(bucket)
        holdout = round(n * holdout_fraction)
        if n >= 2 and 0 < holdout_fraction < 1:
            holdout = min(max(holdout, 1), n - 1)
        elif n == 1 and 0 < holdout_fraction < 1:
            holdout = int(int(_id_hash(bucket[0].id)[:8], 16) / 0xFFFFFFFF < holdout_fraction)
        for position, case in enumerate(bucket):
            split[case.id] = "holdout" if position < holdout else "train"
    return [case.model_copy(update={"split": split[case.id]}) for case in cases]


def build_replay_set(
    prompt_name: str,
    *,
    failures: list[Failure],
    failed: dict[str, Conversation],
    succeeded: list[Conversation],
    config: ReplayConfig,
    seed: int,
) -> list[ReplayCase]:
    """Failure cases (split train/holdout) then regression cases (holdout), deterministic for a seed.

    Failures whose conversation is missing from ``failed`` or that leave nothing to
    replay (no user message before the failing turn) yield no case.
    """
    rng = random.Random(seed)
    # Regression sampling first, so it does not change when the night's failures do.
    regression = _sample_regression(prompt_name, succeeded, set(failed), config.regression_cases, rng)

    by_conversation: dict[str, list[Failure]] = defaultdict(list)
    for failure in failures:
        by_conversation[failure.conversation_id].append(failure)
    failure_cases = [
        case
        for conversation_id in sorted(by_conversation)
        if conversation_id in failed
        and (case := _failure_case(prompt_name, failed[conversation_id], by_conversation[conversation_id]))
    ]
    failure_cases = _cap_stratified(failure_cases, config.max_failure_cases, rng)
    failure_cases = sorted(_split(failure_cases, config.holdout_fraction), key=lambda c: c.id)
    return failure_cases + regression


def _sample_regression(
    prompt_name: str, succeeded: list[Conversation], failed_ids: set[str], count: int, rng: random.Random
) -> list[ReplayCase]:
    pool = sorted((c for c in succeeded if c.id not in failed_ids), key=lambda c: c.id)
    rng.shuffle(pool)
    cases: list[ReplayCase] = []
    for conversation in pool:
        if len(cases) >= count:
            break
        case = _regression_case(prompt_name, conversation)
        if case is not None:
            cases.append(case)
    return sorted(cases, key=lambda c: c.id)


def train_failure_ids(cases: Sequence[ReplayCase]) -> set[str]:
    """Ids of the failures the judge may see: those of train cases only (never a holdout conversation's)."""
    ids: set[str] = set()
    for case in cases:
        if case.split == "train" and case.origin != REGRESSION:
            ids.update(case.metadata.get("failure_ids") or [case.origin])
    return ids


def replay_set_hash(cases: Sequence[ReplayCase]) -> str:
    """Content hash of a replay set (independent of list order)."""
    dumped = sorted((c.model_dump(mode="json") for c in cases), key=lambda d: d["id"])
    return sha256_text(canonical_json(dumped))
