"""One hostile record never costs a good one: every reader, the store's batch writes, damaged files, id conflicts."""

from __future__ import annotations

import gzip
import json
import sqlite3
import zlib
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nightloop import answers, classify
from nightloop.config import ClassifyConfig
from nightloop.ingest import ingest
from nightloop.models import Conversation
from nightloop.store import Store

USER = [{"role": "user", "content": "hello"}]

#: name -> (record fields, words the quarantine reason must contain)
HOSTILE = {
    "lone surrogate": ('{"id": "h", "messages": [{"role": "user", "content": "cut \\ud83d emoji"}]}', "surrogate"),
    "year 9999 with an offset": ('{"id": "h", "ended_at": "9999-12-31T23:30:00-05:00", "messages": [{"role": "user", "content": "x"}]}', "out of range"),
    "prompt_version 2^63": ('{"id": "h", "prompt_version": 9223372036854775808, "messages": [{"role": "user", "content": "x"}]}', "prompt_version"),
    "5,000-digit number": ('{"id": "h", "prompt_version": ' + "7" * 5000 + ', "messages": [{"role": "user", "content": "x"}]}', "4300 digits"),
    "5,000-digit latency": ('{"id": "h", "outcome": {"latency_ms": ' + "7" * 5000 + '}, "messages": [{"role": "user", "content": "x"}]}', "4300 digits"),
    "blank id": ('{"id": "   ", "messages": [{"role": "user", "content": "x"}]}', "blank"),
    "NUL id": ('{"id": "\\u0000", "messages": [{"role": "user", "content": "x"}]}', "control characters"),
    "NaN latency": ('{"id": "h", "outcome": {"latency_ms": NaN}, "messages": [{"role": "user", "content": "x"}]}', "finite"),
    "Infinity latency": ('{"id": "h", "outcome": {"latency_ms": Infinity}, "messages": [{"role": "user", "content": "x"}]}', "finite"),
}
#: In the OpenAI format the id is derived from the messages, so the id variants don't apply.
OPENAI_HOSTILE = {k: v for k, v in HOSTILE.items() if "id" not in k.split()}


def good_line(number: int, openai: bool = False) -> str:
    record = {"messages": [{"role": "user", "content": f"good {number}"}]}
    if not openai:
        record = {"id": f"good-{number}", "prompt_name": "p", **record}
    return json.dumps(record)


def ingest_file(tmp_path: Path, lines: list[str], name: str = "in.jsonl", format: str | None = None):
    path = tmp_path / name
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with Store(tmp_path / "store.db") as store:
        stats = ingest(store, [path], format=format)
        return stats, store.conversations.count(), store.conversations.quarantined()


@pytest.mark.parametrize("name", HOSTILE)
def test_one_hostile_canonical_line_costs_no_good_record(tmp_path: Path, name: str):
    line, reason = HOSTILE[name]
    lines = [good_line(i) for i in range(3)] + [line] + [good_line(i) for i in range(3, 6)]
    stats, stored, quarantined = ingest_file(tmp_path, lines)
    assert (stats.ingested, stored) == (6, 6)
    assert [q.locator.rsplit(":", 1)[1] for q in quarantined] == ["4"]
    assert reason in quarantined[0].reason


@pytest.mark.parametrize("name", OPENAI_HOSTILE)
def test_one_hostile_openai_line_costs_no_good_record(tmp_path: Path, name: str):
    line = OPENAI_HOSTILE[name][0].replace('"id": "h", ', "")
    lines = [good_line(i, openai=True) for i in range(3)] + [line] + [good_line(i, openai=True) for i in range(3, 6)]
    stats, stored, quarantined = ingest_file(tmp_path, lines, format="openai")
    assert (stats.ingested, stored, len(quarantined)) == (6, 6, 1)
    assert OPENAI_HOSTILE[name][1] in quarantined[0].reason


def sqlite_source(path: Path, rows: list[tuple[str, str]]) -> None:
    conn = sqlite3.connect(path)
    conn.execute("create table conversations (id text, json text)")
    conn.executemany("insert into conversations values (?, ?)", rows)
    conn.commit()
    conn.close()


@pytest.mark.parametrize("name", ["lone surrogate", "year 9999 with an offset", "prompt_version 2^63", "5,000-digit number", "NaN latency"])
def test_one_hostile_sqlite_row_costs_no_good_record(tmp_path: Path, name: str):
    line = HOSTILE[name][0].replace('"id": "h", ', "")
    rows = [(f"good-{i}", good_line(i)) for i in range(3)] + [("hostile", line)] + [(f"good-{i}", good_line(i)) for i in range(3, 6)]
    sqlite_source(tmp_path / "src.db", rows)
    with Store(tmp_path / "store.db") as store:
        stats = ingest(store, [tmp_path / "src.db"])
        assert (stats.ingested, stats.quarantined) == (6, 1)
        assert HOSTILE[name][1] in store.conversations.quarantined()[0].reason


