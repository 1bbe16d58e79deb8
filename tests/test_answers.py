"""One definition of a correct answer: the classifier (wrong_output) and the reference scorer decide alike.

Each pair is a reference answer and what the agent said. The classifier sees it as a production
conversation; the scorer sees it as a replayed answer to a case with that reference. Where both decide,
they must agree (the first four pairs are the issue's, where they used to disagree).
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from nightloop import answers
from nightloop.classify import classify_conversation, reference_verdict
from nightloop.config import ClassifyConfig
from nightloop.models import Conversation, Expectation, Message, ReplayCase
from nightloop.score import Scoring

CONFIG = ClassifyConfig()

#: (expected, agent's answer text, correct?) — None: rules can't tell (left to a rubric).
PAIRS: list[tuple[Any, str, bool | None]] = [
    (True, "yes", True),
    ("25%", "0.25", True),
    ([1, 2], "1, 2", True),
    ("4000", "The total is 4,000.", True),
    ("11.0", "<thought>sum it</thought> The answer is <solution> 11 </solution>", True),
    (11.0, "<solution> 12 </solution>", False),
    ("0.4295", "0.430", True),
    ("40", "38", False),
    (1050, "1,050", True),
    (0.25, "25%", True),
    ([1, 2], "[2, 1]", True),
    ("[3, 2]", "[3, 3]", False),
    ("c", "C) 18107", True),
    ("b", "D) February 10th", False),
    (False, "False", True),
    ("False", "True", False),
    ("george harrison", "<solution>George Harrison</solution>", True),
    ("wilmette", "Wilmette, Illinois", True),
    ("robert erskine childers", "Henry Roth", False),
    ("42", "The answer is 1424", False),
    ('{"order_number": "42", "eta": "2026-12-03"}', 'Sure: {"eta": "2026-12-03", "order_number": "42"}', True),
    ({"order_number": "42", "eta": "x"}, '{"order_number": "42"}', False),
    ("€12.50", "The lamp costs €12.50 today.", True),
    ("€12.50", "The lamp costs $13.60 today.", False),
    ("assert f() == 1\nassert f(0) == 1", "<solution>def f(): return 2</solution>", None),
]


def conversation(expected: Any, answer: str) -> Conversation:
    return Conversation(
        id="c1",
        messages=[Message(role="user", content="the task"), Message(role="assistant", content=answer)],
        outcome={"expected": expected},
    )


def scored(expected: Any, answer: str) -> bool:
    case = ReplayCase(
        id="c1@1",
        prompt_name="p",
        messages=[Message(role="user", content="the task")],
        expectation=Expectation(kind="reference", value=expected),
        origin="c1#wrong_output@1",
    )
    result = asyncio.run(Scoring(rules=CONFIG).score(case, answer, tool_calls=0))
    assert result.error is None, result.reason
    return result.passed


@pytest.mark.parametrize(("expected", "answer", "correct"), PAIRS, ids=[f"{e!r}|{a!r}" for e, a, _ in PAIRS])
def test_classifier_and_scorer_agree(expected: Any, answer: str, correct: bool | None) -> None:
    c = conversation(expected, answer)
    assert reference_verdict(c, CONFIG) is correct
    flagged = any(f.kind == "wrong_output" for f in classify_conversation(c, CONFIG))
    assert flagged is (correct is False)
    if correct is not None:
        assert scored(expected, answer) is correct


def test_a_reference_the_rules_cannot_compare_must_be_equal_for_the_scorer() -> None:
    suite = "assert f() == 1\nassert f(0) == 1"
    assert not scored(suite, "def f(): return 2")
    assert scored(suite, f"<solution>{suite}</solution>")


def test_the_answer_pattern_is_the_prompts_own() -> None:
    rules = ClassifyConfig(answer_pattern=r"ANSWER:\s*(\S+)")
    assert answers.check("I think 7. ANSWER: 8", 8, rules).match is True
    assert answers.check("I think 7. ANSWER: 8", 7, rules).match is False
    assert answers.check("<solution> 8 </solution>", 8, rules) == answers.AnswerCheck("<solution> 8 </solution>", False, True)


def test_the_final_answer_is_the_last_assistant_text_without_tool_calls() -> None:
    messages = [
        Message(role="user", content="q"),
        Message(role="assistant", content="first"),
        Message(role="assistant", content="calling", tool_calls=[{"id": "t", "function": {"name": "f"}}]),
        Message(role="tool", tool_call_id="t", content="{}"),
    ]
    assert answers.final_answer_index(messages) == 1
    assert answers.final_answer_index(messages[:1]) is None
