"""The offline simulator: deterministic, instruction-following by meaning, a judge and scorers with the real schemas."""

from __future__ import annotations

import difflib
import random
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nightloop.errors import ProviderError
from nightloop.llm.base import LLMRequest, Provider
from nightloop.llm.sim import SIM_TOOLS, SimProvider, run_sim_tool
from nightloop.llm.sim.agent import Situation, recover_situation
from nightloop.llm.sim.behaviours import BEHAVIOURS, Context, behaviour, check, read_prompt
from nightloop.llm.sim.judge import HARMFUL_LINES, UNHELPFUL_LINES
from nightloop.llm.sim.user import draw_request
from nightloop.models import Conversation, GateDecision, JudgeOutput, Message, PairwiseVerdict, RubricVerdict
from nightloop.templates import render, template_variables

REPO = Path(__file__).resolve().parents[1]
DEMO_TEMPLATE = (REPO / "prompts" / "support_agent.j2").read_text(encoding="utf-8")
SHOP = "Acme Outdoor"
N_REQUESTS = 120


def system_prompt(template: str, channel: str = "web") -> str:
    return render(template, {"shop": SHOP, "channel": channel})


def with_lines(template: str, *lines: str) -> str:
    return template.rstrip("\n") + "\n" + "\n".join(f"- {line}" for line in lines) + "\n"


def run_agent(provider: SimProvider, system: str, user_text: str, sample: int, max_tool_calls: int = 6) -> tuple[str | None, int]:
    """The agent's final answer (None when it looped until the cap) and how many tool calls it made."""
    messages = [Message(role="system", content=system), Message(role="user", content=user_text)]
    calls = 0
    while True:
        response = provider.respond(LLMRequest(messages=messages, model="sim-1", tools=SIM_TOOLS, sample=sample))
        if not response.tool_calls:
            return response.text, calls
        messages.append(Message(role="assistant", tool_calls=response.tool_calls))
        for call in response.tool_calls:
            messages.append(Message(role="tool", tool_call_id=call.id, content=run_sim_tool(call.function.name, call.function.arguments)))
            calls += 1
        if calls >= max_tool_calls:
            return None, calls


def requests_needing(name: str, count: int = N_REQUESTS) -> list:
    rng = random.Random(f"needing-{name}")
    found = []
    while len(found) < count:
        request = draw_request(rng, {"web": SHOP, "email": SHOP, "api": SHOP})
        if name in request.situation.needs:
            found.append(request)
    return found


def pass_rate(name: str, template: str, seed: int = 0) -> float:
    """Share of requests needing ``name`` that the agent gets right (tool discipline: it answered at all;
    others: over the answers it gave, so a tool loop does not count against another behaviour)."""
    provider = SimProvider(seed=seed)
    outcomes = []
    for i, request in enumerate(requests_needing(name)):
        system = system_prompt(template, request.situation.channel)
        answer, _ = run_agent(provider, system, request.text, sample=i)
        if name == "tool_discipline":
            outcomes.append(answer is not None)
        elif answer is not None:
            outcomes.append(check(name, answer, request.situation.context()))
    return sum(outcomes) / len(outcomes)


# --- Protocol and determinism ---


def test_sim_provider_satisfies_the_protocol():
    provider = SimProvider(seed=3)
    assert isinstance(provider, Provider)
    assert provider.name == "sim"


async def test_same_request_same_response_and_usage_is_estimated():
    request = LLMRequest(
        messages=[Message(role="system", content=system_prompt(DEMO_TEMPLATE)), Message(role="user", content="How much does the Merino Hoodie cost?")],
        model="sim-1",
    )
    first = await SimProvider(seed=1).complete(request)
    second = await SimProvider(seed=1).complete(request)
    assert first.model_dump() == second.model_dump()
    assert first.provider == "sim" and first.model == "sim-1"
    assert first.usage.input_tokens == pytest.approx(sum(len(m.text) for m in request.messages) / 4, abs=1)
    assert first.usage.output_tokens > 0 and first.usage.latency_ms == 0


def test_answers_vary_with_sample_and_seed():
    system = system_prompt(DEMO_TEMPLATE)
    text = "How much does the Merino Hoodie cost?"
    answers = {run_agent(SimProvider(seed=s), system, text, sample=i)[0] for s in range(3) for i in range(10)}
    assert len(answers) > 1  # a stochastic model: the currency slip shows up in some samples only


