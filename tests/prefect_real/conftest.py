"""One real Prefect server and one fresh checkout for the whole folder (see real_prefect.py)."""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator

import pytest
from real_prefect import (
    BIN,
    README,
    SMALL_NIGHT_TOML,
    Processes,
    Project,
    copy_checkout,
    free_port,
    scheduling_section,
    user_env,
    wait_healthy,
)


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


@pytest.fixture(scope="session")
def project(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Project]:
    """A fresh checkout with prompts and three simulated days ingested, and a running Prefect server for it."""
    base = tmp_path_factory.mktemp("prefect-real")
    root = base / "any place" / "my checkout"
    elsewhere = base / "somewhere else"
    root.mkdir(parents=True)
    elsewhere.mkdir()
    processes = Processes(logs=base)
    port = free_port()
    api_url = f"http://127.0.0.1:{port}/api"
    env = user_env(base / "prefect-home", api_url, root)
    project = Project(root=root, elsewhere=elsewhere, env=env, api_url=api_url, processes=processes)
    # A SIGTERM to pytest (a CI timeout) still runs the teardown below, which kills the server by pid.
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        booted = time.monotonic()
        server = processes.start(
            "server", [str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(port)],
            cwd=base, env=env,
        )
        # The project is set up while the server boots (the same commands a user types).
        copy_checkout(root)
        (root / "nightloop.toml").write_text(SMALL_NIGHT_TOML)
        for command in (
            "nightloop prompts import prompts/",
            "nightloop simulate --nights 3 --per-night 20 --seed 5 --out logs --start 2026-11-17",
            "nightloop ingest logs",
        ):
            done = project.run(command, documented=False)
            assert done.returncode == 0, done.stdout + done.stderr
        assert "prefect server start" in scheduling_section() and "PREFECT_SERVER_ANALYTICS_ENABLED=false" in README
        wait_healthy(api_url, server, processes)
        print(f"server healthy after {time.monotonic() - booted:.1f} s")
        yield project
    finally:
        processes.stop_all()
        signal.signal(signal.SIGTERM, previous)
