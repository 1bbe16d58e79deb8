"""Platform exports built from their documented shapes (Langfuse trace JSON / observation exports / blob export,
LangSmith runs, Phoenix spans dataframe JSONL), and files nightloop does not read: quarantined naming the shape."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from nightloop.ingest import ingest
from nightloop.sources import detect_format, open_source
from nightloop.store import Store

SYSTEM = {"role": "system", "content": "You are the support assistant of Acme."}
ASK = {"role": "user", "content": "How much is the blue mug?"}
WRONG = {"role": "assistant", "content": "The blue mug costs 12 USD."}
CORRECT = {"role": "user", "content": "No, I asked for the price in euros, not dollars."}
RIGHT = {"role": "assistant", "content": "The blue mug costs 11 EUR."}


def _kinds(store: Store) -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for failure in store.conversations.failures():
        found.setdefault(failure.conversation_id, set()).add(failure.kind)
    return found


def _langfuse_trace() -> dict:
    """A trace's "Download JSON" in the Langfuse UI: the trace, its observations and scores (camelCase)."""
    generation = {"type": "GENERATION", "traceId": "lf-t1", "model": "gpt-4o-mini", "promptName": "support_agent", "promptVersion": 3}
    return {
        "id": "lf-t1",
        "name": "support-chat",
        "timestamp": "2026-11-23T10:00:00.000Z",
        "sessionId": "lf-session-1",
        "metadata": {"variables": {"shop": "Acme", "channel": "web"}},
        "observations": [
            {**generation, "id": "o1", "startTime": "2026-11-23T10:00:00.000Z", "endTime": "2026-11-23T10:00:01.000Z", "input": [SYSTEM, ASK], "output": WRONG},
            {**generation, "id": "o2", "startTime": "2026-11-23T10:00:05.000Z", "endTime": "2026-11-23T10:00:06.000Z",
             "input": [SYSTEM, ASK, WRONG, CORRECT], "output": RIGHT, "usageDetails": {"input": 40, "output": 9}},
            {"type": "SPAN", "id": "o3", "traceId": "lf-t1", "name": "retrieval", "startTime": "2026-11-23T10:00:00.500Z"},
        ],
        "scores": [{"id": "s1", "name": "user-feedback", "value": 0, "dataType": "NUMERIC", "comment": "wrong currency"}],
    }


def test_langfuse_trace_json_maps_prompt_session_and_scores(tmp_path: Path) -> None:
    path = tmp_path / "trace.json"
    path.write_text(json.dumps(_langfuse_trace(), indent=2))
    assert detect_format(path) == "langfuse"
    with Store(tmp_path / "s.db") as store:
        stats = ingest(store, [str(path)])
        assert (stats.ingested, stats.quarantined) == (1, 0)
        conversation = store.conversations.get("lf-session-1")
        assert [m.content for m in conversation.messages] == [m["content"] for m in (SYSTEM, ASK, WRONG, CORRECT, RIGHT)]
        assert (conversation.prompt_name, conversation.prompt_version) == ("support_agent", 3)
        assert conversation.variables == {"shop": "Acme", "channel": "web"}
        assert conversation.outcome.feedback.score == 0.0 and conversation.outcome.feedback.comment == "wrong currency"
        assert conversation.metadata["output_tokens"] == 9
        assert _kinds(store) == {"lf-session-1": {"user_correction", "wrong_output"}}