def test_unknown_schema_is_a_provider_error():
    request = LLMRequest(messages=[Message(role="user", content="hi")], model="sim-1", response_schema=GateDecision)
    with pytest.raises(ProviderError, match="real provider"):
        SimProvider().respond(request)


# --- Understanding requests ---


def test_the_agent_recovers_every_drawn_request_from_the_messages_alone():
    rng = random.Random(11)
    for _ in range(300):
        request = draw_request(rng, {"web": SHOP, "email": SHOP, "api": SHOP})
        truth = request.situation
        recovered = recover_situation(system_prompt(DEMO_TEMPLATE, truth.channel), request.text)
        assert (recovered.kind, recovered.language, recovered.channel, recovered.shop) == (
            truth.kind, truth.language, truth.channel, SHOP,
        ), request.text
        assert recovered.needs == truth.needs, request.text
        if truth.order_number:
            assert recovered.order_number == truth.order_number
        if truth.amount:
            assert recovered.amount == truth.amount


def test_every_sentence_the_simulator_writes_reads_as_its_own_language():
    from nightloop.llm.sim.catalog import ANSWERS, FILLER, REQUESTS, detect_language

    texts = [(lang, t) for table in ANSWERS.values() for lang, t in table.items()]
    texts += [(lang, t) for lang, fillers in FILLER.items() for t in fillers]
    texts += [(lang, t) for table in REQUESTS.values() for lang, variants in table.items() for t in variants]
    assert [(lang, t) for lang, t in texts if detect_language(t) != lang] == []


def test_text_it_cannot_place_gets_a_general_polite_answer():
    answer, calls = run_agent(SimProvider(), system_prompt(DEMO_TEMPLATE), "Bonjour, j'ai une question.", sample=0)
    assert calls == 0
    assert answer and "?" in answer


# --- Reading instructions by meaning ---

PARAPHRASES = {
    "language": ["Answer in whatever language the customer uses.", "If the customer writes German, reply in German."],
    "currency_eur": ["State all costs in euro.", "Do not use dollars for prices.", "Amounts are always shown in EUR."],
    "order_number": ["Mention the order number whenever you discuss an order.", "Always confirm the order ID in replies."],
    "refund_escalation": ["Refund requests above 100 EUR must be transferred to a supervisor.", "Escalate big refunds to the team."],
    "word_limit": ["Replies must stay within 60 words.", "Be concise.", "Keep replies short."],
    "tool_discipline": ["Never call the lookup tool twice for the same request.", "Use lookup_order only once."],
    "json_api": ["API channel: respond in JSON.", "Output a JSON object for api requests."],
    "politeness": ["Be courteous.", "End with the store name as signature."],
}
UNRELATED = [
    "Our company is based in Europe and ships from Hamburg.",
    "You sell outdoor gear and home goods.",
    "Some customers write long messages.",
    "The tool returns the order status.",
    "Refunds are possible within 30 days.",
    *UNHELPFUL_LINES,
]


@pytest.mark.parametrize("name", [b.name for b in BEHAVIOURS])
def test_every_phrasing_of_an_instruction_is_recognised(name):
    for line in behaviour(name).instructions + tuple(PARAPHRASES[name]):
        reading = read_prompt(line)
        assert name in reading.instructed, line
        assert name not in reading.forbidden, line


def test_unrelated_text_instructs_nothing():
    for line in UNRELATED:
        assert read_prompt(line).instructed == frozenset(), line


def test_the_demo_prompt_lacks_most_behaviours():
    reading = read_prompt(DEMO_TEMPLATE)
    assert reading.instructed == {"language", "politeness"}
    assert not reading.forbidden


def test_harmful_lines_are_read_as_harmful():
    assert read_prompt(HARMFUL_LINES["short"]).word_limit == 9
    assert "order_number" in read_prompt(HARMFUL_LINES["no_order_numbers"]).forbidden
    assert "language" in read_prompt(HARMFUL_LINES["english"]).forbidden
    assert "currency_eur" in read_prompt("Always quote prices in US dollars.").forbidden


# --- Following instructions ---


