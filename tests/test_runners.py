"""Agent runners: the team's own agent (tests/agents/shop_agent.py, no nightloop imports) replays the night.

The agent is a plain Python function with its own tool; it is run through the ``python`` runner, and
behind a loopback HTTP server through the ``http`` runner. A night with each promotes the candidate that
fixes the planted failure (prices quoted without VAT) and rejects the one that breaks the agent (cents).
"""

from __future__ import annotations

import asyncio
import json
import sys
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner

from nightloop import pipeline
from nightloop.config import RoleConfig, RunnerConfig, load_settings
from nightloop.errors import ConfigError, UnknownName
from nightloop.llm.base import LLMRequest, LLMResponse
from nightloop.llm.budget import BudgetLedger
from nightloop.llm.client import Clients, LLMClient
from nightloop.llm.sim import SimProvider
from nightloop.models import BASELINE, Expectation, JudgeOutput, Message, ProposedCandidate, ReplayCase
from nightloop.prompt_files import import_prompts
from nightloop.replay import run_replay
from nightloop.runners import AgentRequest, HttpRunner, PythonRunner, make_runner
from nightloop.store import Store
from nightloop.templates import render

AGENTS = Path(__file__).resolve().parent / "agents"
sys.path.insert(0, str(AGENTS))
import shop_agent  # noqa: E402  (the team's agent, importable as the runner's callable spec)

PROMPT = "price_agent"
TEMPLATE = "You are the price assistant of {{ shop }}. Look the item up with the price tool and state its price."
FIX = TEMPLATE + " Quote prices including VAT."
BREAK = TEMPLATE + " Quote prices in cents."
NIGHT = date(2026, 11, 24)
QUESTIONS = ["How much is the {item}?", "What does the {item} cost?", "Price of the {item}, please.",
             "Tell me the price of the {item}.", "I'd like to know what the {item} costs."]


def production_logs(path: Path, template: str = TEMPLATE) -> Path:
    """Conversations the agent had in production under ``template``; the expected answer includes VAT."""
    lines = []
    started = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
    for n, (item, info) in enumerate((i, c) for _ in range(2) for i, c in shop_agent.CATALOGUE.items()):
        for q, question in enumerate(QUESTIONS[: 3 if info["vat_rate"] else 4]):
            system = render(template, {"shop": "Acme"})
            user = {"role": "user", "content": question.format(item=item)}
            answer = shop_agent.respond(system, [user], {"shop": "Acme"})
            at = started + timedelta(minutes=10 * len(lines))
            lines.append(json.dumps({
                "id": f"shop-{n:02d}-{q}", "prompt_name": PROMPT, "prompt_version": 1, "variables": {"shop": "Acme"},
                "started_at": at.isoformat(), "ended_at": (at + timedelta(seconds=3)).isoformat(),
                "messages": [{"role": "system", "content": system}, user, *answer["messages"]],
                "outcome": {"status": "ok", "expected": round(info["net"] * (1 + info["vat_rate"]), 2)},
            }))
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


class ScriptedJudge:
    """The judge model: proposes the fixing and the breaking revision (real judges are tested elsewhere)."""

    name = "scripted-judge"

    async def complete(self, request: LLMRequest) -> LLMResponse:
        output = JudgeOutput(candidates=[
            ProposedCandidate(template=FIX, rationale="production quotes net prices; customers pay VAT"),
            ProposedCandidate(template=BREAK, rationale="precise amounts"),
        ])
        return LLMResponse(text=output.model_dump_json(), parsed=output)


def write_world(tmp_path: Path, runner_toml: str, extra: str = "") -> tuple[Path, Path]:
    prompts = tmp_path / "prompts"
    prompts.mkdir()
    (prompts / f"{PROMPT}.j2").write_text(TEMPLATE + "\n", encoding="utf-8")
    # Regression cases compare with the original answer by the answer rules, not an LLM grader.
    (prompts / f"{PROMPT}.yaml").write_text(
        "description: price assistant\nvariables: [shop]\nscorers:\n  - {name: reference, for: [pairwise]}\n",
        encoding="utf-8",
    )
    logs = production_logs(tmp_path / "logs.jsonl")
    config = tmp_path / "nightloop.toml"
    config.write_text(
        f'sources = ["{logs}"]\nseed = 1\n[judge]\ncandidates = 2\n'
        f"[replay]\nrepeats = 2\nconcurrency = 8\n{extra}[replay.runner]\n{runner_toml}\n",
        encoding="utf-8",
    )
    return config, prompts


