"""The Prefect API a flow run started by the CLI talks to: the configured server, or a temporary one of our own.

Without ``PREFECT_API_URL`` Prefect starts a temporary server as a child process in *our* process group, so the
terminal's Ctrl-C stops that server under the running night and the flow run hangs on a dead API. This starts the
same temporary server (the command Prefect's own ``SubprocessASGIServer`` runs) in a session of its own, so Ctrl-C
reaches only nightloop, which then stops the night gracefully; the server is stopped when the run ends.
"""

from __future__ import annotations

import ctypes
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager

from nightloop.errors import NightloopError

__all__ = ["die_with_parent", "free_loopback_port", "prefect_api"]

STARTUP_TIMEOUT_S = 120.0
DRAIN_TIMEOUT_S = 5.0
PR_SET_PDEATHSIG = 1
#: Settings of the temporary server unless the user set them: a night's flow runs save no blocks, and registering
#: Prefect's block types on a fresh database took a third of the server's start-up (about 3 CPU s and 6 s of wall).
TEMPORARY_SERVER_DEFAULTS = {"PREFECT_API_BLOCKS_REGISTER_ON_START": "false"}


def free_loopback_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def die_with_parent() -> None:
    """Linux (a ``preexec_fn``): the child gets SIGTERM if its parent is killed outright (then no cleanup runs)."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):
        pass


def answers_health(url: str, process: subprocess.Popen, timeout_s: float, poll_s: float = 0.2) -> bool:
    """Whether the Prefect API at ``url`` answers ``/health`` within ``timeout_s`` (False as soon as ``process`` exits)."""
    import httpx

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and process.poll() is None:
        try:
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                return True
        except httpx.HTTPError:
            pass
        time.sleep(poll_s)
    return False


def _wait_until_healthy(process: subprocess.Popen, url: str, log_path: str) -> None:
    if answers_health(url, process, STARTUP_TIMEOUT_S):
        return
    with open(log_path, errors="replace") as log:
        tail = log.read()[-2000:]
    raise NightloopError(
        f"The temporary Prefect server did not start within {STARTUP_TIMEOUT_S:.0f} s:\n{tail}\n"
        "Start one with `prefect server start` and set PREFECT_API_URL, or run with --no-prefect."
    )


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


@contextmanager
def prefect_api() -> Iterator[None]:
    """Flow runs inside this block use the configured Prefect API, else a temporary server shielded from Ctrl-C."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    if PREFECT_API_URL.value() or os.name != "posix":
        yield
        return
    port = free_loopback_port()
    url = f"http://127.0.0.1:{port}/api"
    with tempfile.NamedTemporaryFile("w+", prefix="nightloop-prefect-", suffix=".log", delete=False) as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "--factory", "prefect.server.api.server:create_app",
             "--host", "127.0.0.1", "--port", str(port), "--log-level", "error", "--lifespan", "on"],
            env={**TEMPORARY_SERVER_DEFAULTS, **os.environ,
                 "PREFECT_UI_ENABLED": "0", "PREFECT__SERVER_EPHEMERAL": "1", "PREFECT__SERVER_FINAL": "1"},
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True, preexec_fn=die_with_parent,
        )
    try:
        _wait_until_healthy(process, url, log.name)
        with temporary_settings(updates={PREFECT_API_URL: url}):
            try:
                yield
            finally:
                _drain_prefect_workers()
    finally:
        _stop(process)
        os.unlink(log.name)


def _drain_prefect_workers() -> None:
    """Send the flow run's queued logs and events while the server is up (as Prefect's test harness does), else
    they retry against a stopped server for a minute at exit."""
    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogWorker

    for worker in (APILogWorker, EventsWorker):
        worker.drain_all(timeout=DRAIN_TIMEOUT_S)
