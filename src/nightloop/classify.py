"""Failure detectors: rules that read a conversation and say what went wrong, with the turn that shows it.

Each detector is a small strategy class behind the :class:`Detector` protocol, chosen by
name through :data:`DETECTORS`. An LLM classifier for what rules can't decide plugs in
the same way: any object with a ``name`` and a ``detect`` method.
"""

from __future__ import annotations

import difflib
import json
import logging
import math
import re
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, Protocol, runtime_checkable

import jsonschema

from nightloop.answers import (
    NOT_JSON,
    AnswerCheck,
    check,
    final_answer_index,
    is_answer,
    normalize,
    parse_json_document,
)
from nightloop.config import ClassifyConfig
from nightloop.models import Conversation, Failure, FailureKind, Message, canonical_json
from nightloop.quoting import EVIDENCE_LIMIT, excerpt
from nightloop.redact import redact

__all__ = [
    "DETECTORS",
    "Detector",
    "HarnessErrorDetector",
    "RECOVERED_CONFIDENCE",
    "TimeoutDetector",
    "ToolErrorDetector",
    "UserCorrectionDetector",
    "WrongOutputDetector",
    "classify_conversation",
    "classify_many",
    "excerpt",
    "final_answer",
    "make_detectors",
    "reference_verdict",
]

logger = logging.getLogger(__name__)

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


# --- helpers -------------------------------------------------------------------------




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
    pattern = re.compile(config.answer_pattern, re.DOTALL | re.IGNORECASE)
    marked = [i for i in candidates if pattern.search(conversation.messages[i].text)]
    if marked or _answer_mark_declared(conversation, config.answer_pattern):
        return marked
    return candidates


def _answer_mark_declared(conversation: Conversation, answer_pattern: str) -> bool:
    """Whether the agent's instructions tell it to mark answers (the pattern's literal opening, e.g. ``<solution>``)."""
    opening = re.match(r"[^\\.^$*+?()\[\]{}|]+", answer_pattern)
    if not opening or len(opening.group(0).strip()) < 3:
        return False
    mark = opening.group(0).strip().lower()
    instructions = [m.text for m in conversation.messages if m.role == "system"][:1] or [conversation.messages[0].text]
    return mark in instructions[0].lower()


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


# --- detectors -----------------------------------------------------------------------


class TimeoutDetector:
    """The run hit a budget: harness timeout, latency, turn count, or a loop of identical tool calls."""

    name = "timeout"

    def detect(self, conversation: Conversation, config: ClassifyConfig) -> list[Failure]:
        failures: list[Failure] = []
        messages, outcome = conversation.messages, conversation.outcome
        last = len(messages) - 1
        if outcome.status == "timeout":
            reason = outcome.error or f"run ended at its step limit: {excerpt(messages[last].text, limit=240)}"
            quoting = "tool" if outcome.error else None  # the harness's error message, not the agent's words
            failures.append(_failure(conversation, "timeout", last, f"status timeout: {reason}", self.name, 1.0, quoting))
        latency = _latency_ms(conversation)
        if config.max_latency_ms is not None and latency is not None and latency > config.max_latency_ms:
            evidence = f"latency {latency:.0f} ms > budget {config.max_latency_ms:.0f} ms"
            failures.append(_failure(conversation, "timeout", last, evidence, self.name, 0.9))
        turns = [i for i, m in enumerate(messages) if m.role == "assistant"]
        if config.max_turns is not None and len(turns) > config.max_turns:
            over = turns[config.max_turns]
            evidence = f"{len(turns)} assistant turns > budget {config.max_turns}: {excerpt(messages[over].text, limit=200)}"
            failures.append(_failure(conversation, "timeout", over, evidence, self.name, 0.9))
        failures.extend(self._loops(conversation, config))
        return failures

    def _loops(self, conversation: Conversation, config: ClassifyConfig) -> Iterator[Failure]:
        threshold = max(2, config.max_identical_tool_calls)
        run_key, run_length = None, 0
        for turn, key, label in _tool_calls(conversation.messages):
            run_key, run_length = (key, run_length + 1) if key == run_key else (key, 1)
            if run_length == threshold:
                evidence = f"{excerpt(label, limit=230)} called {threshold} times in a row with the same arguments"
                yield _failure(conversation, "timeout", turn, evidence, self.name, 0.85)


