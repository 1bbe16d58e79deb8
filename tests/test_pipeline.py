"""The night end to end on the offline simulator: stages, idempotency, resume, report, backfill."""

from __future__ import annotations

import json
import re
from collections import Counter
from datetime import date, timedelta
from pathlib import Path
from unittest.mock import ANY

import pytest
from typer.testing import CliRunner
from worlds import NightRun, Traffic, Worlds

from nightloop import pipeline
from nightloop.config import Settings, load_settings
from nightloop.gate import is_train
from nightloop.gate_select import cases_worth_more_repeats, extra_rounds, first_repeats
from nightloop.gate_select import testing_batches as batches_of
from nightloop.ingest import ingest
from nightloop.llm.base import LLMRequest, LLMResponse
from nightloop.llm.budget import BudgetLedger
from nightloop.llm.cache import cache_key, cache_scope
from nightloop.llm.client import Clients, LLMClient
from nightloop.llm.sim import SimProvider
from nightloop.models import BASELINE, ReplayOutcome, ReplaySetOutput
from nightloop.night import run_id_for
from nightloop.prompt_files import import_prompts
from nightloop.simulate import simulate_from_store
from nightloop.stages import STAGES
from nightloop.stages.search import SearchOutput
from nightloop.store import Store

REPO = Path(__file__).resolve().parents[1]
PROMPT = "support_agent"
DAY = date(2026, 11, 17)
ALPHA = 0.01


def _settings(tmp_path: Path, **overrides) -> Settings:
    return load_settings(db=tmp_path / "night.db", seed=3, **overrides)


def _day_of_traffic(store: Store, settings: Settings, tmp_path: Path, day: date = DAY, n: int = 100) -> None:
    files = simulate_from_store(store, PROMPT, nights=1, per_night=n, seed=11, out=tmp_path / "logs", start_date=day)
    ingest(store, [str(f) for f in files], classify_config=settings.classify)


@pytest.fixture
def world(worlds: Worlds, tmp_path: Path):
    """The repo's prompts and a simulated day (100 conversations) of ``DAY``: a private copy of the session's."""
    settings = _settings(tmp_path)
    worlds.copy_traffic(Traffic(), tmp_path, settings.db.name)
    with Store(settings.db) as store:
        yield settings, store


@pytest.fixture
def night_one(worlds: Worlds, tmp_path: Path):
    """``world`` after its night (``DAY`` + 1) ran with these settings: a private copy, and that night's report."""
    settings = _settings(tmp_path)
    _, report = worlds.copy_night(NightRun(), tmp_path, settings.db.name)
    with Store(settings.db) as store:
        yield settings, store, report


def test_a_night_proposes_gates_and_queues_a_better_prompt(night_one) -> None:
    settings, store, report = night_one
    assert report.status == "done", report.notes
    assert report.conversations == 100 and report.failure_rate > 0.2
    assert report.candidates >= 1 and report.decisions
    promoted = [d for d in report.decisions if d.verdict == "promote"]
    assert promoted, [d.reasons for d in report.decisions]
    assert report.review_id is not None
    item = store.runs.review_item(report.review_id)
    assert item.status == "pending" and item.decision.delta > 0
    assert set(store.runs.finished_stages(report.run_id)) == {stage.name for stage in STAGES}


def test_a_night_reads_and_parses_each_conversation_once(world, monkeypatch) -> None:
    """Classify, the replay set and the judge share the window ingest read: no conversation is fetched twice."""
    settings, store = world
    fetched: Counter[str] = Counter()
    get = store.conversations.get

    def counting_get(conversation_id: str):
        fetched[conversation_id] += 1
        return get(conversation_id)

    monkeypatch.setattr(store.conversations, "get", counting_get)
    report = pipeline.run_night(settings, PROMPT, DAY + timedelta(days=1), store=store)
    assert report.status == "done", report.notes
    assert max(fetched.values(), default=0) <= 1, fetched.most_common(3)
    assert sum(fetched.values()) < report.conversations, f"{sum(fetched.values())} single reads for {report.conversations}"