@pytest.mark.parametrize("name", ["currency_eur", "order_number", "refund_escalation", "word_limit", "tool_discipline", "json_api"])
def test_adding_the_instruction_raises_the_pass_rate_and_a_paraphrase_works_too(name):
    baseline = pass_rate(name, DEMO_TEMPLATE)
    instructed = pass_rate(name, with_lines(DEMO_TEMPLATE, behaviour(name).instructions[0]))
    paraphrased = pass_rate(name, with_lines(DEMO_TEMPLATE, PARAPHRASES[name][0]))
    assert baseline < 0.85
    assert instructed >= 0.9 and instructed >= baseline + 0.15
    assert paraphrased >= 0.9


def test_without_the_language_instruction_many_answers_come_back_in_english():
    without = DEMO_TEMPLATE.replace("- Reply in the customer's language.\n", "")
    assert pass_rate("language", without) < 0.5
    assert pass_rate("language", DEMO_TEMPLATE) >= 0.9


def test_harmful_instructions_lower_pass_rates():
    assert pass_rate("politeness", DEMO_TEMPLATE) >= 0.9
    assert pass_rate("politeness", with_lines(DEMO_TEMPLATE, HARMFUL_LINES["short"])) < 0.2  # the sign-off is cut off
    fixed = with_lines(DEMO_TEMPLATE, behaviour("order_number").instructions[0])
    assert pass_rate("order_number", fixed + "- " + HARMFUL_LINES["no_order_numbers"] + "\n") < 0.1
    assert pass_rate("language", with_lines(DEMO_TEMPLATE, HARMFUL_LINES["english"])) < 0.1


def test_tool_calls_have_ids_and_a_disciplined_agent_answers_after_one_lookup():
    provider = SimProvider(seed=0)
    text = "Where is my order #41234? It still hasn't arrived."
    loose = system_prompt(DEMO_TEMPLATE)
    strict = system_prompt(with_lines(DEMO_TEMPLATE, behaviour("tool_discipline").instructions[1]))
    looping = [i for i in range(60) if run_agent(provider, loose, text, sample=i)[0] is None]
    assert looping, "some samples loop on the tool without the instruction"
    strict_runs = [run_agent(provider, strict, text, sample=sample) for sample in looping]
    answered = [(answer, calls) for answer, calls in strict_runs if answer is not None]
    assert len(answered) >= 0.7 * len(looping)  # the same luck, now instructed: only the rare slip still loops
    assert all(calls == 1 for _, calls in answered)
    first = provider.respond(LLMRequest(messages=[Message(role="system", content=strict), Message(role="user", content=text)],
                                        model="sim-1", tools=SIM_TOOLS))
    call = first.tool_calls[0]
    assert call.id.startswith("call_") and call.function.name == "lookup_order"
    assert '"41234"' in call.function.arguments and first.text is None


def test_a_customer_correction_is_honoured_in_the_next_answer():
    provider = SimProvider(seed=0)
    system = system_prompt(DEMO_TEMPLATE)
    text = "How much does the Merino Hoodie cost?"
    sample = next(i for i in range(200) if "$" in (run_agent(provider, system, text, sample=i)[0] or ""))
    messages = [
        Message(role="system", content=system),
        Message(role="user", content=text),
        Message(role="assistant", content=run_agent(provider, system, text, sample=sample)[0]),
        Message(role="user", content="No, I asked for the price in euros, not dollars."),
    ]
    again = provider.respond(LLMRequest(messages=messages, model="sim-1", sample=sample)).text
    assert "€74.50" in again and "$" not in again


# --- The judge ---

FAILURES_BLOCK = """
## Group 1: user_correction
### Failure 1
- id: conv-7#user_correction@3
- evidence:
<conversation_data>
[turn 2] assistant: The Merino Hoodie costs $74.50.
[turn 3] user: No, I asked for the price in euros, not dollars.
</conversation_data>
### Failure 2
- id: conv-9#user_correction@3
- evidence:
<conversation_data>
[turn 3] user: No, I don't want a voucher. I asked for a refund of 180 €, please pass this to a human.
</conversation_data>
## Group 2: timeout
### Failure 3
- id: conv-12#timeout@13
- evidence:
<conversation_data>
status timeout: agent made 6 tool calls without answering
</conversation_data>
"""


def judge_request(k: int, template: str = DEMO_TEMPLATE, failures: str = FAILURES_BLOCK) -> LLMRequest:
    user = (
        f"Template variables: {{{{ shop }}}}, {{{{ channel }}}}\n<current_template>\n{template}</current_template>\n"
        f"{failures}\nPropose {k} candidates: small edits of the template."
    )
    return LLMRequest(
        messages=[Message(role="system", content="You improve prompt templates. Reply in JSON."), Message(role="user", content=user)],
        model="sim-1",
        response_schema=JudgeOutput,
    )