def _latency_ms(conversation: Conversation) -> float | None:
    if conversation.outcome.latency_ms is not None:
        return conversation.outcome.latency_ms
    if conversation.started_at and conversation.ended_at:
        return (conversation.ended_at - conversation.started_at).total_seconds() * 1000
    return None


def _tool_calls(messages: Sequence[Message]) -> Iterator[tuple[int, tuple[str, str], str]]:
    """Every tool call in order: ``(turn, (name, canonical arguments), "name(arguments)")``."""
    for turn, message in enumerate(messages):
        for call in message.tool_calls or []:
            arguments = call.function.arguments
            try:
                canonical = canonical_json(json.loads(arguments))
            except (ValueError, TypeError):
                canonical = arguments.strip()
            yield turn, (call.function.name, canonical), f"{call.function.name}({arguments})"


# User-turn rules. Strong phrases reject the previous answer whatever it was; a bare
# leading "no" only counts when the agent had stated something, not asked a question.
_CORRECTIONS: list[tuple[re.Pattern[str], float]] = [
    (re.compile(p, re.IGNORECASE), c)
    for p, c in [
        (r"\byour (?:answer|response|solution|reply|result) (?:is|was) (?:wrong|incorrect|not (?:right|correct))", 0.95),
        (r"\bnot what i (?:asked|wanted|meant|said|need(?:ed)?|requested|ordered)\b", 0.9),
        (r"\b(?:that|this|it)(?:'s|’s| is| was)\s+(?:wrong|incorrect|not (?:right|correct|true|accurate))\b", 0.9),
        (r"\b(?:that|this|it)(?:'s|’s| is| was)\s+not\s+(?:my|our|the (?:right|correct))\b", 0.85),
        (r"\byou(?:'re|’re| are) (?:wrong|mistaken)\b|\byou (?:misunderstood|got it wrong|made a mistake)\b", 0.9),
        (r"\byou (?:gave|sent|quoted|showed) (?:me )?(?:the )?(?:wrong|incorrect)\b", 0.9),
        (r"\bi (?:said|meant|already (?:said|told you|gave you|mentioned)|told you)\b", 0.85),
        (r"\bi asked (?:for|you|about|to)\b", 0.85),
        (r"\bas i (?:said|mentioned|already said)\b", 0.85),
        (r"\b(?:please|pls|can you|could you)\s+(?:\w+\s+)?(?:answer|reply|respond|write|say that|repeat that)\s+in\s+\w+", 0.8),
        (r"\b(?:this|that) (?:is|was) (?:bad|incorrect|wrong)\b", 0.8),
        (r"\bi (?:didn'?t|did not|never) (?:ask|want)\b|\bjust answer (?:my|the) question\b", 0.85),
        (r"\b(?:that'?s|this is|it'?s|way|far|much) too (?:long|short|verbose|vague)\b", 0.75),
        # The same moves in the other languages the demo shop serves (de, fr, es).
        (r"\b(?:das|es) (?:ist|war) (?:falsch|nicht (?:richtig|korrekt|meine?|das,? was ich))", 0.85),
        (r"\bich (?:habe|hatte) (?:doch )?(?:nach\b.{0,80}?\bgefragt|gesagt|gemeint)|\bich meinte\b|\bdas habe ich nicht gefragt", 0.85),
        (r"\b(?:viel )?zu lang\b|\btrop long\b|\bdemasiado largo\b", 0.75),
        (r"\bbitte (?:antworten|schreiben) sie (?:auf|in) \w+", 0.8),
        (r"\b(?:c['’]est|ce n['’]est) (?:faux|incorrect|pas (?:ma|mon|ce que|le bon|la bonne))", 0.85),
        (r"\bj['’]ai (?:demandé|dit)\b|\b(?:répondez|merci de répondre)(?: moi)? en \w+", 0.85),
        (r"\b(?:eso|esto) (?:está mal|es incorrecto|no es (?:mi|lo que|el|la))|\bno es lo que (?:pregunté|pedí|quería)", 0.85),
        (r"\b(?:pregunté|pedí|dije) (?:por|el|la|que)\b|\b(?:responda|conteste)(?:me)? en \w+", 0.85),
    ]
]
#: One search for "does any correction pattern match": most user turns match none, and then one scan replaces twenty.
_ANY_CORRECTION = re.compile("|".join(f"(?:{pattern.pattern})" for pattern, _ in _CORRECTIONS), re.IGNORECASE)
#: Corrections are said up front; a longer turn is pasted content, and only its start is searched (bounded time).
CORRECTION_SCAN_CHARS = 2000
_LEADING_NO = re.compile(r"^\W*(?:no|nope|nah|not quite|not really|nein|non)\b[\s,.!;:-]+(?P<rest>\S.*)", re.IGNORECASE | re.DOTALL)
_NEUTRAL_NO = re.compile(
    r"^\W*(?:no|nope|nah|nein|non)\b[\s,.!;:-]*(?:thanks?|thank you|merci|danke|gracias|problem|worries|need|rush|hurry|pressure|that'?s (?:all|it|fine|ok|everything)|"
    r"i'?m (?:good|fine|ok|all set)|i think that'?s|nothing|not (?:now|right now|at the moment)|other|more|that will be all|all good)",
    re.IGNORECASE,
)
_THUMBS_DOWN = re.compile(r"thumbs?[\s_-]*down|👎|\bdislike[sd]?\b|\bnot helpful\b|\bunhelpful\b|\bbad (?:answer|response)\b", re.IGNORECASE)


