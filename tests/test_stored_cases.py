"""Replay sets are stored by reference (no conversation content in `stages`) and rebuilt identically when read."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

from nightloop import pipeline
from nightloop.config import load_settings
from nightloop.ingest import ingest
from nightloop.models import ReplaySetOutput
from nightloop.night import Night
from nightloop.redact import storage_id
from nightloop.replay_cases import replay_set_hash
from nightloop.stages.classify import stage_classify
from nightloop.stages.ingest import stage_ingest
from nightloop.stages.replay_set import stage_replay_set
from nightloop.store import Store
from nightloop.stored_cases import with_content
from nightloop.testing.injection_nights import DAY, PROMPT, prepare_base


def test_the_replay_set_is_stored_by_reference_and_rebuilt_from_the_conversations(tmp_path: Path) -> None:
    db = prepare_base(tmp_path, traffic=12)
    settings = load_settings(db=db, seed=3, llm={"allow_sim_agent": True})
    with Store(db) as store:
        report = pipeline.run_night(settings, PROMPT, DAY + timedelta(days=1), store=store)
        raw = store.runs.stage_output(report.run_id, "replay_set")
        stored = ReplaySetOutput.model_validate(raw)
        assert stored.cases and all(c.messages == [] and c.variables == {} for c in stored.cases)
        assert all("tool_results" not in c.metadata and c.expectation.value is None for c in stored.cases)
        rebuilt = with_content(store, stored)
        assert replay_set_hash(rebuilt.cases) == stored.hash  # the very cases the night replayed
        assert all(c.messages for c in rebuilt.cases) and rebuilt.notes == stored.notes
        # A resumed night's stages read the stored set back: the same cases, nothing rebuilt from scratch.
        night = Night(settings, store, PROMPT, DAY + timedelta(days=1))
        ingested = stage_ingest(night)
        resumed = stage_replay_set(night, ingested, stage_classify(night, ingested))
        assert night.run_id == report.run_id and replay_set_hash(resumed.cases) == stored.hash
        # A case whose conversation is gone is left out, and said so.
        gone = stored.cases[0].metadata["conversation_id"]
        store.conversations.delete([gone])
        partial = with_content(store, stored)
        assert gone not in {c.metadata["conversation_id"] for c in partial.cases}
        assert "could not be rebuilt" in partial.notes[-1]


def test_a_conversation_id_with_private_data_is_stored_under_a_stable_key(tmp_path: Path) -> None:
    record = {"id": "support-jane.doe@example.com-17", "prompt_name": PROMPT,
              "messages": [{"role": "user", "content": "Where is my order?"}, {"role": "assistant", "content": "On its way."}]}
    logs = tmp_path / "logs.jsonl"
    logs.write_text(json.dumps(record) + "\n", encoding="utf-8")
    with Store(tmp_path / "night.db") as store:
        first = ingest(store, [str(logs)])
        again = ingest(store, [str(logs)])
        key = storage_id(record["id"])
        assert key.startswith("private-") and "jane" not in key
        assert first.new_ids == [key] and again.ingested == 0 and again.duplicates == 1
        stored = store.conversations.get(record["id"])  # found by the id the user knows, too
        assert stored is not None and stored.id == key and stored.metadata["original_id"] == record["id"]
        assert storage_id("c-2026-11-23-0001") == "c-2026-11-23-0001" and storage_id(key) == key