def changed_lines(old: str, new: str) -> list[str]:
    return [
        line for line in difflib.unified_diff(old.splitlines(), new.splitlines(), lineterm="", n=0)
        if line[:1] in "+-" and not line.startswith(("+++", "---"))
    ]


@pytest.mark.parametrize("k", [1, 3, 4, 6])
def test_judge_returns_k_small_valid_candidates_for_the_shown_failures(k):
    request = judge_request(k)
    response = SimProvider(seed=2).respond(request)
    output = response.parsed
    assert isinstance(output, JudgeOutput) and JudgeOutput.model_validate_json(response.text) == output
    assert len(output.candidates) == k
    shown_ids = {"conv-7#user_correction@3", "conv-9#user_correction@3", "conv-12#timeout@13"}
    fixed_somewhere = set()
    bad = 0
    for candidate in output.candidates:
        assert template_variables(candidate.template) == {"shop", "channel"}
        assert 0 < len(changed_lines(DEMO_TEMPLATE, candidate.template)) <= 6
        for line in changed_lines(DEMO_TEMPLATE, candidate.template):
            assert line[1:].strip("- ") not in request.messages[1].content.replace(DEMO_TEMPLATE, "")  # own words only
        for edit in candidate.edits:
            assert set(edit.addresses) <= shown_ids
        gained = read_prompt(candidate.template).instructed - read_prompt(DEMO_TEMPLATE).instructed
        fixed_somewhere |= gained
        if not gained:
            bad += 1
    assert fixed_somewhere & {"currency_eur", "refund_escalation", "tool_discipline"}
    assert bad == (1 if k >= 3 else 0)


def test_judge_addresses_the_failures_whose_evidence_it_fixes():
    output = SimProvider(seed=0).respond(judge_request(4)).parsed
    for candidate in output.candidates:
        for edit in candidate.edits:
            if "euros" in edit.description:
                assert edit.addresses == ["conv-7#user_correction@3"]
            if "lookup_order" in edit.description:
                assert edit.addresses == ["conv-12#timeout@13"]


def test_judge_is_deterministic_and_varies_candidates():
    first = SimProvider(seed=5).respond(judge_request(4)).parsed
    again = SimProvider(seed=5).respond(judge_request(4)).parsed
    assert first == again
    assert len({c.template for c in first.candidates}) == 4


def test_judge_over_all_seeds_proposes_unhelpful_and_harmful_edits_sometimes():
    kinds = set()
    for seed in range(30):
        for candidate in SimProvider(seed=seed).respond(judge_request(4)).parsed.candidates:
            reading = read_prompt(candidate.template)
            if reading.forbidden or (reading.word_limit or 99) < 15 or reading.instructed < read_prompt(DEMO_TEMPLATE).instructed:
                kinds.add("harmful")
            elif reading.instructed == read_prompt(DEMO_TEMPLATE).instructed:
                kinds.add("unhelpful")
            else:
                kinds.add("helpful")
    assert kinds == {"helpful", "unhelpful", "harmful"}


def test_judge_removes_a_contradicting_line_when_fixing_its_behaviour():
    template = with_lines(DEMO_TEMPLATE, HARMFUL_LINES["no_order_numbers"])
    failures = "### Failure\n- id: c1#user_correction@4\n<conversation_data>\nuser: That's not what I asked, which order is this about?\n</conversation_data>\n"
    output = SimProvider().respond(judge_request(2, template, failures)).parsed
    for candidate in output.candidates:
        reading = read_prompt(candidate.template)
        assert "order_number" in reading.instructed and "order_number" not in reading.forbidden


def test_judge_ranks_by_how_many_failures_a_group_stands_for():
    many_short = (
        "## Group 1: too long (40 more like these not shown)\n### Failure\n- id: a#user_correction@3\n"
        "- evidence: That's way too long, I didn't ask for an essay. [900 more characters]\n"
    )
    few_dollars = "".join(
        f"## Group {n}: currency\n### Failure\n- id: d{n}#user_correction@3\n"
        "- evidence: No, I asked for the price in euros, not dollars. [700 more characters]\n"
        for n in range(2, 5)
    )
    output = SimProvider().respond(judge_request(1, failures=many_short + few_dollars)).parsed
    (only,) = output.candidates
    assert read_prompt(only.template).instructed - read_prompt(DEMO_TEMPLATE).instructed == {"word_limit"}