def run_world_night(tmp_path: Path, runner_toml: str, extra: str = ""):
    """A night over the shop world; ``extra`` is TOML put inside the [replay] table (e.g. ``scorers = [...]``)."""
    config, prompts = write_world(tmp_path, runner_toml, extra)
    settings = load_settings(config)
    store = Store(settings.db)
    try:
        import_prompts(store, prompts, created_by="test")
        ledger = BudgetLedger(None, None, settings.llm.prices)
        sim = SimProvider(seed=1)
        clients = Clients(
            judge=LLMClient(ScriptedJudge(), settings.llm.judge, ledger=ledger),
            agent=LLMClient(sim, settings.llm.agent, ledger=ledger),
            scorer=LLMClient(sim, settings.llm.scorer, ledger=ledger),
        )
        report = pipeline.run_night(settings, PROMPT, NIGHT, store=store, clients=clients)
        results = store.runs.eval_results(report.run_id)
        return report, results
    finally:
        store.close()


def assert_fix_promoted_and_break_rejected(report, results) -> None:
    assert report.status == "done", report.notes
    assert report.failures.get("wrong_output", 0) >= 20
    verdicts = sorted((d.verdict, round(d.delta, 2)) for d in report.decisions)
    promoted = [d for d in report.decisions if d.verdict == "promote"]
    # The break never ships: the search inside the night does not keep it (it loses the minibatch to the fix), or,
    # handed to select-then-test, it is rejected on the gated cases or, worse on train, never chosen to be tested.
    rejected = [d for d in report.decisions if d.verdict == "reject" or (d.n_cases == 0 and "not tonight's challenger" in d.reasons[-1])]
    not_kept = [n for n in report.notes if n.startswith("search round 0: ") and f"{promoted[0].candidate_id} kept" in n]
    assert len(promoted) == 1 and len(rejected) + len(not_kept) == 1 and len(report.decisions) == 1 + len(rejected), verdicts
    assert promoted[0].delta > 0.3 and all(d.delta < 0 or d.n_cases == 0 for d in rejected)
    assert report.review_id is not None
    assert all(r.error is None for r in results), [r.error for r in results if r.error][:3]
    # The agent's own code answered: its tool's net prices, VAT added only under the fixing candidate.
    winner_outputs = {r.output for r in results if r.candidate_id == promoted[0].candidate_id}
    assert any("12.00" in o for o in winner_outputs)
    baseline_outputs = {r.output for r in results if r.candidate_id == BASELINE}
    assert any("10.00" in o for o in baseline_outputs) and not any("12.00" in o for o in baseline_outputs)


def test_a_night_through_the_python_runner_promotes_the_fix_and_rejects_the_break(tmp_path: Path) -> None:
    report, results = run_world_night(tmp_path, 'name = "python"\ncallable = "shop_agent:respond"')
    assert_fix_promoted_and_break_rejected(report, results)
    # The agent's own code reproduces every planted failure the baseline was replayed on; the reviewer sees that rate.
    undecided = sum(k.undecided for k in report.reproduction.by_kind)
    assert report.reproduction.rate == 1.0 and report.reproduction.cases >= 10 and undecided == 0
    assert not any(n.startswith("Replay does not match") for n in report.notes)
    from nightloop.cli import app

    shown = CliRunner().invoke(app, ["review", "show", report.review_id], env={"COLUMNS": "200"})  # NIGHTLOOP_DB
    assert shown.exit_code == 0, shown.output
    r = report.reproduction
    assert f"replay reproduced {r.reproduced}/{r.cases} production failures (100%" in shown.output


def test_a_night_through_the_http_runner_promotes_the_fix_and_rejects_the_break(tmp_path: Path) -> None:
    with shop_agent.serve() as server:
        report, results = run_world_night(tmp_path, f'name = "http"\nurl = "{server.url}"\ntimeout_s = 10\nconcurrency = 4')
        posted = server.requests
    assert_fix_promoted_and_break_rejected(report, results)
    assert len(posted) == len(results)
    first = posted[0]
    assert set(first) >= {"case_id", "repeat", "prompt_name", "prompt", "prompts", "messages", "variables"}
    assert first["prompts"][PROMPT] == first["prompt"] and first["messages"][-1]["role"] == "user"


# --- the runners one by one ---


def case(question: str = "How much is the mug?", **metadata) -> ReplayCase:
    return ReplayCase(
        id="shop-1@2", prompt_name=PROMPT, messages=[Message(role="user", content=question)],
        variables={"shop": "Acme"}, expectation=Expectation(kind="reference", value=12.0), origin="shop-1#wrong_output@4",
        metadata=metadata,
    )


def request(prompt: str = FIX, **kw) -> AgentRequest:
    return AgentRequest(case=case(**kw), candidate_id="c1", repeat=0, prompt=prompt, prompts={PROMPT: prompt})


