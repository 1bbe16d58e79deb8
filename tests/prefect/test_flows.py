"""The Prefect flows run the same pipeline, one task per stage, and publish artifacts for reviewers."""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path

from nightloop.config import load_settings
from nightloop.ingest import ingest
from nightloop.prompt_files import import_prompts
from nightloop.simulate import simulate_from_store
from nightloop.store import Store

REPO = Path(__file__).resolve().parents[2]
DAY = date(2026, 11, 17)


def test_nightly_flow_runs_stages_as_tasks_and_creates_artifacts(tmp_path: Path) -> None:
    from prefect.client.orchestration import get_client

    from nightloop.flows import backfill, nightly

    db = tmp_path / "flow.db"
    settings = load_settings(db=db, seed=3)
    with Store(db) as store:
        import_prompts(store, REPO / "prompts", created_by="test")
        files = simulate_from_store(store, "support_agent", nights=1, per_night=50, seed=5, out=tmp_path / "logs", start_date=DAY)
        ingest(store, [str(f) for f in files], classify_config=settings.classify)

    state = nightly(logical_date=DAY + timedelta(days=1), db=str(db), return_state=True)
    assert state.is_completed()
    reports = state.result()
    assert len(reports) == 1 and reports[0]["status"] == "done"

    import asyncio

    async def inspect():
        async with get_client() as client:
            task_runs = await client.read_task_runs()
            artifacts = await client.read_artifacts()
            return {t.name.rsplit("-", 1)[0] for t in task_runs}, {a.key for a in artifacts}

    task_names, artifact_keys = asyncio.run(inspect())
    assert {"ingest", "classify", "judge", "replay", "gate", "review"} <= task_names
    assert {"night-support-agent", "failures-support-agent"} <= artifact_keys

    again = backfill(since=DAY + timedelta(days=1), until=DAY + timedelta(days=1), db=str(db))
    assert [r["status"] for r in again] == ["skipped"]


def test_nightly_fans_out_one_child_run_per_prompt_and_fails_only_the_prompt_that_failed(tmp_path: Path, monkeypatch) -> None:
    import asyncio

    from prefect.client.orchestration import get_client

    from nightloop.flows import nightly
    from nightloop.testing import FakeOpenAIServer
    from nightloop.testing.many_prompts import SimJudgeWithOutage, seed_many_prompts, write_prompts

    monkeypatch.setenv("OPENAI_API_KEY", "test-key-not-real")
    names = write_prompts(tmp_path / "prompts", 3)
    db = tmp_path / "many.db"
    with Store(db) as store:
        import_prompts(store, tmp_path / "prompts", created_by="test")
        seed_many_prompts(store, names, tmp_path / "logs", day=DAY, per_night=20)
    with FakeOpenAIServer(responder=SimJudgeWithOutage(down={names[1]}, seed=3)) as judge:
        judge_role = f'provider = "openai"\nmodel = "gpt-4o-mini"\nbase_url = "{judge.base_url}"\nmax_retries = 0\n'
        config = tmp_path / "nightloop.toml"
        config.write_text(f"[schedule]\nmax_parallel_prompts = 3\n[judge]\ncandidates = 2\n[replay]\nrepeats = 1\n[llm.judge]\n{judge_role}")
        state = nightly(logical_date=DAY + timedelta(days=1), db=str(db), config_file=str(config), return_state=True)

    assert state.is_failed()
    assert names[1] in state.message and names[0] not in state.message and names[2] not in state.message

    async def children():
        async with get_client() as client:
            from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterParentFlowRunId

            runs = await client.read_flow_runs(
                flow_run_filter=FlowRunFilter(parent_flow_run_id=FlowRunFilterParentFlowRunId(any_=[state.state_details.flow_run_id]))
            )
            return {r.name: r.state.type.value for r in runs}

    assert asyncio.run(children()) == {names[0]: "COMPLETED", names[1]: "FAILED", names[2]: "COMPLETED"}
