"""Many prompts in one night: `pipeline.run_nights` runs prompts side by side on one SQLite file, with the
results of running them one by one; one prompt's outage fails only that prompt; two processes share a store."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from datetime import date, timedelta
from pathlib import Path

import pytest

from nightloop import pipeline
from nightloop.config import load_settings
from nightloop.night import run_id_for
from nightloop.prompt_files import import_prompts
from nightloop.store import Store
from nightloop.testing import FakeOpenAIServer
from nightloop.testing.many_prompts import (
    SimJudgeWithOutage,
    seed_many_prompts,
    write_prompts,
)
from nightloop.testing.rate_limited import RateLimitedOpenAIServer
from nightloop.testing.sim_wire import sim_every_role

DAY = date(2026, 11, 17)
NIGHT = DAY + timedelta(days=1)
SMALL = {"judge": {"candidates": 2}, "replay": {"repeats": 1, "max_failure_cases": 12, "regression_cases": 4}}


def _project(root: Path, count: int, per_night: int = 20) -> list[str]:
    """A store file with ``count`` prompts, each with one simulated day of ``per_night`` conversations."""
    names = write_prompts(root / "prompts", count)
    with Store(root / "nightloop.db") as store:
        import_prompts(store, root / "prompts", created_by="test")
        seed_many_prompts(store, names, root / "logs", day=DAY, per_night=per_night)
    return names


def _outcome(report) -> dict:
    """What a night found and decided (not how long it took, nor what it paid: prompts share the response cache,
    and a call two nights make is paid by whichever asks first)."""
    return {
        "status": report.status,
        "failures": report.failures,
        "failure_rate": report.failure_rate,
        "candidates": report.candidates,
        "decisions": [(d.candidate_id, d.verdict, d.baseline_rate, d.candidate_rate, d.p_value) for d in report.decisions],
    }


@pytest.fixture
def judge(monkeypatch: pytest.MonkeyPatch):
    """The simulator's judge over the real OpenAI SDK, with a planted outage for prompts listed in ``.down``."""
    monkeypatch.setenv("OPENAI_API_KEY", "test-key-not-real")
    responder = SimJudgeWithOutage(seed=3)
    with FakeOpenAIServer(responder=responder) as fake:
        fake.responder_state = responder
        yield fake


def _settings(root: Path, judge: FakeOpenAIServer, parallel: int, **extra):
    llm = {"judge": {"provider": "openai", "model": "gpt-4o-mini", "base_url": judge.base_url, "max_retries": 0}}
    llm.update(extra.pop("llm", {}))
    return load_settings(db=root / "nightloop.db", seed=3, llm=llm, schedule={"max_parallel_prompts": parallel}, **SMALL, **extra)


def test_parallel_nights_match_one_by_one_and_an_outage_fails_only_its_prompt(tmp_path: Path, judge) -> None:
    names = _project(tmp_path / "side-by-side", 6)
    _project(tmp_path / "one-by-one", 6)
    judge.responder_state.down = {names[2]}

    running: set[str] = set()
    most_at_once = 0
    lock = threading.Lock()

    def event(prompt: str, night_date: date, stage: str, message: str) -> None:
        nonlocal most_at_once
        with lock:
            if stage == "starting":
                running.add(prompt)
                most_at_once = max(most_at_once, len(running))
            elif stage == "finished":
                running.discard(prompt)

    parallel = pipeline.run_nights(_settings(tmp_path / "side-by-side", judge, 4), names, [NIGHT], event=event)
    serial = pipeline.run_nights(_settings(tmp_path / "one-by-one", judge, 1), names, [NIGHT])

    assert most_at_once >= 2, "the nights did not run side by side"
    assert [r.prompt_name for r in parallel] == names
    assert {r.prompt_name: r.status for r in parallel} == {n: "failed" if n == names[2] else "done" for n in names}
    assert "planted judge outage" in " ".join(parallel[2].notes)
    assert [_outcome(r) for r in parallel] == [_outcome(r) for r in serial]
    assert sum(r.tokens for r in parallel) == sum(r.tokens for r in serial) > 0
    assert all(r.decisions for r in parallel if r.status == "done")
    with Store(tmp_path / "side-by-side" / "nightloop.db") as store:  # every night's record landed in the one file
        assert {store.runs.status(r.run_id) for r in parallel} == {"done", "failed"}


