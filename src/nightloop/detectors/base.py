"""The detector contract (:class:`Detector`) and what the built-in detectors share: a failure's shape, the answer turns."""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

from nightloop.answers import (
    AnswerCheck,
    answer_regex,
    check,
    final_answer_index,
    is_answer,
)
from nightloop.config import ClassifyConfig
from nightloop.models import Conversation, Failure, FailureKind, Message
from nightloop.quoting import EVIDENCE_LIMIT
from nightloop.redact import redact

__all__ = ["RECOVERED_CONFIDENCE", "Detector", "answer_turns", "feedback_score", "final_answer", "reference_verdict"]


#: A correction the agent recovered from (its final answer matches the reference) is still a
#: failure worth a better prompt, but a less certain sign that the conversation went wrong.
RECOVERED_CONFIDENCE = 0.5



@runtime_checkable
class Detector(Protocol):
    """Finds one family of failures in a conversation.

    Contract: return every failure found (an empty list when none), each with the
    0-based message index ``turn`` that shows it, a verbatim ``evidence`` excerpt of at
    most 300 characters, this detector's ``name`` and a ``confidence`` in [0, 1].
    A detector may raise on a conversation it cannot read; :func:`classify_conversation`
    then skips it for that conversation, so one odd record never stops a night.
    """

    name: str

    def detect(self, conversation: Conversation, config: ClassifyConfig) -> list[Failure]: ...



def _failure(
    conversation: Conversation,
    kind: FailureKind,
    turn: int | None,
    evidence: str,
    detector: str,
    confidence: float,
    quoting: str | None = None,
) -> Failure:
    """``quoting``: the role whose words ``evidence`` quotes (default: the role of message ``turn``)."""
    if quoting is None and turn is not None and 0 <= turn < len(conversation.messages):
        quoting = conversation.messages[turn].role
    return Failure(
        conversation_id=conversation.id,
        kind=kind,
        turn=turn,
        # Stored, shown and sent on: evidence leaves the conversations table redacted. The agent's own words are
        # redacted as agent text (its signature names the shop); a customer's in full ("my name is …").
        evidence=redact(evidence, "assistant" if quoting == "assistant" else None)[:EVIDENCE_LIMIT],
        detector=detector,
        confidence=min(max(confidence, 0.0), 1.0),
    )



def _last_index(messages: Sequence[Message], role: str | None = None) -> int:
    for index in range(len(messages) - 1, -1, -1):
        if role is None or messages[index].role == role:
            return index
    return len(messages) - 1



def answer_turns(conversation: Conversation, config: ClassifyConfig) -> list[int]:
    """Indexes of assistant turns that answer the user (not tool steps).

    When the agent marks its answers (``config.answer_pattern``, e.g. ``<solution>``: used in
    this conversation or required by its system prompt), only marked turns are answers; the
    others are intermediate steps whose follow-up "user" turns are observations, not verdicts.
    """
    candidates = [i for i, m in enumerate(conversation.messages) if is_answer(m)]
    if not config.answer_pattern:
        return candidates
    pattern = answer_regex(config.answer_pattern)
    marked = [i for i in candidates if pattern.search(conversation.messages[i].text)]
    if marked or _answer_mark_declared(conversation, config.answer_pattern):
        return marked
    return candidates



def _answer_mark_declared(conversation: Conversation, answer_pattern: str) -> bool:
    """Whether the agent's instructions tell it to mark answers (the pattern's literal opening, e.g. ``<solution>``)."""
    mark = _answer_mark(answer_pattern)
    if mark is None:
        return False
    instructions = next((m.text for m in conversation.messages if m.role == "system"), None)
    return mark in (conversation.messages[0].text if instructions is None else instructions).lower()


@functools.lru_cache(maxsize=64)
def _answer_mark(answer_pattern: str) -> str | None:
    """The answer pattern's literal opening, lower case (``<solution>``); None when it has none of 3 characters or more."""
    opening = re.match(r"[^\\.^$*+?()\[\]{}|]+", answer_pattern)
    return opening.group(0).strip().lower() if opening and len(opening.group(0).strip()) >= 3 else None



def final_answer(conversation: Conversation, config: ClassifyConfig) -> tuple[int, AnswerCheck] | None:
    """The final answer's turn and its check against the reference, or None when the agent never answered in text."""
    turn = final_answer_index(conversation.messages)
    if turn is None:
        return None
    return turn, check(conversation.messages[turn].text, conversation.outcome.expected, config)



def reference_verdict(conversation: Conversation, config: ClassifyConfig) -> bool | None:
    """Whether the final answer states ``outcome.expected`` (None: no answer, no reference, or rules can't tell)."""
    found = final_answer(conversation, config)
    return None if found is None else found[1].match



def feedback_score(feedback: Any) -> float | None:
    """A feedback's score, or None when absent or not a finite number (NaN/inf from a broken exporter)."""
    score = getattr(feedback, "score", None)
    return score if isinstance(score, int | float) and math.isfinite(score) else None
