"""Ingest end to end: sources -> store -> classification, the CLI commands, and the shared real data."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

import nightloop.ingest as ingest_module
from nightloop.cli import ingest as ingest_cli
from nightloop.config import ClassifyConfig
from nightloop.errors import SourceError
from nightloop.ingest import ingest
from nightloop.models import Conversation, Failure
from nightloop.store import Store

DATA = Path(__file__).resolve().parent / "data"


class RecordingClassifier:
    """A fake classifier: flags non-ok outcomes, records what it saw."""

    def __init__(self) -> None:
        self.history: list[str] = []

    def __call__(self, conversation: Conversation) -> list[Failure]:
        self.history.append(conversation.id)
        if conversation.outcome.status == "ok":
            return []
        return [
            Failure(
                conversation_id=conversation.id,
                kind="timeout" if conversation.outcome.status == "timeout" else "tool_error",
                turn=len(conversation.messages) - 1,
                evidence=conversation.messages[-1].text,
                detector="fake",
            )
        ]


@pytest.fixture
def store():
    with Store(None) as s:
        yield s


def test_ingest_stores_new_conversations_and_classifies_only_those(store: Store):
    classifier = RecordingClassifier()
    stats = ingest(store, [DATA / "canonical.jsonl", DATA / "malformed.jsonl"], classifier=classifier)
    assert (stats.ingested, stats.duplicates, stats.quarantined) == (5, 0, 6)
    assert stats.new_ids == ["c-1", "c-2", "c-3", "m-1", "m-8"]
    assert classifier.history == stats.new_ids
    assert stats.failures == {"timeout": 1}
    assert [f.id for f in store.conversations.failures()] == ["c-3#timeout@1"]
    assert store.conversations.quarantine_count() == 6

    again = ingest(store, [DATA], classifier=classifier)  # the directory holds the same files and more
    assert again.duplicates == 5 and again.ingested == 3 + 2  # openai_chat.jsonl (3) + otel_export.json (2)
    assert classifier.history[5:] == again.new_ids
    assert store.conversations.count() == 10
    assert store.conversations.quarantine_count() == 7


def test_ingest_passes_window_and_limit_to_the_sources(store: Store):
    from datetime import datetime, timezone

    stats = ingest(
        store,
        [DATA / "canonical.jsonl"],
        classifier=RecordingClassifier(),
        window=(datetime(2026, 11, 23, tzinfo=timezone.utc), None),
        limit=1,
    )
    assert stats.new_ids == ["c-1"]


def test_a_missing_source_fails_before_anything_is_written(store: Store, tmp_path: Path):
    with pytest.raises(SourceError, match="missing.jsonl does not exist"):
        ingest(store, [DATA / "canonical.jsonl", tmp_path / "missing.jsonl"], classifier=RecordingClassifier())
    assert store.conversations.count() == 0


def test_a_classifier_crash_is_recorded_not_fatal(store: Store):
    def flaky(conversation: Conversation) -> list[Failure]:
        if conversation.id == "c-2":
            raise KeyError("boom")
        return []

    stats = ingest(store, [DATA / "canonical.jsonl"], classifier=flaky)
    assert stats.ingested == 3
    assert stats.errors == ["classify c-2: KeyError: 'boom'"]


def test_progress_observer_sees_each_batch_and_cannot_crash_the_run(store: Store, tmp_path: Path):
    path = tmp_path / "many.jsonl"
    path.write_text("".join(f'{{"id": "x{i}", "messages": [{{"role": "user", "content": "hi"}}]}}\n' for i in range(25)))
    seen: list[int] = []

    def observer(stats):
        seen.append(stats.ingested)
        raise RuntimeError("observer bug")

    stats = ingest(store, [path], classifier=RecordingClassifier(), on_progress=observer, batch_size=10)
    assert seen == [10, 20, 25] and stats.ingested == 25


def test_the_default_classifier_is_the_rule_classifier(store: Store):
    """Without an injected classifier, ingest runs nightloop.classify with the given config."""
    stats = ingest(store, [DATA / "canonical.jsonl"], classify_config=ClassifyConfig())
    kinds = {(f.conversation_id, f.kind) for f in store.conversations.failures()}
    assert ("c-3", "timeout") in kinds
    assert stats.failures.get("timeout", 0) >= 1


# --- the CLI ---


@pytest.fixture
def cli(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    """Invoke `nightloop <args>` through typer with the fake classifier; returns (invoke, db path)."""
    monkeypatch.setattr(ingest_module, "default_classifier", lambda config: RecordingClassifier())
    app = typer.Typer()
    ingest_cli.register(app)
    runner = CliRunner()
    db = tmp_path / "cli.db"

    def invoke(*args: str):
        return runner.invoke(app, [*args, "--db", str(db)])

    return invoke


def test_cli_ingest_json_and_rerun(cli):
    result = cli("ingest", str(DATA / "canonical.jsonl"), "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert (report["ingested"], report["duplicates"], report["quarantined"]) == (3, 0, 0)
    assert report["failures"] == {"timeout": 1} and report["quarantine"] == []
    again = json.loads(cli("ingest", str(DATA / "canonical.jsonl"), "--json").stdout)
    assert (again["ingested"], again["duplicates"]) == (0, 3)


def test_cli_ingest_reports_quarantined_lines_and_strict_fails(cli):
    bad_file = str(DATA / "malformed.jsonl")
    result = cli("ingest", bad_file)
    assert result.exit_code == 0
    assert "ingested 2, duplicates 0, quarantined 6" in result.stdout
    assert f"{bad_file}:4: message 2 has unknown role 'robot'" in result.stderr
    assert f"{bad_file}:3: missing required field 'messages'" in result.stderr

    strict = cli("ingest", bad_file, "--strict", "--json")
    assert strict.exit_code != 0
    report = json.loads(strict.stdout)
    assert report["quarantined"] == 6 and report["duplicates"] == 2
    assert {"locator": f"{bad_file}:2", "reason": "invalid JSON: Expecting ',' delimiter at column 62"} in report["quarantine"]
    assert "--strict" in strict.stderr

    clean = cli("ingest", str(DATA / "canonical.jsonl"), "--strict")
    assert clean.exit_code == 0


def test_cli_ingest_errors_name_the_fix(cli, tmp_path: Path):
    missing = cli("ingest", str(tmp_path / "nope.jsonl"))
    # The console wraps at 80 columns wherever the temporary folder's long path puts "does not exist".
    assert missing.exit_code == 1 and "does not exist" in " ".join(missing.stderr.split())
    unknown = cli("ingest", str(DATA / "canonical.jsonl"), "--format", "csv")
    assert unknown.exit_code == 1 and "jsonl, openai, sqlite, otel" in unknown.stderr


def test_cli_ingest_with_format_and_gz(cli, tmp_path: Path):
    import gzip

    gz = tmp_path / "chat.jsonl.gz"
    gz.write_bytes(gzip.compress((DATA / "canonical.jsonl").read_bytes()))
    report = json.loads(cli("ingest", str(gz), "--format", "openai", "--json").stdout)
    assert report["ingested"] == 3


def test_cli_failures_json_table_and_filters(cli):
    cli("ingest", str(DATA / "canonical.jsonl"), str(DATA / "otel_export.json"))
    listed = json.loads(cli("failures", "--json").stdout)
    assert [f["id"] for f in listed] == ["c-3#timeout@1", "0af7651916cd43dd8448eb211c80319c#timeout@0"]
    assert set(listed[0]) == {"id", "conversation_id", "kind", "turn", "evidence", "detector", "confidence", "prompt_name", "ended_at"}
    assert json.loads(cli("failures", "--prompt", "billing_agent", "--json").stdout)[0]["conversation_id"] == "c-3"
    assert [f["conversation_id"] for f in json.loads(cli("failures", "--since", "2026-11-23", "--json").stdout)] == [
        "0af7651916cd43dd8448eb211c80319c"
    ]
    assert json.loads(cli("failures", "--kind", "refusal", "--json").stdout) == []
    table = cli("failures")
    assert table.exit_code == 0 and "c-3" in table.stdout and "Per kind" in table.stdout
    assert cli("failures", "--kind", "nonsense").exit_code == 1
    assert "is not a date" in cli("failures", "--since", "yesterday").stderr


def test_cli_quarantine_lists_records(cli):
    missing = cli("quarantine")  # reading commands never create a store
    assert missing.exit_code == 1 and "No nightloop store at" in missing.stderr
    cli("ingest", str(DATA / "canonical.jsonl"))
    assert "Nothing is quarantined" in cli("quarantine").stdout
    cli("ingest", str(DATA / "malformed.jsonl"))
    records = json.loads(cli("quarantine", "--json").stdout)
    assert len(records) == 6 and records[0]["locator"].endswith("malformed.jsonl:2")
    text = cli("quarantine", "--limit", "2").stdout
    assert "malformed.jsonl:8: expected a JSON object, got list" in text and "2 of 6" in text


# --- the shared real conversations ---


def test_real_data_ingests_cleanly_and_idempotently(real_data: Path, store: Store, tmp_path: Path):
    files = sorted(real_data.glob("*.jsonl"))
    first = ingest(store, files, classifier=RecordingClassifier())
    assert (first.ingested, first.duplicates, first.quarantined) == (786, 0, 0)
    again = ingest(store, files, classifier=RecordingClassifier())
    assert (again.ingested, again.duplicates, again.quarantined) == (0, 786, 0)
    assert {"tau_airline_agent", "mint_humaneval"} <= set(store.conversations.prompt_names())
    timeouts = {f.conversation_id for f in store.conversations.failures(kind="timeout")}
    assert len(timeouts) == sum(1 for c in store.conversations.iter_conversations() if c.outcome.status == "timeout") > 0
    tau = store.conversations.get("tau-airline-0-0")
    assert tau is not None and any(m.tool_calls for m in tau.messages)


def test_real_data_through_a_glob_and_the_cli(real_data: Path, cli, tmp_path: Path):
    copy = tmp_path / "real"
    copy.mkdir()
    shutil.copy(real_data / "tau_airline.jsonl", copy / "tau.jsonl")  # a tmp copy, never into the repo
    result = cli("ingest", str(copy / "*.jsonl"), "--json")
    assert json.loads(result.stdout)["ingested"] == 200


def test_hostile_files_are_quarantined_and_every_other_file_is_ingested(store: Store, tmp_path: Path):
    logs = tmp_path / "logs"
    logs.mkdir()
    deep = "[" * 1500 + "]" * 1500
    (logs / "a_deep.jsonl").write_text(
        '{"id": "deep", "messages": [{"role": "user", "content": "hi"}], "metadata": {"a": ' + deep + "}}\n"
        '{"id": "shallow", "messages": [{"role": "user", "content": "hi"}]}\n'
    )
    messages = json.dumps([{"role": "user", "parts": [{"type": "text", "content": "hi"}]}])
    span = {
        "traceId": "t",
        "spanId": "s",
        "startTimeUnixNano": "1",
        "endTimeUnixNano": "99999999999999999999999",
        "attributes": [
            {"key": "gen_ai.conversation.id", "value": {"stringValue": "far-future"}},
            {"key": "gen_ai.input.messages", "value": {"stringValue": messages}},
        ],
    }
    (logs / "b_otel.json").write_text(json.dumps({"resourceSpans": [{"scopeSpans": [{"spans": [span]}]}]}))
    shutil.copy(DATA / "canonical.jsonl", logs / "c_good.jsonl")
    stats = ingest(store, [str(logs)])
    assert {"shallow", "far-future"} <= set(stats.new_ids)
    assert len(stats.new_ids) == 2 + sum(1 for line in (DATA / "canonical.jsonl").read_text().splitlines() if line.strip())
    assert [q.reason for q in store.conversations.quarantined()] == ["nested too deeply (more than 200 levels of JSON)"]


def test_a_rotated_log_keeps_the_bad_lines_of_both_generations(store: Store, tmp_path: Path):
    log = tmp_path / "agent.jsonl"
    log.write_text("{broken one\n")
    ingest(store, [str(log)])
    log.write_text("{broken two\n")  # rotated: same name, same line number, new content
    ingest(store, [str(log)])
    ingest(store, [str(log)])  # the same generation again adds nothing
    assert [q.raw_excerpt for q in store.conversations.quarantined()] == ["{broken one", "{broken two"]
