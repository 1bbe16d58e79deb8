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