def test_a_record_the_database_refuses_is_found_by_retrying_the_batch_record_by_record(tmp_path: Path):
    with Store(tmp_path / "store.db") as store:
        store.db.execute(
            "create trigger refuse_poison before insert on conversations when new.id = 'poison'"
            " begin select raise(abort, 'refused by a constraint'); end"
        )
        lines = [good_line(i) for i in range(50)] + [json.dumps({"id": "poison", "messages": USER})] + [good_line(i) for i in range(50, 100)]
        path = tmp_path / "in.jsonl"
        path.write_text("\n".join(lines) + "\n")
        stats = ingest(store, [path])
        assert (stats.ingested, store.conversations.count()) == (100, 100)
        [refused] = store.conversations.quarantined()
        assert refused.locator == "conversation:poison" and "refused by a constraint" in refused.reason


def test_a_duplicate_id_with_other_content_keeps_the_first_and_quarantines_the_conflict(tmp_path: Path):
    first = json.dumps({"id": "c1", "messages": [{"role": "user", "content": "first"}]})
    same = first
    changed = json.dumps({"id": "c1", "messages": [{"role": "user", "content": "changed"}]})
    stats, stored, quarantined = ingest_file(tmp_path, [first, same, changed])
    assert (stats.ingested, stats.duplicates, stored) == (1, 1, 1)
    assert len(quarantined) == 1 and "already stored with different content" in quarantined[0].reason
    with Store(tmp_path / "store.db") as store:
        assert store.conversations.get("c1").messages[0].content == "first"
        again = ingest(store, [tmp_path / "in.jsonl"])  # a re-run: nothing new, the conflict is not counted twice
        assert (again.ingested, again.duplicates, store.conversations.quarantine_count()) == (0, 2, 1)


# --- damaged gzip ---------------------------------------------------------------------------------


def gz_lines(count: int) -> bytes:
    return gzip.compress(("\n".join(good_line(i) for i in range(count)) + "\n").encode())