def test_judge_finds_a_template_quoted_in_the_system_message():
    request = judge_request(3)
    user = request.messages[1].content
    template_block = user[user.index("<current_template>") : user.index("</current_template>") + len("</current_template>")]
    moved = request.model_copy(update={"messages": [Message(role="system", content=f"Current template:\n{template_block}"),
                                                    Message(role="user", content=user.replace(template_block, ""))]})
    assert len(SimProvider().respond(moved).parsed.candidates) == 3


def test_judge_without_a_quoted_template_returns_no_candidates():
    request = LLMRequest(messages=[Message(role="user", content="Propose 3 candidates.")], model="sim-1", response_schema=JudgeOutput)
    assert SimProvider().respond(request).parsed.candidates == []


async def test_judge_through_the_real_judge_stage_yields_valid_candidates():
    from datetime import UTC, date, datetime

    from nightloop.classify import classify_conversation
    from nightloop.config import ClassifyConfig, JudgeConfig, RoleConfig
    from nightloop.judge import propose
    from nightloop.llm.client import LLMClient
    from nightloop.models import PromptVersion, sha256_text
    from nightloop.simulate import simulate_night

    conversations = simulate_night(template=DEMO_TEMPLATE, prompt_name="support_agent", prompt_version=1,
                                   day=date(2026, 11, 20), per_night=60, seed=4)
    failures = [f for c in conversations for f in classify_conversation(c, ClassifyConfig())]
    base = PromptVersion(name="support_agent", version=1, template=DEMO_TEMPLATE, sha256=sha256_text(DEMO_TEMPLATE),
                         created_at=datetime(2026, 11, 1, tzinfo=UTC))
    result = await propose(LLMClient(SimProvider(seed=0), RoleConfig()), prompt_name="support_agent", base=base,
                           failures=failures, conversations={c.id: c for c in conversations}, config=JudgeConfig())
    assert result.errors == []
    assert len(result.candidates) >= 3
    ids = {f.id for f in failures}
    assert all(set(c.addresses) <= ids for c in result.candidates)


# --- The scorers ---


def scorer_request(schema, *parts: str) -> LLMRequest:
    return LLMRequest(messages=[Message(role="system", content="You grade answers."), Message(role="user", content="\n\n".join(parts))],
                      model="sim-1", response_schema=schema)


def test_rubric_scorer_checks_the_behaviour_a_correction_asks_for():
    rubric = '<rubric>\nsatisfies the user\'s correction: "No, I asked for the price in euros, not dollars."\n</rubric>'
    request = "<request>\nNo, I asked for the price in euros, not dollars.\n</request>"
    good = SimProvider().respond(scorer_request(RubricVerdict, request, rubric, "<answer>\nThe Merino Hoodie costs €74.50.\n</answer>")).parsed
    bad = SimProvider().respond(scorer_request(RubricVerdict, request, rubric, "<answer>\nThe Merino Hoodie costs $74.50.\n</answer>")).parsed
    assert good.passed and good.score == 1.0
    assert not bad.passed and bad.score == 0.0 and "currency_eur" in bad.reason


def test_rubric_scorer_without_a_named_behaviour_checks_what_the_request_needs():
    request = "<request>\nMeine Bestellung #41234 kam beschädigt an. Das ist inakzeptabel!\n</request>"
    rubric = '<rubric>\naddresses the user\'s negative feedback on the original answer: "thumbs down"\n</rubric>'
    german = "Guten Tag!\n\nEs tut mir sehr leid, dass die Bestellung #41234 beschädigt angekommen ist.\n\nViele Grüße,\nAcme"
    english = "Hello!\n\nI am very sorry that your order arrived damaged.\n\nKind regards,\nAcme"
    assert SimProvider().respond(scorer_request(RubricVerdict, request, rubric, f"<answer>{german}</answer>")).parsed.passed
    verdict = SimProvider().respond(scorer_request(RubricVerdict, request, rubric, f"<answer>{english}</answer>")).parsed
    assert not verdict.passed and "language" in verdict.reason and "order_number" in verdict.reason


