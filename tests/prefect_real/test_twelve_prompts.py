"""Twelve prompts, more than the parallel slots (max_parallel_prompts = 4), one night, through a real Prefect server and
process worker: one child flow run per prompt, the results of running them one by one, and a planted judge outage that fails
only its own prompt's run (the parent run names it)."""

from __future__ import annotations

import json
import shutil
import time
from datetime import date
from pathlib import Path

import pytest
from real_prefect import BIN, Project, copy_checkout, flow_run_ids

from nightloop.store import Store
from nightloop.testing import FakeOpenAIServer
from nightloop.testing.many_prompts import SimJudgeWithOutage, seed_many_prompts, write_prompts

pytestmark = pytest.mark.prefect_real

PROMPTS = 12  # as the issue asks; three times the 4 slots, so some prompts wait for one: the fan-out is bounded, not all at once
DAY = date(2026, 11, 17)
NIGHT = "2026-11-18"


def _toml(judge_url: str, parallel: int) -> str:
    return f"""\
seed = 3
min_failures = 3
[judge]
candidates = 2
[replay]
repeats = 1
max_failure_cases = 12
regression_cases = 4
[schedule]
max_parallel_prompts = {parallel}
[llm.judge]
provider = "openai"
model = "gpt-4o-mini"
base_url = "{judge_url}"
max_retries = 0
"""


SPEND = ("tokens", "cost_usd")


def _outcomes(rows: list[dict]) -> dict[str, dict]:
    """Each prompt's night as `nightloop report --json` shows it: what it found and decided.

    Spend is compared in total only: prompts share the response cache, so when two nights make the same call
    whichever asks first pays for it, and side by side that is not always the same one."""
    return {row["prompt"]: {k: v for k, v in row.items() if k not in SPEND} for row in rows}


def _spent(rows: list[dict]) -> int:
    return sum(row["tokens"] for row in rows)


def _report(project: Project, root: Path) -> list[dict]:
    done = project.run("nightloop report --json", cwd=root, documented=False)
    assert done.returncode == 0, done.stdout + done.stderr
    return json.loads(done.stdout)


def test_prompts_fan_out_four_at_a_time_and_an_outage_fails_only_its_prompt(project: Project, tmp_path: Path) -> None:
    root = tmp_path / "many prompts"
    root.mkdir()
    copy_checkout(root)
    shutil.rmtree(root / "prompts")
    names = write_prompts(root / "prompts", PROMPTS)
    down = names[2]  # fails while three other prompts run beside it
    env = {**project.env, "PYTHONPATH": str(root / "src"), "OPENAI_API_KEY": "test-key-not-real"}
    many = Project(root=root, elsewhere=project.elsewhere, env=env, api_url=project.api_url, processes=project.processes)
    with FakeOpenAIServer(responder=SimJudgeWithOutage(down={down}, seed=3)) as judge:
        (root / "nightloop.toml").write_text(_toml(judge.base_url, 4))
        assert many.run("nightloop prompts import prompts/", documented=False).returncode == 0
        with Store(root / "nightloop.db") as store:
            seed_many_prompts(store, names, root / "logs", day=DAY, per_night=20)
        one_by_one = tmp_path / "one by one"
        shutil.copytree(root, one_by_one)
        (one_by_one / "nightloop.toml").write_text(_toml(judge.base_url, 1))

        # Its own pool and deployment names, so the scheduling tests' `local` pool and `nightly/nightly` stay theirs.
        (root / "many.yaml").write_text(
            (root / "deployments.yaml").read_text()
            .replace("name: local", "name: many").replace("- name: nightly\n", "- name: many-nightly\n")
            .replace("- name: backfill\n", "- name: many-backfill\n")
        )
        for command in ("prefect work-pool create many --type process", "prefect deploy --prefect-file many.yaml --all"):
            done = many.run(command, documented=False)
            assert done.returncode == 0, done.stdout + done.stderr
        worker = many.processes.start(
            "many-worker", [str(BIN / "prefect"), "worker", "start", "--pool", "many"], cwd=project.elsewhere, env=env
        )
        try:
            started = time.monotonic()
            done = many.run(f"prefect deployment run nightly/many-nightly -p logical_date={NIGHT} --watch", documented=False, timeout=240)
            print(f"{PROMPTS} prompts through the worker: {time.monotonic() - started:.1f} s")
        finally:
            many.processes.stop(worker)
        output = done.stdout + done.stderr
        (parent_id,) = flow_run_ids(output)[:1]
        parent = many.api("GET", f"/flow_runs/{parent_id}").json()
        assert parent["state"]["type"] == "FAILED", parent["state"]
        assert down in parent["state"]["message"] and not any(n in parent["state"]["message"] for n in names if n != down)

        children = many.api("POST", "/flow_runs/filter", json={"flow_runs": {"parent_flow_run_id": {"any_": [parent_id]}}}).json()
        states = {c["name"]: c["state"]["type"] for c in children}
        assert states == {n: "FAILED" if n == down else "COMPLETED" for n in names}, states
        artifacts = many.api(
            "POST", "/artifacts/filter", json={"artifacts": {"flow_run_id": {"any_": [c["id"] for c in children]}}}
        ).json()
        assert {a["key"] for a in artifacts} >= {f"night-{n.replace('_', '-')}" for n in names}
        progress = many.api("POST", "/artifacts/filter", json={"artifacts": {"key": {"any_": ["nights-progress"]}, "flow_run_id": {"any_": [parent_id]}}}).json()
        assert progress and progress[0]["data"] == 100.0 and f"{PROMPTS} done" in progress[0]["description"]

        parallel_rows = _report(many, root)
        parallel = _outcomes(parallel_rows)
        sequential = many.run(f"nightloop run --no-prefect --date {NIGHT} --json", cwd=one_by_one, documented=False)
        assert sequential.returncode == 1 and down in sequential.stderr  # the same outage, named
        serial_rows = _report(many, one_by_one)
        serial = _outcomes(serial_rows)
        assert _spent(parallel_rows) == _spent(serial_rows) > 0
        differing = {n: {k: (v, serial[n].get(k)) for k, v in row.items() if serial[n].get(k) != v} for n, row in parallel.items()}
        assert parallel == serial, {n: d for n, d in differing.items() if d}
        assert parallel[down]["status"] == "failed"
        assert all(parallel[n]["status"] == "done" and parallel[n]["verdicts"] for n in names if n != down)
