"""One running night per prompt and store: a second `nightloop run` is refused naming the first; a dead one is taken over."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from nightloop.errors import NightAlreadyRunning
from nightloop.store import Store
from nightloop.testing.fake_openai import FakeOpenAIServer
from worlds import FORTY, Worlds

NIGHTLOOP = str(Path(sys.executable).parent / "nightloop")


def _agent_config(base_url: str) -> str:
    # The agent is a (slow) OpenAI-compatible local server; judge and scorer stay on the simulator.
    return f"""
[llm.agent]
provider = "openai"
model = "local-agent"
base_url = "{base_url}"
timeout_s = 30
[llm.prices."local-agent"]
input = 0
output = 0
[replay]
repeats = 1
"""


@pytest.fixture
def project(worlds: Worlds, tmp_path: Path):
    db = worlds.copy_traffic(FORTY, tmp_path)  # the managed prompts, 40 simulated conversations of 2026-11-17
    with FakeOpenAIServer(responder=lambda request: "Sorry, let me check that for you.", latency_s=1.0) as agent:
        (tmp_path / "nightloop.toml").write_text(_agent_config(agent.base_url))
        yield tmp_path, db, agent


def _night(day: str, cwd: Path, **popen) -> subprocess.Popen:
    return subprocess.Popen(
        [NIGHTLOOP, "run", "--no-prefect", "--date", day], cwd=cwd, text=True,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env={**os.environ, "COLUMNS": "300"}, **popen,
    )


def _wait_for_lease(db: Path, process: subprocess.Popen, timeout_s: float = 60):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        assert process.poll() is None, process.communicate()
        with Store(db) as store:
            lease = store.leases.current("support_agent")
        if lease is not None:
            return lease
        time.sleep(0.1)
    pytest.fail("the first night never took its lease")


def test_a_second_night_is_refused_naming_the_running_one_and_a_killed_one_is_taken_over(project) -> None:
    cwd, db, agent = project
    first = _night("2026-11-18", cwd)
    try:
        lease = _wait_for_lease(db, first)
        assert lease.pid == first.pid
        for day in ("2026-11-18", "2026-11-19"):  # the same night, or another night of the same prompt
            second = _night(day, cwd)
            out, err = second.communicate(timeout=60)
            said = " ".join((out + err).split())
            assert second.returncode == 1, said
            assert "Another night for prompt 'support_agent' is running on this store" in said
            assert "support_agent:2026-11-18:" in said and f"process {first.pid}" in said
            assert "Traceback" not in said
        assert first.poll() is None  # the refused runs did not disturb the running one
    finally:
        os.kill(first.pid, signal.SIGKILL)  # a crash: the lease stays behind with a dead holder
        first.wait(timeout=10)

    agent.latency_s = 0.0
    taken_over = _night("2026-11-18", cwd)
    out, err = taken_over.communicate(timeout=120)
    assert taken_over.returncode == 0, out + err
    with Store(db) as store:
        assert store.leases.current("support_agent") is None  # released at the end
        assert [r.status for r in store.runs.reports("support_agent")] == ["done"]


def _stale_lease(store: Store, *, host: str, pid: int, expires_in: timedelta) -> None:
    now = datetime.now(UTC)
    store.db["night_leases"].insert(
        {
            "prompt_name": "support_agent", "run_id": "support_agent:2026-11-18:old", "holder": "someone",
            "host": host, "pid": pid, "acquired_at": (now - timedelta(hours=1)).isoformat(),
            "expires_at": (now + expires_in).isoformat(),
        }
    )


def test_a_lease_not_renewed_in_time_is_taken_over_even_from_another_host(tmp_path: Path) -> None:
    with Store(tmp_path / "s.db") as store:
        _stale_lease(store, host="another-host", pid=1, expires_in=timedelta(seconds=-1))
        held = store.leases.hold("support_agent", "support_agent:2026-11-18:new")
        assert store.leases.current("support_agent").run_id.endswith(":new")
        held.release()


def test_a_live_lease_on_another_host_is_respected(tmp_path: Path) -> None:
    with Store(tmp_path / "s.db") as store:
        _stale_lease(store, host="another-host", pid=1, expires_in=timedelta(minutes=5))
        with pytest.raises(NightAlreadyRunning, match="process 1 on another-host"):
            store.leases.hold("support_agent", "support_agent:2026-11-18:new")


def test_a_lease_of_a_dead_process_on_this_host_is_taken_over(tmp_path: Path) -> None:
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    with Store(tmp_path / "s.db") as store:
        _stale_lease(store, host=socket.gethostname(), pid=dead.pid, expires_in=timedelta(minutes=5))
        store.leases.hold("support_agent", "support_agent:2026-11-18:new").release()


def test_the_heartbeat_keeps_a_long_night_s_lease_alive(tmp_path: Path) -> None:
    with Store(tmp_path / "s.db") as store:
        held = store.leases.hold("support_agent", "r", ttl=timedelta(seconds=0.4))
        first_expiry = store.leases.current("support_agent").expires_at
        time.sleep(0.6)  # longer than the ttl: only renewals keep it live
        lease = store.leases.current("support_agent")
        assert lease.expires_at > first_expiry and lease.dead(datetime.now(UTC)) is None
        held.release()
        assert store.leases.current("support_agent") is None
