"""The sim scorers: a rubric scorer and a pairwise scorer that judge answers with the behaviour checkers.

They parse what a scorer prompt usually contains (the rubric or quoted correction, the conversation, the
answer(s)) leniently: tagged blocks first, then ``Answer:``-style headings, then the last message.
"""

from __future__ import annotations

import re

from nightloop.llm.sim.agent import Situation, recover_situation
from nightloop.llm.sim.behaviours import BEHAVIOURS, Context, behaviours_in_text, check, read_prompt
from nightloop.models import PairwiseVerdict, RubricVerdict

__all__ = ["pairwise_reply", "rubric_reply", "scoring_context"]

_ANSWER_TAGS = ("answer", "output", "response", "candidate_answer", "assistant_answer", "final_answer", "candidate")
_RUBRIC_TAGS = ("rubric", "criteria", "criterion", "expectation")
_LANGUAGE_NAMES = {"de": r"german|deutsch", "fr": r"french|français", "es": r"spanish|español"}
_ORDER_RE = re.compile(r"#\s?(\d{4,8})")
#: Judged from the transcript (tool calls), not from an answer's text.
_UNCHECKABLE = frozenset({"tool_discipline"})


def _tagged(text: str, tags: tuple[str, ...]) -> str | None:
    for tag in tags:
        if match := re.search(rf"<{tag}(?:\s[^>]*)?>\s*(.*?)\s*</{tag}>", text, re.DOTALL | re.IGNORECASE):
            return match.group(1)
    return None


def _headed(text: str, heading: str) -> str | None:
    """The block after a ``Heading:`` line, up to the next heading or the end."""
    match = re.search(rf"(?:^|\n)\s*\**{heading}\**\s*:\s*(.*?)(?=\n\s*\**[A-Z][\w ]{{0,30}}\**\s*:\s|\Z)", text, re.DOTALL | re.IGNORECASE)
    return match.group(1).strip() if match else None


def _strip_quotes(text: str) -> str:
    text = text.strip()
    if text.startswith("```") and text.endswith("```"):
        text = re.sub(r"^```\w*\n?|\n?```$", "", text)
    return text.strip()


def scoring_context(text: str, targets: set[str], situation: Situation | None = None) -> Context:
    """What the checkers need: the customer's request understood like the agent does, refined by the rubric text."""
    base = situation.context() if situation else Context()
    low = text.lower()
    language = base.language
    for lang, names in _LANGUAGE_NAMES.items():
        if re.search(rf"(?:in|auf|en)\s+(?:{names})", low):
            language = lang
    order = _ORDER_RE.search(text)
    return Context(
        language=language,
        order_number=base.order_number or (order.group(1) if order else None),
        shop=None,
        escalation_needed=base.escalation_needed or "refund_escalation" in targets,
        expected_json=base.expected_json,
    )


def _situation(text: str) -> Situation | None:
    request = _tagged(text, ("request",))
    if not request:
        return None
    situation = recover_situation("", request)
    return None if situation.kind == "general" else situation


def _targets(rubric: str) -> set[str]:
    targets = set(behaviours_in_text(rubric)) | set(read_prompt(rubric).instructed)
    low = rubric.lower()
    targets |= {b.name for b in BEHAVIOURS if b.name in low or b.summary in low}
    return targets - _UNCHECKABLE


def _applicable(answer: str, ctx: Context, situation: Situation | None) -> list[str]:
    """Every behaviour that can be checked for this request (all the rubric-less scorers can do)."""
    if situation is not None:
        return sorted(situation.needs - _UNCHECKABLE)
    names = ["currency_eur", "word_limit"]
    if ctx.order_number:
        names.append("order_number")
    if ctx.language:
        names.append("language")
    if answer.lstrip().startswith("{"):
        names.append("json_api")
    return names


def rubric_reply(text: str) -> RubricVerdict:
    answer = _strip_quotes(_tagged(text, _ANSWER_TAGS) or _headed(text, "answer") or _headed(text, "response") or "")
    if not answer:
        return RubricVerdict(passed=False, score=0.0, reason="[simulated scorer] no answer to score")
    rest = text.replace(answer, "")
    rubric = _tagged(rest, _RUBRIC_TAGS) or _headed(rest, "rubric") or rest
    situation = _situation(rest)
    targets = _targets(rubric)
    ctx = scoring_context(rubric, targets, situation)
    names = sorted(targets) or _applicable(answer, ctx, situation)
    results = {name: check(name, answer, ctx) for name in names}
    failed = [n for n, ok in results.items() if not ok]
    score = sum(results.values()) / len(results) if results else 1.0
    reason = "fails: " + ", ".join(failed) if failed else "satisfies: " + (", ".join(names) or "nothing checkable")
    return RubricVerdict(passed=not failed, score=round(score, 3), reason=f"[simulated scorer] {reason}")


def _pair(text: str) -> tuple[str, str] | None:
    for a_tag, b_tag in (("answer_a", "answer_b"), ("response_a", "response_b"), ("a", "b"), ("output_a", "output_b")):
        a, b = _tagged(text, (a_tag,)), _tagged(text, (b_tag,))
        if a is not None and b is not None:
            return _strip_quotes(a), _strip_quotes(b)
    for heading in ("answer", "response", "output"):
        a, b = _headed(text, f"{heading} a"), _headed(text, f"{heading} b")
        if a is not None and b is not None:
            return _strip_quotes(a), _strip_quotes(b)
    return None


def _pair_checks(a: str, b: str, ctx: Context, situation: Situation | None) -> set[str]:
    """One set of checks for both answers, so each is held to the same standard.

    The request says what a good answer needs when it is known (an API lookup needs the JSON, not a greeting);
    otherwise every check that applies to either answer, with politeness unless the exchange is an API one.
    """
    if situation is not None:
        return set(situation.needs - _UNCHECKABLE) or {"politeness"}
    names = set(_applicable(a, ctx, None)) | set(_applicable(b, ctx, None))
    return names if "json_api" in names else names | {"politeness"}


def pairwise_reply(text: str) -> PairwiseVerdict:
    pair = _pair(text)
    if pair is None:
        return PairwiseVerdict(winner="tie", reason="[simulated scorer] could not find answers A and B")
    a, b = pair
    rest = text.replace(a, "").replace(b, "")
    situation = _situation(rest)
    ctx = scoring_context("", set(), situation)
    names = _pair_checks(a, b, ctx, situation)
    score_a, score_b = (sum(check(n, answer, ctx) for n in names) for answer in (a, b))
    winner = "A" if score_a > score_b else "B" if score_b > score_a else "tie"
    return PairwiseVerdict(winner=winner, reason=f"[simulated scorer] A passes {score_a} checks, B passes {score_b}")
