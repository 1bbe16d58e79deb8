"""The README's Scheduling section, run as a user runs it: work pool + worker, `nightloop serve`, backfill.

In order (they share one server and one project): the work-pool deployment's night, then serve's, then the
backfill deployment over both and one more date.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import pytest

from real_prefect import Project, flow_run_ids

pytestmark = pytest.mark.prefect_real

WORKER = "prefect worker start --pool local"
SERVE = "nightloop serve"


def _completed(project: Project, done) -> str:
    """The flow run's id, after checking that `--watch` saw it finish Completed and the API agrees."""
    output = done.stdout + done.stderr
    assert done.returncode == 0 and "finished successfully in 'Completed'" in output, output[-3000:]
    (run_id,) = flow_run_ids(output)[:1]
    state = project.api("GET", f"/flow_runs/{run_id}").json()["state"]
    assert state["type"] == "COMPLETED", state
    return run_id


def _nights(project: Project) -> dict[str, dict]:
    done = project.run("nightloop report --json", documented=False)
    assert done.returncode == 0, done.stdout + done.stderr
    return {row["date"]: row for row in json.loads(done.stdout)}


@pytest.fixture(scope="module")
def deployed(project: Project) -> Iterator[Project]:
    """The work pool, both deployments (deployed from the checkout), and a worker started somewhere else."""
    for command in ("prefect work-pool create local --type process", "prefect deploy --prefect-file deployments.yaml --all"):
        done = project.run(command)
        assert done.returncode == 0, done.stdout + done.stderr
    worker = project.start("worker", WORKER, cwd=project.elsewhere)
    yield project
    project.processes.stop(worker)


def test_a_work_pool_run_started_elsewhere_completes_with_its_night_and_artifacts(deployed: Project) -> None:
    assert not (deployed.elsewhere / "flows").exists()  # the worker's directory holds no project
    done = deployed.run("prefect deployment run nightly/nightly -p logical_date=2026-11-18 --watch")
    run_id = _completed(deployed, done)

    night = _nights(deployed)["2026-11-18"]
    assert night["status"] == "done" and night["conversations"] == 20 and night["candidates"] >= 1

    # Each prompt's night is a child flow run of the nightly run, with its artifacts.
    children = deployed.api("POST", "/flow_runs/filter", json={"flow_runs": {"parent_flow_run_id": {"any_": [run_id]}}}).json()
    assert [c["name"] for c in children] == ["support_agent"] and children[0]["state"]["type"] == "COMPLETED"
    artifacts = deployed.api("POST", "/artifacts/filter", json={"artifacts": {"flow_run_id": {"any_": [children[0]["id"]]}}}).json()
    by_key = {a["key"]: a for a in artifacts}
    assert {"night-support-agent", "failures-support-agent"} <= set(by_key)
    assert "night of 2026-11-18" in by_key["night-support-agent"]["data"]


def test_serve_registers_its_own_deployment_and_runs_a_night(deployed: Project) -> None:
    serve = deployed.start("serve", SERVE, cwd=deployed.root)
    try:
        deadline = time.monotonic() + 60
        names: set[str] = set()
        while time.monotonic() < deadline and "nightly-serve" not in names:
            assert serve.poll() is None, f"nightloop serve exited {serve.returncode}:\n{deployed.processes.log('serve')}"
            time.sleep(1)
            names = {d["name"] for d in deployed.api("POST", "/deployments/filter", json={}).json()}
        assert {"nightly", "nightly-serve", "backfill"} <= names, names

        done = deployed.run("prefect deployment run nightly/nightly-serve -p logical_date=2026-11-19 --watch")
        _completed(deployed, done)
        assert _nights(deployed)["2026-11-19"]["status"] == "done"
    finally:
        deployed.processes.stop(serve)


def test_the_backfill_deployment_runs_since_to_until(deployed: Project) -> None:
    done = deployed.run("prefect deployment run backfill/backfill -p since=2026-11-18 -p until=2026-11-20 --watch")
    _completed(deployed, done)
    nights = _nights(deployed)
    assert {"2026-11-18", "2026-11-19", "2026-11-20"} <= set(nights)
    assert nights["2026-11-20"]["status"] == "done" and nights["2026-11-20"]["conversations"] == 60
