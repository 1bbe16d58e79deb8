"""Replay: building cases from failures (prefix, expectation, split, regression sampling) and the async runner."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest

from nightloop.config import ReplayConfig
from nightloop.errors import BudgetExceeded, ProviderError
from nightloop.llm.base import LLMResponse
from nightloop.models import (
    BASELINE,
    Conversation,
    EvalResult,
    Expectation,
    Failure,
    Message,
    Outcome,
    ReplayCase,
    ReplayOutcome,
    RubricVerdict,
    ToolCall,
    ToolFunction,
    Usage,
)
from nightloop.replay import replay, run_replay
from nightloop.replay_cases import (
    REGRESSION,
    build_replay_set,
    recorded_tool_results,
    replay_set_hash,
    train_failure_ids,
)

# --- helpers ---


def call(call_id: str, name: str, arguments: dict[str, Any]) -> ToolCall:
    return ToolCall(id=call_id, function=ToolFunction(name=name, arguments=json.dumps(arguments)))


def conversation(conversation_id: str, messages: list[Message], **outcome: Any) -> Conversation:
    return Conversation(
        id=conversation_id,
        prompt_name="shop",
        variables={"shop": "Acme"},
        messages=messages,
        outcome=Outcome(**outcome),
    )


def m(role: str, content: str | None = None, **extra: Any) -> Message:
    return Message(role=role, content=content, **extra)


def corrected_conversation(conversation_id: str = "c-corr") -> Conversation:
    """An earlier turn with a tool call, then a wrong answer (index 6) that the user corrects (index 7)."""
    return conversation(
        conversation_id,
        [
            m("system", "You are Acme's assistant."),
            m("user", "Where is my order 42?"),
            m("assistant", None, tool_calls=[call("t1", "lookup_order", {"id": 42})]),
            m("tool", '{"status": "shipped"}', tool_call_id="t1"),
            m("assistant", "Order 42 has shipped."),
            m("user", "How much was it?"),
            m("assistant", "It was $12."),
            m("user", "No, I asked for the price in euros, not dollars."),
            m("assistant", "It was 11 EUR."),
        ],
    )


def ok_conversation(conversation_id: str) -> Conversation:
    return conversation(
        conversation_id,
        [m("system", "sys"), m("user", f"question {conversation_id}"), m("assistant", f"good answer {conversation_id}")],
    )


def many_failures(kind: str, count: int, prefix: str) -> tuple[list[Failure], dict[str, Conversation]]:
    failures, failed = [], {}
    for i in range(count):
        conv = conversation(f"{prefix}-{i}", [m("system", "s"), m("user", f"q{i}"), m("assistant", f"a{i}")], expected="x")
        failed[conv.id] = conv
        failures.append(Failure(conversation_id=conv.id, kind=kind, turn=2, evidence=f"a{i}", detector=kind))
    return failures, failed


class FakeAgent:
    """Same ``complete`` signature as LLMClient; a responder decides, and the fake tracks history and in-flight calls."""

    def __init__(self, responder: Callable[..., LLMResponse] | None = None, *, delay: float = 0.0) -> None:
        self.responder = responder or (lambda messages, sample: LLMResponse(text="ok"))
        self.delay = delay
        self.history: list[dict[str, Any]] = []
        self.in_flight = 0
        self.max_in_flight = 0

    async def complete(self, messages, *, response_schema=None, tools=None, temperature=None, max_tokens=None, sample=0, seed=None):
        self.history.append({"messages": list(messages), "tools": tools, "sample": sample})
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            await asyncio.sleep(self.delay)
            return self.responder(messages, sample)
        finally:
            self.in_flight -= 1


def text(value: str, tokens: int = 10, cost: float = 0.001) -> LLMResponse:
    return LLMResponse(text=value, usage=Usage(input_tokens=tokens, output_tokens=tokens, cost_usd=cost, latency_ms=5.0))


def simple_case(case_id: str, expected: str = "ok", **kwargs: Any) -> ReplayCase:
    return ReplayCase(
        id=case_id,
        prompt_name="shop",
        messages=[m("user", f"question for {case_id}")],
        variables={"shop": "Acme"},
        expectation=Expectation(kind="reference", value=expected),
        origin=f"{case_id}#wrong_output@2",
        **kwargs,
    )


TEMPLATES = {BASELINE: "You work for {{ shop }}.", "cand-1": "You work for {{ shop }}. Quote prices in EUR."}

# --- building: prefix and expectation ---


def test_correction_case_prefix_ends_before_the_corrected_assistant_turn():
    conv = corrected_conversation()
    failure = Failure(conversation_id=conv.id, kind="user_correction", turn=7, evidence="No, I asked…", detector="d")
    [case] = build_replay_set("shop", failures=[failure], failed={conv.id: conv}, succeeded=[], config=ReplayConfig(), seed=0)
    assert case.id == "c-corr@6"
    assert [msg.role for msg in case.messages] == ["user", "assistant", "tool", "assistant", "user"]
    assert case.messages[-1].content == "How much was it?"  # ends right before the failing answer "It was $12."
    assert all(msg.role != "system" for msg in case.messages)
    assert case.messages[2].content == '{"status": "shipped"}'  # earlier recorded tool result kept
    assert case.variables == {"shop": "Acme"}
    assert case.origin == failure.id
    assert case.metadata["kind"] == "user_correction" and case.metadata["conversation_id"] == "c-corr"
    assert case.expectation.kind == "rubric"
    assert case.expectation.value == 'satisfies the user\'s correction: "No, I asked for the price in euros, not dollars."'


def test_failing_turn_with_tool_calls_is_replayed_whole_with_its_recorded_results():
    conv = conversation(
        "c-loop",
        [
            m("system", "s"),
            m("user", "Status of order 7?"),
            *[
                msg
                for i in range(4)
                for msg in (
                    m("assistant", None, tool_calls=[call(f"t{i}", "lookup_order", {"id": 7})]),
                    m("tool", '{"status": "packed"}', tool_call_id=f"t{i}"),
                )
            ],
        ],
        status="timeout",
    )
    failure = Failure(conversation_id=conv.id, kind="timeout", turn=6, evidence="lookup_order ×4", detector="loop")
    [case] = build_replay_set("shop", failures=[failure], failed={conv.id: conv}, succeeded=[], config=ReplayConfig(), seed=0)
    assert [msg.role for msg in case.messages] == ["user"]
    assert case.expectation == Expectation(kind="max_tool_calls", value=2)
    assert case.metadata["tool_results"][0] == {"name": "lookup_order", "arguments": '{"id": 7}', "content": '{"status": "packed"}'}
    assert case.metadata["tool_names"] == ["lookup_order"]


def test_expectation_per_failure_kind():
    wrong = conversation("c-wrong", [m("system", "s"), m("user", "2+2?"), m("assistant", "5")], expected="4")
    thumbs = conversation(
        "c-thumbs", [m("user", "hi"), m("assistant", "meh")], feedback={"score": 0.0, "comment": "thumbs down"}
    )
    unknown = conversation("c-unknown", [m("user", "hi"), m("assistant", "meh")], feedback={"score": 0.0})
    refused = conversation("c-refusal", [m("user", "refund?"), m("assistant", "I cannot help with that.")])
    failures = [
        Failure(conversation_id="c-wrong", kind="wrong_output", turn=2, evidence="5 != 4", detector="expected"),
        Failure(conversation_id="c-thumbs", kind="user_correction", turn=None, evidence="thumbs down", detector="feedback"),
        Failure(conversation_id="c-unknown", kind="wrong_output", turn=1, evidence="feedback score 0", detector="feedback"),
        Failure(conversation_id="c-refusal", kind="refusal", turn=1, evidence="I cannot help with that.", detector="r"),
    ]
    failed = {c.id: c for c in (wrong, thumbs, unknown, refused)}
    cases = {c.metadata["conversation_id"]: c for c in build_replay_set(
        "shop", failures=failures, failed=failed, succeeded=[], config=ReplayConfig(), seed=0
    )}
    assert cases["c-wrong"].expectation == Expectation(kind="reference", value="4")
    assert [msg.role for msg in cases["c-wrong"].messages] == ["user"]
    assert cases["c-thumbs"].expectation.kind == "rubric" and '"thumbs down"' in cases["c-thumbs"].expectation.value
    assert "negative feedback" in cases["c-thumbs"].expectation.value
    assert cases["c-unknown"].expectation.kind == "rubric" and "judged wrong" in cases["c-unknown"].expectation.value
    assert cases["c-refusal"].expectation.kind == "rubric" and "instead of refusing" in cases["c-refusal"].expectation.value


def test_one_case_per_conversation_at_its_first_failing_turn():
    conv = corrected_conversation()
    conv.outcome.expected = "11 EUR"
    failures = [
        Failure(conversation_id=conv.id, kind="wrong_output", turn=8, evidence="final", detector="expected"),
        Failure(conversation_id=conv.id, kind="user_correction", turn=7, evidence="No, I asked…", detector="d"),
    ]
    [case] = build_replay_set("shop", failures=failures, failed={conv.id: conv}, succeeded=[], config=ReplayConfig(), seed=0)
    assert case.id == "c-corr@6" and case.metadata["kind"] == "user_correction"
    assert case.metadata["failure_ids"] == sorted(f.id for f in failures)


def test_unreplayable_and_unknown_conversations_yield_no_case():
    no_user = conversation("c-nouser", [m("system", "s"), m("assistant", "hello")])
    failures = [
        Failure(conversation_id="c-nouser", kind="refusal", turn=1, evidence="", detector="r"),
        Failure(conversation_id="c-missing", kind="refusal", turn=1, evidence="", detector="r"),
    ]
    cases = build_replay_set("shop", failures=failures, failed={"c-nouser": no_user}, succeeded=[], config=ReplayConfig(), seed=0)
    assert cases == []


def test_recorded_tool_results_pair_calls_with_results():
    assert recorded_tool_results(corrected_conversation()) == [
        {"name": "lookup_order", "arguments": '{"id": 42}', "content": '{"status": "shipped"}'}
    ]


# --- building: cap, split, regression ---


def test_cap_is_stratified_so_rare_kinds_survive():
    common, failed_a = many_failures("wrong_output", 30, "a")
    rare, failed_b = many_failures("timeout", 3, "b")
    config = ReplayConfig(max_failure_cases=10, regression_cases=0)
    cases = build_replay_set("shop", failures=common + rare, failed=failed_a | failed_b, succeeded=[], config=config, seed=1)
    kinds = Counter(c.metadata["kind"] for c in cases)
    assert kinds == {"wrong_output": 7, "timeout": 3}


def test_split_is_deterministic_stratified_and_order_independent():
    failures, failed = [], {}
    for kind, count in (("wrong_output", 9), ("timeout", 4), ("user_correction", 2), ("refusal", 1)):
        f, c = many_failures(kind, count, kind)
        failures += f
        failed |= c
    config = ReplayConfig(holdout_fraction=0.5, regression_cases=0)
    first = build_replay_set("shop", failures=failures, failed=failed, succeeded=[], config=config, seed=0)
    again = build_replay_set("shop", failures=list(reversed(failures)), failed=failed, succeeded=[], config=config, seed=0)
    assert [(c.id, c.split) for c in first] == [(c.id, c.split) for c in again]
    splits = Counter((c.metadata["kind"], c.split) for c in first)
    for kind in ("wrong_output", "timeout", "user_correction"):
        assert splits[(kind, "train")] >= 1 and splits[(kind, "holdout")] >= 1
    assert splits[("wrong_output", "holdout")] in (4, 5) and splits[("timeout", "holdout")] == 2
    assert len(replay_set_hash(first)) == 64 and replay_set_hash(first) == replay_set_hash(list(reversed(again)))


def test_all_train_or_all_holdout_fractions():
    failures, failed = many_failures("timeout", 4, "t")
    for fraction, expected in ((0.0, {"train"}), (1.0, {"holdout"})):
        config = ReplayConfig(holdout_fraction=fraction, regression_cases=0)
        cases = build_replay_set("shop", failures=failures, failed=failed, succeeded=[], config=config, seed=0)
        assert {c.split for c in cases} == expected


def test_train_failure_ids_exclude_holdout_and_regression():
    failures, failed = many_failures("wrong_output", 6, "w")
    succeeded = [ok_conversation(f"ok-{i}") for i in range(3)]
    cases = build_replay_set("shop", failures=failures, failed=failed, succeeded=succeeded, config=ReplayConfig(), seed=0)
    train_ids = train_failure_ids(cases)
    assert train_ids == {c.origin for c in cases if c.split == "train"}
    assert len(train_ids) == 3 and not train_ids & {c.origin for c in cases if c.split == "holdout"}


def test_regression_cases_are_sampled_deterministically_and_always_holdout():
    succeeded = [ok_conversation(f"ok-{i:02d}") for i in range(30)]
    config = ReplayConfig(regression_cases=5)

    def sample(seed: int, pool: list[Conversation]) -> list[ReplayCase]:
        return build_replay_set("shop", failures=[], failed={}, succeeded=pool, config=config, seed=seed)

    first = sample(7, succeeded)
    assert [c.id for c in first] == [c.id for c in sample(7, list(reversed(succeeded)))]
    assert len(first) == 5 and {c.id for c in first} != {c.id for c in sample(8, succeeded)}
    for case in first:
        conv_id = case.metadata["conversation_id"]
        assert case.origin == REGRESSION and case.split == "holdout" and case.metadata["kind"] == REGRESSION
        assert case.expectation == Expectation(kind="pairwise", reference_output=f"good answer {conv_id}")
        assert [msg.role for msg in case.messages] == ["user"]


def test_regression_sample_ignores_failed_conversations_and_does_not_move_with_failures():
    succeeded = [ok_conversation(f"ok-{i:02d}") for i in range(30)]
    config = ReplayConfig(regression_cases=5)
    failures, failed = many_failures("wrong_output", 4, "w")
    without = build_replay_set("shop", failures=[], failed={}, succeeded=succeeded, config=config, seed=3)
    with_failures = build_replay_set("shop", failures=failures, failed=failed, succeeded=succeeded, config=config, seed=3)
    assert [c.id for c in without] == [c.id for c in with_failures if c.origin == REGRESSION]
    only_failed = build_replay_set("shop", failures=[], failed={"ok-00": succeeded[0]}, succeeded=succeeded[:1], config=config, seed=3)
    assert only_failed == []


def test_real_conversations_build_sound_cases(real_data):
    from nightloop.classify import classify_conversation
    from nightloop.config import ClassifyConfig

    lines = (real_data / "tau_airline.jsonl").read_text(encoding="utf-8").splitlines()[:80]
    conversations = {c.id: c for c in (Conversation.from_jsonl(line) for line in lines)}
    failures = [f for c in conversations.values() for f in classify_conversation(c, ClassifyConfig())]
    failed_ids = {f.conversation_id for f in failures}
    cases = build_replay_set(
        "tau",
        failures=failures,
        failed={i: c for i, c in conversations.items() if i in failed_ids},
        succeeded=[c for i, c in conversations.items() if i not in failed_ids],
        config=ReplayConfig(),
        seed=0,
    )
    assert cases
    for case in cases:
        original = conversations[case.metadata["conversation_id"]].messages
        without_system = [msg for msg in original if msg.role != "system"]
        assert case.messages == without_system[: len(case.messages)]  # a true prefix
        assert case.messages[-1].role == "user"
        assert original[case.metadata["turn"]].role == "assistant"
    assert {c.split for c in cases if c.origin != REGRESSION} == {"train", "holdout"}


# --- running ---


async def test_runner_runs_every_candidate_case_and_repeat_with_rendered_system_prompt():
    agent = FakeAgent(lambda messages, sample: text("ok"))
    cases = [simple_case("a"), simple_case("b")]
    outcome = await run_replay(agent, cases, TEMPLATES, repeats=3, concurrency=4)
    assert isinstance(outcome, ReplayOutcome) and not outcome.budget_exhausted and outcome.errors == 0
    keys = {(r.candidate_id, r.case_id, r.repeat) for r in outcome.results}
    assert keys == {(c, k, r) for c in TEMPLATES for k in ("a", "b") for r in range(3)}
    assert all(r.passed and r.score == 1.0 and r.tokens == 20 and r.cost_usd == 0.001 for r in outcome.results)
    assert Counter(h["sample"] for h in agent.history) == {0: 4, 1: 4, 2: 4}
    systems = {h["messages"][0].content for h in agent.history}
    assert systems == {"You work for Acme.", "You work for Acme. Quote prices in EUR."}
    assert all(h["messages"][0].role == "system" and h["messages"][1].role == "user" for h in agent.history)


async def test_the_recorded_runner_sends_the_paired_seed_to_the_agent_model_for_both_arms():
    from nightloop.config import RoleConfig
    from nightloop.llm.client import LLMClient
    from nightloop.llm.openai import OpenAIProvider
    from nightloop.testing import FakeOpenAIServer

    with FakeOpenAIServer(responder=lambda request: "ok") as server:
        role = RoleConfig(provider="openai", model="gpt-4o", base_url=server.base_url, max_retries=0)
        agent = LLMClient(OpenAIProvider(role, api_key="k"), role)
        await run_replay(agent, [simple_case("a"), simple_case("b")], TEMPLATES, repeats=2, concurrency=2, seed=7)
        bodies = list(server.requests)
    by_system: dict[str, list[int]] = {}
    for body in bodies:
        by_system.setdefault(body["messages"][0]["content"], []).append(body["seed"])
    assert len(bodies) == 2 * 2 * 2 and all(isinstance(body.get("seed"), int) for body in bodies)
    # One seed per (case, repeat): four distinct seeds, each sent once by the baseline and once by the candidate.
    assert len({body["seed"] for body in bodies}) == 4
    assert [sorted(v) for v in by_system.values()] == [sorted(by_system[next(iter(by_system))])] * 2


async def test_concurrency_bound_is_respected():
    agent = FakeAgent(delay=0.002)
    cases = [simple_case(f"c{i}") for i in range(10)]
    outcome = await run_replay(agent, cases, TEMPLATES, repeats=2, concurrency=4)
    assert len(outcome.results) == 40
    assert agent.max_in_flight == 4


async def test_tool_calls_are_answered_from_recorded_results():
    case = simple_case("t", expected="shipped")
    case.metadata["tool_results"] = [
        {"name": "lookup_order", "arguments": '{"id": 1}', "content": '{"status": "pending"}'},
        {"name": "lookup_order", "arguments": '{"id": 42}', "content": '{"status": "shipped"}'},
    ]
    case.metadata["tool_names"] = ["lookup_order"]

    def responder(messages, sample):
        tool_messages = [msg for msg in messages if msg.role == "tool"]
        if not tool_messages:
            return LLMResponse(tool_calls=[call("x1", "lookup_order", {"id": 42}), call("x2", "track_parcel", {"id": 42})])
        return text(json.loads(tool_messages[0].content)["status"])

    agent = FakeAgent(responder)
    [result] = (await run_replay(agent, [case], {BASELINE: "sys"}, repeats=1, concurrency=1)).results
    assert result.output == "shipped" and result.passed
    second_call = agent.history[1]["messages"]
    assert [msg.role for msg in second_call] == ["system", "user", "assistant", "tool", "tool"]
    assert second_call[3].tool_call_id == "x1" and second_call[3].content == '{"status": "shipped"}'
    assert "no recorded result for tool 'track_parcel'" in json.loads(second_call[4].content)["error"]
    assert agent.history[0]["tools"][0]["function"]["name"] == "lookup_order"


async def test_tool_loop_is_capped_at_max_steps_and_counted():
    case = ReplayCase(
        id="loop", prompt_name="shop", messages=[m("user", "status?")],
        expectation=Expectation(kind="max_tool_calls", value=2), origin="loop#timeout@-",
        metadata={"tool_results": [{"name": "lookup_order", "arguments": "{}", "content": "{}"}]},
    )
    agent = FakeAgent(lambda messages, sample: LLMResponse(tool_calls=[call(f"t{len(messages)}", "lookup_order", {})]))
    [result] = (await run_replay(agent, [case], {BASELINE: "sys"}, repeats=1, concurrency=1, max_steps=4)).results
    assert len(agent.history) == 4
    assert not result.passed and "4 tool calls" in result.reason and "stopped after 4 agent steps" in result.reason


async def test_done_evaluations_are_skipped_on_resume():
    cases = [simple_case("a"), simple_case("b")]
    done = {(BASELINE, "a", 0), ("cand-1", "b", 2)}
    agent = FakeAgent()
    outcome = await run_replay(agent, cases, TEMPLATES, repeats=3, concurrency=2, done=done)
    keys = {(r.candidate_id, r.case_id, r.repeat) for r in outcome.results}
    assert len(keys) == 10 and not keys & done and outcome.skipped == 2
    assert len(agent.history) == 10


async def test_a_failing_result_write_stops_the_run_and_is_raised():
    seen: list[EvalResult] = []

    def observer(result: EvalResult) -> None:
        seen.append(result)
        if len(seen) == 2:
            raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        await run_replay(FakeAgent(), [simple_case(c) for c in "abcdef"], TEMPLATES, repeats=2, concurrency=1, on_result=observer)
    assert len(seen) == 2, "work went on after a write failed"


async def test_provider_error_is_recorded_not_raised():
    def responder(messages, sample):
        if "case-bad" in messages[-1].content:
            raise ProviderError("HTTP 500 after 3 retries")
        return text("ok")

    outcome = await run_replay(FakeAgent(responder), [simple_case("case-bad"), simple_case("good")], TEMPLATES, repeats=1, concurrency=2)
    bad = [r for r in outcome.results if r.case_id == "case-bad"]
    assert len(outcome.results) == 4 and outcome.errors == 2 and len(bad) == 2
    assert all(not r.passed and r.score == 0.0 and "HTTP 500" in r.error for r in bad)
    assert all(r.passed and r.error is None for r in outcome.results if r.case_id == "good")


async def test_template_that_does_not_render_is_recorded_per_case():
    outcome = await run_replay(FakeAgent(), [simple_case("a")], {BASELINE: "Hi {{ shop }}", "broken": "Hi {{ missing }}"}, repeats=1, concurrency=1)
    broken = next(r for r in outcome.results if r.candidate_id == "broken")
    assert broken.error.startswith("template:") and "missing" in broken.error and not broken.passed
    assert next(r for r in outcome.results if r.candidate_id == BASELINE).passed


async def test_budget_exceeded_stops_cleanly_with_partial_results_and_resume_finishes():
    calls = {"n": 0}

    def responder(messages, sample):
        calls["n"] += 1
        if calls["n"] > 7:
            raise BudgetExceeded("spent 5.00 of 5.00 USD; raise [budget] max_usd in nightloop.toml")
        return text("ok")

    cases = [simple_case(f"c{i}") for i in range(6)]
    saved: list[EvalResult] = []
    outcome = await run_replay(FakeAgent(responder, delay=0.001), cases, TEMPLATES, repeats=2, concurrency=3, on_result=saved.append)
    assert outcome.budget_exhausted and len(outcome.results) == 7 and saved == outcome.results
    assert calls["n"] <= 7 + 3  # nothing new launched after the budget ran out beyond the calls in flight
    # Paired order: results so far cover both arms of the earliest cases.
    assert {(r.candidate_id, r.case_id) for r in outcome.results if r.case_id in ("c0", "c1", "c2")} == {
        (c, k) for c in TEMPLATES for k in ("c0", "c1", "c2")
    }
    resumed = await run_replay(FakeAgent(), cases, TEMPLATES, repeats=2, concurrency=3, done={(r.candidate_id, r.case_id, r.repeat) for r in saved})
    assert not resumed.budget_exhausted and len(resumed.results) == 24 - 7 and resumed.skipped == 7


async def test_budget_exceeded_in_a_scorer_also_stops_the_run():
    class SpentScorer:
        async def complete(self, messages, **kwargs):
            raise BudgetExceeded("spent")

    case = ReplayCase(id="r", prompt_name="shop", messages=[m("user", "q")], variables={"shop": "Acme"},
                      expectation=Expectation(kind="rubric", value="x"), origin="o")
    outcome = await run_replay(FakeAgent(), [case], TEMPLATES, repeats=1, concurrency=1, scorer_client=SpentScorer())
    assert outcome.budget_exhausted and outcome.results == []


async def test_rubric_cases_are_scored_by_the_scorer_client_with_declared_scorers():
    class Grader:
        def __init__(self) -> None:
            self.history: list[Any] = []

        async def complete(self, messages, *, response_schema=None, **kwargs):
            self.history.append(messages)
            passed = "EUR" in messages[-1].content.split("<answer>")[1]
            return LLMResponse(parsed=RubricVerdict(passed=passed, score=float(passed), reason="checked currency"))

    def responder(messages, sample):
        return text("11 EUR" if "EUR" in messages[0].content else "$12")

    rubric = ReplayCase(id="r", prompt_name="shop", messages=[m("user", "price?")], variables={"shop": "Acme"},
                        expectation=Expectation(kind="rubric", value="prices in EUR"), origin="o")
    grader = Grader()
    outcome = await run_replay(FakeAgent(responder), [rubric, simple_case("c", expected="eur")], TEMPLATES, repeats=1,
                               concurrency=2, scorer_client=grader, declared_scorers=["contains"])
    by_key = {(r.candidate_id, r.case_id): r for r in outcome.results}
    assert by_key[("cand-1", "r")].passed and not by_key[(BASELINE, "r")].passed
    assert by_key[("cand-1", "c")].passed and by_key[("cand-1", "c")].reason.startswith("contains all")
    assert len(grader.history) == 2


async def test_unknown_declared_scorer_fails_before_any_call():
    agent = FakeAgent()
    with pytest.raises(ValueError, match="valid scorers"):
        await run_replay(agent, [simple_case("a")], TEMPLATES, repeats=1, concurrency=1, declared_scorers=["bleu"])
    assert agent.history == []


def test_sync_replay_wrapper():
    outcome = replay(FakeAgent(), [simple_case("a")], TEMPLATES, repeats=1, concurrency=1)
    assert len(outcome.results) == 2 and all(r.passed for r in outcome.results)


async def test_simulated_night_replays_offline_and_a_better_template_scores_higher():
    """End to end offline: simulated logs -> classify -> replay set -> sim agent and sim scorers."""
    from datetime import date
    from pathlib import Path

    from nightloop.classify import classify_conversation
    from nightloop.config import ClassifyConfig, RoleConfig
    from nightloop.llm.client import LLMClient
    from nightloop.llm.sim import SimProvider
    from nightloop.simulate import simulate_night

    base = (Path(__file__).resolve().parents[1] / "prompts" / "support_agent.j2").read_text(encoding="utf-8")
    better = base + (
        "- Always quote prices in euros (EUR).\n- Always mention the customer's order number.\n"
        "- Call the lookup_order tool at most once per question.\n- On the API channel answer only with JSON.\n"
    )
    conversations = simulate_night(
        template=base, prompt_name="support_agent", prompt_version=1, day=date(2026, 11, 23), per_night=60, seed=1
    )
    classified = {c.id: classify_conversation(c, ClassifyConfig()) for c in conversations}
    cases = build_replay_set(
        "support_agent",
        failures=[f for found in classified.values() for f in found],
        failed={c.id: c for c in conversations if classified[c.id]},
        succeeded=[c for c in conversations if not classified[c.id]],
        config=ReplayConfig(regression_cases=10),
        seed=1,
    )
    assert {c.expectation.kind for c in cases} >= {"rubric", "pairwise"}
    agent, grader = LLMClient(SimProvider(seed=1), RoleConfig()), LLMClient(SimProvider(seed=1), RoleConfig())
    outcome = await run_replay(agent, cases, {BASELINE: base, "better": better}, repeats=2, concurrency=8, scorer_client=grader)
    assert outcome.errors == 0 and len(outcome.results) == 2 * 2 * len(cases)
    failure_case_ids = {c.id for c in cases if c.origin != REGRESSION}

    def rate(candidate_id: str) -> float:
        passed = [r.passed for r in outcome.results if r.candidate_id == candidate_id and r.case_id in failure_case_ids]
        return sum(passed) / len(passed)

    assert rate("better") >= rate(BASELINE) + 0.2
    assert grader.calls > 0 and agent.calls > 0


def test_outcome_level_timeout_replays_the_last_turn_not_an_earlier_answer():
    conv = conversation(
        "c-late-loop",
        [
            m("user", "Hi"),
            m("assistant", "Hello! How can I help?"),
            m("user", "Where is order 9?"),
            m("assistant", None, tool_calls=[call("t1", "lookup_order", {"id": 9})]),
            m("tool", "{}", tool_call_id="t1"),
            m("assistant", None, tool_calls=[call("t2", "lookup_order", {"id": 9})]),
        ],
        status="timeout",
    )
    failure = Failure(conversation_id=conv.id, kind="timeout", turn=None, evidence="status timeout", detector="status")
    [case] = build_replay_set("shop", failures=[failure], failed={conv.id: conv}, succeeded=[], config=ReplayConfig(), seed=0)
    assert case.id == "c-late-loop@5" and case.messages[-1].content == "Where is order 9?"
