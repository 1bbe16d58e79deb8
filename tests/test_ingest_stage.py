"""The ingest stage: a night that reads its configured sources keeps what the read did beside its window."""

from __future__ import annotations

from datetime import date
from pathlib import Path

from nightloop import pipeline
from nightloop.config import load_settings
from nightloop.models import IngestOutput
from nightloop.store import Store
from worlds import Traffic, Worlds

PROMPT = "support_agent"


def test_a_night_reading_its_sources_reports_their_quarantined_lines_and_new_conversations(worlds: Worlds, tmp_path: Path) -> None:
    settings = load_settings(db=tmp_path / "night.db", seed=3)
    worlds.copy_traffic(Traffic(), tmp_path, settings.db.name)
    with Store(settings.db) as store:
        stored = store.conversations.recent(PROMPT, None, 1)[0]
        arriving = stored.model_copy(update={"id": "arrived-tonight"})
        log = tmp_path / "tonight.jsonl"
        log.write_text(arriving.model_dump_json() + "\n{not json\n")
        report = pipeline.run_night(settings.model_copy(update={"sources": [str(log)]}), PROMPT, date(2026, 11, 18), store=store)
        ingested = IngestOutput.model_validate(store.runs.stage_output(report.run_id, "ingest"))
    assert report.quarantined == 1, report
    assert ingested.read is not None and (ingested.read.ingested, ingested.read.quarantined) == (1, 1)
    assert "arrived-tonight" in ingested.conversation_ids and "arrived-tonight" in ingested.new_ids