_REQUESTS_INPUT = re.compile(r"\?|\b(?:let me know|please (?:provide|confirm|specify|share|tell|choose|select))\b", re.IGNORECASE)


def _asks_question(message: Message) -> bool:
    """Whether the agent asked the user something (so a "No, ..." reply answers it rather than rejects it)."""
    return bool(_REQUESTS_INPUT.search(message.text.strip()[-300:]))  # how the turn ends, sign-off included


def _verified_final_answer_turn(conversation: Conversation, config: ClassifyConfig) -> int | None:
    """The turn of a final answer that matches the reference, or None when there is none or rules can't tell."""
    found = final_answer(conversation, config)
    return found[0] if found is not None and found[1].match is True else None


class UserCorrectionDetector:
    """A user turn that rejects or corrects the agent's answer, or explicit thumbs-down feedback."""

    name = "user_correction"
    min_repeat_words = 4
    max_repeat_chars = 600
    repeat_ratio = 0.85

    def detect(self, conversation: Conversation, config: ClassifyConfig) -> list[Failure]:
        messages = conversation.messages
        answers = set(answer_turns(conversation, config))
        recovered_after = _verified_final_answer_turn(conversation, config)
        failures: list[Failure] = []
        forms: dict[int, _RepeatForm] = {}
        for turn in range(1, len(messages)):
            message = messages[turn]
            if message.role != "user" or turn - 1 not in answers or not message.text.strip():
                continue
            previous = messages[turn - 1]
            found = self._correction(message, previous) or (None if _asks_question(previous) else self._repeat(messages, turn, forms))
            if found:
                evidence, confidence = found
                if recovered_after is not None and turn < recovered_after:
                    evidence, confidence = f"(recovered later) {evidence}", min(confidence, RECOVERED_CONFIDENCE)
                failures.append(_failure(conversation, "user_correction", turn, evidence, self.name, confidence))
        feedback = conversation.outcome.feedback
        if feedback is not None and feedback.comment and _THUMBS_DOWN.search(feedback.comment):
            score = "" if feedback_score(feedback) is None else f"score {feedback.score:g}, "
            evidence = f'feedback ({score}comment "{excerpt(feedback.comment, limit=200)}")'
            turn = _last_index(messages, "assistant")
            failures.append(_failure(conversation, "user_correction", turn, evidence, self.name, 0.9, quoting="user"))
        return failures

    def _correction(self, message: Message, previous: Message) -> tuple[str, float] | None:
        text = message.text[:CORRECTION_SCAN_CHARS]
        hits = [(p.search(text), c) for p, c in _CORRECTIONS] if _ANY_CORRECTION.search(text) else []
        best = max(((m, c) for m, c in hits if m), key=lambda hit: hit[1], default=None)
        if best:
            match, confidence = best
            return excerpt(text, match.start(), match.end()), confidence
        lead = _LEADING_NO.match(text)
        if lead and not _NEUTRAL_NO.match(text) and not _asks_question(previous) and len(lead.group("rest").split()) >= 2:
            return excerpt(text), 0.7
        return None

    def _repeat(self, messages: Sequence[Message], turn: int, forms: dict[int, _RepeatForm]) -> tuple[str, float] | None:
        """The user asks the same thing again: the answer did not land. ``forms`` caches each turn's compared form."""
        text = _repeat_form(messages, turn, forms)
        if len(text.text.split()) < self.min_repeat_words or len(text.text) > self.max_repeat_chars:
            return None  # long turns are pasted content or observations, not a request said again
        for index in range(turn):
            earlier = messages[index]
            if earlier.role != "user" or len(earlier.text) > 2 * self.max_repeat_chars:
                continue
            if text.similar(_repeat_form(messages, index, forms), self.repeat_ratio):
                return f"repeated request: {excerpt(messages[turn].text, limit=260)}", 0.6
        return None


