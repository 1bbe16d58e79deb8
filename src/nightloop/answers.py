"""One definition of a correct answer, shared by classify (``wrong_output``), score (``reference``) and replay.

A stage that must agree with another on what counts as a right answer imports it from here:

- which message is an answer (:func:`is_answer`: assistant text without tool calls) and which one is the
  final answer (:func:`final_answer_index`);
- what part of that message is the answer (:func:`extract`: group 1 of the last match of the prompt's
  answer pattern, ``[classify] answer_pattern``, e.g. ``<solution> 42 </solution>``; the whole text when
  the pattern is unset or absent);
- whether it states the reference (:func:`answers_match`): numbers within 1% (``"1,050"``, ``"$12.50"``,
  ``"25%"`` = 0.25, a number inside a sentence), booleans (``yes``/``true``), option letters (``C) 18107``
  answers ``c``), lists in any order and notation (``"1, 2 and 3"``), JSON objects equal as values, text
  equal after ``[classify] normalize`` or (up to 80 characters) found as a whole phrase. ``None`` means the rules can't tell
  (no reference, a multi-line or long reference such as a test suite): a rubric has to.

:func:`check` does both steps and is what the classifier and the scorer call.
"""

from __future__ import annotations

from contextvars import ContextVar

import ast
import functools
import json
import math
import re
import string
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from nightloop.config import ClassifyConfig
from nightloop.fences import fenced_body
from nightloop.models import Message, canonical_json

__all__ = [
    "NUMERIC_REL_TOL",
    "AnswerCheck",
    "answer_regex",
    "answers_match",
    "check",
    "comparison_form",
    "extract",
    "final_answer_index",
    "is_answer",
    "normalize",
    "parse_json_document",
]

#: Relative tolerance when a reference answer and a final answer are both numbers.
NUMERIC_REL_TOL = 0.01
#: A reference up to this long may also be found as a whole phrase inside a longer answer; a longer one must
#: be equal (a long reference inside a longer answer is too easy to hit by quoting the question).
SHORT_REFERENCE_CHARS = 80
#: References longer than this (or spanning lines: code, test suites, trajectories) are
#: not answers a rule can compare; they are left to a rubric scorer.
MAX_COMPARABLE_REFERENCE = 200
#: Sentinel of :func:`parse_json_document` for "no JSON document in this text".
NOT_JSON = object()


@dataclass(frozen=True)
class AnswerCheck:
    """The answer found in a text and whether it states the reference (None: rules can't tell)."""

    answer: str
    marked: bool
    match: bool | None


# --- which text is the answer -------------------------------------------------------


def is_answer(message: Message) -> bool:
    """An assistant message with text and no tool calls: it answers the user rather than taking a step."""
    return message.role == "assistant" and bool(message.text.strip()) and not message.tool_calls


def final_answer_index(messages: Sequence[Message]) -> int | None:
    """Index of the last answer message, or None when the agent never answered in text."""
    return next((i for i in range(len(messages) - 1, -1, -1) if is_answer(messages[i])), None)


@functools.lru_cache(maxsize=64)
def answer_regex(pattern: str) -> re.Pattern[str]:
    """``answer_pattern`` compiled as answers are matched: across lines, case-blind (cached: every conversation uses it)."""
    return re.compile(pattern, re.DOTALL | re.IGNORECASE)


def extract(text: str, config: ClassifyConfig) -> tuple[str, bool]:
    """``(answer, marked)``: group 1 of the last ``answer_pattern`` match, else the whole text (unmarked)."""
    if config.answer_pattern:
        matches = list(answer_regex(config.answer_pattern).finditer(text))
        if matches:
            last = matches[-1]
            value = last.group(1) if last.re.groups else last.group(0)
            return (value or "").strip(), True
    return text.strip(), False


def check(text: str, expected: Any, config: ClassifyConfig) -> AnswerCheck:
    """Extract the answer from ``text`` (a final message or a replayed output) and compare it with ``expected``."""
    answer, marked = extract(text, config)
    return AnswerCheck(answer=answer, marked=marked, match=answers_match(answer, expected, config))


# --- normalisation ------------------------------------------------------------------


def normalize(text: str, steps: Iterable[str]) -> str:
    """``text`` after the named steps, in order: strip, lower, collapse_whitespace, strip_punctuation."""
    for step in steps:
        if step == "strip":
            text = text.strip()
        elif step == "lower":
            text = text.lower()
        elif step == "collapse_whitespace":
            text = " ".join(text.split())
        elif step == "strip_punctuation":
            text = text.translate(str.maketrans("", "", string.punctuation)).strip()
    return text


