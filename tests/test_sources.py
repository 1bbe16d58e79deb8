"""Conversation sources: each format, gz, directories and globs, detection, quarantine reasons, windows."""

from __future__ import annotations

import gzip
import json
import shutil
import sqlite3
from datetime import datetime, timezone
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nightloop.errors import SourceError
from nightloop.models import Conversation, Message, Quarantined
from nightloop.sources import (
    ChainSource,
    JsonlSource,
    OpenAIChatSource,
    OtelSource,
    Source,
    SqliteSource,
    detect_format,
    expand_spec,
    open_source,
)
from nightloop.sources.openai_chat import content_id
from nightloop.sources.otel import line_spans
from nightloop.sources.sqlite import parse_sqlite_spec

DATA = Path(__file__).resolve().parent / "data"


def split(records):
    records = list(records)
    return (
        [r for r in records if isinstance(r, Conversation)],
        [r for r in records if isinstance(r, Quarantined)],
    )


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=timezone.utc)


# --- canonical JSONL ---


def test_canonical_jsonl_reads_every_field():
    conversations, bad = split(JsonlSource(DATA / "canonical.jsonl").fetch())
    assert bad == []
    assert [c.id for c in conversations] == ["c-1", "c-2", "c-3"]
    first = conversations[0]
    assert first.prompt_name == "support_agent" and first.prompt_version == 3
    assert first.variables == {"shop": "Acme"}
    assert first.started_at == utc(2026, 11, 23, 10, 0, 0)
    assert first.messages[2].tool_calls[0].function.name == "lookup_order"
    assert first.messages[3].tool_call_id == "t1"
    assert first.outcome.latency_ms == 42000 and first.outcome.feedback.score == 1.0
    assert first.metadata == {"channel": "web"}
    assert conversations[2].outcome.status == "timeout"


def test_malformed_lines_are_quarantined_with_file_line_and_reason():
    path = DATA / "malformed.jsonl"
    conversations, bad = split(JsonlSource(path).fetch())
    assert [c.id for c in conversations] == ["m-1", "m-8"]
    reasons = {q.locator: q.reason for q in bad}
    assert reasons == {
        f"{path}:2": "invalid JSON: Expecting ',' delimiter at column 62",
        f"{path}:3": "missing required field 'messages'",
        f"{path}:4": "message 2 has unknown role 'robot'",
        f"{path}:6": "field 'outcome.status': Input should be 'ok', 'error' or 'timeout'",
        f"{path}:7": "missing required field 'id'",
        f"{path}:8": "expected a JSON object, got list",
    }
    assert all(q.source == str(path) for q in bad)
    assert bad[1].raw_excerpt.startswith('{"id": "m-3"')


def test_bad_utf8_line_is_quarantined_and_the_rest_is_read(tmp_path: Path):
    path = tmp_path / "mixed.jsonl"
    good = b'{"id": "u-1", "messages": [{"role": "user", "content": "caf\xc3\xa9"}]}\n'
    broken = b'{"id": "u-2", "messages": [{"role": "user", "content": "caf\xe9"}]}\n'
    path.write_bytes(good + broken + good.replace(b"u-1", b"u-3"))
    conversations, bad = split(JsonlSource(path).fetch())
    assert [c.id for c in conversations] == ["u-1", "u-3"]
    assert conversations[0].messages[0].content == "café"
    assert len(bad) == 1 and bad[0].locator == f"{path}:2"
    assert bad[0].reason.startswith("invalid UTF-8 at byte")
    assert "caf" in bad[0].raw_excerpt


def test_long_bad_line_keeps_only_an_excerpt(tmp_path: Path):
    path = tmp_path / "long.jsonl"
    path.write_text('{"id": "x", "messages": "' + "y" * 5000 + "\n")
    _, bad = split(JsonlSource(path).fetch())
    assert len(bad) == 1 and len(bad[0].raw_excerpt) == 200


