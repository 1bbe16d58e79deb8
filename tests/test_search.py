"""The search inside the night: Pareto parents, minibatch acceptance, the budget, and a real simulated night."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Sequence
from datetime import UTC, date, datetime

import pytest

from nightloop.classify import classify_many
from nightloop.config import ClassifyConfig, JudgeConfig, ReplayConfig, RoleConfig, SearchConfig
from nightloop.errors import BudgetExceeded
from nightloop.gate import is_gated, is_train
from nightloop.llm.budget import BudgetLedger
from nightloop.llm.client import LLMClient
from nightloop.llm.sim import SimProvider
from nightloop.models import BASELINE, Candidate, EvalResult, PromptVersion, ReplayCase, sha256_text
from nightloop.replay import run_replay
from nightloop.replay_cases import build_replay_set
from nightloop.search import Scoreboard, minibatch, pareto_parent, reflective_search
from nightloop.search_world import NightSearchWorld
from nightloop.simulate import simulate_night
from pathlib import Path

PROMPT = "support_agent"
REPO_ROOT = Path(__file__).resolve().parents[1]


def result(candidate: str, case: str, passed: bool, repeat: int = 0) -> EvalResult:
    return EvalResult(candidate_id=candidate, case_id=case, repeat=repeat, passed=passed, score=float(passed))


def test_pareto_parent_draws_only_candidates_that_lead_somewhere_and_are_not_dominated():
    # a leads on c1, b on c2; d ties a on c1 but is worse on c3 (dominated by a); e passes nothing.
    table = {"a": (1, 0, 1), "b": (0, 1, 0), "d": (1, 0, 0), "e": (0, 0, 0)}
    board = Scoreboard(result(cid, f"c{i}", bool(p)) for cid, row in table.items() for i, p in enumerate(row, 1))
    rng = random.Random(0)
    drawn = {pareto_parent(board, list(table), ["c1", "c2", "c3"], rng) for _ in range(200)}
    assert drawn == {"a", "b"}


def test_a_minibatch_mixes_cases_the_parent_fails_with_cases_it_passes():
    cases = [case(f"c{i}") for i in range(10)]
    board = Scoreboard(result("p", c.id, i < 3) for i, c in enumerate(cases))
    batch = minibatch(board, "p", cases, 6, random.Random(1))
    passes = [board.score("p", c.id) for c in batch]
    assert len(batch) == 6 and passes.count(1.0) == 3 and passes.count(0.0) == 3


def case(case_id: str) -> ReplayCase:
    from nightloop.models import Expectation, Message

    return ReplayCase(
        id=case_id, prompt_name=PROMPT, messages=[Message(role="user", content="hi")],
        expectation=Expectation(kind="contains", value="x"), origin=f"{case_id}#wrong_output@1", split="train",
    )


class LineWorld:
    """A world where a case passes when the template has the case's line; the judge adds the first missing one.

    ``wrong`` lines break every case that has no line of its own: a revision that fixes one case but breaks
    others must lose on the minibatch.
    """

    def __init__(self, cases: Sequence[ReplayCase], needs: dict[str, str], harmful: bool = False) -> None:
        self.needs = needs
        self.harmful = harmful
        self.proposals = 0
        self.replayed: list[tuple[str, str]] = []

    async def propose(self, parent_template: str, failing: Sequence[ReplayCase], results: Sequence[EvalResult]) -> list[Candidate]:
        self.proposals += 1
        line = self.needs.get(failing[0].id, "rule none")
        template = parent_template + f"\n{line}" + ("\nBREAK" if self.harmful else "")
        return [Candidate(id=f"cand-{sha256_text(template)[:8]}", prompt_name=PROMPT, base_version=1, template=template)]

    async def replay(self, templates: dict[str, str], cases: Sequence[ReplayCase]) -> list[EvalResult]:
        out = []
        for cid, template in templates.items():
            for c in cases:
                self.replayed.append((cid, c.id))
                need = self.needs.get(c.id)
                passed = (need in template) if need else "BREAK" not in template
                out.append(result(cid, c.id, passed))
        return out


def line_world(harmful: bool = False) -> tuple[LineWorld, list[ReplayCase]]:
    cases = [case(f"c{i}") for i in range(8)]
    needs = {f"c{i}": f"rule {i % 2}" for i in range(4)}  # c0..c3 need one of two rules; c4..c7 pass already
    return LineWorld(cases, needs, harmful), cases


def test_rounds_keep_revisions_that_win_their_minibatch_and_the_challenger_is_the_best_on_train():
    world, cases = line_world()
    seen = []
    found = asyncio.run(
        reflective_search(world, base_template="base", train=cases, results=[], config=SearchConfig(rounds=4, minibatch=4), on_round=seen.append)
    )
    assert found.challenger is not None
    assert "rule 0" in found.challenger.template and "rule 1" in found.challenger.template
    assert found.candidates and all(r.kept is None or r.best_score > r.parent_score for r in found.rounds)
    board = Scoreboard(found.results)
    assert board.rate(found.challenger.id, [c.id for c in cases]) == 1.0
    assert seen == found.rounds and seen[0].line().startswith("search round 1: ")
    # The search stopped once a candidate passed every train case, and replayed nothing twice.
    assert len(found.rounds) < 4 and len(world.replayed) == len(set(world.replayed))


def test_a_revision_that_loses_its_minibatch_is_not_kept_and_there_is_no_challenger():
    world, cases = line_world(harmful=True)
    found = asyncio.run(reflective_search(world, base_template="base", train=cases, results=[], config=SearchConfig(rounds=3, minibatch=8)))
    assert world.proposals == 3 and found.candidates == [] and found.challenger is None
    assert all("nothing kept" in r.line() for r in found.rounds)


def test_the_night_s_first_candidates_are_round_zero_and_only_the_winner_is_replayed_on_every_train_case():
    world, cases = line_world()
    first = [Candidate(id="first", prompt_name=PROMPT, base_version=1, template="base\nrule 0\nrule 1")]
    found = asyncio.run(
        reflective_search(world, base_template="base", train=cases, results=[], config=SearchConfig(rounds=0, minibatch=4), seeds=first)
    )
    assert [r.number for r in found.rounds] == [0] and found.challenger == first[0]
    assert world.proposals == 0  # round 0 asks the judge nothing
    replayed = [case_id for cid, case_id in world.replayed if cid == "first"]
    assert sorted(replayed) == sorted(c.id for c in cases)  # its minibatch, then the rest, each once


def test_production_is_replayed_only_on_the_train_cases_a_minibatch_needs():
    cases = [case(f"c{i:02}") for i in range(20)]
    world = LineWorld(cases, {c.id: f"rule {i % 2}" for i, c in enumerate(cases)})  # production fails every case
    found = asyncio.run(reflective_search(world, base_template="base", train=cases, results=[], config=SearchConfig(rounds=1, minibatch=4)))
    production = [case_id for cid, case_id in world.replayed if cid == BASELINE]
    assert len(production) == 4  # one minibatch's worth, not all 20 train cases
    batch = {case_id for cid, case_id in world.replayed if cid not in (BASELINE, *(c.id for c in found.candidates))}
    assert found.rounds and world.proposals == 1 and set(production) >= batch  # the round drew on what production was replayed on


@pytest.mark.parametrize("seed", range(4))
def test_production_is_replayed_on_more_train_cases_while_its_failures_pass_on_replay(seed):
    cases = [case(f"c{i:02}") for i in range(16)]
    world = LineWorld(cases, {"c03": "rule a", "c09": "rule b", "c14": "rule c"})  # the other 13 pass on replay
    asyncio.run(reflective_search(world, base_template="base", train=cases, results=[], config=SearchConfig(rounds=1, minibatch=4), seed=seed))
    production = [case_id for cid, case_id in world.replayed if cid == BASELINE]
    failing = [i for i, case_id in enumerate(production) if case_id in world.needs]
    assert len(failing) >= 2 and len(production) % 4 == 0  # a minibatch at a time, until half a minibatch fails
    assert len(production) - 4 <= failing[1] < len(production)  # and not a minibatch more
    assert len(production) == len(set(production))


class BudgetAfter(LineWorld):
    def __init__(self, *args, replays: int) -> None:
        super().__init__(*args)
        self.left = replays

    async def replay(self, templates, cases):
        if self.left == 0:
            raise BudgetExceeded("spent")
        self.left -= 1
        return await super().replay(templates, cases)


def test_a_spent_budget_ends_the_search_with_what_it_kept():
    _, cases = line_world()
    needs = {f"c{i}": f"rule {i}" for i in range(4)}
    world = BudgetAfter(cases, needs, replays=2)  # round 1's minibatch, the kept revision's rest
    production = [result(BASELINE, c.id, c.id not in needs) for c in cases]  # already in the night's results
    found = asyncio.run(reflective_search(world, base_template="base", train=cases, results=production, config=SearchConfig(rounds=5, minibatch=4)))
    assert found.budget_exhausted and len(found.candidates) == 1 and found.challenger == found.candidates[0]


# --- a real simulated night: sim agent, classifier, replay cases, sim scorers and sim judge ---


def sim_night(seed: int = 3, ledger: BudgetLedger | None = None):
    template = (REPO_ROOT / "prompts" / "support_agent.j2").read_text(encoding="utf-8")
    conversations = simulate_night(template=template, prompt_name=PROMPT, prompt_version=1, day=date(2026, 11, 2), per_night=100, seed=seed)
    found = classify_many(conversations, ClassifyConfig())
    failures = [f for fs in found.values() for f in fs]
    cases = build_replay_set(
        PROMPT, failures=failures, failed={c.id: c for c in conversations if found[c.id]},
        succeeded=[c for c in conversations if not found[c.id]], config=ReplayConfig(), seed=seed,
    )
    sim = SimProvider(seed=seed)
    agent, scorer, judge = (LLMClient(sim, RoleConfig(model=f"sim-{r}"), ledger=ledger) for r in ("agent", "scorer", "judge"))
    production = PromptVersion(name=PROMPT, version=1, template=template, sha256=sha256_text(template), created_at=datetime(2026, 11, 1, tzinfo=UTC))
    world = NightSearchWorld(
        judge=judge, agent=agent, production=production, failures=failures, conversations={c.id: c for c in conversations},
        judge_config=JudgeConfig(), candidates=2, repeats=1, replay_options={"scorer_client": scorer, "seed": seed, "concurrency": 4},
    )
    return world, cases, template, (agent, scorer)


def test_on_a_simulated_night_the_challenger_beats_production_on_the_gated_cases_it_never_saw():
    world, cases, template, (agent, scorer) = sim_night()
    train = [c for c in cases if is_train(c)]
    found = asyncio.run(reflective_search(world, base_template=template, train=train, results=[], config=SearchConfig(rounds=4, minibatch=6)))
    assert found.challenger is not None and world.judge_calls >= 1
    kept = [r for r in found.rounds if r.kept]
    assert kept and kept[-1].best_score > kept[-1].parent_score
    gated = [c for c in cases if is_gated(c)]
    arms = {BASELINE: template, found.challenger.id: found.challenger.template}
    outcome = asyncio.run(run_replay(agent, gated, arms, repeats=1, scorer_client=scorer, seed=11, concurrency=4))
    rate = {cid: sum(r.passed for r in outcome.results if r.candidate_id == cid) / len(gated) for cid in arms}
    assert rate[found.challenger.id] >= rate[BASELINE] + 0.10


def test_the_judge_sees_what_the_parent_still_answers_wrong():
    world, cases, template, _ = sim_night()
    train = [c for c in cases if is_train(c)]
    results = asyncio.run(world.replay({BASELINE: template}, train))
    failing = [c for c in train if not next(r for r in results if r.case_id == c.id).passed]
    from nightloop.search_world import failures_still_failing

    shown = failures_still_failing(failing, results, world.failures)
    assert shown and all("still fails with the current template" in f.evidence for f in shown)


def test_the_night_s_budget_stops_the_search_on_a_simulated_night():
    ledger = BudgetLedger(None, 40_000, {})
    world, cases, template, _ = sim_night(ledger=ledger)
    train = [c for c in cases if is_train(c)]
    found = asyncio.run(reflective_search(world, base_template=template, train=train, results=[], config=SearchConfig(rounds=20)))
    assert found.budget_exhausted and len(found.rounds) < 20


@pytest.mark.parametrize("seed", [3])
def test_a_candidate_that_drops_the_json_instruction_measures_worse_on_api_regression_cases(seed):
    """Item 6 end to end: replayed pairwise against the original JSON answers, prose must lose, not tie."""
    with_json = (REPO_ROOT / "prompts" / "support_agent.j2").read_text(encoding="utf-8") + (
        "- For API requests, return only JSON with the keys order_number, status and eta, no prose.\n"
    )
    conversations = simulate_night(template=with_json, prompt_name=PROMPT, prompt_version=1, day=date(2026, 11, 3), per_night=120, seed=seed)
    api = [c for c in conversations if c.metadata["channel"] == "api" and not c.metadata["sim_failed"]]
    cases = build_replay_set(
        PROMPT, failures=[], failed={}, succeeded=api, config=ReplayConfig(regression_cases=len(api)), seed=seed
    )
    assert len(cases) >= 8 and all(c.expectation.kind == "pairwise" for c in cases)
    without_json = with_json.replace("- For API requests, return only JSON with the keys order_number, status and eta, no prose.\n", "")
    sim = SimProvider(seed=seed)
    agent, scorer = LLMClient(sim, RoleConfig(model="sim-agent")), LLMClient(sim, RoleConfig(model="sim-scorer"))
    outcome = asyncio.run(
        run_replay(agent, cases, {BASELINE: with_json, "no-json": without_json}, repeats=1, scorer_client=scorer, seed=seed, concurrency=4)
    )
    mean = {cid: sum(r.score for r in outcome.results if r.candidate_id == cid) / len(cases) for cid in (BASELINE, "no-json")}
    assert mean["no-json"] <= mean[BASELINE] - 0.3


def test_search_settings_are_validated_and_documented_in_the_example_config(tmp_path):
    from nightloop.config import load_settings
    from nightloop.errors import ConfigError

    (tmp_path / "nightloop.toml").write_text("[search]\nminibatch = 1\n")
    with pytest.raises(ConfigError, match="search.minibatch"):
        load_settings(tmp_path / "nightloop.toml")
    shipped = load_settings(REPO_ROOT / "nightloop.toml").search
    assert (shipped.rounds, shipped.minibatch) == (SearchConfig().rounds, SearchConfig().minibatch)


def test_a_re_run_reads_the_search_s_replays_back_from_the_store_instead_of_paying_again():
    from nightloop.stages.search import StoredReplays

    world, cases, template, (agent, scorer) = sim_night()
    train = [c for c in cases if is_train(c)][:6]
    saved: list[EvalResult] = []
    first = StoredReplays(
        stored=[], on_result=saved.append, judge=world.judge, agent=agent, production=world.production,
        failures=list(world.failures.values()), conversations=world.conversations, judge_config=JudgeConfig(),
        candidates=2, repeats=1, replay_options=dict(world.replay_options),
    )
    results = asyncio.run(first.replay({BASELINE: template}, train))
    assert len(saved) == len(results) == len(train)
    calls = agent.calls
    again = StoredReplays(
        stored=saved, on_result=saved.append, judge=world.judge, agent=agent, production=world.production,
        failures=list(world.failures.values()), conversations=world.conversations, judge_config=JudgeConfig(),
        candidates=2, repeats=1, replay_options=dict(world.replay_options),
    )
    assert asyncio.run(again.replay({BASELINE: template}, train)) == results
    assert agent.calls == calls and len(saved) == len(train)