def test_langfuse_blob_export_observations_v2_and_scores_in_separate_files(tmp_path: Path) -> None:
    """The blob export: snake_case, 'YYYY-MM-DD HH:MM:SS.ffffff' UTC, input/output as JSON text; scores apart."""
    rows = [
        {"id": "b1", "trace_id": "bt1", "type": "GENERATION", "session_id": None, "start_time": "2026-11-23 10:00:00.000000",
         "end_time": "2026-11-23 10:00:01.000000", "input": json.dumps([SYSTEM, {"role": "user", "content": "Do you ship to Norway?"}]),
         "output": None, "level": "ERROR", "status_message": "Error code: 500 - upstream overloaded", "prompt_name": "support_agent", "prompt_version": 1},
        {"id": "b2", "trace_id": "bt2", "type": "GENERATION", "start_time": "2026-11-23 11:00:00.000000", "end_time": "2026-11-23 11:00:01.000000",
         "input": json.dumps([SYSTEM, {"role": "user", "content": "When does my order ship?"}]), "output": json.dumps("It ships tomorrow."),
         "level": "DEFAULT", "prompt_name": "support_agent", "prompt_version": 1},
    ]
    observations = tmp_path / "observations_v2" / "2026-11-23.jsonl"
    observations.parent.mkdir()
    observations.write_text("".join(json.dumps(r) + "\n" for r in rows))
    scores = tmp_path / "scores" / "2026-11-23.jsonl"
    scores.parent.mkdir()
    scores.write_text(json.dumps({"id": "sc1", "trace_id": "bt2", "name": "thumbs", "value": 1, "data_type": "NUMERIC", "comment": "great"}) + "\n")
    assert detect_format(observations) == detect_format(scores) == "langfuse"
    with Store(tmp_path / "s.db") as store:
        stats = ingest(store, [str(observations.parent), str(scores.parent)])
        assert (stats.ingested, stats.quarantined) == (2, 0)
        assert store.conversations.get("bt2").outcome.feedback.score == 1.0  # the score joined its trace across files
        assert store.conversations.get("bt1").outcome.status == "error"
        assert _kinds(store) == {"bt1": {"provider_error"}}


def _langsmith_runs() -> list[dict]:
    thread = {"metadata": {"thread_id": "ls-thread-1", "ls_model_name": "gpt-4o-mini", "prompt_name": "support_agent"}}
    root = {"id": "r0", "trace_id": "r0", "run_type": "chain", "name": "agent", "start_time": "2026-11-23T10:00:00", "end_time": "2026-11-23T10:00:09",
            "inputs": {"question": "Where is order 42?"}, "outputs": {}, "extra": thread}
    call = {"type": "function", "function": {"name": "lookup_order", "arguments": "{\"id\": 42}"}, "id": "call_1"}
    first = {"id": "r1", "trace_id": "r0", "parent_run_id": "r0", "run_type": "llm", "name": "ChatOpenAI", "start_time": "2026-11-23T10:00:01",
             "end_time": "2026-11-23T10:00:02", "extra": thread,
             "inputs": {"messages": [SYSTEM, {"role": "user", "content": "Where is order 42?"}]},
             "outputs": {"choices": [{"message": {"role": "assistant", "content": None, "tool_calls": [call]}}]}}
    tool = {"id": "r2", "trace_id": "r0", "parent_run_id": "r0", "run_type": "tool", "name": "lookup_order", "start_time": "2026-11-23T10:00:03",
            "end_time": "2026-11-23T10:00:03", "inputs": {"id": 42}, "outputs": {"output": "{\"error\": \"order service unavailable\"}"}, "extra": thread}
    second = {"id": "r3", "trace_id": "r0", "parent_run_id": "r0", "run_type": "llm", "name": "ChatOpenAI", "start_time": "2026-11-23T10:00:04",
              "end_time": "2026-11-23T10:00:05", "extra": thread, "prompt_tokens": 50, "completion_tokens": 8,
              "inputs": {"messages": [[  # LangChain's serialised messages, one list per prompt
                  {"lc": 1, "type": "constructor", "id": ["langchain", "schema", "messages", "SystemMessage"], "kwargs": {"content": SYSTEM["content"]}},
                  {"lc": 1, "type": "constructor", "id": ["langchain", "schema", "messages", "HumanMessage"], "kwargs": {"content": "Where is order 42?"}},
                  {"lc": 1, "type": "constructor", "id": ["langchain", "schema", "messages", "AIMessage"],
                   "kwargs": {"content": "", "tool_calls": [{"name": "lookup_order", "args": {"id": 42}, "id": "call_1"}]}},
                  {"lc": 1, "type": "constructor", "id": ["langchain", "schema", "messages", "ToolMessage"],
                   "kwargs": {"content": "{\"error\": \"order service unavailable\"}", "tool_call_id": "call_1"}},
              ]]},
              "outputs": {"generations": [[{"text": "Sorry, I could not look order 42 up.", "message": {"lc": 1, "type": "constructor",
                          "id": ["langchain", "schema", "messages", "AIMessage"], "kwargs": {"content": "Sorry, I could not look order 42 up."}}}]]}}
    failed = {"id": "r9", "trace_id": "r9", "run_type": "llm", "name": "ChatOpenAI", "start_time": "2026-11-23T11:00:00", "end_time": "2026-11-23T11:00:01",
              "inputs": {"messages": [SYSTEM, {"role": "user", "content": "Hi"}]}, "outputs": None,
              "error": "Traceback (most recent call last):\n ...\nopenai.RateLimitError: Error code: 429 - rate limited", "extra": {"metadata": {"thread_id": "ls-thread-2"}}}
    return [root, first, tool, second, failed]