def _repeat_form(messages: Sequence[Message], index: int, forms: dict[int, _RepeatForm]) -> _RepeatForm:
    form = forms.get(index)
    if form is None:
        form = forms[index] = _RepeatForm(messages[index].text)
    return form


class _RepeatForm:
    """A user turn in the form the repeated-request rule compares (lower case, whitespace collapsed).

    ``similar`` is exactly ``difflib.SequenceMatcher(None, self, other, autojunk=False).ratio() >= threshold``, but
    cheap on the common case: ``ratio() <= quick_ratio() <= real_quick_ratio()`` (difflib's own upper bounds, the
    same float arithmetic), so a pair that fails a bound cannot pass, and only the few pairs that pass both pay for
    ``ratio()`` (milliseconds on long turns).
    """

    __slots__ = ("text", "_counts")

    def __init__(self, text: str) -> None:
        self.text = normalize(text, ["lower", "collapse_whitespace"])
        self._counts: Counter[str] | None = None

    @property
    def counts(self) -> Counter[str]:
        if self._counts is None:
            self._counts = Counter(self.text)
        return self._counts

    def similar(self, other: _RepeatForm, threshold: float) -> bool:
        a, b = self.text, other.text
        if not a or not b:
            return difflib.SequenceMatcher(None, a, b, autojunk=False).ratio() >= threshold
        if a == b:
            return 1.0 >= threshold  # ratio() of two equal strings
        length = len(a) + len(b)
        if 2.0 * min(len(a), len(b)) / length < threshold:  # real_quick_ratio()
            return False
        if 2.0 * sum((self.counts & other.counts).values()) / length < threshold:  # quick_ratio()
            return False
        return difflib.SequenceMatcher(None, a, b, autojunk=False).ratio() >= threshold


