"""Conversations that arrive in pieces: spans grouped across files, arguments and ingests; late spans re-merge;
re-sent batches change nothing; per-call system prompts do not repeat the history."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nightloop.ingest import ingest
from nightloop.store import Store

pytestmark = pytest.mark.traces

#: Exports whose spans and log events must be merged across files (content in spans, in log events, both).
SPLIT_MODES = [("openai_v2", "span_only"), ("openai_v2", "event_only"), ("openllmetry", "events"), ("openinference", "default")]


def _export_lines(folder: Path) -> list[str]:
    """One OTLP export per line (the SDK's JSON file exporter writes one per span / log record)."""
    return [line for name in ("spans.jsonl", "logs.jsonl") if (folder / name).exists() for line in (folder / name).read_text().splitlines() if line]


def _state(store: Store) -> tuple[dict, list]:
    conversations = {
        c.id: (c.prompt_name, c.prompt_version, c.variables, [m.model_dump() for m in c.messages], c.outcome.model_dump(), c.started_at, c.ended_at)
        for c in store.conversations.iter_conversations()
    }
    failures = sorted((f.conversation_id, f.kind, f.turn, f.detector) for f in store.conversations.failures())
    return conversations, failures


def _ingest_parts(parts: list[list[str]], workdir: Path, *, as_arguments: bool = False, workers: int | str | None = None) -> tuple[tuple[dict, list], list]:
    """Each part a file; ingested one by one (or as the arguments of one ingest). ``workers="rebuild"``: nothing is built
    while reading, every conversation is rebuilt from its stored spans (in-process, as with a classifier of one's own)."""
    files = []
    for index, lines in enumerate(parts):
        path = workdir / f"part{index}.jsonl"
        path.write_text("".join(line + "\n" for line in lines))
        files.append(str(path))
    options = _rebuild_options() if workers == "rebuild" else {"workers": workers}
    with Store(workdir / "store.db") as store:
        stats = [ingest(store, files, **options)] if as_arguments else [ingest(store, [f], **options) for f in files]
        return _state(store), stats


def _rebuild_options() -> dict:
    """The rule classifier passed as one's own: the spans are read as ``OtelSource.spans()`` reads them, every
    conversation rebuilt from the store (no conversation is built while reading), classified as it is stored."""
    from nightloop.config import ClassifyConfig
    from nightloop.ingest import default_classifier

    return {"workers": 0, "classifier": default_classifier(ClassifyConfig())}


@pytest.fixture(scope="module")
def whole(real_traces) -> dict[tuple[str, str], tuple[list[str], tuple[dict, list]]]:
    found = {}
    for mode in SPLIT_MODES:
        lines = _export_lines(real_traces[mode])
        with tempfile.TemporaryDirectory() as tmp:
            state, _ = _ingest_parts([lines], Path(tmp))
        assert set(state[0]) == {"good", "correction", "tool_call", "tool_error", "timeout", "http_500"}, (mode, set(state[0]))
        assert {f[:2] for f in state[1]} >= {("correction", "user_correction"), ("http_500", "provider_error"), ("timeout", "timeout")}
        found[mode] = (lines, state)
    return found


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_splitting_an_export_at_any_span_boundary_changes_nothing(whole, data) -> None:
    mode = data.draw(st.sampled_from(SPLIT_MODES), label="mode")
    lines, expected = whole[mode]
    cut = data.draw(st.integers(min_value=0, max_value=len(lines)), label="cut")
    as_arguments = data.draw(st.booleans(), label="as_arguments")
    with tempfile.TemporaryDirectory() as tmp:
        state, stats = _ingest_parts([lines[:cut], lines[cut:]], Path(tmp), as_arguments=as_arguments)
    assert state == expected
    assert sum(s.ingested for s in stats) == len(expected[0])  # each conversation counted new once, however it arrived


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_re_sending_any_batch_changes_nothing(whole, data) -> None:
    mode = data.draw(st.sampled_from(SPLIT_MODES), label="mode")
    lines, expected = whole[mode]
    start = data.draw(st.integers(min_value=0, max_value=len(lines) - 1), label="start")
    end = data.draw(st.integers(min_value=start + 1, max_value=len(lines)), label="end")
    with tempfile.TemporaryDirectory() as tmp:
        state, stats = _ingest_parts([lines, lines[start:end]], Path(tmp))
    assert state == expected
    assert (stats[1].ingested, stats[1].updated, stats[1].quarantined) == (0, 0, 0) and stats[1].duplicates >= 1


def test_late_spans_update_a_stored_conversation_and_find_all_its_failures(whole, tmp_path: Path) -> None:
    """The correction's second model call arrives in a later ingest: the conversation is re-merged, not a duplicate."""
    lines, expected = whole[("openai_v2", "span_only")]
    second_call = next(i for i, line in enumerate(lines) if "No, I asked for the price in euros" in line and "gen_ai.output.messages" in line)
    state, stats = _ingest_parts([lines[:second_call] + lines[second_call + 1 :], [lines[second_call]]], tmp_path)
    assert state == expected
    assert (stats[1].ingested, stats[1].updated, stats[1].duplicates) == (0, 1, 0)
    assert stats[1].failures.get("user_correction") == 1  # the re-merged conversation was reclassified


def test_a_conversation_keyed_by_its_trace_then_named_by_a_later_span_is_updated_not_new(whole, tmp_path: Path) -> None:
    """The agent's span (which carries gen_ai.conversation.id) ends last, so it often arrives in a later batch."""
    lines, expected = whole[("openai_v2", "span_only")]
    named = [i for i, line in enumerate(lines) if "gen_ai.conversation.id" in line]
    assert named and all("gen_ai.input.messages" not in lines[i] for i in named)
    first = [line for i, line in enumerate(lines) if i not in named]
    state, stats = _ingest_parts([first, [lines[i] for i in named]], tmp_path)
    assert state == expected
    assert stats[0].ingested == len(expected[0])  # each first stored under its trace id
    assert (stats[1].ingested, stats[1].updated) == (0, len(expected[0]))


def _span(span_id: str, start: int, system: str, inputs: list, output: str, conversation: str = "c-1") -> dict:
    def parts(text: str) -> list:
        return [{"type": "text", "content": text}]

    messages = [{"role": "system", "parts": parts(system)}] + [{"role": role, "parts": parts(text)} for role, text in inputs]
    return {
        "traceId": "t-" + conversation, "spanId": span_id, "startTimeUnixNano": str(start), "endTimeUnixNano": str(start + 10**9),
        "attributes": [
            {"key": "gen_ai.conversation.id", "value": {"stringValue": conversation}},
            {"key": "gen_ai.operation.name", "value": {"stringValue": "chat"}},
            {"key": "gen_ai.input.messages", "value": {"stringValue": json.dumps(messages)}},
            {"key": "gen_ai.output.messages", "value": {"stringValue": json.dumps([{"role": "assistant", "parts": parts(output)}])}},
            {"key": "gen_ai.usage.input_tokens", "value": {"intValue": "10"}},
        ],
    }


def test_a_system_prompt_rendered_per_call_and_a_re_sent_span_do_not_repeat_the_history(tmp_path: Path) -> None:
    first = _span("s1", 1_700_000_000 * 10**9, "Now: 10:00:00. Context: doc A", [("user", "Hi")], "Hello!")
    second = _span("s2", 1_700_000_005 * 10**9, "Now: 10:00:05. Context: doc B", [("user", "Hi"), ("assistant", "Hello!"), ("user", "Price?")], "11 EUR")
    export = {"resourceSpans": [{"scopeSpans": [{"spans": [first, second, first]}]}]}  # `first` sent twice in one batch
    path = tmp_path / "spans.json"
    path.write_text(json.dumps(export))
    with Store(tmp_path / "s.db") as store:
        ingest(store, [str(path), str(path)])  # and the whole batch twice
        conversation = store.conversations.get("c-1")
    assert [(m.role, m.content) for m in conversation.messages] == [
        ("system", "Now: 10:00:00. Context: doc A"), ("user", "Hi"), ("assistant", "Hello!"), ("user", "Price?"), ("assistant", "11 EUR"),
    ]
    assert conversation.metadata["input_tokens"] == 20  # each span counted once


def test_a_span_re_sent_with_other_content_in_one_batch_keeps_its_first_copy(tmp_path: Path) -> None:
    """The first copy wins, also for which conversation the trace is: a later copy naming one changes nothing."""
    first = _span("s1", 1_700_000_000 * 10**9, "sys", [("user", "Hi")], "Hello!")
    first["attributes"] = [a for a in first["attributes"] if a["key"] != "gen_ai.conversation.id"]
    again = json.loads(json.dumps(first))
    again["attributes"].append({"key": "gen_ai.conversation.id", "value": {"stringValue": "named-later"}})
    found = []
    for name, spans in (("once", [first]), ("twice", [first, again])):
        (tmp_path / name).mkdir()
        path = tmp_path / name / "spans.json"
        path.write_text(json.dumps({"resourceSpans": [{"scopeSpans": [{"spans": spans}]}]}))
        with Store(tmp_path / name / "s.db") as store:
            stats = ingest(store, [str(path)])
            found.append(([c.id for c in store.conversations.iter_conversations()], stats.ingested))
    assert found[1] == found[0] and found[0][0] != ["named-later"]


def test_evaluation_events_expected_answers_and_unnamed_prompts(tmp_path: Path) -> None:
    """Feedback from a gen_ai.evaluation.result event, expected answers from nightloop.expected; adopt counts unnamed ones."""
    from typer.testing import CliRunner

    from nightloop.cli import app

    graded = _span("g1", 1_700_000_000 * 10**9, "sys", [("user", "What is 6 x 7?")], "41", conversation="graded")
    graded["attributes"].append({"key": "nightloop.expected", "value": {"stringValue": "42"}})
    graded["events"] = [{"name": "gen_ai.evaluation.result", "timeUnixNano": "1", "attributes": [
        {"key": "gen_ai.evaluation.name", "value": {"stringValue": "correctness"}},
        {"key": "gen_ai.evaluation.score.value", "value": {"doubleValue": 0.0}},
        {"key": "gen_ai.evaluation.explanation", "value": {"stringValue": "off by one"}}]}]
    path = tmp_path / "graded.json"
    path.write_text(json.dumps({"resourceSpans": [{"scopeSpans": [{"spans": [graded]}]}]}))
    db = tmp_path / "s.db"
    with Store(db) as store:
        ingest(store, [str(path)])
        conversation = store.conversations.get("graded")
        kinds = {f.kind for f in store.conversations.failures()}
    assert conversation.outcome.expected == "42" and conversation.outcome.feedback.comment == "off by one"
    assert conversation.outcome.feedback.score == 0.0 and "wrong_output" in kinds
    result = CliRunner().invoke(app, ["prompts", "adopt", "--db", str(db)])
    assert result.exit_code == 0
    assert "1 stored conversation(s) have no prompt name" in result.output and "nightloop.prompt_name" in result.output


def test_worker_processes_rebuild_and_classify_exactly_as_one_process_does(whole, tmp_path: Path, monkeypatch) -> None:
    """A large ingest rebuilds and classifies in spawned workers (span_workers): same conversations, failures and counts.

    A private conversation id is stored under its storage id by the workers too; a late span updates, reclassified.
    """
    import nightloop.ingest as ingest_module
    from nightloop.classify import rules_version
    from nightloop.config import ClassifyConfig

    lines, expected = whole[("openai_v2", "span_only")]
    private = json.dumps({"resourceSpans": [{"scopeSpans": [{"spans": [
        _span("p1", 1_700_000_000 * 10**9, "sys", [("user", "Hi")], "Hello!", conversation="support-jane.doe@example.com-17")]}]}]})
    parts = [lines[:-1] + [private], lines[-1:]]
    (tmp_path / "one").mkdir()
    in_process, in_process_stats = _ingest_parts(parts, tmp_path / "one", workers="rebuild")
    classified_here: list[str] = []
    real_classify = ingest_module.classify_conversation
    monkeypatch.setattr(ingest_module, "classify_conversation", lambda c, *rest: classified_here.append(c.id) or real_classify(c, *rest))
    (tmp_path / "pool").mkdir()
    files = []
    for index, part in enumerate(parts):
        files.append(tmp_path / "pool" / f"part{index}.jsonl")
        files[-1].write_text("".join(line + "\n" for line in part))
    with Store(tmp_path / "pool" / "store.db") as store:
        pool_stats = [ingest(store, [str(f)], workers=2) for f in files]
        pooled = _state(store)
        reusable = store.conversations.classified_under(pooled[0], rules_version(ClassifyConfig()))
    assert reusable == set(pooled[0])  # what the workers found is stored under the rules' version: a night reuses it
    assert classified_here == []  # every span conversation was classified in a worker process
    assert pooled == in_process and pooled[0].keys() == expected[0].keys() | {next(k for k in pooled[0] if k.startswith("private-"))}
    assert [(s.ingested, s.updated, s.duplicates, s.failures) for s in pool_stats] == [(s.ingested, s.updated, s.duplicates, s.failures) for s in in_process_stats]
    assert pool_stats[0].failures.get("user_correction") == 1 and pool_stats[1].updated == 1


def _counts(stats: list) -> list[tuple]:
    return [(s.ingested, s.updated, s.duplicates, s.quarantined, s.failures, sorted(s.new_ids)) for s in stats]


def _threads_for_workers(monkeypatch) -> None:
    """Span workers as threads of this process: the same code paths as worker processes, without their start-up."""
    from concurrent.futures import ThreadPoolExecutor

    from nightloop import span_workers

    monkeypatch.setattr(span_workers, "ProcessPoolExecutor", lambda count, mp_context, initializer: ThreadPoolExecutor(count))


@settings(max_examples=16, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_conversations_built_while_reading_are_those_a_rebuild_gives(whole, data, monkeypatch) -> None:
    """Workers build every conversation wholly in the chunk they read (span_ingest.OnePass); one whose spans come in
    a later chunk or file of the ingest is withdrawn and rebuilt: however an export is cut into chunks and files, and
    re-sent, the same conversations, failures and counts as one process."""
    from nightloop import span_workers

    _threads_for_workers(monkeypatch)
    mode = data.draw(st.sampled_from(SPLIT_MODES), label="mode")
    lines, expected = whole[mode]
    cut = data.draw(st.integers(min_value=0, max_value=len(lines)), label="cut")
    start = data.draw(st.integers(min_value=0, max_value=len(lines) - 1), label="re-sent from")
    parts = [lines[:cut], lines[cut:]] + ([lines[start:]] if data.draw(st.booleans(), label="re-send") else [])
    as_arguments = data.draw(st.booleans(), label="as_arguments")
    monkeypatch.setattr(span_workers, "READ_CHUNK_BYTES", data.draw(st.sampled_from([1, 4000, 20_000, 1 << 20]), label="chunk bytes"))
    found = []
    for workers in ("rebuild", 0, 2):
        with tempfile.TemporaryDirectory() as tmp:
            found.append(_ingest_parts(parts, Path(tmp), as_arguments=as_arguments, workers=workers))
    assert found[2][0] == found[1][0] == found[0][0] == expected
    assert _counts(found[2][1]) == _counts(found[1][1]) == _counts(found[0][1])


def test_a_conversation_built_while_reading_is_rebuilt_when_a_later_file_brings_more_of_it(whole, tmp_path: Path, monkeypatch) -> None:
    """Built with its chunk, a conversation is stored at once; its last span in the ingest's next file withdraws it,
    uncounted, and it is rebuilt from all its spans: stored, counted and classified once, as one process does it."""
    from nightloop import span_ingest
    from nightloop.store.conversations import ConversationRepo

    _threads_for_workers(monkeypatch)
    rebuilt: list[list[str]] = []
    withdrawn: list[list[str]] = []
    real_remerge, real_withdraw = span_ingest.remerge, ConversationRepo.withdraw
    monkeypatch.setattr(span_ingest, "remerge", lambda store, ids, *rest: real_remerge(store, rebuilt.append(list(ids)) or rebuilt[-1], *rest))
    monkeypatch.setattr(ConversationRepo, "withdraw", lambda self, ids, stats: real_withdraw(self, withdrawn.append(list(ids)) or withdrawn[-1], stats))
    lines, expected = whole[("openai_v2", "span_only")]
    last = next(i for i, line in enumerate(lines) if "No, I asked for the price in euros" in line and "gen_ai.output.messages" in line)
    parts = [lines[:last] + lines[last + 1 :], [lines[last]]]
    (tmp_path / "one").mkdir()
    state, stats = _ingest_parts(parts, tmp_path / "one", as_arguments=True, workers="rebuild")
    assert withdrawn == []
    rebuilt.clear()
    (tmp_path / "read").mkdir()
    pooled, pooled_stats = _ingest_parts(parts, tmp_path / "read", as_arguments=True, workers=2)
    assert pooled == state == expected and _counts(pooled_stats) == _counts(stats)
    assert withdrawn == [["correction"]] and set(rebuilt[0]) & expected[0].keys() == {"correction"}  # the others: built while reading
    assert pooled_stats[0].failures.get("user_correction") == 1


def test_conversations_of_many_traces_built_while_reading_are_those_a_rebuild_gives(parentless_traces, tmp_path: Path, monkeypatch) -> None:
    """Model calls with no parent span are a trace each, chained into conversations: a conversation built from one
    chunk's trace is withdrawn when a later chunk brings another of its traces, and none is built again when an earlier
    ingest stored some of its spans. At any cut, in one ingest or two, a chunk per line: as one process does it."""
    from nightloop import span_workers

    _threads_for_workers(monkeypatch)
    monkeypatch.setattr(span_workers, "READ_CHUNK_BYTES", 1)
    lines = [line for line in (parentless_traces[("openai_v2", "span_only")] / "spans.jsonl").read_text().splitlines() if line]
    for cut in range(len(lines) + 1):
        for as_arguments in (False, True):
            found = []
            for workers in ("rebuild", 0, 2):
                (folder := tmp_path / f"{cut}-{as_arguments}-{workers}").mkdir()
                found.append(_ingest_parts([lines[:cut], lines[cut:]], folder, as_arguments=as_arguments, workers=workers))
            assert found[2][0] == found[1][0] == found[0][0] and len(found[0][0][0]) == 6, (cut, as_arguments)
            assert _counts(found[2][1]) == _counts(found[1][1]) == _counts(found[0][1]), (cut, as_arguments)


def test_a_trace_wholly_in_a_chunk_of_a_conversation_with_stored_spans_is_rebuilt_from_all_of_them(tmp_path: Path, monkeypatch) -> None:
    """The agent's span came in an earlier ingest (no model call yet: quarantined, no conversation stored); a later
    trace of the same conversation, though wholly in one chunk, is merged with it (its prompt name is on that span)."""
    _threads_for_workers(monkeypatch)
    agent = {"traceId": "t-agent", "spanId": "a1", "startTimeUnixNano": str(1_700_000_000 * 10**9), "attributes": [
        {"key": "gen_ai.conversation.id", "value": {"stringValue": "c-1"}}, {"key": "nightloop.prompt_name", "value": {"stringValue": "support"}}]}
    call = _span("s1", 1_700_000_001 * 10**9, "sys", [("user", "Hi")], "Hello!")
    found = []
    for workers in (0, 2):
        (folder := tmp_path / str(workers)).mkdir()
        parts = [[json.dumps({"resourceSpans": [{"scopeSpans": [{"spans": [span]}]}]})] for span in (agent, call)]
        state, stats = _ingest_parts(parts, folder, workers=workers)
        found.append((state, _counts(stats)))
    assert found[1] == found[0]
    assert found[0][0][0]["c-1"][0] == "support"


def test_a_conversation_stored_from_another_source_is_replaced_by_its_spans_never_withdrawn(tmp_path: Path, monkeypatch) -> None:
    """A JSONL conversation under the id the spans name: its spans replace it (updated), as one process does, even when
    a later file of the ingest brings another trace of it (nothing built while reading may delete what was stored)."""
    _threads_for_workers(monkeypatch)
    first = _span("s1", 1_700_000_000 * 10**9, "sys", [("user", "Hi")], "Hello!")
    second = _span("s2", 1_700_000_005 * 10**9, "sys", [("user", "Hi"), ("assistant", "Hello!"), ("user", "Price?")], "11 EUR")
    second["traceId"] = "t-other"
    found = []
    for workers in (0, 2):
        (folder := tmp_path / str(workers)).mkdir()
        (folder / "old.jsonl").write_text('{"id": "c-1", "messages": [{"role": "user", "content": "an older copy"}]}\n')
        with Store(folder / "store.db") as store:
            ingest(store, [str(folder / "old.jsonl")])
        parts = [[json.dumps({"resourceSpans": [{"scopeSpans": [{"spans": [span]}]}]})] for span in (first, second)]
        state, stats = _ingest_parts(parts, folder, as_arguments=True, workers=workers)
        found.append((state, _counts(stats)))
    assert found[1] == found[0]
    assert [m["content"] for m in found[0][0][0]["c-1"][3]] == ["sys", "Hi", "Hello!", "Price?", "11 EUR"] and found[0][1][0][:2] == (0, 1)


def test_a_re_sent_export_is_not_built_again_while_reading(whole, tmp_path: Path, monkeypatch) -> None:
    """Once a chunk's spans all turn out to be stored already, workers stop building conversations (a few chunks ahead
    were sent before that was known) and start again when new spans come."""
    from nightloop import span_workers

    _threads_for_workers(monkeypatch)
    monkeypatch.setattr(span_workers, "READ_CHUNK_BYTES", 1)
    built: list[bool] = []
    real_read_chunk = span_workers.read_chunk
    monkeypatch.setattr(span_workers, "read_chunk", lambda source, lines, config=None: built.append(config is not None) or real_read_chunk(source, lines, config))
    lines, expected = whole[("openai_v2", "span_only")]
    assert len(lines) > 12
    fresh = [line.replace('"traceId":"', '"traceId":"f') for line in lines]  # new spans (of new traces)
    state, stats = _ingest_parts([lines, lines, lines + fresh], tmp_path, workers=2)
    first, again, mixed = built[: len(lines)], built[len(lines) : 2 * len(lines)], built[2 * len(lines) :]
    assert all(first) and 0 < sum(again) <= 2 * span_workers.AHEAD_PER_WORKER + 1 and not any(again[-3:])
    assert not all(mixed[: len(lines)]) and all(mixed[-3:])
    assert state[0].keys() == expected[0].keys() and (stats[1].ingested, stats[1].updated, stats[1].duplicates) == (0, 0, 6)


def test_workers_are_used_only_for_a_large_rebuild_on_idle_cores(monkeypatch) -> None:
    from nightloop import span_workers

    monkeypatch.setattr(span_workers.os, "cpu_count", lambda: 2)
    monkeypatch.setattr(span_workers.os, "getloadavg", lambda: (0.2, 0.2, 0.2))
    assert span_workers.auto_workers(span_workers.MIN_CONVERSATIONS) == 2
    assert span_workers.auto_workers(span_workers.MIN_CONVERSATIONS - 1) == 0
    monkeypatch.setattr(span_workers.os, "getloadavg", lambda: (1.0, 1.0, 1.0))  # a core is busy: workers would cost, not help
    assert span_workers.auto_workers(10 * span_workers.MIN_CONVERSATIONS) == 0
    monkeypatch.setattr(span_workers.os, "cpu_count", lambda: 1)
    monkeypatch.setattr(span_workers.os, "getloadavg", lambda: (0.0, 0.0, 0.0))
    assert span_workers.auto_workers(10 * span_workers.MIN_CONVERSATIONS) == 0
    assert isinstance(span_workers.chunk_builder(10 * span_workers.MIN_CONVERSATIONS, None, 2), span_workers.InProcess)  # a custom classifier


def test_worker_processes_are_forked_from_a_single_threaded_ingest_else_from_a_fresh_interpreter(monkeypatch) -> None:
    """With one thread, workers are forked from the ingesting process (nothing imported again: they see its modules as
    they are); with another thread running, whose locks a fork would copy taken, they start from a fresh interpreter:
    on Linux, forked from multiprocessing's fork server, which imported nightloop once."""
    import threading
    from functools import partial

    from nightloop import span_workers

    stop = threading.Event()
    thread = threading.Thread(target=stop.wait)
    thread.start()
    try:
        assert span_workers.worker_context().get_start_method() == "forkserver"  # a real second thread
    finally:
        stop.set()
        thread.join()
    monkeypatch.setattr(span_workers, "MIN_CONVERSATIONS", -1)
    read_back = partial(eval, "__import__('nightloop.span_workers').span_workers.MIN_CONVERSATIONS")
    for threads, method, seen in ((1, "fork", -1), (2, "forkserver", 10_000)):
        monkeypatch.setattr(span_workers.threading, "active_count", lambda threads=threads: threads)
        assert span_workers.worker_context().get_start_method() == method
        with span_workers.Workers(1) as workers:
            assert workers.executor is not None
            assert list(workers.map(read_back, [()])) == [seen]


def test_worker_processes_read_an_export_file_exactly_as_one_process_does(whole, tmp_path: Path, monkeypatch) -> None:
    """A large OTLP file of one export per line is parsed in the workers, a chunk of lines at a time: the same
    conversations, failures and quarantine notes (bad JSON, a line that is no export, one over the length cap, a file
    of spans without GenAI content) as reading it in-process."""
    from nightloop import span_workers
    from nightloop.sources import base

    lines, _ = whole[("openai_v2", "span_only")]
    noise = json.dumps({"resourceSpans": [{"scopeSpans": [{"spans": [{"traceId": "h", "spanId": "1", "attributes": [
        {"key": "http.method", "value": {"stringValue": "GET"}}]}]}]}]})
    files = {"mixed.jsonl": [lines[0], "{not json", '{"hello": 1}', lines[1], "x" * 5000, *lines[2:]], "noise.jsonl": [noise, noise]}
    monkeypatch.setattr(base, "MAX_LINE_BYTES", 4096)  # the main process reads the lines; workers parse them
    monkeypatch.setattr(span_workers, "READ_CHUNK_BYTES", 1)  # a chunk per line: spans of one conversation in several chunks
    results = []
    for workers in ("rebuild", 0, 2):  # OtelSource.spans() reads the file; then the chunks in-process and in workers
        folder = tmp_path / str(workers)
        folder.mkdir()
        for name, content in files.items():
            (folder / name).write_text("".join(line + "\n" for line in content))
        with Store(folder / "store.db") as store:
            stats = ingest(store, [str(folder / name) for name in files], **(_rebuild_options() if workers == "rebuild" else {"workers": workers}))
            notes = sorted((q.locator.replace(str(folder), ""), q.reason) for q in store.conversations.quarantined())
            results.append((_state(store), notes, (stats.ingested, stats.updated, stats.duplicates, stats.quarantined, stats.failures)))
    assert results[2] == results[1] == results[0]
    notes = results[0][1]
    assert [reason.split(":")[0] for _, reason in notes] == ["invalid JSON", "not an OTLP JSON export (no 'resourceSpans' or 'resourceLogs' list)", "line longer than 4096 bytes; split the record or drop it", "OTLP spans without GenAI content"], notes
    assert len(results[0][0][0]) == 6


def _exit_in_a_worker(parent: int, value: int) -> int:
    """Doubles ``value`` in the ingesting process; a worker process dies on it (as one killed by the OOM killer)."""
    import os

    if os.getpid() != parent:
        os._exit(3)
    return value * 2


def test_a_worker_that_dies_costs_only_speed() -> None:
    """The pool breaks when a worker dies: its item, and every later one, is done in the ingesting process, in order."""
    import os

    from nightloop import span_workers

    with span_workers.Workers(2) as workers:
        assert workers.executor is not None
        assert list(workers.map(_exit_in_a_worker, [(os.getpid(), i) for i in range(7)])) == [0, 2, 4, 6, 8, 10, 12]


def test_a_span_ingest_collects_garbage_less_often_and_restores_the_collector_after(tmp_path: Path) -> None:
    """Collecting at CPython's default pace was a fifth of a span ingest's CPU time: it is slower during the ingest only."""
    import gc

    from nightloop import span_ingest, span_workers

    seen: list[tuple[int, int, int]] = []
    real_store_spans = span_ingest.store_spans
    before = gc.get_threshold()
    path = tmp_path / "spans.jsonl"
    path.write_text(json.dumps({"resourceSpans": [{"scopeSpans": [{"spans": [_span("s1", 1_700_000_000 * 10**9, "sys", [("user", "Hi")], "Hello!")]}]}]}) + "\n")
    with pytest.MonkeyPatch.context() as patch, Store(tmp_path / "store.db") as store:
        patch.setattr(span_ingest, "store_spans", lambda *args: seen.append(gc.get_threshold()) or real_store_spans(*args))
        assert ingest(store, [str(path)], workers=0).ingested == 1
    assert seen == [(max(span_workers.GC_THRESHOLD, before[0]), *before[1:])] and gc.get_threshold() == before
