"""Write OTLP JSON span/log files with the REAL instrumentation libraries around the official ``openai`` client.

Run as ``python tests/trace_gen.py LIBRARY MODE OUT_DIR`` (one process per library and mode, because the
instrumentors patch ``openai`` globally and read their settings from the environment). The agent talks to
``nightloop.testing``'s loopback fake; each scenario is one conversation of a support agent:

- ``good``: one question, one right answer;
- ``correction``: a wrong currency, the user corrects it ("No, I asked for the price in euros"), a fixed answer;
- ``tool_call``: the model calls ``lookup_order``, the app answers the tool call, the model answers;
- ``tool_error``: the same, but the tool returns an error;
- ``timeout``: the model does not answer within the client's timeout (``APITimeoutError``);
- ``http_500``: the provider answers HTTP 500 (``InternalServerError``).

Each conversation runs inside an app span ``conversation`` that carries nightloop's documented attributes
(``gen_ai.conversation.id``, ``nightloop.prompt_name``, ``nightloop.prompt_version``, ``nightloop.variables``,
feedback and expected answers), the way the README tells a team to record them (with ``NIGHTLOOP_TEST_NO_APP_SPAN=1``
there is no such span: each model call is a trace of its own, as with bare auto-instrumentation). Files written:
``spans.jsonl`` (one OTLP export per line, the OTLP JSON file exporter's format) and, when the library
emits log events, ``logs.jsonl``.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

#: library -> modes -> environment variables set before the instrumentor is imported.
MODES: dict[str, dict[str, dict[str, str]]] = {
    "openai_v2": {
        "span_only": {"OTEL_SEMCONV_STABILITY_OPT_IN": "gen_ai_latest_experimental", "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT": "SPAN_ONLY"},
        "span_and_event": {
            "OTEL_SEMCONV_STABILITY_OPT_IN": "gen_ai_latest_experimental",
            "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT": "SPAN_AND_EVENT",
        },
        "event_only": {"OTEL_SEMCONV_STABILITY_OPT_IN": "gen_ai_latest_experimental", "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT": "EVENT_ONLY"},
    },
    "openllmetry": {
        "attributes": {"TRACELOOP_TRACE_CONTENT": "true"},
        "events": {"TRACELOOP_TRACE_CONTENT": "true"},
        # OpenLLMetry <= 0.54 (its default: indexed gen_ai.prompt.N.* attributes); run in a venv that has it,
        # see tests/trace_data/openllmetry_0_54/README.md.
        "indexed": {"TRACELOOP_TRACE_CONTENT": "true"},
    },
    "openinference": {"default": {}},
}

#: (library, content mode) pairs generated at test time (the session fixture ``real_traces`` in conftest.py).
TRACE_MODES = [
    ("openai_v2", "span_only"),
    ("openai_v2", "span_and_event"),
    ("openai_v2", "event_only"),
    ("openllmetry", "attributes"),
    ("openllmetry", "events"),
    ("openinference", "default"),
]

#: Layouts generated with no app span (``NIGHTLOOP_TEST_NO_APP_SPAN``): content on the model call's span, or in log events.
PARENTLESS_MODES = [
    ("openai_v2", "span_only"),
    ("openai_v2", "event_only"),
    ("openllmetry", "attributes"),
    ("openllmetry", "events"),
    ("openinference", "default"),
]

SYSTEM = "You are the support assistant of {shop}. Quote prices in EUR."
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "lookup_order",
            "description": "Look an order up by its number.",
            "parameters": {"type": "object", "properties": {"id": {"type": "integer"}}, "required": ["id"]},
        },
    }
]


def _instrument(library: str, mode: str, tracer_provider, logger_provider) -> None:
    if library == "openai_v2":
        from opentelemetry.instrumentation.openai_v2 import OpenAIInstrumentor

        OpenAIInstrumentor().instrument(tracer_provider=tracer_provider, logger_provider=logger_provider)
    elif library == "openllmetry":
        from opentelemetry.instrumentation.openai import OpenAIInstrumentor

        instrumentor = OpenAIInstrumentor() if mode == "indexed" else OpenAIInstrumentor(use_attributes=(mode == "attributes"))
        instrumentor.instrument(tracer_provider=tracer_provider, logger_provider=logger_provider)
    elif library == "openinference":
        from openinference.instrumentation.openai import OpenAIInstrumentor

        OpenAIInstrumentor().instrument(tracer_provider=tracer_provider)
    else:
        raise SystemExit(f"unknown library {library!r}; use one of {', '.join(MODES)}")


def _providers(out: Path):
    from opentelemetry.exporter.otlp.json.file._log_exporter import FileLogExporter
    from opentelemetry.exporter.otlp.json.file.trace_exporter import FileSpanExporter
    from opentelemetry.sdk._logs import LoggerProvider
    from opentelemetry.sdk._logs.export import SimpleLogRecordProcessor
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor

    resource = Resource.create({"service.name": "support-agent"})
    tracer_provider = TracerProvider(resource=resource)
    logger_provider = LoggerProvider(resource=resource)
    endpoint = os.environ.get("NIGHTLOOP_TEST_OTLP_ENDPOINT")
    if endpoint:  # send to `nightloop collect` with the real OTLP/HTTP exporters instead of writing files
        from opentelemetry.sdk._logs.export import BatchLogRecordProcessor
        from opentelemetry.sdk.trace.export import BatchSpanProcessor

        if os.environ.get("NIGHTLOOP_TEST_OTLP_ENCODING") == "json":
            from opentelemetry.exporter.otlp.json.http._log_exporter import OTLPLogExporter
            from opentelemetry.exporter.otlp.json.http.trace_exporter import OTLPSpanExporter
        else:
            from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        tracer_provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=f"{endpoint}/v1/traces")))
        logger_provider.add_log_record_processor(BatchLogRecordProcessor(OTLPLogExporter(endpoint=f"{endpoint}/v1/logs")))
        return tracer_provider, logger_provider
    tracer_provider.add_span_processor(SimpleSpanProcessor(FileSpanExporter(out / "spans.jsonl")))
    logger_provider.add_log_record_processor(SimpleLogRecordProcessor(FileLogExporter(out / "logs.jsonl")))
    return tracer_provider, logger_provider


def _conversation(tracer, conversation_id: str, **attributes):
    if os.environ.get("NIGHTLOOP_TEST_NO_APP_SPAN"):  # an agent with no span of its own: each model call is a root span
        import contextlib

        return contextlib.nullcontext()
    base = {
        "gen_ai.conversation.id": conversation_id,
        "nightloop.prompt_name": "support_agent",
        "nightloop.prompt_version": 1,
        "nightloop.variables": json.dumps({"shop": "Acme", "channel": "web"}),
    }
    return tracer.start_as_current_span("conversation", attributes={**base, **attributes})


def run_scenarios(client, tracer) -> None:
    """The six conversations (see the module docstring); provider errors are caught like an app would."""
    import openai

    from nightloop.testing import Answer

    fake = client._nightloop_fake
    system = {"role": "system", "content": SYSTEM.format(shop="Acme")}

    def chat(messages, **kwargs):
        return client.chat.completions.create(model="gpt-4o-mini", messages=messages, **kwargs)

    with _conversation(tracer, "good", **{"nightloop.expected": "Your order ships tomorrow."}):
        fake.push(Answer.text("Your order ships tomorrow."))
        messages = [system, {"role": "user", "content": "When does my order ship?"}]
        chat(messages)

    with _conversation(tracer, "correction", **{"nightloop.feedback.score": 0.0, "nightloop.feedback.comment": "wrong currency"}):
        fake.push(Answer.text("The blue mug costs 12 USD."), Answer.text("The blue mug costs 11 EUR."))
        messages = [system, {"role": "user", "content": "How much is the blue mug?"}]
        first = chat(messages)
        messages += [
            {"role": "assistant", "content": first.choices[0].message.content},
            {"role": "user", "content": "No, I asked for the price in euros, not dollars."},
        ]
        chat(messages)

    for name, tool_result in (("tool_call", {"id": 42, "status": "shipped"}), ("tool_error", {"error": "order service unavailable"})):
        with _conversation(tracer, name):
            fake.push(Answer.tools(("lookup_order", {"id": 42})), Answer.text("Order 42: " + ("shipped." if name == "tool_call" else "I could not look it up.")))
            messages = [system, {"role": "user", "content": "Where is order 42?"}]
            first = chat(messages, tools=TOOLS)
            call = first.choices[0].message.tool_calls[0]
            messages += [
                {"role": "assistant", "content": None, "tool_calls": [{"id": call.id, "type": "function", "function": {"name": call.function.name, "arguments": call.function.arguments}}]},
                {"role": "tool", "tool_call_id": call.id, "content": json.dumps(tool_result)},
            ]
            chat(messages, tools=TOOLS)

    with _conversation(tracer, "timeout"):
        fake.push(Answer.slow(0.6))
        try:
            chat([system, {"role": "user", "content": "Cancel order 7 please."}], timeout=0.3)
        except openai.APITimeoutError:
            pass

    with _conversation(tracer, "http_500"):
        fake.push(Answer.error(500, message="upstream overloaded"))
        try:
            chat([system, {"role": "user", "content": "Do you ship to Norway?"}])
        except openai.InternalServerError:
            pass


def main(library: str, mode: str, out_dir: str) -> None:
    os.environ.update(MODES[library][mode])
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tracer_provider, logger_provider = _providers(out)
    _instrument(library, mode, tracer_provider, logger_provider)
    import openai

    from nightloop.testing import FakeOpenAIServer

    with FakeOpenAIServer() as fake:
        client = openai.OpenAI(base_url=fake.base_url, api_key="test-key", max_retries=0)
        client._nightloop_fake = fake
        run_scenarios(client, tracer_provider.get_tracer("support-agent"))
    tracer_provider.shutdown()
    logger_provider.shutdown()
    for path in out.glob("*.jsonl"):
        if path.stat().st_size == 0:
            path.unlink()  # this library wrote no log events in this mode


if __name__ == "__main__":
    main(*sys.argv[1:4])