def test_backfill_keeps_each_prompts_dates_in_order(tmp_path: Path, judge) -> None:
    names = _project(tmp_path, 3)
    days = [NIGHT, NIGHT + timedelta(days=1), NIGHT + timedelta(days=2)]
    order: dict[str, list[date]] = {}
    lock = threading.Lock()

    def event(prompt: str, night_date: date, stage: str, message: str) -> None:
        if stage == "starting":
            with lock:
                order.setdefault(prompt, []).append(night_date)

    reports = pipeline.run_nights(_settings(tmp_path, judge, 3), names, days, event=event)
    assert order == {name: days for name in names}
    assert [(r.prompt_name, r.date) for r in reports] == [(n, d) for n in names for d in days]


def test_two_processes_run_different_prompts_on_one_store(tmp_path: Path) -> None:
    names = _project(tmp_path, 4)
    (tmp_path / "nightloop.toml").write_text(
        "[judge]\ncandidates = 2\n[replay]\nrepeats = 1\nmax_failure_cases = 12\nregression_cases = 4\n"
        "[schedule]\nmax_parallel_prompts = 2\n"
    )
    env = {**os.environ, "COLUMNS": "300"}
    nightloop = [str(Path(sys.executable).parent / "nightloop")]
    runs = [
        subprocess.Popen(
            [*nightloop, "run", "--no-prefect", "--date", NIGHT.isoformat(), "--json", "--prompt", names[i], "--prompt", names[i + 1]],
            cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        for i in (0, 2)
    ]
    outputs = [run.communicate(timeout=240) for run in runs]
    for run, (out, err) in zip(runs, outputs, strict=True):
        assert run.returncode == 0, err[-3000:]
    with Store(tmp_path / "nightloop.db") as store:
        settings = load_settings(tmp_path / "nightloop.toml", db=tmp_path / "nightloop.db")
        statuses = {n: store.runs.status(run_id_for(settings, n, NIGHT)) for n in names}
        assert statuses == {n: "done" for n in names}
        assert store.db.execute("select count(*) from night_leases").fetchone()[0] == 0, "a lease was left behind"


def test_two_nightloop_runs_share_the_providers_limit_and_receive_no_429(tmp_path: Path) -> None:
    """Two `nightloop run --no-prefect` processes, different prompts, one store, every role at one loopback server
    that answers 429 beyond 8 requests a (1 s) window: both nights done, and the server never had to refuse,
    because the processes book their places in one `<db>.limits` file (each alone would send 8 a window)."""
    names = _project(tmp_path, 2, per_night=10)
    with RateLimitedOpenAIServer(rpm=8, window_s=1.0, arrival_delay_s=0.1, hold_s=0.05, responder=sim_every_role) as server:
        role = f'provider = "openai"\nmodel = "gpt-4o-mini"\nbase_url = "{server.base_url}"\nmax_retries = 2\n'
        (tmp_path / "nightloop.toml").write_text(
            "[judge]\ncandidates = 2\n[replay]\nrepeats = 1\nmax_failure_cases = 6\nregression_cases = 2\n"
            + "".join(f"[llm.{name}]\n{role}" for name in ("agent", "judge", "scorer"))
            + f'[llm]\ncache = false\n[llm.limits."{server.base_url}"]\nrpm = 480\nwindow_s = 1.0\n'
        )
        env = {**os.environ, "COLUMNS": "300", "OPENAI_API_KEY": "test-key-not-real"}
        nightloop = str(Path(sys.executable).parent / "nightloop")
        runs = [
            subprocess.Popen(
                [nightloop, "run", "--no-prefect", "--date", NIGHT.isoformat(), "--json", "--prompt", name],
                cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            )
            for name in names
        ]
        outputs = [run.communicate(timeout=120) for run in runs]
    for run, (out, err) in zip(runs, outputs, strict=True):
        assert run.returncode == 0, err[-3000:]
    assert [json.loads(out)[0]["status"] for out, _ in outputs] == ["done", "done"]
    assert server.rejected == 0, f"{server.rejected} requests refused with 429 ({server.accepted} accepted)"
    assert server.accepted > 2 * 8, "the nights' calls did not need more than one window"
