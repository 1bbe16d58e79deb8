"""Detectors of a wrong answer: the user correcting the agent, and an answer that differs from the expected one."""

from __future__ import annotations

import difflib
import re
from collections import Counter
from collections.abc import Sequence
from itertools import repeat
from typing import Any

import jsonschema

from nightloop.answers import (
    NOT_JSON,
    AnswerCheck,
    normalize,
    parse_json_document,
)
from nightloop.config import ClassifyConfig
from nightloop.detectors.base import (
    RECOVERED_CONFIDENCE,
    _failure,
    _last_index,
    answer_turns,
    feedback_score,
    final_answer,
)
from nightloop.models import Conversation, Failure, Message
from nightloop.quoting import excerpt

__all__ = ["CORRECTION_SCAN_CHARS", "UserCorrectionDetector", "WrongOutputDetector"]


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
#: The same search without IGNORECASE, for lowercased ASCII text: matching case-blind costs twice as much per character.
#: The patterns' letters are all lower case (a test checks), and ASCII text has none of the non-ASCII letters that
#: match an ASCII one case-blind (the Kelvin sign, the long s), so both searches find the same.
_ANY_CORRECTION_LOWER = re.compile(_ANY_CORRECTION.pattern)


#: What every correction pattern's match holds one of, in lower-case ASCII text (a test checks it against texts that
#: each pattern generates): a turn with none of them matches no pattern, and is not searched. Most turns have none, and
#: these searches cost half of one for the patterns (which tries each of them at every character).
_CORRECTION_ANCHORS = (
    "your ", "not", "wrong", "incorrect", "mistake", "misunderstood", "i said", "i meant", "i already", "i told", "i asked",
    "as i ", "answer", "reply", "respond", "write", "say that", "repeat that", "bad", "i did", "i never", " too ",
    "s ist ", "s war ", "ich ", "zu lang", "trop long", "demasiado largo", "bitte ", "est ", "ai d", "pond",
    "eso ", "esto ", "no es lo que", "pregunt", "pedí ", "dije ", "responda", "conteste",
)


def _may_correct(text: str) -> bool:
    """Whether any correction pattern matches ``text`` (``_ANY_CORRECTION.search``, several times faster on ASCII text)."""
    if text.isascii():
        lower = text.lower()
        return any(map(lower.__contains__, _CORRECTION_ANCHORS)) and _ANY_CORRECTION_LOWER.search(lower) is not None
    return _ANY_CORRECTION.search(text) is not None



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



_NOT_LOOKED_UP = object()


class UserCorrectionDetector:
    """A user turn that rejects or corrects the agent's answer, or explicit thumbs-down feedback."""

    name = "user_correction"
    min_repeat_words = 4
    max_repeat_chars = 600
    repeat_ratio = 0.85

    def detect(self, conversation: Conversation, config: ClassifyConfig) -> list[Failure]:
        messages = conversation.messages
        answers = set(answer_turns(conversation, config))
        recovered_after: Any = _NOT_LOOKED_UP  # the verified final answer's turn: looked up at the first correction
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
                if recovered_after is _NOT_LOOKED_UP:
                    recovered_after = _verified_final_answer_turn(conversation, config)
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
        hits = [(p.search(text), c) for p, c in _CORRECTIONS] if _may_correct(text) else []
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
        if 2.0 * _common_characters(self.counts, other.counts) / length < threshold:  # quick_ratio()
            return False
        return difflib.SequenceMatcher(None, a, b, autojunk=False).ratio() >= threshold



def _common_characters(a: Counter[str], b: Counter[str]) -> int:
    """``sum((a & b).values())``: how many characters two texts share, counted without building ``a & b`` (a Python
    loop in ``collections``, most of the repeated-request rule's time)."""
    return sum(map(min, a.values(), map(b.get, a.keys(), repeat(0))))



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
