"""OTel ingest benchmark: 100,000 GenAI spans (~20,000 conversations) as OTLP JSON lines -> store, classified.

Each conversation is the agent's own span (gen_ai.conversation.id, nightloop.prompt_name, variables) around
four chat spans whose gen_ai.input.messages repeat the history so far, exported 500 spans per line as the
collector's file exporter writes them. Spans are grouped in the store, so memory stays flat: the script
runs a tenth of the spans first in a child process and prints both peak RSS figures.
By default it measures one process (``--workers 0``: spans per CPU second, the load-independent figure) and 2 worker
processes (``--workers 2``: the wall clock on 2 cores, which on a shared machine is the load's), each at SPANS and at a
tenth of them in a fresh process, and prints spans/s, CPU time (the ingesting process's and the workers'), the wall time
of reading + storing spans (workers build and classify the conversations wholly in the chunk they read: one pass) and
of rebuilding + classifying (in one process, all of them), peak RSS (the ingesting process and the largest worker) and
the load average, after the interpreter and a machine-speed figure (a fixed Python loop's CPU time: the same code runs
faster on a CPython built with profile-guided optimisation, as distributions and python.org ship it, than on a plain
source build, and slower on a busy shared machine). Target: >= 20,000 spans/s on 2 cores. ``--workers N`` measures only N processes; ``--phases`` also
prints where the ingesting process's CPU time goes (the rebuild's stages only in one process).
Usage: python benchmarks/ingest_otel.py [SPANS] [--phases] [--workers N] [--repeat N]  (--help: what each means)
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from nightloop.ingest import ingest
from nightloop.sources import OtelSource
from nightloop.span_workers import auto_workers, workers_for
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
    """This process's peak RSS: VmHWM (ru_maxrss would carry over a parent's peak into a spawned child on Linux)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


#: The stages of a span ingest, timed by --phases: (module, attribute, label). Nested ones are inside the ones above them.
#: Rebuilding and classifying run in worker processes on a large ingest: time them in-process with --workers 0.
PHASES = (
    ("nightloop.span_ingest", "store_spans", "read the export + store spans"),
    ("nightloop.store.spans.SpanRepo", "add", "  of which: write spans (JSON + insert)"),
    ("nightloop.span_workers", "prebuild", "  of which: build + classify as read (one pass)"),
    ("nightloop.span_workers", "classify_conversation", "    of which: classify"),
    ("nightloop.store.spans.SpanRepo", "rekey", "rekey spans to conversations"),
    ("nightloop.store.spans.SpanRepo", "span_texts_of_many", "read spans back (query)"),
    ("nightloop.span_workers", "build_chunk", "spans -> Conversation (JSON, merge, validation)"),
    ("nightloop.store.conversations.ConversationRepo", "upsert", "store conversations + classify"),
    ("nightloop.ingest", "classify_conversation", "  of which: classify"),
)


def time_phases(in_process: bool) -> dict[str, float]:
    """Wrap each stage to add up its CPU time (process time: less sensitive to the machine's load than wall time).

    Stages that run in worker processes are timed only when they run in-process (a wrapper cannot be sent to a worker).
    """
    import importlib

    spent: dict[str, float] = {}
    for where, name, label in PHASES:
        if where == "nightloop.span_workers" and not in_process:
            continue
        module_name, _, cls = where.rpartition(".") if where.endswith(("SpanRepo", "ConversationRepo")) else (where, "", "")
        owner = getattr(importlib.import_module(module_name), cls) if cls else importlib.import_module(module_name)
        add_up(owner, name, label, spent, time.process_time)
    return spent


def add_up(owner: object, name: str, label: str, totals: dict[str, float], clock: Callable[[], float]) -> None:
    """Replace ``owner.name`` by a wrapper that adds the ``clock`` time of each call to ``totals[label]``."""
    inner = getattr(owner, name)

    def timed(*args, **kwargs):
        started = clock()
        try:
            return inner(*args, **kwargs)
        finally:
            totals[label] = totals.get(label, 0.0) + clock() - started

    setattr(owner, name, timed)


def cpu_seconds() -> tuple[float, float]:
    """(this process's CPU time, its finished children's: the ingest's worker processes)."""
    times = os.times()
    return times.user + times.system, times.children_user + times.children_system


def reap_fork_server() -> None:
    """Stop multiprocessing's fork server: the ingest's workers are its children, so until it ends their CPU time and
    peak RSS do not count among this process's children (its own start-up, importing nightloop once, then does too)."""
    from multiprocessing import forkserver

    forkserver._forkserver._stop()  # the standard library's own tests stop it this way


def children_max_rss_mb() -> float:
    """The largest peak RSS of this process's finished children (the ingest's worker processes), 0 without any."""
    return resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024


def time_walls() -> dict[str, float]:
    """Wrap the two stages of a span ingest to add up their wall time (with workers, CPU time would miss the workers')."""
    import nightloop.span_ingest as span_ingest

    walls: dict[str, float] = {}
    for name in ("store_spans", "remerge"):
        add_up(span_ingest, name, name, walls, time.perf_counter)
    return walls


