"""Faulted evidence: retried, recorded, never `done`; a plain re-run retries only the faulted evaluations.

The agent is a real OpenAI SDK client talking to a loopback server that plays the simulated agent and
fails on purpose; a failing store write stops the replay stage; an `auto` night killed between the
auto-approval and the review stage's save resumes cleanly.
"""

from __future__ import annotations

import hashlib
from datetime import timedelta
from pathlib import Path

import pytest
from test_pipeline_wire import sim_agent_over_the_wire
from typer.testing import CliRunner
from worlds import DAY, PROMPT, Traffic, Worlds

from nightloop import pipeline
from nightloop.cli import app
from nightloop.config import load_settings
from nightloop.evidence import FAILED_FRACTION, night_status_for
from nightloop.gate import is_train
from nightloop.gate_select import extra_rounds, first_repeats
from nightloop.models import ReplaySetOutput
from nightloop.night import run_id_for
from nightloop.stages.gate import _name_incomplete_arms
from nightloop.store import Store
from nightloop.testing import Answer, FakeOpenAIServer

NIGHT = DAY + timedelta(days=1)


class Outage:
    """Answers like the sim agent, except the requests ``failing`` picks, which get HTTP 500."""

    def __init__(self) -> None:
        self.failing = lambda request: False
        self.fault = lambda: Answer.error(500, message="upstream exploded")

    def __call__(self, request: dict) -> Answer:
        if self.failing(request):
            return self.fault()
        return sim_agent_over_the_wire(request)


def _some(request: dict) -> bool:
    """About a third of the evaluations, the same ones on every try (by their last user message and system prompt)."""
    text = "".join(str(m.get("content")) for m in request["messages"] if m["role"] in ("system", "user"))
    return int(hashlib.sha256(text.encode()).hexdigest(), 16) % 3 == 0