def test_a_finished_night_is_not_redone_unless_forced(night_one) -> None:
    settings, store, first = night_one
    night = DAY + timedelta(days=1)
    again = pipeline.run_night(settings, PROMPT, night, store=store)
    assert again.status == "skipped" and "already finished" in again.notes[0]
    forced = pipeline.run_night(settings, PROMPT, night, store=store, force=True)
    assert forced.status == first.status and forced.run_id == first.run_id


def test_too_few_failures_stop_the_night_early(world) -> None:
    settings, store = world
    strict = settings.model_copy(update={"min_failures": 10_000})
    report = pipeline.run_night(strict, PROMPT, DAY + timedelta(days=1), store=store)
    assert report.status == "stopped_early"
    assert any("new failure" in note for note in report.notes)


def test_a_night_with_no_conversations_says_so(world) -> None:
    settings, store = world
    report = pipeline.run_night(settings, PROMPT, DAY - timedelta(days=5), store=store)
    assert report.status == "stopped_early" and "no conversations" in report.notes[0]


class Interrupted(BaseException):
    """Stands in for a kill: not an Exception, so nothing on the way catches it."""


class RecordingSim(SimProvider):
    """The simulator, recording the cache key of every call it completes; optionally killed after N agent calls."""

    def __init__(self, seed: int, kill_after: int | None = None) -> None:
        super().__init__(seed=seed)
        self.completed: list[str] = []
        self.kill_after = kill_after

    async def complete(self, request: LLMRequest) -> LLMResponse:
        if self.kill_after is not None and request.response_schema is None and len(self.completed) >= self.kill_after:
            raise Interrupted()
        response = await super().complete(request)
        self.completed.append(cache_key(self.name, request, scope=cache_scope(self)))
        return response


def _clients(settings: Settings, store: Store, provider: SimProvider) -> Clients:
    ledger = BudgetLedger(None, None, settings.llm.prices)
    make = lambda role: LLMClient(provider, role, cache=store.cache, ledger=ledger)  # noqa: E731
    return Clients(judge=make(settings.llm.judge), agent=make(settings.llm.agent), scorer=make(settings.llm.scorer))


def test_an_interrupted_night_resumes_without_repeating_finished_model_calls(world) -> None:
    settings, store = world
    night = DAY + timedelta(days=1)
    first = RecordingSim(settings.seed, kill_after=150)
    with pytest.raises(Interrupted):
        pipeline.run_night(settings, PROMPT, night, store=store, clients=_clients(settings, store, first))
    run_id = run_id_for(settings, PROMPT, night)
    assert store.runs.status(run_id) == "running"
    assert "judge" in store.runs.finished_stages(run_id) and "replay" not in store.runs.finished_stages(run_id)
    saved_before = {(r.candidate_id, r.case_id, r.repeat): r for r in store.runs.eval_results(run_id)}
    assert saved_before

    second = RecordingSim(settings.seed)
    report = pipeline.run_night(settings, PROMPT, night, store=store, clients=_clients(settings, store, second))
    assert report.status == "done"
    assert not set(first.completed) & set(second.completed), "a finished model call was made again"
    after = {(r.candidate_id, r.case_id, r.repeat): r for r in store.runs.eval_results(run_id)}
    assert all(after[key] == result for key, result in saved_before.items())
    cases = ReplaySetOutput.model_validate(store.runs.stage_output(run_id, "replay_set")).cases
    train = {c.id for c in cases if is_train(c)}
    # Select, then test: the search replays on the train cases, then the baseline and the challenger on the rest,
    # then both again on the gated cases where some first repeat failed.
    # Regression cases start with [replay] regression_repeats, the others with repeats.
    gated_ids = [c.id for c in cases if c.id not in train]
    firsts = first_repeats(cases, settings.replay.repeats, settings.replay.regression_repeats)
    [challenger] = {r.candidate_id for r in after.values() if r.case_id in gated_ids} - {BASELINE}
    wanted = cases_worth_more_repeats(after.values(), gated_ids, challenger, firsts)
    extras = Counter((arm, case_id) for arm, case_id, repeat in after if case_id in firsts and repeat >= firsts[case_id])
    extended = {case_id for _, case_id in extras}
    assert wanted and extended <= set(wanted)  # this night settled before some (here: every) step of extra repeats
    # Both arms of an extended case get the same extra repeats, [gate] extra_step at a time, at most extra_repeats.
    steps = {count + start for start, count in extra_rounds(0, settings.gate.extra_repeats, settings.gate.extra_step)}
    assert all(extras[BASELINE, c] == extras[challenger, c] for c in extended)
    assert {extras[BASELINE, c] for c in extended} <= steps
    gated = [key for key in after if key[1] not in train]
    # In batches: every regression case and [gate] batch_cases holdout cases first, stopping once decided.
    tested = {case_id for arm, case_id, _ in gated if arm == BASELINE}
    batches = batches_of([c for c in cases if c.id not in train], settings.gate.batch_cases)
    assert any(tested == {c.id for batch in batches[:n] for c in batch} for n in range(1, len(batches) + 1))
    stopped = ReplayOutcome.model_validate(store.runs.stage_output(run_id, "replay")).stopped
    assert (len(tested) < len(gated_ids)) == bool(stopped), stopped
    expected = 2 * sum(firsts[case_id] for case_id in tested) + sum(extras.values())
    assert report.candidates > 1 and len(gated) == expected
    assert any(key[0] == "baseline" and key[1] in train for key in after)