class WrongOutputDetector:
    """The final answer differs from the reference, breaks the declared JSON schema, or was graded down."""

    name = "wrong_output"

    def detect(self, conversation: Conversation, config: ClassifyConfig) -> list[Failure]:
        failures: list[Failure] = []
        found = final_answer(conversation, config)
        expected = conversation.outcome.expected
        if found is not None and found[1].match is False:
            turn, answer = found
            shown = excerpt(str(expected) if not isinstance(expected, str) else expected, limit=100)
            evidence = f'answer "{excerpt(answer.answer, limit=150)}" != expected "{shown}"'
            confidence = 0.9 if answer.marked else 0.6
            failures.append(_failure(conversation, "wrong_output", turn, evidence, self.name, confidence))
        if found is not None and config.json_schema is not None:
            failures.extend(self._schema(conversation, found, config.json_schema))
        failures.extend(self._graded_down(conversation, config))
        return failures

    def _schema(self, conversation: Conversation, found: tuple[int, AnswerCheck], schema: dict[str, Any]) -> list[Failure]:
        turn, text = found[0], found[1].answer
        document = parse_json_document(text)
        if document is NOT_JSON:
            problem = "not JSON"
        else:
            error = jsonschema.exceptions.best_match(jsonschema.Draft202012Validator(schema).iter_errors(document))
            if error is None:
                return []
            where = "/".join(str(p) for p in error.absolute_path) or "(root)"
            problem = f"schema violation at {where}: {error.message}"
        evidence = f'{excerpt(problem, limit=120)}: "{excerpt(text, limit=160)}"'
        return [_failure(conversation, "format", turn, evidence, self.name, 0.95)]

    def _graded_down(self, conversation: Conversation, config: ClassifyConfig) -> list[Failure]:
        feedback = conversation.outcome.feedback
        score = feedback_score(feedback)
        if feedback is None or score is None or score >= config.negative_feedback_below:
            return []
        if feedback.comment and _THUMBS_DOWN.search(feedback.comment):
            return []  # a person's thumbs-down: reported as a user correction instead
        comment = f' "{excerpt(feedback.comment, limit=200)}"' if feedback.comment else ""
        evidence = f"feedback score {score:g} < {config.negative_feedback_below:g}{comment}"
        turn = _last_index(conversation.messages, "assistant")
        return [_failure(conversation, "wrong_output", turn, evidence, self.name, 0.8)]


def feedback_score(feedback: Any) -> float | None:
    """A feedback's score, or None when absent or not a finite number (NaN/inf from a broken exporter)."""
    score = getattr(feedback, "score", None)
    return score if isinstance(score, int | float) and math.isfinite(score) else None


_ERROR_PREFIX = re.compile(
    r"^\s*(?:Traceback \(most recent call last\)|(?:error|exception|fatal|failed|failure)\b\s*[:\-!]|"
    r"[A-Z]\w*(?:Error|Exception)\b:|HTTP(?:/[\d.]+)?\s+[45]\d\d\b|[45]\d\d (?:Client|Server) Error\b)",
    re.IGNORECASE,
)
_ERROR_STATUSES = {"error", "failed", "failure", "fail"}


def tool_result_error(content: str | None) -> str | None:
    """Why a tool result is an error (a short phrase), or None when it is normal content."""
    text = (content or "").strip()
    if not text:
        return None
    try:
        document = json.loads(text)
    except ValueError:
        document = None
    if isinstance(document, dict):
        error = document.get("error")
        if error not in (None, "", False, {}, []):
            return "error field"
        status = document.get("status")
        if isinstance(status, str) and status.strip().lower() in _ERROR_STATUSES:
            return f"status {status}"
        if document.get("success") is False or document.get("ok") is False:
            return "success false"
        return None
    if document is not None:
        return None
    return "error text" if _ERROR_PREFIX.match(text) else None


class ToolErrorDetector:
    """Tool results that are errors (an ``error`` field, an error status, ``Error:``/``Traceback`` text)."""

    name = "tool_error"

    def detect(self, conversation: Conversation, config: ClassifyConfig) -> list[Failure]:
        names = {call.id: call.function.name for m in conversation.messages for call in m.tool_calls or [] if call.id}
        failures: list[Failure] = []
        for turn, message in enumerate(conversation.messages):
            if message.role != "tool":
                continue
            reason = tool_result_error(message.content)
            if reason is None:
                continue
            tool = message.name or names.get(message.tool_call_id or "", "tool")
            evidence = f"{tool} returned: {excerpt(message.content, limit=260)}"
            confidence = 0.9 if reason == "error field" or "Traceback" in message.text[:40] else 0.8
            failures.append(_failure(conversation, "tool_error", turn, evidence, self.name, confidence))
        return failures