def test_pairwise_scorer_prefers_the_answer_passing_more_behaviours():
    request = "<request>\nHow much does the Merino Hoodie cost?\n</request>"
    good = "Hello!\n\nThe Merino Hoodie costs €74.50.\n\nKind regards,\nAcme"
    bad = "The Merino Hoodie costs $74.50."
    a_wins = SimProvider().respond(scorer_request(PairwiseVerdict, request, f"<answer_a>{good}</answer_a>", f"<answer_b>{bad}</answer_b>")).parsed
    b_wins = SimProvider().respond(scorer_request(PairwiseVerdict, request, f"<answer_a>{bad}</answer_a>", f"<answer_b>{good}</answer_b>")).parsed
    tie = SimProvider().respond(scorer_request(PairwiseVerdict, request, f"<answer_a>{good}</answer_a>", f"<answer_b>{good}</answer_b>")).parsed
    assert (a_wins.winner, b_wins.winner, tie.winner) == ("A", "B", "tie")


def test_pairwise_scorer_prefers_the_correct_json_api_answer_to_prose():
    situation = Situation("api_order_lookup", "en", "api", SHOP, "41234")
    request = '<request>\n{"action": "order_status", "order_number": "41234"}\n</request>'
    json_answer = situation.context().expected_json
    prose = f"Hello!\n\nYour order #41234 is on its way.\n\nKind regards,\n{SHOP}"
    for a, b, winner in ((json_answer, prose, "A"), (prose, json_answer, "B")):
        verdict = SimProvider().respond(scorer_request(PairwiseVerdict, request, f"<answer_a>{a}</answer_a>", f"<answer_b>{b}</answer_b>")).parsed
        assert verdict.winner == winner, verdict.reason
    # Without the request, a JSON answer and prose are still held to the same checks: the JSON one is not let off.
    bare = SimProvider().respond(scorer_request(PairwiseVerdict, "", f"<answer_a>{json_answer}</answer_a>", f"<answer_b>{prose}</answer_b>")).parsed
    assert bare.winner == "A", bare.reason


def test_checkers_decide_from_the_answer():
    ctx = Context(language="de", order_number="41234", shop=SHOP, escalation_needed=True)
    assert check("language", "Ihre Bestellung ist unterwegs und sollte am Freitag ankommen.", ctx)
    assert not check("language", "Your order is on its way and should arrive on Friday.", ctx)
    assert check("order_number", "Bestellung #41234", ctx) and not check("order_number", "Ihre Bestellung", ctx)
    assert check("refund_escalation", "I passed it to a human colleague.", ctx)
    assert not check("refund_escalation", "I can offer you a store voucher instead.", ctx)
    assert not check("word_limit", "word " * 81, ctx) and check("word_limit", "word " * 80, ctx)
    assert check("politeness", f"Hello!\n\nThanks.\n\nKind regards,\n{SHOP}", ctx) and not check("politeness", "Thanks.", ctx)
    assert check("json_api", '{"order_number": "1", "status": "x"}', Context()) and not check("json_api", "Order 1 is x.", Context())
    situation = Situation("api_order_lookup", "en", "api", SHOP, "41234")
    assert check("json_api", situation.context().expected_json, situation.context())


# --- Robustness: any text in, a well-formed answer out ---


@settings(max_examples=60, deadline=None)
@given(system=st.text(max_size=300), user=st.text(max_size=300), schema=st.sampled_from([None, JudgeOutput, RubricVerdict, PairwiseVerdict]))
def test_any_text_gets_a_well_formed_answer(system, user, schema):
    request = LLMRequest(messages=[Message(role="system", content=system), Message(role="user", content=user)],
                         model="sim-1", tools=SIM_TOOLS, response_schema=schema)
    response = SimProvider().respond(request)
    if schema is None:
        assert (response.text is not None) != bool(response.tool_calls)
    else:
        assert isinstance(response.parsed, schema)


def test_real_conversations_do_not_confuse_the_agent(real_data):
    provider = SimProvider()
    for path in sorted(real_data.glob("*.jsonl")):
        for line in path.read_text(encoding="utf-8").splitlines()[:40]:
            conversation = Conversation.from_jsonl(line)
            first_user = next(i for i, m in enumerate(conversation.messages) if m.role == "user")
            response = provider.respond(LLMRequest(messages=conversation.messages[: first_user + 1], model="sim-1"))
            assert response.text and not response.tool_calls  # no order number, no tools offered: a plain answer
