"""What Prefect costs a night: the same night through a process worker vs `nightloop run --no-prefect`.

Starts a real `prefect server start` on a free loopback port (own PREFECT_HOME, no telemetry), makes two identical
projects (prompts imported, the same simulated day ingested), runs the night of the second day in one with
`--no-prefect` and in the other through `prefect deployment run nightly/nightly --watch` on a process worker, and
prints both wall times and their ratio. Target: worker <= 1.2 x no-prefect + 15 s. Every process it starts is killed
by pid at the end.

    .venv/bin/python benchmarks/prefect_overhead.py [--per-night 100]
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
NIGHT = "2026-11-18"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def run(args: list[str], cwd: Path, env: dict[str, str]) -> float:
    started = time.monotonic()
    done = subprocess.run([str(BIN / args[0]), *args[1:]], cwd=cwd, env=env, capture_output=True, text=True, timeout=900)
    if done.returncode != 0:
        raise SystemExit(f"`{' '.join(args)}` failed:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
    return time.monotonic() - started


def project(root: Path, env: dict[str, str], per_night: int) -> Path:
    root.mkdir(parents=True)
    for name in ("prompts", "flows"):
        shutil.copytree(REPO / name, root / name)
    shutil.copy(REPO / "deployments.yaml", root / "deployments.yaml")
    run(["nightloop", "prompts", "import", "prompts/"], root, env)
    run(["nightloop", "simulate", "--nights", "1", "--per-night", str(per_night), "--seed", "5", "--out", "logs", "--start", "2026-11-17"], root, env)
    run(["nightloop", "ingest", "logs"], root, env)
    return root


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-night", type=int, default=100, help="Conversations in the simulated day.")
    options = parser.parse_args()

    base = Path(tempfile.mkdtemp(prefix="nightloop-prefect-overhead-"))
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "NIGHTLOOP_"))}
    env.update(
        PREFECT_HOME=str(base / "prefect-home"), PREFECT_API_URL=f"http://127.0.0.1:{port}/api",
        PREFECT_SERVER_ANALYTICS_ENABLED="false", DO_NOT_TRACK="1",
    )
    started: list[subprocess.Popen] = []
    try:
        log = (base / "server.log").open("w")
        started.append(subprocess.Popen(
            [str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(port)],
            cwd=base, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        ))
        plain = project(base / "plain", env, options.per_night)
        worker_project = project(base / "worker", env, options.per_night)
        deadline = time.monotonic() + 180
        while True:
            try:
                if httpx.get(f"{env['PREFECT_API_URL']}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise SystemExit("the Prefect server did not start within 180 s")
            time.sleep(0.5)

        no_prefect_s = run(["nightloop", "run", "--no-prefect", "--date", NIGHT], plain, env)

        run(["prefect", "work-pool", "create", "local", "--type", "process"], worker_project, env)
        run(["prefect", "deploy", "--prefect-file", "deployments.yaml", "--all"], worker_project, env)
        elsewhere = base / "elsewhere"
        elsewhere.mkdir()
        log = (base / "worker.log").open("w")
        started.append(subprocess.Popen(
            [str(BIN / "prefect"), "worker", "start", "--pool", "local"],
            cwd=elsewhere, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        ))
        worker_s = run(["prefect", "deployment", "run", "nightly/nightly", "-p", f"logical_date={NIGHT}", "--watch"], worker_project, env)
    finally:
        for proc in reversed(started):
            try:
                os.killpg(proc.pid, signal.SIGTERM)
                proc.wait(timeout=15)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
    target = 1.2 * no_prefect_s + 15
    print(f"conversations={options.per_night} no_prefect_wall_s={no_prefect_s:.1f} worker_wall_s={worker_s:.1f} "
          f"ratio={worker_s / no_prefect_s:.2f} target_worker_s<={target:.1f} {'met' if worker_s <= target else 'NOT met'}")
    shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
