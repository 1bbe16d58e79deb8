"""One budget per night, kept in the store: every process, attempt and config of a (prompt, date) draws on it.

The provider is the real ``openai`` SDK against a loopback server whose every answer costs a fixed number of
tokens, so what the server billed is known exactly and can be compared with the cap.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import pytest

from nightloop import gate, pipeline
from nightloop.config import load_settings
from nightloop.llm.budget import BudgetLedger
from nightloop.llm.client import Clients, LLMClient
from nightloop.llm.sim import SimProvider
from nightloop.store import Store
from nightloop.testing import Answer
from nightloop.testing.fake_openai import FakeOpenAIServer
from worlds import DAY, FORTY, PROMPT, Traffic, Worlds

NIGHTLOOP = str(Path(sys.executable).parent / "nightloop")
NIGHT = "2026-11-18"
#: Every agent answer bills exactly this: 1,000 input + 100 output tokens at $10 per million = $0.011.
CALL_USD = 0.011
CAP_USD = 0.2


def _billed_answer(request: dict) -> Answer:
    return Answer.text("Sorry, let me check that for you.", input_tokens=1000, output_tokens=100)


def _config(base_url: str, repeats: int = 1) -> str:
    # One agent call at a time, so the cap is never overshot by calls in flight and the bill is exact.
    return f"""
[llm.agent]
provider = "openai"
model = "local-agent"
base_url = "{base_url}"
timeout_s = 30
max_tokens = 100
[llm.prices."local-agent"]
input = 10
output = 10
[budget]
max_usd = {CAP_USD}
[replay]
repeats = {repeats}
concurrency = 1
"""


@pytest.fixture
def project(worlds: Worlds, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("OPENAI_API_KEY", "test-key-not-real")
    db = worlds.copy_traffic(FORTY, tmp_path)
    with FakeOpenAIServer(responder=_billed_answer, latency_s=0.05) as agent:
        (tmp_path / "nightloop.toml").write_text(_config(agent.base_url))
        yield tmp_path, db, agent


def _night(cwd: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [NIGHTLOOP, "run", "--no-prefect", "--date", NIGHT], cwd=cwd, text=True,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env={**os.environ, "COLUMNS": "300"},
    )


def _kill_after_calls(process: subprocess.Popen, agent: FakeOpenAIServer, calls: int, timeout_s: float = 90) -> None:
    deadline = time.monotonic() + timeout_s
    try:
        while agent.calls < calls:
            assert process.poll() is None, process.communicate()
            assert time.monotonic() < deadline, "the night never reached the agent"
            time.sleep(0.02)
        process.send_signal(signal.SIGKILL)
    finally:
        if process.poll() is None:
            process.kill()
        process.communicate(timeout=30)


def _finish(process: subprocess.Popen, timeout_s: float = 120) -> str:
    try:
        out, err = process.communicate(timeout=timeout_s)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    return out + err


def test_a_night_killed_mid_replay_and_run_again_by_another_process_stays_within_one_cap(project) -> None:
    cwd, db, agent = project
    _kill_after_calls(_night(cwd), agent, calls=8)
    killed_calls = agent.calls
    with Store(db) as store:
        charged_usd, _ = store.spend.total(f"{PROMPT}:{NIGHT}")
    # Charged as it happened: all but (at most) the call the kill cut short are already in the store.
    assert charged_usd == pytest.approx(CALL_USD * killed_calls, abs=CALL_USD + 1e-9)

    output = _finish(_night(cwd))

    billed = agent.calls * CALL_USD
    assert "budget" in output.lower(), output
    # Without the store's ledger the second process had the whole cap again: 8 calls + 18 calls ≈ $0.29.
    assert billed <= CAP_USD + CALL_USD, f"the server billed ${billed:.3f} against a ${CAP_USD} cap"
    with Store(db) as store:
        [run] = store.runs.runs_for(PROMPT, NIGHT)
        report = store.runs.report(run["run_id"])
    assert report is not None and report.status == "budget_exhausted"
    assert report.cost_usd == pytest.approx(billed, abs=CALL_USD + 1e-9)  # the night's spend, both processes'


def test_another_config_for_the_same_night_draws_on_the_same_budget(project) -> None:
    cwd, db, agent = project
    first = _finish(_night(cwd))
    assert "budget" in first.lower(), first
    spent_calls = agent.calls
    (cwd / "nightloop.toml").write_text(_config(agent.base_url, repeats=2))  # another config hash, another run id

    second = _finish(_night(cwd))

    assert agent.calls - spent_calls <= 1, second  # nothing left of the cap: refused before the agent is asked
    with Store(db) as store:
        runs = store.runs.runs_for(PROMPT, NIGHT)
    assert len(runs) == 2 and {r["status"] for r in runs} == {"budget_exhausted"}
    # Each run's row keeps its own spend, so the operations dashboard's $/night does not count the night twice.
    assert sum(r["spent_usd"] for r in runs) == pytest.approx(agent.calls * CALL_USD, abs=CALL_USD + 1e-9)


def _sim_world(worlds: Worlds, tmp_path: Path, **overrides):
    settings = load_settings(db=tmp_path / "night.db", seed=3, **overrides)
    worlds.copy_traffic(Traffic(), tmp_path, settings.db.name)
    return settings, Store(settings.db)


def test_injected_clients_charge_the_nights_ledger(worlds: Worlds, tmp_path: Path) -> None:
    settings, store = _sim_world(worlds, tmp_path, budget={"max_tokens": 10_000_000})
    try:
        own = BudgetLedger(None, None, settings.llm.prices)  # the caller's own ledger: the night's must replace it
        sim = SimProvider(seed=settings.seed)
        clients = Clients(*(LLMClient(sim, role, ledger=own) for role in (settings.llm.judge, settings.llm.agent, settings.llm.scorer)))

        report = pipeline.run_night(settings, PROMPT, DAY + timedelta(days=1), store=store, clients=clients)

        assert report.tokens > 0 and clients.calls > 0, report.notes
        assert store.spend.total(f"{PROMPT}:{(DAY + timedelta(days=1)).isoformat()}")[1] == report.tokens
        assert own.tokens == 0
    finally:
        store.close()


def test_the_nights_seed_reaches_the_gates_random_choices(worlds: Worlds, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    settings, store = _sim_world(worlds, tmp_path, gate={"test": "permutation"})
    seen: list[tuple] = []
    real = gate.PAIRED_TESTS["permutation"]

    def spy(rng: random.Random | None):
        seen.append(rng.getstate() if rng is not None else None)
        return real(rng)

    monkeypatch.setitem(gate.PAIRED_TESTS, "permutation", spy)
    try:
        report = pipeline.run_night(settings, PROMPT, DAY + timedelta(days=1), store=store)
    finally:
        store.close()
    assert report.decisions, report.notes
    assert seen and all(state == random.Random(settings.seed).getstate() for state in seen)