def test_langsmith_runs_merge_openai_and_langchain_messages_per_thread(tmp_path: Path) -> None:
    path = tmp_path / "runs.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in _langsmith_runs()))
    assert detect_format(path) == "langsmith"
    with Store(tmp_path / "s.db") as store:
        stats = ingest(store, [str(path)])
        assert (stats.ingested, stats.quarantined) == (2, 0)
        conversation = store.conversations.get("ls-thread-1")
        assert [m.role for m in conversation.messages] == ["system", "user", "assistant", "tool", "assistant"]
        assert conversation.messages[2].tool_calls[0].id == "call_1" and conversation.messages[3].tool_call_id == "call_1"
        assert conversation.prompt_name == "support_agent" and conversation.metadata["input_tokens"] == 50
        assert _kinds(store) == {"ls-thread-1": {"tool_error"}, "ls-thread-2": {"provider_error"}}


def _phoenix_rows() -> list[dict]:
    """``get_spans_dataframe().to_json(orient="records", lines=True)``: epoch-ms times, nested message lists."""
    row = {
        "name": "ChatCompletion", "span_kind": "LLM", "parent_id": None, "start_time": 1795428000000, "end_time": 1795428001000,
        "status_code": "OK", "status_message": "", "events": [], "context.span_id": "p1", "context.trace_id": "pt1",
        "attributes.session.id": "px-session", "attributes.llm.model_name": "gpt-4o-mini",
        "attributes.llm.input_messages": [{"message.role": "system", "message.content": SYSTEM["content"]}, {"message.role": "user", "message.content": ASK["content"]}],
        "attributes.llm.output_messages": [{"message.role": "assistant", "message.content": WRONG["content"]}],
        "attributes.nightloop.prompt_name": "support_agent",
    }
    second = {**row, "context.span_id": "p2", "start_time": 1795428005000, "end_time": 1795428006000,
              "attributes.llm.input_messages": [*row["attributes.llm.input_messages"], {"message.role": "assistant", "message.content": WRONG["content"]},
                                                {"message.role": "user", "message.content": CORRECT["content"]}],
              "attributes.llm.output_messages": [{"message.role": "assistant", "message.content": RIGHT["content"]}]}
    return [row, second]


def test_phoenix_spans_dataframe_jsonl(tmp_path: Path) -> None:
    row, second = _phoenix_rows()
    path = tmp_path / "phoenix_spans.jsonl"
    path.write_text(json.dumps(row) + "\n" + json.dumps(second) + "\n")
    assert detect_format(path) == "phoenix"
    with Store(tmp_path / "s.db") as store:
        assert ingest(store, [str(path)]).ingested == 1
        conversation = store.conversations.get("px-session")
        assert len(conversation.messages) == 5 and conversation.started_at.year == 2026
        assert _kinds(store) == {"px-session": {"user_correction"}}


def test_unread_shapes_are_quarantined_naming_the_shape(tmp_path: Path) -> None:
    files = {
        "metrics.json": json.dumps({"resourceMetrics": []}),
        "examples.jsonl": json.dumps({"id": "e1", "dataset_id": "d1", "inputs": {}, "outputs": {}}) + "\n",
        "other.jsonl": json.dumps({"event": "click", "user": "u1"}) + "\n",
        "spans.parquet": "PAR1\x00\x00binary",
    }
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    with Store(tmp_path / "s.db") as store:
        stats = ingest(store, [str(tmp_path / name) for name in files])
    reasons = {Path(q.source).name: q.reason for q in stats.quarantined_records}
    assert stats.ingested == 0 and stats.quarantined == 4
    assert reasons["metrics.json"].startswith("OTLP metrics export")
    assert reasons["examples.jsonl"].startswith("a dataset export")
    assert reasons["other.jsonl"].startswith("unrecognised record shape (keys: event, user)")
    assert reasons["spans.parquet"].startswith("Parquet file")