@pytest.fixture
def wire_night(worlds: Worlds, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("OPENAI_API_KEY", "test-key-not-real")
    outage = Outage()
    with FakeOpenAIServer(responder=outage) as fake:
        agent = {"provider": "openai", "model": "gpt-4o-mini", "base_url": fake.base_url, "max_retries": 0}
        settings = load_settings(
            db=tmp_path / "faults.db", seed=3, llm={"agent": agent, "cache": False},
            replay={"repeats": 1, "fault_retries": 1, "fault_backoff_s": 0.0, "max_failure_cases": 8, "regression_cases": 3},
        )
        worlds.copy_traffic(Traffic(per_night=40, seed=11), tmp_path, settings.db.name)
        with Store(settings.db) as store:
            yield settings, store, fake, outage


def test_an_agent_that_always_fails_ends_the_night_failed_and_a_plain_rerun_finishes_it(wire_night) -> None:
    settings, store, fake, outage = wire_night
    outage.failing = lambda request: True

    failed = pipeline.run_night(settings, PROMPT, NIGHT, store=store)

    assert failed.status == "failed" and failed.faulted_evaluations == failed.evaluations > 0
    assert not failed.decisions, "the gate ran on evidence that is all errors"
    assert any("still faulted after retries" in n and "agent" in n for n in failed.notes), failed.notes
    results = store.runs.eval_results(failed.run_id)
    assert fake.calls == 2 * len(results), "each faulted evaluation is tried once more (fault_retries=1)"
    assert "replay" not in store.runs.finished_stages(failed.run_id)

    outage.failing = lambda request: False
    fixed = pipeline.run_night(settings, PROMPT, NIGHT, store=store)  # no --force
    assert fixed.status == "done" and fixed.faulted_evaluations == 0 and fixed.decisions


def test_an_agent_answering_an_html_page_with_200_is_a_faulted_night_not_a_quiet_one(wire_night) -> None:
    settings, store, fake, outage = wire_night
    outage.failing, outage.fault = (lambda request: True), Answer.html  # a proxy's login page, status 200

    night = pipeline.run_night(settings, PROMPT, NIGHT, store=store)

    assert night.status == "failed" and night.faulted_evaluations == night.evaluations > 0, night.notes
    assert not night.decisions and any("still faulted" in n for n in night.notes), night.notes


@pytest.mark.parametrize("extra_repeats", [0, None], ids=["no extra repeats", "default extra repeats"])
def test_a_partly_faulted_night_is_degraded_and_the_rerun_retries_only_the_faulted_ones(wire_night, extra_repeats) -> None:
    settings, store, fake, outage = wire_night
    if extra_repeats is not None:
        settings = settings.model_copy(update={"gate": settings.gate.model_copy(update={"extra_repeats": extra_repeats})})
    outage.failing = _some

    degraded = pipeline.run_night(settings, PROMPT, NIGHT, store=store)

    assert degraded.status == "degraded", degraded.notes
    assert 0 < degraded.faulted_evaluations <= FAILED_FRACTION * degraded.evaluations
    good_before = {(r.candidate_id, r.case_id, r.repeat): r for r in store.runs.eval_results(degraded.run_id) if r.error is None}

    outage.failing = lambda request: False
    fake.reset()
    fixed = pipeline.run_night(settings, PROMPT, NIGHT, store=store)

    assert fixed.status == "done"
    retried = {(m["content"] if isinstance(m.get("content"), str) else "") for r in fake.requests for m in r["messages"] if m["role"] == "system"}
    assert retried, "nothing was retried"
    # The cache is off: a re-run that redid finished evaluations would call the agent for them again.
    if extra_repeats == 0:
        assert len(fake.requests) <= 6 * degraded.faulted_evaluations  # at most max_steps calls per faulted evaluation
    after = {(r.candidate_id, r.case_id, r.repeat): r for r in store.runs.eval_results(fixed.run_id)}
    assert all(after[key] == result for key, result in good_before.items())
    # With extra repeats the re-run also adds the extras that the retried first repeats now qualify a case for: its own
    # evaluations are the faulted ones and those. At most max_steps calls each: none went to an evaluation already finished.
    redone = len(after) - len(good_before)
    assert degraded.faulted_evaluations <= redone and len(fake.requests) <= 6 * redone, (len(fake.requests), redone)


def test_the_cli_exits_non_zero_for_a_failed_night(wire_night, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    settings, store, fake, outage = wire_night
    outage.failing = lambda request: True
    config = tmp_path / "nightloop.toml"
    config.write_text(
        f'db = "{settings.db}"\nseed = 3\n[llm]\ncache = false\n[llm.agent]\nprovider = "openai"\nmodel = "gpt-4o-mini"\n'
        f'base_url = "{fake.base_url}"\nmax_retries = 0\n[replay]\nrepeats = 1\nfault_retries = 0\nmax_failure_cases = 8\nregression_cases = 3\n'
    )
    command = ["run", "--config", str(config), "--db", str(settings.db), "--prompt", PROMPT, "--date", NIGHT.isoformat(), "--no-prefect"]
    result = CliRunner().invoke(app, command)
    assert result.exit_code != 0 and "failed" in result.output, result.output


def test_the_status_threshold() -> None:
    assert night_status_for(100, 0) == "done"
    assert night_status_for(100, 1) == "degraded"
    assert night_status_for(100, 50) == "degraded"
    assert night_status_for(100, 51) == "failed"


# --- a store write that fails stops the stage ---------------------------------------------------


def test_a_failing_result_write_stops_the_replay_and_a_rerun_fills_it(sim_world, monkeypatch: pytest.MonkeyPatch) -> None:
    import sqlite3

    settings, store = sim_world
    real_save = store.runs.save_eval
    count = {"n": 0}

    def every_third_save_is_locked(run_id, result):
        count["n"] += 1
        if count["n"] % 3 == 0:
            raise sqlite3.OperationalError("database is locked")
        real_save(run_id, result)

    monkeypatch.setattr(store.runs, "save_eval", every_third_save_is_locked)
    with pytest.raises(sqlite3.OperationalError):
        pipeline.run_night(settings, PROMPT, NIGHT, store=store)
    run_id = run_id_for(settings, PROMPT, NIGHT)
    assert store.runs.status(run_id) == "failed"
    assert "replay" not in store.runs.finished_stages(run_id)
    assert not store.runs.review_items_for_run(run_id), "a candidate was queued on partial evidence"

    monkeypatch.setattr(store.runs, "save_eval", real_save)
    report = pipeline.run_night(settings, PROMPT, NIGHT, store=store)
    assert report.status == "done"
    per_arm: dict[tuple[str, str], int] = {}
    for result in store.runs.eval_results(run_id):
        per_arm[(result.candidate_id, result.case_id)] = per_arm.get((result.candidate_id, result.case_id), 0) + 1
    # The gated cases given extra paired repeats have both arms at the same count, [gate] extra_step at a time,
    # after their own first repeats ([replay] regression_repeats on regression cases, repeats on the others).
    cases = ReplaySetOutput.model_validate(store.runs.stage_output(run_id, "replay_set")).cases
    firsts = first_repeats(cases, settings.replay.repeats, settings.replay.regression_repeats)
    assert set(firsts.values()) == {settings.replay.repeats, settings.replay.regression_repeats}

    def counts(first: int) -> set[int]:
        return {first} | {start + count for start, count in extra_rounds(first, settings.gate.extra_repeats, settings.gate.extra_step)}

    train = {c.id for c in cases if is_train(c)}
    assert {n for (_, case_id), n in per_arm.items() if case_id in train} == {settings.replay.train_repeats}
    assert all(n in counts(firsts[case_id]) for (_, case_id), n in per_arm.items() if case_id not in train)
    regression = settings.replay.regression_repeats
    assert any(n == regression for (_, case_id), n in per_arm.items() if firsts[case_id] == regression)  # alike: no extras
    extended = {case_id for (arm, case_id), n in per_arm.items() if n > firsts[case_id] and case_id not in train}
    assert all(len({n for (_, c), n in per_arm.items() if c == case_id}) == 1 for case_id in extended)
    assert all(sum(1 for (_, c) in per_arm if c == case_id) == 2 for case_id in extended)


def test_the_gate_names_cases_whose_arms_have_fewer_results_than_repeats() -> None:
    from nightloop.evidence import incomplete_arms
    from nightloop.models import EvalResult, GateDecision, ReplayCase

    cases = [ReplayCase.model_construct(id=name) for name in ("a", "b")]
    results = [EvalResult(candidate_id=arm, case_id=c.id, repeat=r) for arm in ("baseline", "c1") for c in cases for r in range(3)]
    results = [r for r in results if not (r.candidate_id == "c1" and r.case_id == "b" and r.repeat == 2)]
    results.append(EvalResult(candidate_id="baseline", case_id="a", repeat=9, error="agent down"))  # faulted: not counted
    results = [r for r in results if not (r.candidate_id == "baseline" and r.case_id == "a" and r.repeat == 0)]
    missing = incomplete_arms(results, cases, ["c1"], {"a": 3, "b": 3})
    assert missing == {"baseline": ["a (2 of 3)"], "c1": ["b (2 of 3)"]}

    decision = GateDecision(candidate_id="c1", verdict="hold")
    _name_incomplete_arms([decision], missing)
    assert decision.reasons == ["fewer results than planned for: baseline a (2 of 3), b (2 of 3)"]


# --- autonomy: auto, killed between the auto-approval and the review stage's save --------------


def test_an_auto_night_killed_after_the_auto_approval_resumes_cleanly(sim_world, monkeypatch: pytest.MonkeyPatch) -> None:
    settings, store = sim_world
    meta = store.prompts.get_meta(PROMPT)
    store.prompts.set_meta(PROMPT, meta.model_copy(update={"autonomy": "auto"}))
    real_save = store.runs.save_stage

    def die_saving_review(run_id, stage, output):
        if stage == "review":
            raise KeyboardInterrupt  # stands in for SIGKILL: the approval committed, the stage record did not
        real_save(run_id, stage, output)

    monkeypatch.setattr(store.runs, "save_stage", die_saving_review)
    with pytest.raises(KeyboardInterrupt):
        pipeline.run_night(settings, PROMPT, NIGHT, store=store)
    assert store.prompts.label_version(PROMPT, "production") == 2
    monkeypatch.setattr(store.runs, "save_stage", real_save)

    report = pipeline.run_night(settings, PROMPT, NIGHT, store=store)

    assert report.status == "done", report.notes
    assert report.promoted_version == 2 and store.prompts.label_version(PROMPT, "production") == 2
    assert len(store.prompts.versions(PROMPT)) == 2
