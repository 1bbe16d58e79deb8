"""OTel ingest benchmark: 100,000 GenAI spans (~20,000 conversations) as OTLP JSON lines -> store, classified.

Each conversation is the agent's own span (gen_ai.conversation.id, nightloop.prompt_name, variables) around
four chat spans whose gen_ai.input.messages repeat the history so far, exported 500 spans per line as the
collector's file exporter writes them. Spans are grouped in the store, so memory stays flat: the script
runs a tenth of the spans first in a child process and prints both peak RSS figures.
Prints spans/s and peak RSS. Target: >= 20,000 spans/s on 2 cores.
Usage: python benchmarks/ingest_otel.py [SPANS]
"""

from __future__ import annotations

import json
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from nightloop.ingest import ingest
from nightloop.store import Store

QUESTIONS = (
    "Where is my order {order}? It was supposed to arrive yesterday.",
    "How much does the blue mug cost?",
    "Can I change the delivery address of {order}?",
    "Do you ship to Norway?",
    "I want a refund for order {order}, the lid is broken.",
    "Which payment methods do you take?",
)
ANSWERS = ("It ships tomorrow.", "The blue mug costs 11 EUR.", "Done: the new address is saved.", "Yes, we ship to all of Europe.",
           "I have opened a refund request for you.", "Cards, PayPal and bank transfer.")
SPANS_PER_CONVERSATION = 5
SPANS_PER_LINE = 500
T0 = 1_795_000_000 * 10**9


def _value(value: object) -> dict:
    if isinstance(value, bool):
        return {"boolValue": value}
    if isinstance(value, int):
        return {"intValue": str(value)}
    return {"stringValue": value if isinstance(value, str) else json.dumps(value)}


def _span(trace: str, span: str, parent: str, start: int, attributes: dict, error: str | None = None) -> dict:
    out = {"traceId": trace, "spanId": span, "parentSpanId": parent, "name": "chat gpt-4o-mini" if parent else "conversation",
           "startTimeUnixNano": str(start), "endTimeUnixNano": str(start + 900_000_000),
           "attributes": [{"key": k, "value": _value(v)} for k, v in attributes.items()]}
    if error:
        out["status"] = {"code": 2, "message": error}
    return out


def conversation_spans(i: int, rng: random.Random) -> list[dict]:
    trace = f"{i:032x}"
    start = T0 + i * 10**10
    parts = lambda text: [{"type": "text", "content": text}]  # noqa: E731
    history = [{"role": "system", "parts": parts("You are the support assistant of Acme. Quote prices in EUR.")}]
    spans = []
    kind = rng.choice(("ok", "ok", "correction", "provider"))
    questions = rng.sample(QUESTIONS, SPANS_PER_CONVERSATION - 1)
    for turn in range(SPANS_PER_CONVERSATION - 1):
        text = "No, I asked for the price in euros." if kind == "correction" and turn == 2 else questions[turn].format(order=rng.randint(1000, 99999))
        history.append({"role": "user", "parts": parts(text)})
        answer = [{"role": "assistant", "parts": parts(rng.choice(ANSWERS)), "finish_reason": "stop"}]
        failed = kind == "provider" and turn == SPANS_PER_CONVERSATION - 2
        attributes = {"gen_ai.operation.name": "chat", "gen_ai.request.model": "gpt-4o-mini", "gen_ai.input.messages": json.dumps(history),
                      "gen_ai.usage.input_tokens": 40 + turn * 20, "gen_ai.usage.output_tokens": 9}
        if failed:
            attributes["error.type"] = "openai.InternalServerError"
        else:
            attributes["gen_ai.output.messages"] = json.dumps(answer)
            history += answer
        spans.append(_span(trace, f"{i:08x}{turn + 1:08x}", f"{i:08x}{0:08x}", start + turn * 10**9, attributes,
                           "Error code: 500" if failed else None))
    spans.append(_span(trace, f"{i:08x}{0:08x}", "", start, {"gen_ai.conversation.id": f"conv-{i:06d}", "nightloop.prompt_name": "support_agent",
                                                             "nightloop.variables": json.dumps({"shop": "Acme", "channel": "web"})}))
    return spans


def write_export(path: Path, n_spans: int, seed: int = 0) -> int:
    rng = random.Random(seed)
    conversations = n_spans // SPANS_PER_CONVERSATION
    batch: list[dict] = []
    with path.open("w", encoding="utf-8") as handle:
        for i in range(conversations):
            batch += conversation_spans(i, rng)
            if len(batch) >= SPANS_PER_LINE or i == conversations - 1:
                resource_spans = [{"resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "support-agent"}}]},
                                   "scopeSpans": [{"scope": {"name": "bench"}, "spans": batch}]}]
                handle.write(json.dumps({"resourceSpans": resource_spans}) + "\n")
                batch = []
    return conversations


def max_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run(n_spans: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        export = Path(tmp) / "spans.jsonl"
        conversations = write_export(export, n_spans)
        rss_before = max_rss_mb()
        with Store(Path(tmp) / "bench.db") as store:
            started = time.perf_counter()
            stats = ingest(store, [str(export)])
            elapsed = time.perf_counter() - started
            assert stats.ingested == conversations and stats.quarantined == 0, stats
            again_started = time.perf_counter()
            again = ingest(store, [str(export)])
            again_elapsed = time.perf_counter() - again_started
            assert again.ingested == again.updated == 0 and again.duplicates == conversations, again
        return {"spans": n_spans, "conversations": conversations, "seconds": elapsed, "spans_per_s": n_spans / elapsed,
                "peak_rss_mb": max_rss_mb(), "rss_before_mb": rss_before, "failures": stats.failures, "resend_seconds": again_elapsed,
                "export_mb": 0.0}


def main() -> None:
    n_spans = int(sys.argv[1]) if len(sys.argv) > 1 and sys.argv[1] != "--child" else 100_000
    if "--child" in sys.argv:
        print(json.dumps(run(n_spans)))
        return
    small = json.loads(subprocess.run([sys.executable, __file__, str(n_spans // 10), "--child"], capture_output=True, text=True, check=True).stdout)
    big = run(n_spans)
    print(f"{big['spans']} spans ({big['conversations']} conversations) ingested + classified in {big['seconds']:.1f} s: "
          f"{big['spans_per_s']:,.0f} spans/s (target >= 20,000)")
    print(f"peak RSS {big['peak_rss_mb']:.0f} MB for {big['spans']} spans vs {small['peak_rss_mb']:.0f} MB for {small['spans']} (flat memory: spans are grouped in the store)")
    print(f"re-sending the same export: {big['resend_seconds']:.1f} s, 0 new, 0 updated, {big['conversations']} duplicates")
    print(f"failures found: {big['failures']}")


if __name__ == "__main__":
    main()