#: Errors of the agent's own model provider (HTTP 5xx, rate limits, connection failures), as the SDKs and
#: instrumentations name them: the infrastructure failed, not the prompt.
PROVIDER_ERROR = re.compile(
    r"InternalServerError|RateLimitError|APIConnectionError|ServiceUnavailable|OverloadedError|APIStatusError"
    r"|Error code: (?:5\d\d|429)|\bHTTP (?:5\d\d|429)\b|\bstatus(?: code)?[ =:]+(?:5\d\d|429)\b|rate.?limit|overloaded",
    re.IGNORECASE,
)


def is_provider_error(error: str | None) -> bool:
    """Whether a recorded error is the agent's LLM provider failing (5xx, rate limit, connection), not the agent."""
    return bool(error) and PROVIDER_ERROR.search(error) is not None


class HarnessErrorDetector:
    """The agent's harness recorded an error (``outcome.status == "error"``): the run broke, not the answer.

    When the error is the agent's own model provider failing, the kind is ``provider_error``: reported, never judged.
    """

    name = "harness_error"

    def detect(self, conversation: Conversation, config: ClassifyConfig) -> list[Failure]:
        outcome = conversation.outcome
        if outcome.status != "error":
            return []
        lines = [line for line in (outcome.error or "").splitlines() if line.strip()]
        reason = lines[-1] if lines else "no error message recorded"
        if is_provider_error(outcome.error):
            evidence = f"the agent's model provider failed: {excerpt(reason, limit=260)}"
            return [_failure(conversation, "provider_error", len(conversation.messages) - 1, evidence, self.name, 1.0, "tool")]
        evidence = f"harness error: {excerpt(reason, limit=280)}"
        return [_failure(conversation, "tool_error", len(conversation.messages) - 1, evidence, self.name, 1.0, "tool")]


#: Every rule detector by name; ``make_detectors`` picks from here.
DETECTORS: dict[str, type[Detector]] = {
    "timeout": TimeoutDetector,
    "user_correction": UserCorrectionDetector,
    "wrong_output": WrongOutputDetector,
    "tool_error": ToolErrorDetector,
    "harness_error": HarnessErrorDetector,
}


def make_detectors(names: Iterable[str] | None = None) -> list[Detector]:
    """Detector instances by name, built-in or plug-in (every built-in one when ``names`` is None).

    An unknown name raises :class:`~nightloop.errors.UnknownName` (a ValueError) listing the valid ones.
    """
    if names is None:
        return [cls() for cls in DETECTORS.values()]
    from nightloop.plugins import check_names

    return [cls() for cls in check_names("detectors", list(names), "[classify] detectors").values()]


def classify_conversation(
    conversation: Conversation, config: ClassifyConfig, detectors: Sequence[Detector] | None = None
) -> list[Failure]:
    """Every failure the detectors find, one per failure id (the most confident), in turn order."""
    found: dict[str, Failure] = {}
    for detector in make_detectors(config.detectors) if detectors is None else detectors:
        try:
            failures = detector.detect(conversation, config)
        except Exception:  # one odd conversation must not stop the night
            logger.warning("detector %s skipped conversation %s", getattr(detector, "name", detector), conversation.id, exc_info=True)
            continue
        for failure in failures:
            kept = found.get(failure.id)
            if kept is None or failure.confidence > kept.confidence:
                found[failure.id] = failure
    return sorted(found.values(), key=lambda f: (f.turn if f.turn is not None else -1, f.kind))


def classify_many(
    conversations: Iterable[Conversation], config: ClassifyConfig, detectors: Sequence[Detector] | None = None
) -> dict[str, list[Failure]]:
    """Failures per conversation id (an empty list for a conversation that went well).

    ``detectors`` default to ``[classify] detectors`` (every built-in one when unset).
    """
    chosen = make_detectors(config.detectors) if detectors is None else list(detectors)
    return {c.id: classify_conversation(c, config, chosen) for c in conversations}