def comparison_form(text: str) -> str:
    """Strip, lower-case and collapse whitespace: the form the exact/contains scorers compare."""
    return normalize(str(text), ["strip", "lower", "collapse_whitespace"])


# --- comparison ---------------------------------------------------------------------

_NUMBER = re.compile(r"[-+−]?(?:\d{1,3}(?:,\d{3})+|\d+)?(?:\.\d+)?(?:[eE][-+]?\d+)?%?")
_NUMBER_IN_TEXT = re.compile(r"(?<![\w.])[-+−]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?:[eE][-+]?\d+)?%?(?![\w])")
_OPTION = re.compile(r"^\s*\(?([a-z])\s*(?:\)|\.(?:\s|$)|:|$)", re.IGNORECASE)
_TRUE_WORDS = {"true", "yes", "correct", "y"}
_FALSE_WORDS = {"false", "no", "incorrect", "n"}


def _parse_number(text: str) -> float | None:
    """The number a short answer states (``"1,050"``, ``"$12.50"``, ``"25%"`` -> 0.25), else None."""
    cleaned = text.strip().strip("$€£ ").replace("−", "-")
    if not cleaned or not _NUMBER.fullmatch(cleaned) or not any(c.isdigit() for c in cleaned):
        return None
    percent = cleaned.endswith("%")
    value = float(cleaned.rstrip("%").replace(",", ""))
    if not math.isfinite(value):
        return None
    return value / 100 if percent else value


def _numbers_in(text: str) -> list[float]:
    values: list[float] = []
    for match in _NUMBER_IN_TEXT.finditer(text):
        parsed = _parse_number(match.group(0))
        if parsed is not None:
            values.append(parsed)
            if match.group(0).endswith("%"):
                values.append(parsed * 100)  # "25%" answers both 0.25 and 25
    return values


def _close(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=NUMERIC_REL_TOL, abs_tol=1e-9)


def _parse_structured(text: str) -> Any:
    """JSON (or a Python literal such as ``[1, 2]``/``{'a': 1}``) inside ``text``, or None."""
    candidate = text.strip()
    if (body := fenced_body(candidate)) is not None:
        candidate = body
    for parse in (json.loads, ast.literal_eval):
        try:
            return parse(candidate)
        except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
            continue
    return None


def parse_json_document(text: str) -> Any:
    """The JSON document in ``text`` (whole, fenced, or first bracket to last), else :data:`NOT_JSON`."""
    candidates = [text.strip()]
    if (body := fenced_body(text)) is not None:
        candidates.append(body)
    # From the first opening bracket to the last closing one (found by index: a regex here is quadratic).
    opens = [i for i in (text.find("["), text.find("{")) if i >= 0]
    close = max(text.rfind("]"), text.rfind("}"))
    if opens and close > min(opens):
        candidates.append(text[min(opens) : close + 1])
    for candidate in candidates:
        try:
            return json.loads(candidate)
        except (ValueError, RecursionError):
            continue
    return NOT_JSON


def _items_match(answer_items: Sequence[Any], expected_items: Sequence[Any], config: ClassifyConfig) -> bool:
    if len(answer_items) != len(expected_items):
        return False
    if all(_value_matches(a, e, config) for a, e in zip(answer_items, expected_items)):
        return True
    remaining = list(answer_items)  # same items in another order: a set answered as a list
    for expected in expected_items:
        hit = next((i for i, a in enumerate(remaining) if _value_matches(a, expected, config)), None)
        if hit is None:
            return False
        remaining.pop(hit)
    return True


def _value_matches(answer: Any, expected: Any, config: ClassifyConfig) -> bool:
    _spend_step()
    verdict = _answers_match(answer if isinstance(answer, str) else canonical_json(answer), expected, config)
    if verdict is None and not isinstance(answer, str):
        return answer == expected
    return bool(verdict)


#: A reference nested deeper than this is not an answer a rule can compare (a rubric scorer can).
MAX_COMPARE_DEPTH = 16
#: Item comparisons one reference may cost: lists are matched in any order, so without a cap the
#: time doubles with every level of nesting (a 209-byte record held ingest for hours).
MAX_COMPARE_STEPS = 1000
_STEPS_LEFT: ContextVar[list[int] | None] = ContextVar("nightloop_compare_steps", default=None)