def run(n_spans: int, phases: bool = False, workers: int | None = None) -> dict:
    spent = time_phases(in_process=workers == 0) if phases else {}
    walls = time_walls()
    with tempfile.TemporaryDirectory() as tmp:
        export = Path(tmp) / "spans.jsonl"
        conversations = write_export(export, n_spans)
        rss_before = max_rss_mb()
        with Store(Path(tmp) / "bench.db") as store:
            load_before = os.getloadavg()[0]
            chosen = (workers_for([OtelSource(export)], None) or auto_workers(conversations)) if workers is None else workers
            started, cpu_started = time.perf_counter(), cpu_seconds()
            stats = ingest(store, [str(export)], workers=workers)
            elapsed = time.perf_counter() - started
            reap_fork_server()
            cpu_ended = cpu_seconds()
            own_cpu, workers_cpu = cpu_ended[0] - cpu_started[0], cpu_ended[1] - cpu_started[1]
            cpu = own_cpu + workers_cpu
            load_after = os.getloadavg()[0]
            phase_seconds, wall_seconds = dict(spent), dict(walls)
            assert stats.ingested == conversations and stats.quarantined == 0, stats
            peak, workers_peak = max_rss_mb(), children_max_rss_mb()
            again_started = time.perf_counter()
            again = ingest(store, [str(export)], workers=workers)
            again_elapsed = time.perf_counter() - again_started
            assert again.ingested == again.updated == 0 and again.duplicates == conversations, again
        return {"workers": chosen, "spans": n_spans, "conversations": conversations, "seconds": elapsed, "spans_per_s": n_spans / elapsed,
                "cpu_seconds": cpu, "spans_per_cpu_s": n_spans / cpu, "own_cpu_seconds": own_cpu, "workers_cpu_seconds": workers_cpu,
                "load": (load_before, load_after), "phases": phase_seconds, "walls": wall_seconds, "peak_rss_mb": peak, "workers_peak_rss_mb": workers_peak,
                "rss_before_mb": rss_before, "failures": stats.failures, "resend_seconds": again_elapsed}


def measure(n_spans: int, workers: int | None, phases: bool = False) -> dict:
    """One run in a fresh process (so that its peak RSS, and its workers', are its own)."""
    command = [sys.executable, __file__, str(n_spans), "--child", *(["--workers", str(workers)] if workers is not None else []), *(["--phases"] if phases else [])]
    return json.loads(subprocess.run(command, capture_output=True, text=True, check=True).stdout)


def report(big: dict, small: dict, asked: int | None) -> None:
    how = ("one process" if big["workers"] == 0 else f"{big['workers']} worker processes") + (" (auto: from the idle cores)" if asked is None else f" (--workers {asked})")
    print(f"{how}: {big['seconds']:.1f} s wall = {big['spans_per_s']:,.0f} spans/s (target >= 20,000), load average {big['load'][0]:.1f} -> {big['load'][1]:.1f}; "
          f"CPU {big['cpu_seconds']:.1f} s = {big['spans_per_cpu_s']:,.0f} spans per CPU second (the ingesting process {big['own_cpu_seconds']:.1f} s, "
          f"the workers {big['workers_cpu_seconds']:.1f} s)")
    walls = big["walls"]
    print(f"  wall: reading + storing spans (with workers: and the conversations they built and classified as they read) {walls.get('store_spans', 0):.1f} s, "
          f"rebuilding + classifying conversations {walls.get('remerge', 0):.1f} s")
    workers_rss = f", the largest worker {big['workers_peak_rss_mb']:.0f} MB vs {small['workers_peak_rss_mb']:.0f} MB" if big["workers_peak_rss_mb"] else ""
    print(f"  peak RSS: the ingesting process {big['peak_rss_mb']:.0f} MB for {big['spans']} spans vs {small['peak_rss_mb']:.0f} MB for {small['spans']}{workers_rss}")
    print(f"  re-sending the same export: {big['resend_seconds']:.1f} s, 0 new, 0 updated, {big['conversations']} duplicates")
    for label, seconds in ((label, big["phases"][label]) for _, _, label in PHASES if label in big["phases"]):
        print(f"    {label:<48} {seconds:6.1f} CPU s  {seconds / big['cpu_seconds']:6.1%}  {seconds / big['conversations'] * 1e6:5.0f} us/conversation")


def machine_speed() -> float:
    """CPU seconds of a fixed pure-Python loop (10 million additions): the same figure on a slower interpreter build or a
    busier shared machine is larger, so runs on different days or interpreters can be compared."""
    started = time.process_time()
    total = 0
    for i in range(10_000_000):
        total += i
    return time.process_time() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("spans", nargs="?", type=int, default=100_000, help="how many spans (default 100000)")
    parser.add_argument("--workers", type=int, help="measure only this many worker processes (0: one process); default 0 and 2")
    parser.add_argument("--phases", action="store_true", help="also print where the ingesting process's CPU time goes")
    parser.add_argument("--repeat", type=int, default=1, help="measure SPANS this many times per worker count (fresh processes) and "
                        "print the median and the best spans/s: on a shared machine one run is the load's (default 1)")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)  # one measurement, as JSON (measure())
    args = parser.parse_args()
    n_spans, workers, phases = args.spans, args.workers, args.phases
    if args.child:
        print(json.dumps(run(n_spans, phases=phases, workers=workers)))
        return
    print(f"{n_spans} OTel GenAI spans ({n_spans // SPANS_PER_CONVERSATION} conversations) as OTLP JSON lines, ingested + classified, "
          f"on {os.cpu_count()} cores")
    print(f"interpreter: {platform.python_implementation()} {platform.python_version()} ({sys.executable}); "
          f"machine speed: a 10-million-step Python loop takes {machine_speed():.2f} CPU s")
    big = {}
    for asked in ([workers] if workers is not None else [0, 2]):
        small = measure(n_spans // 10, asked)
        runs = []
        for _ in range(max(1, args.repeat)):
            big = measure(n_spans, asked, phases)
            report(big, small, asked)
            runs.append(big["spans_per_s"])
        if len(runs) > 1:
            print(f"  {len(runs)} runs: median {statistics.median(runs):,.0f} spans/s, best {max(runs):,.0f}, worst {min(runs):,.0f}")
    print(f"failures found: {big['failures']}")


if __name__ == "__main__":
    main()
