"""Ctrl-C on a real `nightloop run` process: the first stops it quickly and cleanly, with spend recorded and a resume hint."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from nightloop.store import Store
from nightloop.testing.fake_openai import FakeOpenAIServer
from worlds import FORTY, Worlds

NIGHTLOOP = str(Path(sys.executable).parent / "nightloop")
AGENT_LATENCY_S = 3.0


@pytest.fixture
def project(worlds: Worlds, tmp_path: Path):
    db = worlds.copy_traffic(FORTY, tmp_path)  # the managed prompts, 40 simulated conversations of 2026-11-17
    with FakeOpenAIServer(responder=lambda request: "Let me check that for you.", latency_s=AGENT_LATENCY_S) as agent:
        (tmp_path / "nightloop.toml").write_text(
            f'[llm.agent]\nprovider = "openai"\nmodel = "local-agent"\nbase_url = "{agent.base_url}"\n'
            '[llm.prices."local-agent"]\ninput = 0\noutput = 0\n[replay]\nrepeats = 2\nconcurrency = 4\n'
        )
        yield tmp_path, db, agent


def _start_night(cwd: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [NIGHTLOOP, "run", "--no-prefect", "--date", "2026-11-18"], cwd=cwd, text=True,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env={**os.environ, "COLUMNS": "300"},
    )


def _wait_for_replay(db: Path, process: subprocess.Popen, agent: FakeOpenAIServer) -> None:
    deadline = time.monotonic() + 90
    while agent.calls < 6:  # replay is under way: 4 calls in flight, some results saved
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, "replay never started"
        time.sleep(0.05)


def _the_night(db: Path):
    with Store(db) as store:
        (report,) = store.runs.reports("support_agent")
        run_id = report.run_id
        return report, len(store.runs.eval_results(run_id)), store.runs.status(run_id)


def test_the_first_ctrl_c_stops_starting_calls_records_spend_and_says_how_to_resume(project) -> None:
    cwd, db, agent = project
    night = _start_night(cwd)
    _wait_for_replay(db, night, agent)
    calls_at_interrupt = agent.calls
    interrupted_at = time.monotonic()
    night.send_signal(signal.SIGINT)
    out, err = night.communicate(timeout=60)
    took = time.monotonic() - interrupted_at
    said = " ".join((out + err).split())

    assert night.returncode == 130, said
    assert "Stopping: no new model calls" in said
    assert "Resume with `nightloop run --date 2026-11-18 --no-prefect`" in said
    assert "Traceback" not in said and "KeyboardInterrupt" not in said
    # Calls in flight finished or were abandoned: the process did not run the remaining replay (minutes at 3 s a call).
    assert took < 30, f"took {took:.1f} s to stop"
    assert agent.calls <= calls_at_interrupt + 4  # at most the calls already in flight (concurrency 4)

    report, saved, status = _the_night(db)
    assert status == "interrupted" and report.status == "interrupted"
    assert report.tokens > 0 and report.cost_usd > 0  # the judge's (priced) and the agent's calls are counted
    assert saved >= 2

    listed = subprocess.run([NIGHTLOOP, "report", "--json"], cwd=cwd, capture_output=True, text=True, check=True)
    assert [row["status"] for row in json.loads(listed.stdout)] == ["interrupted"]

    agent.latency_s = 0.0
    calls_before_resume = agent.calls
    resumed = subprocess.run(
        [NIGHTLOOP, "run", "--no-prefect", "--date", "2026-11-18"], cwd=cwd, capture_output=True, text=True, timeout=120
    )
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    report, total, status = _the_night(db)
    assert status == "done"
    assert agent.calls - calls_before_resume <= total - saved  # the evaluations saved before Ctrl-C are not redone


def test_a_second_ctrl_c_stops_at_once_without_a_traceback(project) -> None:
    cwd, db, agent = project
    agent.latency_s = 30.0  # calls in flight would outlast the grace period
    night = _start_night(cwd)
    _wait_for_replay_start = time.monotonic() + 90
    while agent.calls < 4:
        assert night.poll() is None, night.communicate()
        assert time.monotonic() < _wait_for_replay_start
        time.sleep(0.05)
    night.send_signal(signal.SIGINT)
    time.sleep(0.3)
    night.send_signal(signal.SIGINT)
    out, err = night.communicate(timeout=60)
    said = " ".join((out + err).split())
    assert night.returncode == 130, said
    assert "Traceback" not in said
    assert "Resume with `nightloop run --date 2026-11-18 --no-prefect`" in said
    report, _, status = _the_night(db)
    assert status == "interrupted" and report.tokens > 0


@pytest.mark.prefect
def test_ctrl_c_in_a_terminal_stops_a_prefect_run_gracefully_and_its_server_sends_no_telemetry(project) -> None:
    """The default path: `nightloop run` under Prefect with no server configured, Ctrl-C sent to the terminal's
    whole process group (as a terminal does), telemetry left at Prefect's default."""
    cwd, db, agent = project
    env = {k: v for k, v in os.environ.items() if k not in ("PREFECT_SERVER_ANALYTICS_ENABLED", "DO_NOT_TRACK", "PREFECT_API_URL")}
    env.update(COLUMNS="300", PREFECT_HOME=str(cwd / "prefect-home"))
    night = subprocess.Popen(
        [NIGHTLOOP, "run", "--date", "2026-11-18"], cwd=cwd, text=True, env=env, start_new_session=True,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(night.stderr), daemon=True)
    reader.start()
    try:
        _wait_for_replay(db, night, agent)
        server = re.search(r"View at (http://127\.0\.0\.1:\d+)/", "".join(lines)).group(1)
        settings = httpx.get(f"{server}/api/admin/settings", timeout=10).json()
        assert settings["server"]["analytics_enabled"] is False  # nightloop turned Prefect's telemetry off

        interrupted_at = time.monotonic()
        os.killpg(night.pid, signal.SIGINT)
        out = night.stdout.read()
        night.wait(timeout=60)
        took = time.monotonic() - interrupted_at
    finally:
        if night.poll() is None:
            os.killpg(night.pid, signal.SIGKILL)
    reader.join(timeout=10)
    said = " ".join((out + "".join(lines)).split())

    assert night.returncode == 130, said
    assert "Stopping: no new model calls" in said
    assert "Resume with `nightloop run --date 2026-11-18`" in said
    assert "Traceback" not in said and "telemetry" not in said.lower() and "Error logging to API" not in said
    assert took < 30, f"took {took:.1f} s to stop"
    report, saved, status = _the_night(db)
    assert status == "interrupted" and report.tokens > 0 and saved >= 1
    with pytest.raises(httpx.HTTPError):  # the temporary server stopped with the run
        httpx.get(f"{server}/api/health", timeout=2)
    assert _flow_run_states(cwd / "prefect-home" / "prefect.db") == {
        ("nightly", "CANCELLED"), ("prompt-nights", "CANCELLED")  # Prefect shows the night as stopped, not Completed
    }


def _flow_run_states(prefect_db: Path) -> set[tuple[str, str]]:
    """(flow name, final state type) of every flow run the Prefect server recorded."""
    import sqlite3

    with sqlite3.connect(prefect_db) as conn:
        rows = conn.execute("select flow.name, flow_run.state_type from flow_run join flow on flow.id = flow_run.flow_id")
        return {(name, state) for name, state in rows}