async def test_python_runner_calls_sync_and_async_callables_with_the_arguments_they_take() -> None:
    seen: dict = {}

    async def async_agent(prompt, messages, *, case_id, prompts):
        seen.update(prompt=prompt, messages=messages, case_id=case_id, prompts=prompts)
        return "<solution> 12 </solution>"

    turn = await PythonRunner(async_agent).run(request())
    assert turn.text == "<solution> 12 </solution>" and seen["case_id"] == "shop-1@2"
    assert seen["messages"] == [{"role": "user", "content": "How much is the mug?"}]
    synced = await PythonRunner("shop_agent:respond").run(request())
    assert "12.00" in synced.text and synced.tool_calls == 1 and synced.tokens == 50


async def test_one_failing_case_is_a_failed_result_and_the_others_still_run() -> None:
    def flaky(prompt, messages):
        if "lamp" in messages[-1]["content"]:
            raise RuntimeError("agent crashed")
        return "<solution> 12 </solution>"

    cases = [case(), case("How much is the lamp?").model_copy(update={"id": "shop-2@2"})]
    outcome = await run_replay(None, cases, {BASELINE: FIX}, repeats=1, concurrency=2, runner=PythonRunner(flaky))
    by_case = {r.case_id: r for r in outcome.results}
    assert by_case["shop-1@2"].passed and by_case["shop-1@2"].error is None
    assert "agent crashed" in by_case["shop-2@2"].error and not by_case["shop-2@2"].passed
    assert outcome.errors == 1


def test_runner_names_and_callables_are_checked_with_the_fix() -> None:
    with pytest.raises(UnknownName, match=r"valid runners: (canned, )?http, python, recorded"):
        make_runner(RunnerConfig(name="langgraph"))
    with pytest.raises(ConfigError, match="package.module:function"):
        make_runner(RunnerConfig(name="python", callable="shop_agent"))
    with pytest.raises(ConfigError, match="cannot import"):
        make_runner(RunnerConfig(name="python", callable="no_such_agent_module:respond"))
    with pytest.raises(ConfigError, match="needs url"):
        make_runner(RunnerConfig(name="http"))


async def test_http_runner_retries_a_503_and_gives_up_on_a_dead_endpoint() -> None:
    with shop_agent.serve(fail_first=True) as server:
        runner = HttpRunner(RunnerConfig(name="http", url=server.url, max_retries=2, retry_backoff_s=0.01, timeout_s=5))
        turn = await runner.run(request())
        await runner.aclose()
        assert "12.00" in turn.text and len(server.requests) == 2
        url = server.url
    dead = HttpRunner(RunnerConfig(name="http", url=url, max_retries=1, retry_backoff_s=0.01, timeout_s=2))
    with pytest.raises(ConnectionError, match="agent endpoint"):
        await dead.run(request())
    await dead.aclose()


async def test_recorded_runner_counts_tool_calls_the_recording_cannot_answer() -> None:
    from nightloop.models import ToolCall, ToolFunction

    def call(name: str, item: str) -> ToolCall:
        return ToolCall(id=f"t-{name}-{item}", function=ToolFunction(name=name, arguments=json.dumps({"item": item})))

    script = iter([[call("price_tool", "mug")], [call("price_tool", "lamp"), call("stock_tool", "mug")], []])

    class Agent:
        name = "scripted"

        async def complete(self, request: LLMRequest) -> LLMResponse:
            return LLMResponse(text="<solution> 12 </solution>", tool_calls=next(script) or None)

    recorded = [{"name": "price_tool", "arguments": json.dumps({"item": "mug"}), "content": '{"net": 10}'}]
    agent = LLMClient(Agent(), RoleConfig())
    the_case = case(tool_results=recorded, tool_names=["price_tool"])
    outcome = await run_replay(agent, [the_case], {BASELINE: FIX}, repeats=1, concurrency=1)
    [result] = outcome.results
    # price_tool(mug) was recorded; price_tool(lamp) (other arguments) and stock_tool (unknown tool) were not.
    assert result.unrecorded_tool_calls == 2 and outcome.unrecorded_tool_calls == 2
    assert "2 tool call(s) had no recorded result" in result.reason


def test_runner_request_carries_every_managed_prompt_with_the_candidate_in_place() -> None:
    got: list[dict] = []

    def agent(prompt, prompts):
        got.append(prompts)
        return "<solution> 12 </solution>"

    cases = [case()]
    asyncio.run(run_replay(None, cases, {BASELINE: TEMPLATE, "c1": FIX}, repeats=1, concurrency=1,
                           runner=PythonRunner(agent), other_prompts={"router": "Route {{ shop }} questions."}))
    assert {p["router"] for p in got} == {"Route Acme questions."}
    assert sorted(p[PROMPT] for p in got) == sorted([render(TEMPLATE, {"shop": "Acme"}), render(FIX, {"shop": "Acme"})])