def test_a_spans_file_without_genai_content_is_never_zero_zero_zero(tmp_path: Path) -> None:
    http_only = {"resourceSpans": [{"scopeSpans": [{"spans": [{"traceId": "t", "spanId": "s", "name": "GET /", "attributes": [
        {"key": "http.method", "value": {"stringValue": "GET"}}]}]}]}]}
    path = tmp_path / "http.json"
    path.write_text(json.dumps(http_only))
    records = list(open_source(path).fetch())
    assert len(records) == 1 and records[0].reason.startswith("OTLP spans without GenAI content")


def _langfuse_blob(folder: Path) -> list[str]:
    rows = [
        {"id": "b1", "trace_id": "bt1", "type": "GENERATION", "start_time": "2026-11-23 10:00:00.000000", "end_time": "2026-11-23 10:00:01.000000",
         "input": json.dumps([SYSTEM, ASK]), "output": None, "level": "ERROR", "status_message": "Error code: 500 - upstream overloaded",
         "prompt_name": "support_agent", "prompt_version": 1},
        *({"id": f"b{i}", "trace_id": "bt2", "type": "GENERATION", "start_time": f"2026-11-23 11:00:0{i}.000000", "end_time": f"2026-11-23 11:00:0{i}.500000",
           "input": json.dumps(messages), "output": json.dumps(answer), "level": "DEFAULT", "prompt_name": "support_agent", "prompt_version": 1}
          for i, messages, answer in ((2, [SYSTEM, ASK], WRONG), (3, [SYSTEM, ASK, WRONG, CORRECT], RIGHT))),
    ]
    path = folder / "observations_v2" / "2026-11-23.jsonl"
    path.parent.mkdir()
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return [str(path.parent)]


def _export_files(kind: str, folder: Path) -> list[str]:
    if kind == "langfuse_blob":
        return _langfuse_blob(folder)
    path = folder / f"{kind}.jsonl"
    if kind == "langfuse_trace":
        path.write_text(json.dumps(_langfuse_trace()))
    elif kind == "langfuse_observations":  # the UI/API observations export: camelCase, one per line, no trace record
        path.write_text("".join(json.dumps(o) + "\n" for o in _langfuse_trace()["observations"]))
    elif kind == "phoenix":
        path.write_text("".join(json.dumps(r) + "\n" for r in _phoenix_rows()))
    elif kind == "langsmith":
        runs = _langsmith_runs()
        for run in runs:
            run.setdefault("extra", {}).setdefault("metadata", {})["prompt_name"] = "support_agent"
        path.write_text("".join(json.dumps(r) + "\n" for r in runs))
    return [str(path)]


@pytest.mark.parametrize("kind", ["langfuse_trace", "langfuse_observations", "langfuse_blob", "langsmith", "phoenix"])
def test_a_night_runs_on_each_platform_export_and_never_judges_a_provider_outage(kind: str, tmp_path: Path) -> None:
    from datetime import timedelta

    from nightloop import pipeline
    from nightloop.config import load_settings
    from nightloop.models import ClassifyOutput
    from nightloop.prompt_files import import_prompts

    settings = load_settings(db=tmp_path / "s.db", seed=3, min_failures=1, llm={"allow_sim_agent": True})
    with Store(settings.db) as store:
        import_prompts(store, Path(__file__).resolve().parents[1] / "prompts", created_by="test")
        stats = ingest(store, _export_files(kind, tmp_path), classify_config=settings.classify)
        stored = list(store.conversations.iter_conversations(prompt_name="support_agent"))
        outages = {f.conversation_id for f in store.conversations.failures(kind="provider_error")}
        night = max(c.ended_at for c in stored).date() + timedelta(days=1)
        report = pipeline.run_night(settings, "support_agent", night, store=store)
        classified = ClassifyOutput.model_validate(store.runs.stage_output(report.run_id, "classify"))
    assert stats.quarantined == 0 and report.conversations == len(stored) >= 1, (stats, report)
    assert report.status in ("done", "stopped_early"), (report.status, report.notes)
    assert report.failures.get("user_correction", 0) + report.failures.get("tool_error", 0) >= 1, report.failures
    judged = {f.conversation_id for f in classified.failures}
    assert judged and not judged & outages, (judged, outages)
    if kind in ("langfuse_blob", "langsmith"):
        assert outages, "the export's provider outage was not classified provider_error"