def test_the_gated_replay_stops_once_the_evidence_promotes_after_every_regression_case(night_one) -> None:
    settings, store, report = night_one
    cases = ReplaySetOutput.model_validate(store.runs.stage_output(report.run_id, "replay_set")).cases
    gated = [c for c in cases if not is_train(c)]
    tested = {r.case_id for r in store.runs.eval_results(report.run_id) if r.candidate_id == BASELINE and r.case_id in {c.id for c in gated}}
    first = batches_of(gated, settings.gate.batch_cases)[0]
    # The harm test read every regression case before the verdict; the holdout cases after the first batch cost nothing.
    assert {c.id for c in gated if c.origin == "regression"} <= tested == {c.id for c in first} < {c.id for c in gated}
    [promoted] = [d for d in report.decisions if d.verdict == "promote"]
    stopped = ReplayOutcome.model_validate(store.runs.stage_output(report.run_id, "replay")).stopped
    assert f"stopped after {len(first)} of {len(gated)} gated cases" in stopped and stopped in promoted.reasons
    assert promoted.n_cases == len(first) and promoted.evidence >= 1 / settings.gate.alpha


def test_the_extra_repeats_stop_at_the_step_that_settles_the_night(world) -> None:
    from nightloop.gate import gate_night
    from nightloop.reproduction import check_reproduction, gate_cases

    settings, store = world
    settings = settings.model_copy(update={"gate": settings.gate.model_copy(update={"alpha": ALPHA})})
    report = pipeline.run_night(settings, PROMPT, DAY + timedelta(days=1), store=store)
    cases = ReplaySetOutput.model_validate(store.runs.stage_output(report.run_id, "replay_set")).cases
    results = store.runs.eval_results(report.run_id)
    ids = [d.candidate_id for d in report.decisions]
    firsts = first_repeats(cases, settings.replay.repeats, settings.replay.regression_repeats)
    step, extra = settings.gate.extra_step, settings.gate.extra_repeats

    def step_of(result) -> int:  # 0: a first repeat; i: the i-th step of extra repeats after the case's own first repeats
        beyond = result.repeat - firsts[result.case_id]
        return 0 if beyond < 0 else 1 + beyond // step

    gated = [r for r in results if r.case_id in firsts and not is_train(next(c for c in cases if c.id == r.case_id))]
    last = max(step_of(r) for r in gated)
    assert 1 <= last < extra // step, "the night needed no step, or every step"
    cases = gate_cases(cases, check_reproduction(cases, results))

    def verdict(rows) -> str:
        gate = gate_night(rows, cases, ids, settings.gate, repeats=firsts)
        return next(d.verdict for d in gate.decisions if d.candidate_id == gate.challenger_id)

    # Promoted with the last step's pairs, not yet without them: the replay stopped at the first step that settled it.
    assert verdict(results) == "promote" and verdict([r for r in results if step_of(r) < last]) == "hold"


