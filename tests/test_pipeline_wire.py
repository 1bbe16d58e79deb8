"""A night whose agent is a real OpenAI SDK client talking over the wire (to a loopback fake playing the sim agent)."""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path

import pytest

from nightloop import pipeline
from nightloop.config import load_settings
from nightloop.ingest import ingest
from nightloop.prompt_files import import_prompts
from nightloop.simulate import simulate_from_store
from nightloop.store import Store
from nightloop.testing import FakeOpenAIServer
from nightloop.testing.sim_wire import sim_agent as sim_agent_over_the_wire

REPO = Path(__file__).resolve().parents[1]
DAY = date(2026, 11, 17)


def test_a_night_with_an_openai_agent_runs_through_the_sdk_and_the_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "test-key-not-real")
    with FakeOpenAIServer(responder=sim_agent_over_the_wire) as fake:
        agent = {"provider": "openai", "model": "gpt-4o-mini", "base_url": fake.base_url, "max_retries": 0}
        settings = load_settings(db=tmp_path / "wire.db", seed=3, llm={"agent": agent})
        with Store(settings.db) as store:
            import_prompts(store, REPO / "prompts", created_by="test")
            files = simulate_from_store(store, "support_agent", nights=1, per_night=100, seed=11, out=tmp_path / "logs", start_date=DAY)
            ingest(store, [str(f) for f in files], classify_config=settings.classify)
            night = DAY + timedelta(days=1)
            report = pipeline.run_night(settings, "support_agent", night, store=store)
            calls = fake.calls
            assert report.status == "done", report.notes
            assert calls > 100 and report.cost_usd > 0
            assert any(d.verdict == "promote" for d in report.decisions), [d.reasons for d in report.decisions]
            assert all(r["model"] == "gpt-4o-mini" for r in fake.requests)

            again = pipeline.run_night(settings, "support_agent", night, store=store, force=True)
            assert again.status == "done"
            assert fake.calls == calls, "a forced re-run repeated model calls the cache already had"
