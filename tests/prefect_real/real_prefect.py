"""Helpers for the real-Prefect tests. What a user runs, for real: `prefect server start` on loopback, a process worker, `nightloop serve`.

One server for the whole folder (session fixture): starting one costs 10-40 s on 2 cores. It binds 127.0.0.1 on a
free port, keeps its own PREFECT_HOME, and sends no telemetry. Every process started here runs in its own session
and is killed by its process-group id in the fixture's teardown, whatever happened.

The project is a copy of this checkout's files at a fresh temporary path (with a space in it), so nothing may depend
on where the repository lives. Its flows import nightloop from the copy (PYTHONPATH), as a user's own install would.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from nightloop.cli.prefect_api import answers_health, die_with_parent
from nightloop.cli.prefect_api import free_loopback_port as free_port

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
README = (REPO / "README.md").read_text()
SERVER_START_TIMEOUT_S = 120
COMMAND_TIMEOUT_S = 150

# A small night keeps the group within its time: what these tests check is the scheduling, not the gate.
SMALL_NIGHT_TOML = """\
min_failures = 3
[judge]
candidates = 2
[replay]
repeats = 1
max_failure_cases = 20
regression_cases = 6
"""


def scheduling_section() -> str:
    """The README's "Scheduling" section: the commands the tests run must be printed there, verbatim."""
    match = re.search(r"^## Scheduling.*?(?=^## )", README, flags=re.S | re.M)
    assert match, "README.md has no '## Scheduling' section"
    return match.group(0)



@dataclass
class Processes:
    """Long-running processes started by the tests; ``stop_all`` kills each by its process-group id."""

    logs: Path
    started: list[subprocess.Popen] = field(default_factory=list)

    def start(self, name: str, args: list[str], *, cwd: Path, env: dict[str, str]) -> subprocess.Popen:
        log = (self.logs / f"{name}.log").open("w")
        proc = subprocess.Popen(
            args, cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            preexec_fn=die_with_parent,
        )
        self.started.append(proc)
        return proc

    def stop(self, proc: subprocess.Popen) -> None:
        if proc.poll() is None:
            try:
                os.killpg(proc.pid, signal.SIGTERM)
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)
            except ProcessLookupError:
                pass
        # Children that outlived their parent (a flow-run subprocess) are still in the group.
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass

    def stop_all(self) -> None:
        for proc in reversed(self.started):
            self.stop(proc)

    def log(self, name: str) -> str:
        path = self.logs / f"{name}.log"
        return path.read_text(errors="replace")[-4000:] if path.exists() else ""


@dataclass
class Project:
    """A checkout at an arbitrary path, a Prefect server for it, and how to run commands there."""

    root: Path
    elsewhere: Path
    env: dict[str, str]
    api_url: str
    processes: Processes

    def run(self, command: str, *, cwd: Path | None = None, documented: bool = True, timeout: float = COMMAND_TIMEOUT_S) -> subprocess.CompletedProcess:
        """Run ``command`` (a `prefect …` or `nightloop …` line) as a user would, from the venv's bin."""
        if documented:
            assert command in scheduling_section(), f"the README's Scheduling section does not show `{command}`"
        args = command.split()
        args[0] = str(BIN / args[0])
        started = time.monotonic()
        done = subprocess.run(
            args, cwd=cwd or self.root, env=self.env, capture_output=True, text=True, timeout=timeout, check=False
        )
        print(f"{time.monotonic() - started:6.1f} s  {command}")  # shown with -s: where the group's time goes
        return done

    def start(self, name: str, command: str, *, cwd: Path, env: dict[str, str] | None = None) -> subprocess.Popen:
        assert command in scheduling_section(), f"the README's Scheduling section does not show `{command}`"
        args = command.split()
        args[0] = str(BIN / args[0])
        return self.processes.start(name, args, cwd=cwd, env={**self.env, **(env or {})})

    def api(self, method: str, path: str, **kwargs) -> httpx.Response:
        response = httpx.request(method, f"{self.api_url}{path}", timeout=30, **kwargs)
        response.raise_for_status()
        return response


def copy_checkout(dest: Path) -> None:
    """The repository's files (tracked and new, as in this working tree) at ``dest``, without .venv or caches."""
    listed = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard"], cwd=REPO, capture_output=True, text=True, check=False
    )
    names = listed.stdout.splitlines() if listed.returncode == 0 else []
    if not names:  # not a git checkout (an unpacked archive): copy what a project has
        names = [str(p.relative_to(REPO)) for p in REPO.rglob("*") if p.is_file() and ".venv" not in p.parts]
    for name in names:
        source = REPO / name
        if source.is_file() and not name.startswith((".venv/", "demo/")):
            target = dest / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)


def user_env(prefect_home: Path, api_url: str, checkout: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "NIGHTLOOP_"))}
    env.update(
        PREFECT_HOME=str(prefect_home),
        PREFECT_API_URL=api_url,
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        DO_NOT_TRACK="1",
        PYTHONPATH=str(checkout / "src"),
        # Test speed only: the worker and serve poll for scheduled runs every 10 s by default.
        PREFECT_WORKER_QUERY_SECONDS="1",
        PREFECT_RUNNER_POLL_FREQUENCY="1",
        COLUMNS="200",
        PREFECT_UI_ENABLED="false",  # test speed: no dashboard files to copy at start
    )
    return env


def wait_healthy(api_url: str, server: subprocess.Popen, processes: Processes) -> None:
    if answers_health(api_url, server, SERVER_START_TIMEOUT_S, poll_s=0.5):
        return
    if server.poll() is not None:
        pytest.fail(f"prefect server start exited with {server.returncode}:\n{processes.log('server')}")
    pytest.fail(f"prefect server did not answer within {SERVER_START_TIMEOUT_S} s:\n{processes.log('server')}")


def flow_run_ids(output: str) -> list[str]:
    return re.findall(r"UUID: ([0-9a-f-]{36})", output)