def test_report_json_per_night(night_one) -> None:
    settings, store, _ = night_one
    from nightloop.cli import app

    result = CliRunner().invoke(app, ["report", "--json", "--db", str(settings.db)])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    assert len(rows) == 1
    row = rows[0]
    assert row["date"] == "2026-11-18" and row["conversations"] == 100
    assert set(row["failures"]) and 0 < row["failure_rate"] < 1
    assert row["promoted_version"] is None


def test_backfill_runs_each_night_once(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    with Store(settings.db) as store:
        import_prompts(store, REPO / "prompts", created_by="test")
        for offset in range(3):
            files = simulate_from_store(
                store, PROMPT, nights=1, per_night=30, seed=offset, out=tmp_path / "logs", start_date=DAY + timedelta(days=offset)
            )
            ingest(store, [str(f) for f in files], classify_config=settings.classify)
    from nightloop.cli import app

    args = ["backfill", "--since", "2026-11-18", "--until", "2026-11-20", "--no-prefect", "--db", str(settings.db), "--json"]
    first = CliRunner().invoke(app, args)
    assert first.exit_code == 0, first.output
    assert [r["status"] != "skipped" for r in json.loads(first.stdout)] == [True, True, True]
    second = CliRunner().invoke(app, args)
    reports = json.loads(second.stdout)
    assert [r["status"] for r in reports] == ["skipped"] * 3
    assert all("already finished" in r["notes"][0] for r in reports)
    forced = CliRunner().invoke(app, [*args, "--force"])
    assert [r["status"] != "skipped" for r in json.loads(forced.stdout)] == [True, True, True]


HARMFUL = ("Keep every answer under 10 words", "Never mention order numbers", "Always answer in English")


def _night_with_a_harmful_candidate(tmp_path: Path, search_rounds: int = 0):
    """The simulated judge proposes a harmful edit now and then: find a seeded night where it does.

    With ``search_rounds = 0`` every judge candidate goes to select-then-test (the search would filter it first).
    """
    for seed in range(9, 17):  # 9 is the first seed (from 7) whose judge proposes one
        settings = load_settings(db=tmp_path / f"h{seed}.db", seed=seed, search={"rounds": search_rounds})
        with Store(settings.db) as store:
            import_prompts(store, REPO / "prompts", created_by="test")
            files = simulate_from_store(store, PROMPT, nights=1, per_night=100, seed=seed + 1, out=tmp_path / f"l{seed}", start_date=DAY)
            ingest(store, [str(f) for f in files], classify_config=settings.classify)
            report = pipeline.run_night(settings, PROMPT, DAY + timedelta(days=1), store=store)
            judged = store.runs.stage_output(report.run_id, "judge") or {"candidates": []}
            searched = store.runs.stage_output(report.run_id, "search")  # what the search handed the gate
        harmful = {c["id"] for c in judged["candidates"] if any(h in c["template"] for h in HARMFUL)}
        if harmful:
            return report, harmful, searched
    pytest.fail("the simulated judge proposed no harmful edit in 8 seeded nights")


def test_harmful_candidates_are_never_promoted_and_regressed_cases_are_named(tmp_path: Path) -> None:
    report, harmful, _ = _night_with_a_harmful_candidate(tmp_path)
    judged = [d for d in report.decisions if d.candidate_id in harmful]
    assert judged, f"no harmful candidate reached the gate: {harmful} vs {[d.candidate_id for d in report.decisions]}"
    for decision in judged:
        assert decision.verdict != "promote"
        if decision.n_cases == 0:  # select, then test: the train cases already showed it worse than the challenger
            match = re.search(r"train pass rate (\d\.\d\d) vs (\d\.\d\d)", decision.reasons[-1])
            assert match and float(match.group(1)) < float(match.group(2)), decision.reasons
        else:
            assert decision.verdict == "reject" and decision.regressions
            assert all(any(case in reason for reason in decision.reasons) for case in decision.regressions)


def test_the_search_keeps_a_harmful_candidate_from_the_gate(tmp_path: Path) -> None:
    report, harmful, raw = _night_with_a_harmful_candidate(tmp_path, search_rounds=4)
    searched = SearchOutput.model_validate(raw)
    kept = any(" kept (beats " in line for line in searched.rounds)
    assert searched.rounds and (not kept or not harmful & {c.id for c in searched.candidates})
    assert not any(d.candidate_id in harmful and d.verdict == "promote" for d in report.decisions)
    assert any(note.startswith("search round 0: ") for note in report.notes)


def test_auto_autonomy_promotes_and_propose_only_reports(world) -> None:
    settings, store = world
    meta = store.prompts.get_meta(PROMPT)
    store.prompts.set_meta(PROMPT, meta.model_copy(update={"autonomy": "propose"}))
    proposed = pipeline.run_night(settings, PROMPT, DAY + timedelta(days=1), store=store)
    assert proposed.review_id is None and any("autonomy: propose" in n for n in proposed.notes)
    assert store.prompts.label_version(PROMPT, "production") == 1

    store.prompts.set_meta(PROMPT, meta.model_copy(update={"autonomy": "auto"}))
    auto = pipeline.run_night(settings, PROMPT, DAY + timedelta(days=1), store=store, force=True)
    assert auto.promoted_version == 2
    assert store.prompts.label_version(PROMPT, "production") == 2
    assert store.runs.review_item(auto.review_id).status == "approved"


def test_a_breakage_costs_a_prompt_its_autonomy(world) -> None:
    settings, store = world
    store.prompts.set_meta(PROMPT, store.prompts.get_meta(PROMPT).model_copy(update={"autonomy": "auto"}))
    from nightloop.autonomy import after_breakage

    after_breakage(store, PROMPT, settings.autonomy, actor="nightloop watch", reason="failure rate rose")  # auto → review
    report = pipeline.run_night(settings, PROMPT, DAY + timedelta(days=1), store=store)
    assert report.review_id is not None and report.promoted_version is None
    assert store.runs.review_item(report.review_id).status == "pending"
    assert store.prompts.label_version(PROMPT, "production") == 1


def test_a_spent_budget_stops_the_night_cleanly_and_a_bigger_one_resumes_it(world) -> None:
    settings, store = world
    night = DAY + timedelta(days=1)
    poor = settings.model_copy(update={"budget": settings.budget.model_copy(update={"max_usd": 0.02})})
    stopped = pipeline.run_night(poor, PROMPT, night, store=store)
    assert stopped.status == "budget_exhausted"
    assert any("budget" in note for note in stopped.notes)
    assert 0 < stopped.cost_usd <= 0.03
    partial = {(r.candidate_id, r.case_id, r.repeat): r for r in store.runs.eval_results(stopped.run_id)}
    assert partial

    # The budget is left out of the config hash: a bigger budget resumes the same run, keeping what it evaluated.
    rich = settings.model_copy(update={"budget": settings.budget.model_copy(update={"max_usd": 100.0})})
    resumed = pipeline.run_night(rich, PROMPT, night, store=store)
    assert resumed.status == "done" and resumed.run_id == stopped.run_id, resumed.notes
    after = {(r.candidate_id, r.case_id, r.repeat): r for r in store.runs.eval_results(resumed.run_id)}
    assert len(after) > len(partial) and all(after[key] == result for key, result in partial.items())
    assert resumed.decisions and resumed.cost_usd > stopped.cost_usd  # the night's spend, both attempts


def test_watch_rolls_back_a_version_that_breaks_production(tmp_path: Path) -> None:
    settings = load_settings(db=tmp_path / "w.db", seed=3)
    with Store(settings.db) as store:
        import_prompts(store, REPO / "prompts", created_by="test")
        _day_of_traffic(store, settings, tmp_path, DAY)
        v1 = store.prompts.get(PROMPT, 1)
        broken = v1.template.rstrip("\n") + "\n- Keep every answer under 10 words.\n- Never mention order numbers.\n"
        v2 = store.prompts.create_version(PROMPT, broken, created_by="someone", parent=1)
        store.prompts.move_label(PROMPT, "production", v2.version, expected_version=1, moved_by="someone")
        _day_of_traffic(store, settings, tmp_path, DAY + timedelta(days=1))
        report = pipeline.run_night(settings, PROMPT, DAY + timedelta(days=2), store=store)
        assert store.prompts.label_version(PROMPT, "production") == 1
        assert any("rolled production back to v1" in note for note in report.notes)
        rollback = store.runs.rollbacks(PROMPT)[0]
        assert rollback["from_version"] == 2 and rollback["to_version"] == 1
        assert v2.sha256 in store.runs.rejected_hashes(PROMPT)


KILLABLE_NIGHT = """
import asyncio, sys
from datetime import date
from nightloop import pipeline
from nightloop.config import load_settings
from nightloop.llm.sim import SimProvider
from nightloop.store import Store
sys.path.insert(0, {tests!r})
from test_pipeline import _clients

class SlowSim(SimProvider):
    async def complete(self, request):
        await asyncio.sleep(0.02)
        return await super().complete(request)

settings = load_settings(db={db!r}, seed=3)
with Store(settings.db) as store:
    pipeline.run_night(settings, "support_agent", date(2026, 11, 18), store=store,
                       clients=_clients(settings, store, SlowSim(settings.seed)))
"""


def test_a_killed_night_resumes_without_repeating_finished_model_calls(world, tmp_path: Path) -> None:
    import os
    import signal
    import subprocess
    import sys
    import time

    settings, store = world
    script = tmp_path / "night.py"
    script.write_text(KILLABLE_NIGHT.format(tests=str(Path(__file__).parent), db=str(settings.db)))
    process = subprocess.Popen([sys.executable, str(script)], cwd=tmp_path)
    run_id = run_id_for(settings, PROMPT, DAY + timedelta(days=1))
    deadline = time.monotonic() + 120
    while len(store.runs.eval_results(run_id)) < 100:
        assert process.poll() is None, "the night finished before it could be killed"
        assert time.monotonic() < deadline
        time.sleep(0.01)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()

    assert store.runs.status(run_id) == "running"
    cached_before = {row["key"] for row in store.db["llm_cache"].rows}
    saved_before = {(r.candidate_id, r.case_id, r.repeat): r for r in store.runs.eval_results(run_id)}
    rerun = RecordingSim(settings.seed)
    report = pipeline.run_night(settings, PROMPT, DAY + timedelta(days=1), store=store, clients=_clients(settings, store, rerun))
    assert report.status == "done"
    assert rerun.completed, "the re-run had work left"
    assert not cached_before & set(rerun.completed), "a model call finished before the kill was made again"
    after = {(r.candidate_id, r.case_id, r.repeat): r for r in store.runs.eval_results(run_id)}
    assert all(after[key] == result for key, result in saved_before.items())


class FlakyJudgeSim(RecordingSim):
    """The simulator whose judge role fails like a provider outage that outlived the SDK's retries."""

    async def complete(self, request: LLMRequest) -> LLMResponse:
        from nightloop.errors import ProviderError
        from nightloop.models import JudgeOutput

        if request.response_schema is JudgeOutput:
            raise ProviderError("HTTP 503 from the judge provider")
        return await super().complete(request)


def test_a_judge_outage_fails_the_night_and_a_rerun_resumes_it(world) -> None:
    settings, store = world
    night = DAY + timedelta(days=1)
    failed = pipeline.run_night(settings, PROMPT, night, store=store, clients=_clients(settings, store, FlakyJudgeSim(3)))
    assert failed.status == "failed" and any("503" in note for note in failed.notes)
    assert "judge" not in store.runs.finished_stages(failed.run_id)
    resumed = pipeline.run_night(settings, PROMPT, night, store=store)
    assert resumed.status == "done" and resumed.candidates >= 1


def test_one_budget_per_night_across_attempts(world) -> None:
    settings, store = world
    night = DAY + timedelta(days=1)
    poor = settings.model_copy(update={"budget": settings.budget.model_copy(update={"max_usd": 0.02})})
    first = pipeline.run_night(poor, PROMPT, night, store=store)
    spent_first, _ = store.spend.total(f"{PROMPT}:{night.isoformat()}")  # what the provider billed, every call
    again = pipeline.run_night(poor, PROMPT, night, store=store)
    assert first.status == again.status == "budget_exhausted"
    spent, _ = store.spend.total(f"{PROMPT}:{night.isoformat()}")
    # Read from the store, not the report: an attempt that forgot the earlier spend would also report only its own.
    assert 0 < spent_first and spent < spent_first + 0.005, f"a re-run with the same budget spent it again: ${spent:.4f}"
    assert again.cost_usd == pytest.approx(spent)  # the report counts the night's spend, every attempt


def test_an_approved_promotion_survives_a_forced_rerun(night_one) -> None:
    from nightloop.report import night_rows
    from nightloop.review import approve

    settings, store, report = night_one
    night = DAY + timedelta(days=1)
    approve(store, report.review_id, reviewer="alice")
    pipeline.run_night(settings, PROMPT, night, store=store, force=True)
    assert store.runs.review_item(report.review_id).status == "approved"
    rows = night_rows(store)
    assert rows[-1].promoted_version == 2 and rows[-1].review_status == "approved"


def test_conversations_without_timestamps_or_variables(tmp_path: Path) -> None:
    """Only id and messages are required: such conversations still reach a night; unreplayable cases are noted."""
    import datetime as dt

    settings = _settings(tmp_path)
    with Store(settings.db) as store:
        import_prompts(store, REPO / "prompts", created_by="test")
        files = simulate_from_store(store, PROMPT, nights=1, per_night=60, seed=4, out=tmp_path / "logs", start_date=DAY)
        bare = tmp_path / "bare.jsonl"
        with bare.open("w") as out:
            for line in files[0].read_text().splitlines():
                record = json.loads(line)
                for key in ("started_at", "ended_at", "variables"):
                    record.pop(key, None)
                out.write(json.dumps(record) + "\n")
        ingest(store, [str(bare)], classify_config=settings.classify)
        tomorrow = dt.datetime.now(dt.UTC).date() + timedelta(days=1)
        report = pipeline.run_night(settings, PROMPT, tomorrow, store=store)
    assert report.conversations == 60
    assert report.status == "stopped_early"
    assert any("did not record the template's variables" in note for note in report.notes)


def test_backfill_exits_non_zero_when_a_night_fails(world, monkeypatch: pytest.MonkeyPatch) -> None:
    settings, store = world
    from nightloop.cli import app

    monkeypatch.setenv("NIGHTLOOP_LLM__JUDGE__PROVIDER", "openai")
    result = CliRunner().invoke(
        app, ["backfill", "--since", "2026-11-18", "--until", "2026-11-18", "--no-prefect", "--db", str(settings.db), "--json"]
    )
    assert result.exit_code == 1
    assert "failed" in result.output


def test_serve_without_a_prefect_server_says_how_to_start_one(monkeypatch: pytest.MonkeyPatch) -> None:
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from nightloop.cli import app

    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    # The Prefect tests' session harness sets the API URL as a setting, not an env var: clear it here too,
    # or `serve` would really start serving and never return.
    with temporary_settings(restore_defaults={PREFECT_API_URL}):
        result = CliRunner().invoke(app, ["serve"])
    assert result.exit_code == 1
    assert "prefect server start" in result.output and "PREFECT_API_URL" in result.output


def test_a_resumed_attempt_keeps_the_nights_spend(night_one) -> None:
    settings, store, first = night_one
    night = DAY + timedelta(days=1)
    run_id = first.run_id
    store.runs.start(run_id, PROMPT, night.isoformat(), settings.config_hash())  # as if it had crashed after the gate
    store.db["stages"].delete_where("run_id = ? and stage = 'review'", [run_id])
    resumed = pipeline.run_night(settings, PROMPT, night, store=store)
    assert resumed.status == "done"
    assert resumed.cost_usd == pytest.approx(first.cost_usd)
    assert store.runs.spent(run_id)[0] == pytest.approx(first.cost_usd)


def test_a_held_challenger_is_tested_again_on_the_next_night_and_its_evidence_adds_up(world, tmp_path: Path) -> None:
    settings, store = world
    strict = settings.model_copy(update={"gate": settings.gate.model_copy(update={"alpha": 1e-30})})  # nothing promotes
    first = pipeline.run_night(strict, PROMPT, DAY + timedelta(days=1), store=store)
    [held] = [r for r in store.challengers.nights(PROMPT) if r["status"] == "held"]
    _day_of_traffic(store, strict, tmp_path, day=DAY + timedelta(days=1))
    second = pipeline.run_night(strict, PROMPT, DAY + timedelta(days=2), store=store)
    assert any(f"challenger {held['challenger_id']} held since {first.date}" in n for n in second.notes), second.notes
    by_id = {d.candidate_id: d for d in second.decisions}
    assert held["challenger_id"] in by_id, "the held challenger was not replayed on the second night"
    again = by_id[held["challenger_id"]]
    if again.n_cases:  # still the challenger: tested on the new night's cases, its evidence over both nights
        assert again.nights == 2 and any(f"held since {first.date}, 2 night(s)" in r for r in again.reasons)
    else:  # a newer candidate beat it on train cases: dropped, saying so
        assert "beaten on train cases by newer challenger" in again.reasons[-1]
    ledger = store.challengers.nights(PROMPT)
    forced = pipeline.run_night(strict, PROMPT, DAY + timedelta(days=2), store=store, force=True)
    assert store.challengers.nights(PROMPT) == [*ledger[:1], *(r | {"recorded_at": ANY} for r in ledger[1:])]
    assert [d.evidence for d in forced.decisions] == [d.evidence for d in second.decisions]  # never counted twice


class JudgeRecordingSim(SimProvider):
    """The simulator, keeping the text of every judge request (the judge's requests ask for a JSON schema)."""

    def __init__(self, seed: int) -> None:
        super().__init__(seed=seed)
        self.judge_prompts: list[str] = []

    async def complete(self, request: LLMRequest) -> LLMResponse:
        if request.response_schema is not None and request.response_schema.__name__ == "JudgeOutput":
            self.judge_prompts.append("\n".join(m.text or "" for m in request.messages))
        return await super().complete(request)


def test_the_judge_sees_train_failures_only_never_the_holdout_the_gate_decides_on(world) -> None:
    settings, store = world
    sim = JudgeRecordingSim(settings.seed)
    report = pipeline.run_night(settings, PROMPT, DAY + timedelta(days=1), store=store, clients=_clients(settings, store, sim))
    assert report.status == "done", report.notes
    replay_set = store.runs.stage_output(report.run_id, "replay_set")
    train = set(replay_set["train_failure_ids"])
    holdout = {c["origin"] for c in replay_set["cases"] if c["split"] == "holdout" and c["origin"] != "regression"}
    assert train and holdout and not train & holdout
    shown = "\n".join(sim.judge_prompts)
    assert any(failure_id in shown for failure_id in train)  # the judge is shown the train failures by id
    assert [failure_id for failure_id in holdout if failure_id in shown] == []


def test_a_night_counts_as_new_only_conversations_no_earlier_night_saw(night_one, tmp_path: Path) -> None:
    settings, store, first = night_one
    assert (first.conversations, first.new_conversations) == (100, 100)
    _day_of_traffic(store, settings, tmp_path / "day2", day=DAY + timedelta(days=1), n=40)
    second = pipeline.run_night(settings, PROMPT, DAY + timedelta(days=2), store=store)
    assert second.conversations == settings.limit == 100 and second.new_conversations == 40  # the latest 100: 60 seen
    again = pipeline.run_night(settings, PROMPT, DAY + timedelta(days=1), store=store, force=True)
    assert again.new_conversations == 100  # a re-run of night 1 is not "later" than itself
