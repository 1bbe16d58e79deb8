"""Failure detectors on small hand-written conversations, plus the benchmark figure on the real MINT data."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from nightloop.answers import answers_match
from nightloop.classify import (
    DETECTORS,
    RECOVERED_CONFIDENCE,
    Detector,
    classify_conversation,
    classify_many,
    excerpt,
    make_detectors,
    tool_result_error,
)
from nightloop.config import ClassifyConfig
from nightloop.models import Conversation, Failure

CONFIG = ClassifyConfig()
MINT_SYSTEM = "Solve the task. When you are ready, answer with <solution> YOUR_SOLUTION_HERE </solution>."


def conv(*messages: dict[str, Any] | tuple[str, str | None], id: str = "c1", **outcome: Any) -> Conversation:
    """A conversation from ``(role, content)`` pairs or full message dicts."""
    built = [m if isinstance(m, dict) else {"role": m[0], "content": m[1]} for m in messages]
    return Conversation(id=id, messages=built, outcome=outcome)


def call(call_id: str, name: str, arguments: dict[str, Any], content: str | None = None) -> dict[str, Any]:
    function = {"name": name, "arguments": json.dumps(arguments)}
    return {"role": "assistant", "content": content, "tool_calls": [{"id": call_id, "type": "function", "function": function}]}


def tool(call_id: str, content: str | None) -> dict[str, Any]:
    return {"role": "tool", "tool_call_id": call_id, "content": content}


def detect(name: str, conversation: Conversation, config: ClassifyConfig = CONFIG) -> list[Failure]:
    return DETECTORS[name]().detect(conversation, config)


def corrections(*exchange: tuple[str, str]) -> list[Failure]:
    return detect("user_correction", conv(("system", "You are a shop assistant."), *exchange))


# --- registry and protocol ---


def test_every_registered_detector_satisfies_the_protocol_and_carries_its_name() -> None:
    for name, detector in zip(DETECTORS, make_detectors()):
        assert isinstance(detector, Detector)
        assert detector.name == name


def test_unknown_detector_name_lists_the_valid_ones() -> None:
    with pytest.raises(ValueError) as raised:
        make_detectors(["timeout", "vibes"])
    message = str(raised.value)
    assert "vibes" in message
    assert all(name in message for name in DETECTORS)


def test_make_detectors_picks_by_name_in_order() -> None:
    assert [d.name for d in make_detectors(["tool_error", "timeout"])] == ["tool_error", "timeout"]


def test_a_broken_answer_pattern_is_refused_when_the_config_is_built() -> None:
    with pytest.raises(ValueError, match="answer_pattern"):
        ClassifyConfig(answer_pattern="<solution>(.*")


# --- timeout ---


def test_timeout_status_is_reported_at_the_last_turn() -> None:
    c = conv(("user", "where is my order?"), ("assistant", "Let me check."), status="timeout")
    [failure] = detect("timeout", c)
    assert (failure.kind, failure.turn, failure.detector, failure.confidence) == ("timeout", 1, "timeout", 1.0)
    assert "timeout" in failure.evidence


def test_latency_and_turn_budgets() -> None:
    c = conv(("user", "hi"), ("assistant", "a"), ("user", "more"), ("assistant", "b"), latency_ms=9000)
    config = ClassifyConfig(max_latency_ms=5000, max_turns=1)
    found = detect("timeout", c, config)
    assert any("9000 ms > budget 5000 ms" in f.evidence for f in found)
    over = [f for f in found if "assistant turns" in f.evidence]
    assert over and over[0].turn == 3
    assert detect("timeout", c, ClassifyConfig(max_latency_ms=10_000, max_turns=2)) == []


def test_loop_of_identical_tool_calls_is_a_timeout_at_the_call_that_reaches_the_limit() -> None:
    messages: list[Any] = [("user", "where is order 42?")]
    for i in range(3):
        messages += [call(f"t{i}", "lookup_order", {"order_number": "42"}), tool(f"t{i}", '{"status": "processing"}')]
    [failure] = detect("timeout", conv(*messages))
    assert failure.turn == 5
    assert "lookup_order" in failure.evidence and "3 times" in failure.evidence


def test_argument_key_order_does_not_hide_a_loop_but_different_arguments_are_no_loop() -> None:
    same = [
        call("a", "search", {"q": "x", "page": 1}),
        {"role": "assistant", "content": None, "tool_calls": [{"id": "b", "function": {"name": "search", "arguments": '{"page": 1, "q": "x"}'}}]},
        call("c", "search", {"q": "x", "page": 1}),
    ]
    assert len(detect("timeout", conv(("user", "find x"), *same))) == 1
    different = [call(str(i), "search", {"q": "x", "page": i}) for i in range(3)]
    assert detect("timeout", conv(("user", "find x"), *different)) == []
    two = [call(str(i), "search", {"q": "x"}) for i in range(2)]
    assert detect("timeout", conv(("user", "find x"), *two)) == []


# --- user_correction ---


@pytest.mark.parametrize(
    "reply",
    [
        "No, I asked for the price in euros",
        "That's not my order number",
        "Please answer in German",
        "I meant order 4711, not 4710.",
        "that's not what I wanted at all",
        "This is wrong, the total should be lower.",
        "You're wrong, it was delivered yesterday.",
        "No, the parcel goes to Austria, not Germany.",
        "Nein, ich habe nach dem Preis in Euro gefragt.",
        "Ce n'est pas ma commande.",
        # What the simulated shop customer says (llm/sim/behaviours.py), in each language.
        "No, please answer in German! Bitte antworten Sie auf Deutsch.",
        "Nein, ich wollte den Preis in Euro, nicht in Dollar.",
        "Non, je voulais le prix en euros, pas en dollars.",
        "No, quería el precio en euros, no en dólares.",
        "That's not what I asked, which order is this about? I asked about order #4711.",
        "Das habe ich nicht gefragt, um welche Bestellung geht es? Ich meinte die Bestellung #4711.",
        "Ce n'est pas ce que j'ai demandé, de quelle commande parlez-vous ?",
        "No es lo que pregunté, ¿de qué pedido habla?",
        "No, I don't want a voucher. I asked for a refund of €120, please pass this to a human.",
        "That's way too long, I didn't ask for an essay. Just answer my question.",
        "Das ist viel zu lang, ich wollte keinen Aufsatz.",
        "C'est beaucoup trop long, je n'ai pas demandé une dissertation.",
        "Es demasiado largo, no pedí una redacción.",
    ],
)
def test_corrections_after_an_answer_are_found(reply: str) -> None:
    [failure] = corrections(("user", "How much is the lamp?"), ("assistant", "The lamp costs $25.00."), ("user", reply))
    assert (failure.kind, failure.turn, failure.detector) == ("user_correction", 3, "user_correction")
    assert 0.5 <= failure.confidence <= 1.0
    assert failure.evidence and failure.evidence.strip("…") in " ".join(reply.split())


@pytest.mark.parametrize(
    ("assistant", "reply"),
    [
        ("Your order ships tomorrow.", "No problem, thanks!"),
        ("Your order ships tomorrow.", "no thanks, that's all"),
        ("Is there anything else I can help with?", "No."),
        ("Was the reservation made within the last 24 hours?", "No, it wasn't made in the last 24 hours, and I don't have insurance."),
        ("Please provide your user ID and the reason.", "No, I don't have it with me but my name is Sofia."),
        ("Your order ships tomorrow.", "Great, thank you."),
        ("Done: I changed the booking.", "Sorry, I gave you the wrong date earlier, can it be the 27th?"),
    ],
)
def test_neutral_user_turns_are_not_corrections(assistant: str, reply: str) -> None:
    assert corrections(("user", "Can you help with my booking?"), ("assistant", assistant), ("user", reply)) == []


def test_a_first_message_or_a_reply_to_a_tool_step_is_not_a_correction() -> None:
    assert corrections(("user", "My last order was wrong, what can I do?")) == []
    c = conv(("user", "where is 42?"), call("t", "lookup", {"n": 42}), tool("t", "wrong id"), ("user", "That's wrong!"))
    assert detect("user_correction", c) == []


def test_repeated_request_after_an_answer_is_a_correction() -> None:
    found = corrections(
        ("user", "What is the delivery time to Spain for the blue sofa?"),
        ("assistant", "Our sofas are made of oak and come in four colours."),
        ("user", "What is the delivery time to Spain for the blue sofa??"),
    )
    assert [(f.turn, f.confidence) for f in found] == [(3, 0.6)]
    assert found[0].evidence.startswith("repeated request")


def test_mint_expert_feedback_counts_only_after_a_proposed_solution() -> None:
    c = conv(
        ("system", MINT_SYSTEM),
        ("user", "Task: what is 6 * 7?"),
        ("assistant", "<execute>print(6 * 8)</execute>"),
        ("user", "Observation:\n48\nExpert feedback:\nThis is BAD. You multiplied the wrong numbers."),
        ("assistant", "The answer is <solution> 48 </solution>"),
        ("user", "Observation:\nYour answer is wrong.\nYou have 1 chances to propose solution left."),
        ("assistant", "<solution> 42 </solution>"),
    )
    [failure] = detect("user_correction", c)
    assert failure.turn == 5 and failure.confidence == 0.95
    assert "Your answer is wrong" in failure.evidence


def test_a_correction_the_agent_recovered_from_is_kept_with_lower_confidence() -> None:
    c = conv(
        ("system", MINT_SYSTEM),
        ("user", "Task: what is 6 * 7?"),
        ("assistant", "<solution> 48 </solution>"),
        ("user", "Observation:\nYour answer is wrong."),
        ("assistant", "<solution> 42 </solution>"),
        expected="42",
    )
    [failure] = detect("user_correction", c)
    assert failure.turn == 3 and failure.confidence == RECOVERED_CONFIDENCE
    assert failure.evidence.startswith("(recovered later)")
    assert detect("wrong_output", c) == []


def test_thumbs_down_feedback_is_a_user_correction_with_the_feedback_as_evidence() -> None:
    c = conv(("user", "price?"), ("assistant", "It costs $25."), feedback={"score": 0.0, "comment": "thumbs down"})
    [failure] = detect("user_correction", c)
    assert failure.turn == 1 and "thumbs down" in failure.evidence
    assert detect("wrong_output", c) == []  # reported once, as the person's verdict


# --- wrong_output ---


def test_final_answer_differs_from_expected() -> None:
    c = conv(("user", "6*7?"), ("assistant", "<solution> 41 </solution>"), expected="42")
    [failure] = detect("wrong_output", c)
    assert (failure.kind, failure.turn, failure.confidence) == ("wrong_output", 1, 0.9)
    assert '"41"' in failure.evidence and '"42"' in failure.evidence
    assert detect("wrong_output", conv(("user", "6*7?"), ("assistant", "<solution> 42 </solution>"), expected="42")) == []


@pytest.mark.parametrize(
    ("answer", "expected", "verdict"),
    [
        ("0.430", "0.4295", True),
        ("38", "40", False),
        ("1,050", 1050, True),
        ("25%", 0.25, True),
        ("The total number of chairs is 4000.", "4000", True),
        ("[2, 1]", [1, 2], True),
        ("[3, 3]", "[3, 2]", False),
        ("1, 2 and 3", [1, 2, 3], True),
        ("C) 18107", "c", True),
        ("D) February 10th", "b", False),
        ("-49", "a", None),
        ("Yes", "yes", True),
        ("False", False, True),
        ("True", "False", False),
        ("George Harrison", "george harrison", True),
        ("Wilmette, Illinois", "wilmette", True),
        ("Henry Roth", "robert erskine childers", False),
        ("int(exit_C)", "280", False),
        ('Sure: {"eta": "2026-12-03", "order_number": "42"}', '{"order_number": "42", "eta": "2026-12-03"}', True),
        ('{"order_number": "42"}', {"order_number": "42", "eta": "x"}, False),
        ("def f(): pass", "def f():\n    return 1\n", None),
        ("anything", None, None),
    ],
)
def test_answers_match(answer: str, expected: Any, verdict: bool | None) -> None:
    assert answers_match(answer, expected, CONFIG) is verdict


def test_without_the_answer_mark_the_whole_final_message_is_the_answer() -> None:
    ok = conv(("user", "price?"), ("assistant", "The lamp costs €12.50 today."), expected="€12.50")
    assert detect("wrong_output", ok) == []
    wrong = conv(("user", "price?"), ("assistant", "The lamp costs $13.60 today."), expected="€12.50")
    [failure] = detect("wrong_output", wrong)
    assert failure.confidence == 0.6  # less sure without an answer mark


def test_multi_line_references_are_left_to_a_rubric() -> None:
    c = conv(("user", "write f"), ("assistant", "<solution>def f(): return 2</solution>"), expected="assert f() == 1\nassert f(0) == 1")
    assert detect("wrong_output", c) == []


def test_json_schema_violations_are_format_failures() -> None:
    schema = {"type": "object", "required": ["order_number"], "properties": {"order_number": {"type": "string"}}}
    config = ClassifyConfig(json_schema=schema)
    bad = conv(("user", "status?"), ("assistant", '```json\n{"order_number": 42}\n```'))
    [failure] = detect("wrong_output", bad, config)
    assert (failure.kind, failure.detector) == ("format", "wrong_output")
    assert "order_number" in failure.evidence
    prose = conv(("user", "status?"), ("assistant", "It is on its way."))
    assert "not JSON" in detect("wrong_output", prose, config)[0].evidence
    good = conv(("user", "status?"), ("assistant", '{"order_number": "42"}'))
    assert detect("wrong_output", good, config) == []


def test_low_feedback_score_is_a_wrong_output_and_a_good_one_is_not() -> None:
    low = conv(("user", "book it"), ("assistant", "Booked."), feedback={"score": 0.0, "comment": "task reward"})
    [failure] = detect("wrong_output", low)
    assert failure.turn == 1 and "score 0" in failure.evidence and "task reward" in failure.evidence
    high = conv(("user", "book it"), ("assistant", "Booked."), feedback={"score": 1.0})
    assert detect("wrong_output", high) == []


# --- tool_error and harness_error ---


@pytest.mark.parametrize(
    ("content", "is_error"),
    [
        ('{"error": "order not found"}', True),
        ('{"status": "error", "message": "timeout"}', True),
        ('{"success": false}', True),
        ("Error: not enough seats on flight HAT229", True),
        ("Traceback (most recent call last):\n  File x\nValueError: bad", True),
        ("KeyError: 'id'", True),
        ('{"error": null, "status": "processing"}', False),
        ('{"errors": [], "items": [1]}', False),
        ('[{"error_rate": 0.1}]', False),
        ("No errors found in the log.", False),
        ("The error rate is 2% this week.", False),
        ("", False),
        (None, False),
    ],
)
def test_tool_result_error(content: str | None, is_error: bool) -> None:
    assert (tool_result_error(content) is not None) is is_error


def test_tool_error_names_the_tool_and_quotes_the_result() -> None:
    c = conv(("user", "where is 42?"), call("t1", "lookup_order", {"n": 42}), tool("t1", '{"error": "order not found"}'))
    [failure] = detect("tool_error", c)
    assert (failure.kind, failure.turn, failure.confidence) == ("tool_error", 2, 0.9)
    assert failure.evidence.startswith("lookup_order returned:") and "order not found" in failure.evidence


def test_harness_error_quotes_the_last_line_of_the_error() -> None:
    c = conv(("user", "hi"), status="error", error="Traceback (most recent call last):\n  File a\nInvalidRequestError: context too long")
    [failure] = detect("harness_error", c)
    assert (failure.kind, failure.detector, failure.turn) == ("tool_error", "harness_error", 0)
    assert "InvalidRequestError: context too long" in failure.evidence
    assert detect("harness_error", conv(("user", "hi"))) == []


# --- classify_conversation / classify_many ---


def test_sim_style_conversation_finds_correction_loop_and_thumbs_down() -> None:
    messages: list[Any] = [("system", "You help shoppers."), ("user", "How much does the lamp cost?"), ("assistant", "The lamp costs $25.00.")]
    messages += [("user", "No, I asked for the price in euros")]
    for i in range(3):
        messages += [call(f"t{i}", "lookup_order", {"order_number": "7"}), tool(f"t{i}", '{"status": "processing"}')]
    c = conv(*messages, status="timeout", feedback={"score": 0.0, "comment": "thumbs down"})
    found = classify_conversation(c, CONFIG)
    assert {f.kind for f in found} == {"user_correction", "timeout"}
    assert [f.turn for f in found] == sorted(f.turn for f in found)
    assert len({f.id for f in found}) == len(found)
    assert all(len(f.evidence) <= 300 and 0 <= f.confidence <= 1 for f in found)


def test_a_failing_detector_is_skipped_and_the_others_still_run() -> None:
    class Broken:
        name = "broken"

        def detect(self, conversation: Conversation, config: ClassifyConfig) -> list[Failure]:
            raise RuntimeError("boom")

    c = conv(("user", "hi"), ("assistant", "hello"), status="timeout")
    found = classify_conversation(c, CONFIG, [Broken(), *make_detectors(["timeout"])])
    assert [f.kind for f in found] == ["timeout"]


def test_the_most_confident_failure_wins_a_shared_id() -> None:
    class Fixed:
        def __init__(self, name: str, confidence: float) -> None:
            self.name, self.confidence = name, confidence

        def detect(self, conversation: Conversation, config: ClassifyConfig) -> list[Failure]:
            return [Failure(conversation_id=conversation.id, kind="refusal", turn=1, detector=self.name, confidence=self.confidence)]

    [kept] = classify_conversation(conv(("user", "x"), ("assistant", "no")), CONFIG, [Fixed("a", 0.3), Fixed("b", 0.7)])
    assert kept.detector == "b"


def test_classify_many_keys_every_conversation_by_id() -> None:
    good = conv(("user", "hi"), ("assistant", "hello"), id="good")
    bad = conv(("user", "hi"), ("assistant", "hello"), id="bad", status="timeout")
    result = classify_many([good, bad], CONFIG)
    assert result["good"] == [] and [f.kind for f in result["bad"]] == ["timeout"]


@pytest.mark.parametrize(
    "messages",
    [
        [("user", "")],
        [("user", None), ("assistant", None)],
        [("assistant", "")],
        [tool("x", None)],
        [tool("x", "Error: nothing here")],
        [call("a", "f", {}), call("b", "f", {}), call("c", "f", {})],
        [{"role": "assistant", "content": None, "tool_calls": [{"function": {"name": "f", "arguments": "not json"}}]}],
    ],
)
def test_odd_conversations_never_crash(messages: list[Any]) -> None:
    c = conv(*messages, expected="42", feedback={"score": None, "comment": None})
    config = ClassifyConfig(json_schema={"type": "object"}, max_turns=0, max_latency_ms=0)
    # Each detector on its own: classify_conversation's catch-all would hide a detector that crashes.
    for detector in make_detectors():
        assert all(isinstance(f, Failure) for f in detector.detect(c, config)), detector


def test_a_timed_out_conversation_with_non_json_tool_arguments_is_still_a_timeout() -> None:
    c = conv({"role": "assistant", "content": None, "tool_calls": [{"function": {"name": "f", "arguments": "not json"}}]},
             ("assistant", None), status="timeout")
    assert "timeout" in [f.kind for f in classify_conversation(c, CONFIG)]


def test_evidence_is_a_bounded_verbatim_excerpt() -> None:
    text = "x" * 1000 + " Your answer is wrong. " + "y" * 1000
    start = text.index("Your")
    quoted = excerpt(text, start, start + len("Your answer is wrong."))
    assert len(quoted) <= 300 and "Your answer is wrong." in quoted
    assert quoted.startswith("…") and quoted.endswith("…")
    assert excerpt(None) == "" and excerpt("short") == "short"


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(st.sampled_from(["system", "user", "assistant", "tool"]), st.one_of(st.none(), st.text(max_size=400))),
        min_size=1,
        max_size=8,
    ),
    st.one_of(st.none(), st.text(max_size=30), st.integers(), st.lists(st.integers(), max_size=3)),
)
def test_classification_is_total_on_arbitrary_text(messages: list[tuple[str, str | None]], expected: Any) -> None:
    c = conv(*messages, expected=expected)
    for detector in make_detectors():  # each on its own, past classify_conversation's catch-all
        for failure in detector.detect(c, CONFIG):
            assert len(failure.evidence) <= 300
            assert failure.turn is None or 0 <= failure.turn < len(c.messages)


_PLAIN_WORDS = ["where", "is", "my", "order", "blue", "mug", "price", "delivery", "time", "to", "spain", "sofa", "refund", "lid", "broken", "ship", "norway", "today"]


def _edited(words: list[str], edits: list[tuple[int, int, str]]) -> str:
    """``words`` with character edits (position, 0 delete / 1 insert / 2 replace, letter): near-duplicates."""
    text = list(" ".join(words))
    for position, op, letter in edits:
        at = position % (len(text) + 1)
        if op == 0 and at < len(text):
            del text[at]
        elif op == 1:
            text.insert(at, letter)
        elif at < len(text):
            text[at] = letter
    return "".join(text)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.sampled_from(_PLAIN_WORDS), min_size=3, max_size=14),
    st.lists(st.tuples(st.integers(0, 200), st.integers(0, 2), st.sampled_from("aeiou ?XY")), max_size=12),
    st.lists(st.tuples(st.integers(0, 200), st.integers(0, 2), st.sampled_from("aeiou ?XY")), max_size=12),
    st.booleans(),
)
def test_repeated_request_flags_exactly_what_difflib_ratio_flags(
    words: list[str], first_edits: list[tuple[int, int, str]], again_edits: list[tuple[int, int, str]], upper: bool
) -> None:
    """The fast pre-checks (equal text, difflib's length and character-count bounds) never change the verdict."""
    import difflib

    first, again = _edited(words, first_edits), _edited(words, again_edits)
    again = again.upper() if upper else again
    found = corrections(("user", first), ("assistant", "Our sofas are made of oak."), ("user", again))
    # A correction ("no rway where…" reads as a leading "no") takes precedence: the repeat rule is not asked then.
    assume(not any("repeated request" not in f.evidence for f in found if f.turn == 3))
    a, b = (" ".join(t.lower().split()) for t in (again, first))
    reference = len(a.split()) >= 4 and len(a) <= 600 and difflib.SequenceMatcher(None, a, b, autojunk=False).ratio() >= 0.85
    assert [f.turn for f in found if "repeated request" in f.evidence] == ([3] if reference else [])



_CORRECTION_PHRASES = (
    "your answer is wrong", "not what I asked", "That's not right", "you misunderstood", "I asked for the price",
    "as I said", "way too long", "das ist falsch", "ich meinte", "c'est faux", "j’ai demandé", "eso está mal", "No, the blue one",
)


@settings(max_examples=300)
@given(
    st.lists(
        st.one_of(
            st.sampled_from(_CORRECTION_PHRASES),
            st.text(alphabet=st.characters(codec="ascii"), max_size=40),
            st.text(max_size=20),  # any Unicode: the case-blind search stays in charge of it
        ),
        max_size=5,
    ),
    st.lists(st.booleans(), max_size=60),
)
def test_the_correction_prefilter_never_changes_what_the_detector_finds(pieces: list[str], upper: list[bool]) -> None:
    """The ASCII prefilter (lowercase, then a case-sensitive search) agrees with the case-blind one, and the detector
    finds exactly what it finds when every pattern is tried on every turn."""
    from unittest import mock

    from nightloop.detectors import corrections as module

    text = "".join(c.upper() if i < len(upper) and upper[i] else c for i, c in enumerate(" ".join(pieces)))
    assert module._may_correct(text) == (module._ANY_CORRECTION.search(text) is not None)
    c = conv(("user", "How much is the mug?"), ("assistant", "It costs 11 EUR."), ("user", text))
    with mock.patch.object(module, "_may_correct", lambda _text: True):
        unfiltered = detect("user_correction", c)
    assert detect("user_correction", c) == unfiltered


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_every_correction_pattern_match_holds_one_of_the_prefilter_anchors(data) -> None:
    """The anchors that let most turns skip the pattern search: any ASCII text a correction pattern matches (texts
    generated from each pattern, in any case, with text around them) still reaches the search."""
    from nightloop.detectors import corrections as module

    for pattern, _ in module._CORRECTIONS:
        text = data.draw(st.from_regex(pattern, alphabet=st.characters(codec="ascii")), label=pattern.pattern[:40])
        assert module._may_correct(text), (pattern.pattern, text)
        assert module._may_correct(text.upper()) == (module._ANY_CORRECTION.search(text.upper()) is not None)


def test_the_correction_patterns_have_no_upper_case_letter_for_the_case_sensitive_prefilter() -> None:
    import re

    from nightloop.detectors.corrections import _ANY_CORRECTION_LOWER

    assert not re.findall(r"[A-Z]", re.sub(r"\\.", "", _ANY_CORRECTION_LOWER.pattern))


# --- real data ---


def _f1(path: Path, labels: dict[str, Any]) -> float:
    tp = fp = fn = 0
    for line in path.read_text(encoding="utf-8").splitlines():
        conversation = Conversation.from_jsonl(line)
        predicted, actual = bool(classify_conversation(conversation, CONFIG)), not labels[conversation.id]["success"]
        tp, fp, fn = tp + (predicted and actual), fp + (predicted and not actual), fn + (actual and not predicted)
    return 2 * tp / (2 * tp + fp + fn)


def test_mint_failures_are_found_with_f1_at_least_0_90(real_data: Path) -> None:
    labels = json.loads((real_data / "labels" / "mint_gpt35.labels.json").read_text(encoding="utf-8"))
    assert _f1(real_data / "mint_gpt35.jsonl", labels) >= 0.90


# --- review fixes: non-finite feedback scores, bounded correction scans ---


@pytest.mark.parametrize("score", [float("nan"), float("inf"), float("-inf")])
def test_a_non_finite_feedback_score_is_no_score(score: float) -> None:
    c = conv(("user", "book it"), ("assistant", "Booked."), feedback={"score": score, "comment": "exporter glitch"})
    assert detect("wrong_output", c) == []
    thumbs = conv(("user", "book it"), ("assistant", "Booked."), feedback={"score": score, "comment": "thumbs down"})
    [failure] = detect("user_correction", thumbs)
    assert failure.evidence == 'feedback (comment "thumbs down")'


def test_german_correction_gap_is_bounded_and_long_turns_are_scanned_from_the_start() -> None:
    asked = ("assistant", "Die Lieferung dauert drei Tage.")
    assert corrections(("user", "Preis?"), asked, ("user", "Ich habe nach dem Preis gefragt."))
    far = "Ich habe nach " + "dem Preis und den Versandkosten und der Lieferzeit " * 3 + "gefragt."
    assert not corrections(("user", "Preis?"), asked, ("user", far))  # the words are too far apart to be one phrase
    pasted = "Hier ist mein Protokoll: " + "Zeile mit Inhalt. " * 200 + "Das ist falsch."
    assert not corrections(("user", "Preis?"), asked, ("user", pasted))
    assert corrections(("user", "Preis?"), asked, ("user", "Das ist falsch. " + "Zeile mit Inhalt. " * 200))


def test_json_candidate_spans_the_first_opening_to_the_last_closing_bracket() -> None:
    reference = {"a": 1}
    assert answers_match('Here you go: {"a": 1} -- done', reference, CONFIG) is True
    assert answers_match("{" * 5000 + " no closing bracket", reference, CONFIG) is not True