class _OverBudget(Exception):
    """A comparison took more than :data:`MAX_COMPARE_STEPS` steps: the rules can't tell."""


def _spend_step() -> None:
    left = _STEPS_LEFT.get()
    if left is not None:
        left[0] -= 1
        if left[0] < 0:
            raise _OverBudget


def answers_match(answer: str, expected: Any, config: ClassifyConfig) -> bool | None:
    """Whether the extracted ``answer`` states the reference ``expected``; None when rules can't tell.

    The work is bounded: a reference nested deeper than :data:`MAX_COMPARE_DEPTH` levels, or one whose
    comparison takes more than :data:`MAX_COMPARE_STEPS` steps, is left to a rubric scorer (None).
    """
    if _nesting(expected) > MAX_COMPARE_DEPTH:
        return None
    token = _STEPS_LEFT.set([MAX_COMPARE_STEPS])
    try:
        return _answers_match(answer, expected, config)
    except _OverBudget:
        return None
    finally:
        _STEPS_LEFT.reset(token)


def _nesting(value: Any) -> int:
    """How many levels of lists/dicts ``value`` has (counted without recursion, stopping past the cap)."""
    deepest, stack = 0, [(value, 0)]
    while stack and deepest <= MAX_COMPARE_DEPTH:
        item, depth = stack.pop()
        children = item.values() if isinstance(item, dict) else item if isinstance(item, (list, tuple, set)) else None
        if children is None:
            continue
        deepest = max(deepest, depth + 1)
        stack.extend((child, depth + 1) for child in children)
    return deepest


def _split_items(text: str) -> list[str]:
    inner = text.strip().strip("[](){}")
    return [part.strip().strip("'\"") for part in re.split(r",|;|\band\b", inner) if part.strip()]


def _answers_match(answer: str, expected: Any, config: ClassifyConfig) -> bool | None:
    """Whether the extracted ``answer`` states the reference ``expected``; None when rules can't tell."""
    if expected is None:
        return None
    if isinstance(expected, bool):
        word = normalize(answer, ["strip", "lower", "strip_punctuation"])
        if word in _TRUE_WORDS | _FALSE_WORDS:
            return (word in _TRUE_WORDS) == expected
        return None
    if isinstance(expected, (int, float)):
        return _number_matches(answer, float(expected)) if math.isfinite(expected) else None
    if isinstance(expected, (list, tuple, set)):
        parsed = _parse_structured(answer)
        items = list(parsed) if isinstance(parsed, (list, tuple, set)) else _split_items(answer)
        return _items_match(items, list(expected), config)
    if isinstance(expected, dict):
        parsed = parse_json_document(answer)
        if parsed is NOT_JSON:
            parsed = _parse_structured(answer)
        return isinstance(parsed, dict) and canonical_json(parsed) == canonical_json(expected)
    return _text_matches(answer, str(expected), config)


def _number_matches(answer: str, expected: float) -> bool:
    stated = _parse_number(answer)
    if stated is not None:
        return _close(stated, expected)
    # A sentence around the number ("The total is 4000.") still states it.
    return any(_close(value, expected) for value in _numbers_in(answer))


def _text_matches(answer: str, expected: str, config: ClassifyConfig) -> bool | None:
    if "\n" in expected.strip() or len(expected) > MAX_COMPARABLE_REFERENCE:
        return None
    if not expected.strip():
        return None
    number = _parse_number(expected)
    if number is not None:
        return _number_matches(answer, number)
    if expected.strip().lower() in {"true", "false"}:
        return _answers_match(answer, expected.strip().lower() == "true", config)
    if expected.strip().startswith(("[", "(", "{")):
        parsed = _parse_structured(expected)
        if isinstance(parsed, (list, tuple)):
            return _answers_match(answer, list(parsed), config)
        if isinstance(parsed, dict):
            return _answers_match(answer, parsed, config)
    steps = list(config.normalize)
    want, got = normalize(expected, steps), normalize(answer, steps)
    if want == got:
        return True
    if len(want) == 1 and want.isalpha():  # a multiple-choice letter
        option = _OPTION.match(got)
        return option.group(1).lower() == want.lower() if option else None
    if want and len(want) <= SHORT_REFERENCE_CHARS and re.search(rf"(?<!\w){re.escape(want)}(?!\w)", got):
        return True
    loose = ["strip", "lower", "collapse_whitespace", "strip_punctuation"]
    return normalize(expected, loose) == normalize(answer, loose)