def test_empty_messages_and_bom_and_crlf(tmp_path: Path):
    path = tmp_path / "crlf.jsonl"
    path.write_bytes(
        b'\xef\xbb\xbf{"id": "b-1", "messages": [{"role": "user", "content": "x"}]}\r\n'
        b'{"id": "b-2", "messages": []}\r\n'
        b"   \r\n"
    )
    conversations, bad = split(JsonlSource(path).fetch())
    assert [c.id for c in conversations] == ["b-1"]
    assert [q.reason for q in bad] == ["field 'messages' is empty"]


def test_gzip_is_read_transparently(tmp_path: Path):
    path = tmp_path / "logs.jsonl.gz"
    path.write_bytes(gzip.compress((DATA / "canonical.jsonl").read_bytes()))
    conversations, bad = split(open_source(path).fetch())
    assert [c.id for c in conversations] == ["c-1", "c-2", "c-3"] and bad == []


def test_truncated_gzip_is_quarantined_not_raised(tmp_path: Path):
    path = tmp_path / "cut.jsonl.gz"
    lines = [Conversation(id=f"z-{i}", messages=[Message(role="user", content=str(i * 7919))]).to_jsonl() for i in range(5000)]
    data = gzip.compress(("\n".join(lines) + "\n").encode())
    path.write_bytes(data[: len(data) // 2])
    conversations, bad = split(JsonlSource(path).fetch())
    assert len(conversations) > 0
    # The cut-off last line is quarantined on its own, then the truncation itself.
    assert len(bad) == 2 and bad[0].reason.startswith("invalid JSON")
    assert bad[1].reason == "could not read the rest of the file: the gzip file is truncated (it ends before its compressed data does)"


@given(st.lists(st.text(max_size=40), min_size=1, max_size=4))
@settings(max_examples=30, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_canonical_round_trip(tmp_path: Path, texts: list[str]):
    """Whatever text a conversation carries, writing it as canonical JSONL and reading it back is lossless."""
    original = Conversation(id="rt", messages=[Message(role="user", content=t) for t in texts])
    path = tmp_path / "rt.jsonl"
    path.write_text(original.to_jsonl() + "\n", encoding="utf-8")
    (read,) = JsonlSource(path).fetch()
    assert read == original


def test_json_documents_arrays_and_pretty_printed_conversations(tmp_path: Path):
    records = [json.loads(line) for line in (DATA / "canonical.jsonl").read_text().splitlines() if line.strip()]
    array = tmp_path / "export.json"
    array.write_text(json.dumps([*records, {"id": "no-messages"}], indent=2))
    conversations, bad = split(open_source(array).fetch())
    assert [c.id for c in conversations] == ["c-1", "c-2", "c-3"]
    assert [(q.locator, q.reason) for q in bad] == [(f"{array}:[3]", "missing required field 'messages'")]
    single = tmp_path / "one.json.gz"
    single.write_bytes(gzip.compress(json.dumps(records[0], indent=2).encode()))
    assert [c.id for c in open_source(single).fetch()] == ["c-1"]
    chat = tmp_path / "chat.json"
    chat.write_text(json.dumps([{"messages": [{"role": "user", "content": "x"}]}], indent=1))
    assert detect_format(chat) == "openai" and next(open_source(chat).fetch()).id.startswith("oa-")
    broken = tmp_path / "broken.json"
    broken.write_text('[\n  {"id": "x",\n')
    (record,) = open_source(broken).fetch()
    assert record.locator == str(broken) and record.reason.startswith("invalid JSON")


# --- OpenAI chat ---


def test_openai_chat_lines_get_content_ids_and_mapped_fields():
    conversations, bad = split(OpenAIChatSource(DATA / "openai_chat.jsonl").fetch())
    assert [c.id for c in conversations][2] == "given-id"
    first, second, third = conversations
    assert first.id == content_id([m for m in json.loads((DATA / "openai_chat.jsonl").read_text().splitlines()[0])["messages"]])
    assert first.id.startswith("oa-") and second.id.startswith("oa-") and first.id != second.id
    assert second.messages[0].content == "Describe\nthis"
    assert second.metadata["model"] == "gpt-4o-mini" and second.metadata["channel"] == "api"
    assert second.metadata["tools"][0]["function"]["name"] == "noop"
    assert third.prompt_name == "terse"
    assert [(q.locator.rsplit(":", 1)[1], q.reason) for q in bad] == [("4", "missing required field 'messages'")]


def test_openai_ids_are_stable_across_reads():
    first = [c.id for c in split(OpenAIChatSource(DATA / "openai_chat.jsonl").fetch())[0]]
    again = [c.id for c in split(OpenAIChatSource(DATA / "openai_chat.jsonl").fetch())[0]]
    assert first == again


# --- SQLite ---


def make_db(path: Path) -> None:
    conn = sqlite3.connect(path)
    canonical = [json.loads(line) for line in (DATA / "canonical.jsonl").read_text().splitlines() if line.strip()]
    conn.execute("create table conversations (id text, json text)")
    conn.executemany("insert into conversations values (?, ?)", [(c["id"], json.dumps(c)) for c in canonical])
    conn.execute("insert into conversations values ('broken', '{not json')")
    # the id may live in its own column next to a document that lacks it
    conn.execute("insert into conversations values ('col-id', ?)", [json.dumps({"messages": [{"role": "user", "content": "q"}]})])
    conn.execute("create table logs (id text, prompt_name text, ended_at text, messages text, outcome text)")
    conn.executemany(
        "insert into logs values (?, ?, ?, ?, ?)",
        [
            ("r-1", "support_agent", "2026-11-23T10:00:00Z", json.dumps([{"role": "user", "content": "hi"}]), '{"status": "ok"}'),
            ("r-2", "support_agent", "2026-11-24T10:00:00Z", json.dumps([{"role": "user", "content": "yo"}]), None),
            ("r-3", "support_agent", "2026-11-24T11:00:00Z", "[{oops", None),
        ],
    )
    conn.commit()
    conn.close()


def test_sqlite_json_column_table(tmp_path: Path):
    path = tmp_path / "logs.db"
    make_db(path)
    conversations, bad = split(open_source(path).fetch())
    assert [c.id for c in conversations] == ["c-1", "c-2", "c-3", "col-id"]
    assert len(bad) == 1 and bad[0].locator == f"{path}:conversations:4"
    assert bad[0].reason.startswith("invalid JSON")


def test_sqlite_field_columns_table_and_query(tmp_path: Path):
    path = tmp_path / "logs.db"
    make_db(path)
    conversations, bad = split(open_source(f"{path}::logs").fetch())
    assert [c.id for c in conversations] == ["r-1", "r-2"]
    assert conversations[0].messages[0].content == "hi" and conversations[0].prompt_name == "support_agent"
    assert bad[0].locator == f"{path}:logs:3" and "column 'messages' is not valid JSON" in bad[0].reason
    query = f"sqlite:///{path}?query=SELECT * FROM logs WHERE ended_at >= '2026-11-24'"
    conversations, bad = split(open_source(query).fetch())
    assert [c.id for c in conversations] == ["r-2"] and bad[0].locator == f"{path}:query:2"


def test_sqlite_spec_parsing_and_errors(tmp_path: Path):
    assert parse_sqlite_spec("a.db") == (Path("a.db"), "conversations", None)
    assert parse_sqlite_spec("a.db::logs") == (Path("a.db"), "logs", None)
    assert parse_sqlite_spec("sqlite:////abs/a.db?table=t") == (Path("/abs/a.db"), "t", None)
    assert parse_sqlite_spec("sqlite:///rel.db?query=SELECT%20id%20FROM%20t") == (Path("rel.db"), None, "SELECT id FROM t")
    with pytest.raises(SourceError, match="does not exist"):
        SqliteSource(tmp_path / "missing.db")
    path = tmp_path / "logs.db"
    make_db(path)
    with pytest.raises(SourceError, match="no table 'nope'.*conversations, logs"):
        list(SqliteSource(f"{path}::nope").fetch())
    notdb = tmp_path / "fake.db"
    notdb.write_text("hello")
    with pytest.raises(SourceError, match="not a readable SQLite database"):
        list(SqliteSource(notdb).fetch())


# --- OpenTelemetry ---


def test_otel_spans_merge_into_conversations():
    conversations, bad = split(OtelSource(DATA / "otel_export.json").fetch())
    assert bad == []
    by_id = {c.id: c for c in conversations}
    merged = by_id["otel-conv-a"]
    assert [m.role for m in merged.messages] == ["system", "user", "assistant", "tool", "assistant"]
    assert merged.messages[0].content == "You help customers of Acme."
    assert merged.messages[2].tool_calls[0].function.name == "lookup_order"
    assert json.loads(merged.messages[2].tool_calls[0].function.arguments) == {"id": 42}
    assert merged.messages[3].tool_call_id == "call_1" and json.loads(merged.messages[3].content) == {"status": "shipped"}
    assert merged.messages[4].content == "Order 42 has shipped."
    assert merged.prompt_name == "support_agent" and merged.prompt_version == 3
    assert merged.started_at == utc(2026, 11, 23, 10, 0, 0) and merged.ended_at == utc(2026, 11, 23, 10, 0, 3)
    assert merged.outcome.status == "ok" and merged.outcome.latency_ms == 3000.0
    assert merged.metadata["model"] == "gpt-4o-mini" and merged.metadata["input_tokens"] == 130
    # no gen_ai.conversation.id: the trace id is the key; error.type mentioning a timeout -> timeout
    untitled = by_id["0af7651916cd43dd8448eb211c80319c"]
    assert untitled.outcome.status == "timeout" and untitled.outcome.error == "TimeoutError: request timed out"
    assert untitled.metadata["provider"] == "anthropic"


def test_otel_line_per_export_and_bad_exports(tmp_path: Path):
    export = json.loads((DATA / "otel_export.json").read_text())
    spans = export["resourceSpans"][0]["scopeSpans"][0]["spans"]
    lines = []
    for span in spans:  # one span per export line, as the collector's file exporter writes them
        lines.append(json.dumps({"resourceSpans": [{"resource": export["resourceSpans"][0]["resource"], "scopeSpans": [{"spans": [span]}]}]}))
    lines.insert(2, "{broken")
    lines.insert(3, json.dumps({"something": "else"}))
    path = tmp_path / "spans.jsonl"
    path.write_text("\n".join(lines) + "\n")
    assert detect_format(path) == "otel"
    conversations, bad = split(open_source(path).fetch())
    assert {c.id for c in conversations} == {"otel-conv-a", "0af7651916cd43dd8448eb211c80319c"}
    assert len(next(c for c in conversations if c.id == "otel-conv-a").messages) == 5
    assert [(q.locator, q.reason.split(":")[0]) for q in bad] == [
        (f"{path}:3", "invalid JSON"),
        (f"{path}:4", "not an OTLP JSON export (no 'resourceSpans' or 'resourceLogs' list)"),
    ]


def test_otel_export_lines_read_numbers_past_64_bits_and_nan_instead_of_quarantining_them(tmp_path: Path):
    """OTLP writes 64-bit integers as strings, so an export line is read without json_codec's big-integer scan: a JSON
    number past 64 bits (not OTLP, but a broken exporter may write one) reads as a float, and NaN (which orjson
    refuses) as the standard library reads it; neither line is lost."""
    export = json.loads((DATA / "otel_export.json").read_text())
    spans = export["resourceSpans"][0]["scopeSpans"][0]["spans"]
    odd = [{"key": "nightloop.feedback.score", "value": {"doubleValue": "NaN"}}, {"key": "retries", "value": {"intValue": 0}}]
    lines = []
    for number, span in enumerate(spans):
        span = {**span, "attributes": span["attributes"] + odd}
        lines.append(json.dumps({"resourceSpans": [{"resource": export["resourceSpans"][0]["resource"], "scopeSpans": [{"spans": [span]}]}]}))
    lines = [line.replace('"intValue": 0', '"intValue": 123456789012345678901234') if n % 2 else line.replace('"NaN"', "NaN") for n, line in enumerate(lines)]
    path = tmp_path / "spans.jsonl"
    path.write_text("\n".join(lines) + "\n")
    for number, line in enumerate(lines, start=1):  # as span ingest workers read each line
        read = line_spans(str(path), number, line.encode(), [0])
        assert read and not any(isinstance(item, Quarantined) for item in read), line
    conversations, bad = split(open_source(path).fetch())
    assert bad == []
    assert {c.id for c in conversations} == {"otel-conv-a", "0af7651916cd43dd8448eb211c80319c"}
    assert len(next(c for c in conversations if c.id == "otel-conv-a").messages) == 5


def test_otel_unreadable_messages_are_quarantined(tmp_path: Path):
    span = {
        "traceId": "t1",
        "startTimeUnixNano": "1",
        "endTimeUnixNano": "2",
        "attributes": [
            {"key": "gen_ai.conversation.id", "value": {"stringValue": "c-bad"}},
            {"key": "gen_ai.input.messages", "value": {"stringValue": "[{not json"}},
        ],
    }
    tool_only = {"traceId": "t2", "attributes": [{"key": "gen_ai.tool.name", "value": {"stringValue": "x"}}]}
    path = tmp_path / "bad.json"
    path.write_text(json.dumps({"resourceSpans": [{"scopeSpans": [{"spans": [span, tool_only]}]}]}))
    conversations, bad = split(open_source(path).fetch())
    assert conversations == []
    bad = sorted(bad, key=lambda q: q.locator)
    assert [q.locator for q in bad] == [f"{path}:conversation:c-bad", f"{path}:conversation:t2"]
    assert bad[0].reason.startswith("unreadable GenAI messages")
    assert bad[1].reason.startswith("no model call among 1 span(s)")
    broken = tmp_path / "broken.json"
    broken.write_text('{"resourceSpans": [\n  {"oops"\n')
    assert [q.reason.split(":")[0] for q in OtelSource(broken).fetch()] == ["invalid JSON"]


# --- specs, detection, windows ---


def test_directories_are_read_recursively_and_formats_detected_per_file(tmp_path: Path):
    (tmp_path / "a" / "b").mkdir(parents=True)
    shutil.copy(DATA / "canonical.jsonl", tmp_path / "a" / "canonical.jsonl")
    shutil.copy(DATA / "openai_chat.jsonl", tmp_path / "a" / "b" / "chat.jsonl")
    (tmp_path / "a" / "b" / "more.jsonl.gz").write_bytes(gzip.compress(b'{"id": "gz-1", "messages": [{"role": "user", "content": "z"}]}\n'))
    shutil.copy(DATA / "otel_export.json", tmp_path / "a" / "spans.json")
    (tmp_path / "a" / "notes.txt").write_text("ignored")
    source = open_source(tmp_path / "a")
    assert isinstance(source, ChainSource)
    conversations, bad = split(source.fetch())
    ids = {c.id for c in conversations}
    assert {"c-1", "gz-1", "given-id", "otel-conv-a"} <= ids and len(ids) == 3 + 1 + 3 + 2
    assert [q.reason for q in bad] == ["missing required field 'messages'"]


def test_globs_and_detection(tmp_path: Path):
    shutil.copy(DATA / "canonical.jsonl", tmp_path / "one.jsonl")
    shutil.copy(DATA / "canonical.jsonl", tmp_path / "two.jsonl")
    assert expand_spec(str(tmp_path / "*.jsonl")) == [tmp_path / "one.jsonl", tmp_path / "two.jsonl"]
    assert len(split(open_source(str(tmp_path / "*.jsonl")).fetch())[0]) == 6
    assert detect_format(DATA / "canonical.jsonl") == "jsonl"
    assert detect_format(DATA / "openai_chat.jsonl") == "openai"
    assert detect_format(DATA / "otel_export.json") == "otel"
    assert detect_format(DATA / "malformed.jsonl") == "jsonl"
    db = tmp_path / "x.sqlite"
    make_db(db)
    assert detect_format(db) == "sqlite"
    renamed = tmp_path / "x.bin"
    shutil.copy(db, renamed)
    assert detect_format(renamed) == "sqlite"


def test_format_override_and_unknown_format():
    source = open_source(DATA / "canonical.jsonl", format="openai")
    assert isinstance(source, OpenAIChatSource)
    assert [c.id for c in split(source.fetch())[0]] == ["c-1", "c-2", "c-3"]  # given ids are kept
    with pytest.raises(ValueError, match="valid formats: jsonl, openai, sqlite, otel"):
        open_source(DATA / "canonical.jsonl", format="csv")


def test_missing_sources_raise_source_error_naming_the_path(tmp_path: Path):
    with pytest.raises(SourceError, match="nope.jsonl does not exist"):
        open_source(tmp_path / "nope.jsonl")
    with pytest.raises(SourceError, match="No files match"):
        open_source(str(tmp_path / "*.jsonl"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(SourceError, match="holds no"):
        open_source(tmp_path / "empty")


@given(st.lists(st.binary(max_size=80) | st.text(max_size=80).map(str.encode), max_size=8))
@settings(max_examples=60, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_no_line_content_makes_a_reader_raise(tmp_path: Path, lines: list[bytes]):
    """Garbage in any line becomes quarantined records with reasons, never an exception."""
    path = tmp_path / "fuzz.jsonl"
    path.write_bytes(b"\n".join(line.replace(b"\n", b" ") for line in lines) + b"\n")
    for source in (JsonlSource(path), OpenAIChatSource(path), OtelSource(path)):
        for record in source.fetch():
            assert isinstance(record, Conversation) or record.reason


def test_odd_otlp_structures_are_quarantined_or_skipped(tmp_path: Path):
    weird = {
        "resourceSpans": [
            "not a dict",
            {"resource": [], "scopeSpans": "nope"},
            {"scopeSpans": [None, {"spans": [1, {"attributes": [{"key": "gen_ai.input.messages", "value": {"intValue": "x"}}]}]}]},
            {
                "scopeSpans": [
                    {
                        "spans": [
                            {  # no trace id, no conversation id: keyed by its span id
                                "spanId": "s1",
                                "attributes": [
                                    {"key": "gen_ai.input.messages", "value": {"stringValue": json.dumps([{"role": "user", "parts": "text"}])}},
                                    {"key": "gen_ai.output.messages", "value": {"stringValue": json.dumps([{"role": "assistant", "parts": [{"type": "text", "content": "ok"}]}])}},
                                ],
                            }
                        ]
                    }
                ]
            },
        ]
    }
    path = tmp_path / "weird.json"
    path.write_text(json.dumps(weird))
    conversations, bad = split(OtelSource(path).fetch())
    assert [c.id for c in conversations] == ["span-s1"]
    assert [m.role for m in conversations[0].messages] == ["user", "assistant"]
    assert len(bad) == 1 and bad[0].reason.startswith("unreadable GenAI messages")


def test_every_source_satisfies_the_protocol(tmp_path: Path):
    make_db(tmp_path / "x.db")
    sources = [
        JsonlSource(DATA / "canonical.jsonl"),
        OpenAIChatSource(DATA / "openai_chat.jsonl"),
        OtelSource(DATA / "otel_export.json"),
        SqliteSource(tmp_path / "x.db"),
    ]
    assert all(isinstance(s, Source) for s in sources)
    assert all(any(isinstance(r, Conversation) for r in s.fetch(limit=1)) for s in sources)


def test_window_and_limit():
    source = JsonlSource(DATA / "canonical.jsonl")
    window = (utc(2026, 11, 23), utc(2026, 11, 23, 11, 0))
    assert [c.id for c in source.fetch(window=window)] == ["c-1"]
    assert [c.id for c in source.fetch(window=(None, datetime(2026, 11, 23)))] == ["c-3"]  # naive = UTC
    assert [c.id for c in source.fetch(limit=2)] == ["c-1", "c-2"]
    assert list(source.fetch(limit=0)) == []
    # conversations without timestamps are never dropped by a window
    untimed = OpenAIChatSource(DATA / "openai_chat.jsonl")
    assert len(split(untimed.fetch(window=window))[0]) == 3


def test_limit_counts_conversations_not_quarantined_records():
    records = list(JsonlSource(DATA / "malformed.jsonl").fetch(limit=2))
    conversations, bad = split(records)
    assert [c.id for c in conversations] == ["m-1", "m-8"] and len(bad) == 6


def test_reading_streams_without_loading_the_file(tmp_path: Path):
    """fetch() is lazy: the first record arrives before later lines are even parsed."""
    path = tmp_path / "big.jsonl"
    with path.open("w") as handle:
        handle.write('{"id": "first", "messages": [{"role": "user", "content": "x"}]}\n')
        for _ in range(2000):
            handle.write("{broken\n")
    iterator = JsonlSource(path).fetch()
    assert next(iterator).id == "first"
    assert iterator.gi_frame is not None  # still suspended mid-file


# --- review fixes: deep nesting, out-of-range span times, over-long lines ---

DEPTH = 1500
DEEP_LIST = "[" * DEPTH + "]" * DEPTH


def canonical_line(conversation_id: str, metadata: str = "{}") -> str:
    return f'{{"id": "{conversation_id}", "messages": [{{"role": "user", "content": "hi"}}], "metadata": {metadata}}}'


def test_deeply_nested_json_is_quarantined_in_every_format(tmp_path: Path):
    canonical = tmp_path / "deep.jsonl"
    canonical.write_text(canonical_line("deep", f'{{"a": {DEEP_LIST}}}') + "\n" + canonical_line("ok") + "\n")
    openai = tmp_path / "deep_openai.jsonl"
    openai.write_text(
        f'{{"messages": [{{"role": "user", "content": "hi"}}], "metadata": {{"a": {DEEP_LIST}}}}}\n'
        '{"messages": [{"role": "user", "content": "fine"}]}\n'
    )
    document = tmp_path / "deep.json"
    document.write_text("[\n" + canonical_line("d", f'{{"a": {DEEP_LIST}}}') + "\n]")
    # Deep enough for pydantic's serialiser to refuse, shallow enough for json.loads: caught before storing.
    middle = tmp_path / "middle.jsonl"
    middle.write_text(canonical_line("mid", '{"a": ' + "[" * 400 + "]" * 400 + "}") + "\n")
    for source in (JsonlSource(canonical), OpenAIChatSource(openai), JsonlSource(document), JsonlSource(middle)):
        conversations, quarantined = split(source.fetch())
        assert [q.reason for q in quarantined] == ["nested too deeply (more than 200 levels of JSON)"], source
        for conversation in conversations:
            conversation.model_dump_json()  # what the store writes
    assert [c.id for c in split(JsonlSource(canonical).fetch())[0]] == ["ok"]
    assert detect_format(canonical) == "jsonl"


def test_deeply_nested_sqlite_column_and_otel_export_are_quarantined(tmp_path: Path):
    db = tmp_path / "deep.db"
    with sqlite3.connect(db) as conn:
        conn.execute("create table conversations (id text, messages text, metadata text)")
        conn.execute("insert into conversations values ('a', ?, ?)", ['[{"role": "user", "content": "hi"}]', '{"a": ' + DEEP_LIST + "}"])
        conn.execute("insert into conversations values ('b', ?, '{}')", ['[{"role": "user", "content": "hi"}]'])
    conversations, quarantined = split(SqliteSource(db).fetch())
    assert [c.id for c in conversations] == ["b"]
    assert "nested too deeply" in quarantined[0].reason
    otel = tmp_path / "deep_otel.json"
    otel.write_text('{"resourceSpans": ' + DEEP_LIST + "}")
    assert "nested too deeply" in split(OtelSource(otel).fetch())[1][0].reason


def otel_export(conversation_id: str, end_nanos: str) -> dict:
    messages = json.dumps([{"role": "user", "parts": [{"type": "text", "content": "hi"}]}])
    return {
        "resourceSpans": [
            {
                "scopeSpans": [
                    {
                        "spans": [
                            {
                                "traceId": "t-" + conversation_id,
                                "spanId": "s1",
                                "startTimeUnixNano": "1700000000000000000",
                                "endTimeUnixNano": end_nanos,
                                "attributes": [
                                    {"key": "gen_ai.conversation.id", "value": {"stringValue": conversation_id}},
                                    {"key": "gen_ai.input.messages", "value": {"stringValue": messages}},
                                ],
                            }
                        ]
                    }
                ]
            }
        ]
    }


def test_out_of_range_span_time_is_ignored_and_other_files_are_read(tmp_path: Path):
    (tmp_path / "a_bad.json").write_text(json.dumps(otel_export("far", "99999999999999999999999")))
    (tmp_path / "b_good.json").write_text(json.dumps(otel_export("good", "1700000001000000000")))
    conversations, quarantined = split(open_source(tmp_path).fetch())
    by_id = {c.id: c for c in conversations}
    assert set(by_id) == {"far", "good"} and not quarantined
    assert by_id["far"].ended_at is None and by_id["far"].started_at == datetime(2023, 11, 14, 22, 13, 20, tzinfo=timezone.utc)
    assert by_id["good"].ended_at is not None


def test_a_reader_error_in_one_file_does_not_stop_the_next(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    from nightloop.sources import otel

    first, second = tmp_path / "a.json", tmp_path / "b.json"
    first.write_text(json.dumps(otel_export("one", "1700000001000000000")))
    second.write_text(json.dumps(otel_export("two", "1700000001000000000")))
    monkeypatch.setattr(otel, "_read_exports", lambda path: (_ for _ in ()).throw(KeyError("boom")) if path == first else iter([json.loads(path.read_text())]))
    conversations, quarantined = split(OtelSource([first, second]).fetch())
    assert [c.id for c in conversations] == ["two"]
    assert quarantined[0].locator == f"{first}:rest" and "KeyError" in quarantined[0].reason


def test_a_line_over_the_length_cap_is_skipped_and_quarantined(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    from nightloop.sources import base

    monkeypatch.setattr(base, "MAX_LINE_BYTES", 4096)
    monkeypatch.setattr(base, "SKIP_CHUNK_BYTES", 1000)
    path = tmp_path / "long.jsonl.gz"
    exact = canonical_line("exact", '{"pad": "' + "y" * (4096 - len(canonical_line("exact", '{"pad": ""}'))) + '"}')
    assert len(exact) == 4096
    with gzip.open(path, "wt") as handle:
        handle.write(canonical_line("before") + "\n")
        handle.write(canonical_line("huge", '{"pad": "' + "x" * 50_000 + '"}') + "\n")
        handle.write(exact + "\n")
        handle.write(canonical_line("after") + "\n")
    conversations, quarantined = split(JsonlSource(path).fetch())
    assert [c.id for c in conversations] == ["before", "exact", "after"]
    assert [(q.locator, q.reason) for q in quarantined] == [(f"{path}:2", "line longer than 4096 bytes; split the record or drop it")]
    assert str(base.LineTooLong(base.MAX_LINE_BYTES * 8192)).startswith("line longer than 32 MB")