def damaged(kind: str, data: bytes) -> bytes:
    if kind == "truncated":
        return data[: len(data) * 3 // 4]
    if kind == "bad CRC":
        return data[:-8] + bytes([data[-8] ^ 0xFF]) + data[-7:]
    return data + b"trailing garbage"


@pytest.mark.parametrize("format", [None, "jsonl"])
@pytest.mark.parametrize("kind", ["truncated", "bad CRC", "trailing bytes"])
def test_a_damaged_gz_keeps_what_is_readable_and_quarantines_the_rest(tmp_path: Path, kind: str, format: str | None):
    data = gz_lines(200)
    path = tmp_path / "logs.jsonl.gz"
    path.write_bytes(damaged(kind, data))
    # Every complete line before the damage (for a bad CRC or trailing bytes: all of them).
    readable = zlib.decompressobj(wbits=31).decompress(path.read_bytes()).count(b"\n") if kind == "truncated" else 200
    with Store(tmp_path / "store.db") as store:
        stats = ingest(store, [path], format=format)
        assert stats.ingested == min(readable, 200) and stats.ingested >= 100
        reasons = [q.reason for q in store.conversations.quarantined()]
        words = {"truncated": "truncated", "bad CRC": "bad CRC", "trailing bytes": "after the end of the gzip data"}[kind]
        assert any(words in reason for reason in reasons), reasons


def test_a_corrupt_sqlite_page_skips_only_the_rows_on_it(tmp_path: Path):
    source = tmp_path / "src.db"
    sqlite_source(source, [(f"c{i}", json.dumps({"id": f"c{i}", "messages": [{"role": "user", "content": "x" * 300}]})) for i in range(2000)])
    pages = source.stat().st_size // 4096
    with open(source, "r+b") as handle:  # one leaf page in the middle of the table
        handle.seek((pages // 2) * 4096)
        handle.write(b"\xff" * 4096)
    with Store(tmp_path / "store.db") as store:
        stats = ingest(store, [source])
        [note] = store.conversations.quarantined()
    assert 1950 <= stats.ingested < 2000
    assert "could not read the rows with rowid" in note.reason and "malformed" in note.reason
    first, last = (int(n) for n in note.reason.split("rowid ")[1].split(" ")[0].split(".."))
    assert last - first + 1 == 2000 - stats.ingested  # exactly the rows that were lost are named


# --- bounded classifier work ---------------------------------------------------------------------


def test_a_deeply_nested_reference_answer_costs_bounded_work(monkeypatch: pytest.MonkeyPatch):
    calls = {"n": 0}
    real = answers.canonical_json

    def counted(value):
        calls["n"] += 1
        if calls["n"] > 50_000:  # the unbounded comparison doubles per level: stop it instead of hanging
            raise AssertionError("unbounded comparison")
        return real(value)

    monkeypatch.setattr(answers, "canonical_json", counted)
    for depth in (16, 40):
        expected = json.loads("[" * depth + "1" + "]" * depth)
        answer = "[" * depth + "2" + "]" * depth
        conversation = Conversation(
            id="deep", messages=[{"role": "user", "content": "q"}, {"role": "assistant", "content": answer}], outcome={"expected": expected}
        )
        calls["n"] = 0
        classify.classify_conversation(conversation, ClassifyConfig())
        assert calls["n"] <= 3 * answers.MAX_COMPARE_STEPS  # two detectors compare the answer: bounded, whatever the depth
    # Shallow references still compare, in any order.
    assert answers.answers_match("[[3, 4], [1, 2]]", [[1, 2], [3, 4]], ClassifyConfig()) is True
    assert answers.answers_match("[[3, 4], [1, 5]]", [[1, 2], [3, 4]], ClassifyConfig()) is False


# --- the property: any mix of good and arbitrary lines --------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=5), children, max_size=3),
    max_leaves=8,
)
field_names = st.sampled_from(["id", "messages", "prompt_version", "started_at", "ended_at", "outcome", "metadata", "variables", "role", "content"])
hostile_objects = st.dictionaries(field_names, json_values | st.sampled_from([{"role": "user", "content": "\ud83d"}, "9999-12-31T23:30:00-05:00", 2**63, float("nan")]), max_size=4)
arbitrary_lines = st.one_of(
    st.binary(max_size=60),
    st.text(max_size=60),
    hostile_objects.map(lambda obj: json.dumps(obj, ensure_ascii=True)),
    json_values.map(lambda value: json.dumps(value)),
    st.sampled_from([line for line, _ in HOSTILE.values()]),
).map(lambda line: (line.encode("utf-8", "surrogatepass") if isinstance(line, str) else line).replace(b"\n", b" ").replace(b"\r", b" "))


def otel_line(number: int) -> str:
    messages = json.dumps([{"role": "user", "parts": [{"type": "text", "content": f"good {number}"}]}])
    span = {
        "traceId": f"t{number}", "spanId": "s1", "startTimeUnixNano": "1700000000000000000", "endTimeUnixNano": "1700000001000000000",
        "attributes": [
            {"key": "gen_ai.conversation.id", "value": {"stringValue": f"good-{number}"}},
            {"key": "gen_ai.input.messages", "value": {"stringValue": messages}},
        ],
    }
    return json.dumps({"resourceSpans": [{"scopeSpans": [{"spans": [span]}]}]})


GOOD = {"jsonl": good_line, "openai": lambda n: good_line(n, openai=True), "otel": otel_line}


@pytest.mark.parametrize("format", ["jsonl", "openai", "otel"])
@given(data=st.data())
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
def test_any_mix_of_good_and_arbitrary_lines_keeps_every_good_record(tmp_path_factory: pytest.TempPathFactory, format: str, data: st.DataObject):
    bad = data.draw(st.lists(arbitrary_lines, max_size=8), label="arbitrary lines")
    goods = data.draw(st.integers(min_value=1, max_value=5), label="good records")
    order = data.draw(st.permutations([("good", i) for i in range(goods)] + [("bad", i) for i in range(len(bad))]))
    lines = [GOOD[format](i).encode() if kind == "good" else bad[i] for kind, i in order]
    folder = tmp_path_factory.mktemp("mix")
    path = folder / "mix.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    with Store(folder / "store.db") as store:
        stats = ingest(store, [path], format=format)
        stored = {c.id for c in store.conversations.iter_conversations()}
        quarantined = store.conversations.quarantined()
    assert all(q.reason for q in quarantined)
    if format == "otel":
        return  # ingest returned; keeping the good exports is test_otel_keeps_good_exports_after_a_bad_line's
    if format == "jsonl":
        assert {f"good-{i}" for i in range(goods)} <= stored
    else:
        assert {m for c in _contents(folder) for m in c} >= {f"good {i}" for i in range(goods)}
    meaningful = [line for line in bad if line.strip()]
    assert stats.ingested - goods + stats.duplicates + stats.quarantined >= len(meaningful)


@pytest.mark.parametrize("bad_first", [b"\x00", b'{"resourceSpans": [', b"[1, 2", b'{"not": "an export"}', b'{"n": ' + b"7" * 5000 + b"}"])
def test_otel_keeps_good_exports_after_a_bad_line(tmp_path: Path, bad_first: bytes):
    path = tmp_path / "spans.jsonl"
    path.write_bytes(bad_first + b"\n" + otel_line(0).encode() + b"\n" + otel_line(1).encode() + b"\n")
    with Store(tmp_path / "store.db") as store:
        stats = ingest(store, [path], format="otel")
        stored = {c.id for c in store.conversations.iter_conversations()}
        quarantined = store.conversations.quarantined()
    assert (stats.ingested, stats.quarantined, stored) == (2, 1, {"good-0", "good-1"})
    assert [q.locator for q in quarantined] == [f"{path}:1"]


def test_otel_bad_line_after_many_bad_first_lines_still_keeps_the_exports(tmp_path: Path):
    """Past the sniffed first lines the file is read whole, and still line by line once one line is an export."""
    path = tmp_path / "spans.jsonl"
    path.write_bytes(b"\x00\n" * 7 + otel_line(0).encode() + b"\n")
    with Store(tmp_path / "store.db") as store:
        stats = ingest(store, [path], format="otel")
    assert (stats.ingested, stats.quarantined) == (1, 7)


def _contents(folder: Path) -> list[list[str]]:
    with Store(folder / "store.db") as store:
        return [[m.content or "" for m in c.messages] for c in store.conversations.iter_conversations()]
