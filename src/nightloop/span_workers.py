"""Conversations rebuilt from their stored spans, and classified, in worker processes: a large span ingest uses every core.

Merging spans and running the rule detectors is most of a span ingest's CPU time and needs nothing but the spans, so
it runs in a process pool (forked while the ingesting process has one thread, else from a fresh interpreter, see :func:`worker_context`) while the
ingesting process stays the store's only writer (SQLite has one). Workers reading an OTLP file build the conversations
wholly in their chunk of it as they read (:func:`prebuild`); for the rest, they get each chunk's spans as their stored JSON
and send back each conversation under its storage id, as the store writes it, with the failures the detectors found (``conversation_rows.StoredForm``: the
ingesting process neither validates it again nor serialises it). Small ingests, and machines with no idle core, build in-process; a pool
that cannot start or breaks (a daemonic parent, a killed worker) costs only speed: that chunk is built in-process.
"""

from __future__ import annotations

import gc
import importlib
import logging
import multiprocessing
import os
import sys
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, TypeVar

from nightloop.classify import classify_conversation, make_detectors
from nightloop.config import ClassifyConfig
from nightloop.conversation_rows import StoredForm, stored_form
from nightloop.models import Conversation, Quarantined
from nightloop.redact import with_storage_id
from nightloop.sources.base import LineTooLong, Record, guard_file, read_lines
from nightloop.sources.otel import OtelSource, line_spans, no_genai_content, one_export_per_line
from nightloop.sources.span_merge import build_conversation_json
from nightloop.sources.spans import Span, SpanRow, SpanSource, span_rows

__all__ = ["Building", "Built", "Prebuilt", "prebuild", "ChunkBuilder", "InProcess", "WorkerPool", "Workers", "build_chunk", "auto_workers", "chunk_builder", "idle_workers", "workers_for", "read_chunk", "read_spans", "SpanRows", "worker_context", "fewer_collections"]

log = logging.getLogger(__name__)

T = TypeVar("T")

#: Below this many conversations to rebuild, starting workers costs more than it saves (an interpreter each).
MIN_CONVERSATIONS = 10_000
#: A parallel read sends a file's lines to the workers in chunks of about this many bytes (two exports of 500 spans).
READ_CHUNK_BYTES = 1 << 20
#: Below this many bytes of OTLP files, an ingest reads them in-process (starting workers would cost more than it saves).
MIN_PARALLEL_BYTES = 32 << 20
#: Chunks in flight per worker: enough to keep each busy while the store writes, few enough to keep memory flat.
AHEAD_PER_WORKER = 2
#: The cyclic garbage collector's first threshold while spans are ingested (CPython's default: 700 allocations).
#: Parsing spans creates containers by the thousand, next to none in a cycle, and each collection walks all the young
#: ones still alive (a chunk's spans): at the default, collecting took a fifth of a span ingest's CPU time (measured).
GC_THRESHOLD = 10_000
#: What every worker imports anyway, imported once before the workers start (classifying imports the recognisers on
#: its first quoted evidence: 0.1 CPU s in each worker of each ingest, measured).
PRELOAD = ("nightloop.recognisers",)

#: One conversation rebuilt: (conversation id, its record or None when no span is left). A worker's conversation is its
#: StoredForm (with the failures found, None if the detectors raised: the ingesting process classifies it and records why).
Built = tuple[str, Record | StoredForm | None]
#: A chunk to rebuild: each conversation id with its stored spans' JSON.
Chunk = list[tuple[str, list[str]]]


#: A conversation a worker built from one chunk's spans alone: (its key, the traces it has spans of, its stored form).
Prebuilt = tuple[str, frozenset[str], StoredForm]


@dataclass
class SpanRows:
    """Spans a worker read, as the rows to store (``store.spans.span_rows``), and the conversations it built from them
    (``built``: each one whose spans are all in this chunk, if none is stored already: the ingest decides, see
    ``span_ingest.OnePass``)."""

    rows: list[SpanRow]
    built: list[Prebuilt] = field(default_factory=list)


@dataclass
class Building:
    """Whether workers build conversations while they read (one ingest's, updated as its chunks are stored: a re-sent
    export, whose spans are all stored already, is not built again); ``config``: the rule detectors'."""

    config: ClassifyConfig
    on: bool = True


class ChunkBuilder(Protocol):
    """Turns chunks of stored spans into conversations, in the order the chunks come; never raises for a bad span."""

    def build(self, chunks: Iterable[Chunk]) -> Iterator[list[Built]]: ...


def build_chunk(chunk: Chunk, config: ClassifyConfig | None = None) -> list[Built]:
    """Rebuild each conversation of ``chunk``; with ``config``, also classify it and send it as its :class:`StoredForm`."""
    built: list[Built] = []
    detectors = make_detectors(config.detectors) if config is not None else None
    for conversation_id, texts in chunk:
        spans = [Span.from_json(t) for t in texts]
        built.append((conversation_id, _build(conversation_id, spans, config, detectors) if spans else None))
    return built


def _build(conversation_id: str, spans: list[Span], config: ClassifyConfig | None, detectors: list | None) -> Record | StoredForm:
    """One conversation from all its spans; with ``config``, classified, as its :class:`StoredForm`."""
    record, dumped = build_conversation_json(conversation_id, spans)  # which puts them in time order
    if config is None or not isinstance(record, Conversation):
        return record
    stored = with_storage_id(record)
    try:
        failures = classify_conversation(stored, config, detectors)
    except Exception:  # noqa: BLE001 - left to the ingesting process, which records the error
        failures = None
    return stored_form(stored, failures, dumped if stored is record else None, under_storage_id=True)  # its JSON, written to check it


def prebuild(spans: list[Span], rows: list[SpanRow], config: ClassifyConfig) -> list[Prebuilt]:
    """The conversations of a chunk's spans (keyed as ``rows`` key them), built and classified; none for a conversation
    with a log record, a span without a trace id or a span sent twice in the chunk (they take the rebuild's path), nor
    one that does not build (its quarantine note comes from the rebuild)."""
    groups: dict[str, list[Span]] = {}
    odd: set[str] = set()
    for span, row in zip(spans, rows, strict=True):
        conversation = row[2]
        if span.kind != "span" or not row[0]:
            odd.add(conversation)
        if (group := groups.get(conversation)) is None:
            groups[conversation] = [span]
        else:
            group.append(span)
    sent = [(row[0], row[1]) for row in rows]
    if len(set(sent)) < len(sent):  # a span sent twice in the chunk (seldom): which conversations
        seen: set[tuple[str, str]] = set()
        for pair, row in zip(sent, rows):
            if pair in seen:
                odd.add(row[2])
            seen.add(pair)
    detectors = make_detectors(config.detectors)
    built: list[Prebuilt] = []
    for conversation, group in groups.items():
        if conversation not in odd and isinstance(form := _build(conversation, group, config, detectors), StoredForm):
            built.append((conversation, frozenset(s.trace_id for s in group), form))
    return built


@contextmanager
def fewer_collections() -> Iterator[None]:
    """Collect cyclic garbage every :data:`GC_THRESHOLD` allocations instead of CPython's default while spans are
    ingested (as a decorator: during each call); the thresholds before are restored after."""
    before = gc.get_threshold()
    _collect_less_often()
    try:
        yield
    finally:
        gc.set_threshold(*before)


def _collect_less_often() -> None:
    """Raise the collector's first threshold to :data:`GC_THRESHOLD` (a collector switched off, threshold 0, stays off).
    A worker process does it as it starts: it only ever ingests spans."""
    first, *rest = gc.get_threshold()
    if first:
        gc.set_threshold(max(GC_THRESHOLD, first), *rest)


class InProcess:
    """Builds in the ingesting process; conversations are classified when they are stored."""

    def build(self, chunks: Iterable[Chunk]) -> Iterator[list[Built]]:
        for chunk in chunks:
            yield build_chunk(chunk)


class Workers:
    """Spawned worker processes one ingest shares for reading its span files and rebuilding its conversations.

    ``count`` processes (a pool that cannot start leaves ``executor`` None: everything runs in-process). Use as a
    context manager: the processes end with it (a fork server they are forked from stays for the next ingest).
    """

    def __init__(self, count: int) -> None:
        self.count = count
        self.executor: ProcessPoolExecutor | None = None

    def __enter__(self) -> Workers:
        if self.count > 0:
            try:
                self.executor = self._start(worker_context())
            except Exception as exc:  # noqa: BLE001 - e.g. no semaphores: build in-process
                log.warning("span ingest workers could not start (%s); working in-process", exc)
        return self

    def _start(self, context: multiprocessing.context.BaseContext) -> ProcessPoolExecutor:
        """The pool, its processes started; forked ones with this process's objects frozen out of their collector."""
        if context.get_start_method() != "fork":
            return ProcessPoolExecutor(self.count, mp_context=context, initializer=_collect_less_often)
        # A collection in a forked worker would walk every object it inherited, writing to (so copying) their pages:
        # frozen before the fork (the pool forks its processes on the first submit), the workers' collector skips them.
        for name in PRELOAD:
            importlib.import_module(name)
        gc.freeze()
        try:
            executor = ProcessPoolExecutor(self.count, mp_context=context, initializer=_collect_less_often)
            executor.submit(os.getpid)
        finally:
            gc.unfreeze()
        return executor

    def __exit__(self, error: type[BaseException] | None, *_: object) -> None:
        if self.executor is not None:
            self.executor.shutdown(cancel_futures=error is not None)  # an interrupted ingest does not wait for chunks ahead

    def map(self, function: Callable[..., T], items: Iterable[tuple], ahead: int | None = None) -> Iterator[T]:
        """``function(*item)`` for each item, in the workers (a few items ahead), results in order.

        An item a worker cannot take or finish (a broken pool, a daemonic parent, a killed worker) runs in-process.
        """
        if self.executor is None:
            yield from (function(*item) for item in items)
            return
        pending: deque[tuple[tuple, Future[T] | None]] = deque()
        for item in items:
            pending.append((item, self._submit(function, item)))
            if len(pending) >= (ahead or self.count * AHEAD_PER_WORKER):
                yield self._result(function, *pending.popleft())
        while pending:
            yield self._result(function, *pending.popleft())

    def _submit(self, function: Callable[..., T], item: tuple) -> Future[T] | None:
        try:
            return self.executor.submit(function, *item)  # type: ignore[union-attr]
        except Exception as exc:  # noqa: BLE001 - a broken pool, or a daemonic parent that may not have children
            log.warning("span ingest workers unavailable (%s); working in-process", exc)
            return None

    @staticmethod
    def _result(function: Callable[..., T], item: tuple, future: Future[T] | None) -> T:
        if future is not None:
            try:
                return future.result()
            except Exception as exc:  # noqa: BLE001 - a killed worker costs only this item's speed
                log.warning("a span ingest worker failed (%s); doing its part in-process", exc)
        return function(*item)


def worker_context() -> multiprocessing.context.BaseContext:
    """How worker processes start: on Linux, forked from the ingesting process while it runs no other Python thread;
    else from a fresh interpreter (a fork server where the platform has one, else spawn).

    Forking costs next to nothing (copy-on-write), where a fresh interpreter imports nightloop again before any worker
    starts (0.5-0.8 CPU s an ingest, measured). It is safe without another Python thread: none can hold a lock the copy
    would find taken (C libraries' own threads see to themselves: OpenBLAS, which numpy loads and whose pool is a
    second thread here, stops its pool before a fork). A worker never touches the store connection it inherits and
    ends with ``os._exit`` (as multiprocessing's workers do), so no finaliser closes it. With other threads
    (``nightloop collect``, the UI, a Prefect run) a fork server starts: it imports nightloop (and the main module)
    once and forks each worker from itself. Either way, :data:`PRELOAD` is imported before the first worker starts.
    """
    if sys.platform.startswith("linux") and threading.active_count() == 1:  # macOS's system libraries are not fork-safe
        return multiprocessing.get_context("fork")
    if "forkserver" not in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("spawn")
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["__main__", __name__, *PRELOAD])
    return context


class WorkerPool:
    """Builds and classifies in worker processes (its own ``workers`` of them, or an ingest's shared :class:`Workers`)."""

    def __init__(self, config: ClassifyConfig, workers: int | Workers) -> None:
        self.config = config
        self.workers = workers

    def build(self, chunks: Iterable[Chunk]) -> Iterator[list[Built]]:
        if isinstance(self.workers, Workers):
            yield from self._build(self.workers, chunks)
            return
        with Workers(self.workers) as workers:
            yield from self._build(workers, chunks)

    def _build(self, workers: Workers, chunks: Iterable[Chunk]) -> Iterator[list[Built]]:
        if workers.executor is None:  # no pool: classified when stored, without the JSON round trip
            yield from InProcess().build(chunks)
            return
        yield from workers.map(build_chunk, ((chunk, self.config) for chunk in chunks))


def idle_workers() -> int:
    """One worker process per idle core, up to 2; none on a busy machine (measured: with every core taken, workers add
    20-30 % CPU and no speed) or a single core."""
    cores = os.cpu_count() or 1
    idle = cores - os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0
    return min(2, cores, int(idle + 0.5)) if cores > 1 and idle >= 1.5 else 0


def auto_workers(conversations: int) -> int:
    """How many worker processes a rebuild of ``conversations`` gets by default (none for a small rebuild)."""
    return idle_workers() if conversations >= MIN_CONVERSATIONS else 0


def read_spans(source: SpanSource, workers: Workers, building: Building | None = None) -> Iterator[Span | Quarantined | SpanRows]:
    """A source's spans; the lines of an OTLP file of one export per line are parsed in ``workers``, a chunk at a time
    (with ``building``, while ``building.on``, the workers also build the conversations wholly in each chunk).

    Without worker processes such a file is read the same way when ``building``: in-process, a chunk's conversations
    are then built from the spans just parsed instead of read back from the store and parsed again (8 % less CPU)."""
    if (workers.executor is None and building is None) or not isinstance(source, OtelSource):
        yield from source.spans()
        return
    for path in source.paths:
        if one_export_per_line(path):
            yield from guard_file(_read_file(path, workers, building), str(path))
        else:
            yield from OtelSource(path).spans()


def _read_file(path: Path, workers: Workers, building: Building | None) -> Iterator[Span | Quarantined | SpanRows]:
    source = str(path)
    problems: list[Quarantined] = []
    seen = kept = 0
    # ``building.on`` is read as each chunk is sent: a few chunks ahead of the one being stored
    chunks = ((source, chunk, building.config if building is not None and building.on else None) for chunk in _line_chunks(path, problems))
    for rows, built, quarantined, file_seen in workers.map(read_chunk, chunks):
        seen, kept = seen + file_seen, kept + len(rows)
        yield SpanRows(rows, built)
        yield from quarantined
    yield from problems
    if seen and not kept:
        yield no_genai_content(source, seen)


def _line_chunks(path: Path, problems: list[Quarantined]) -> Iterator[list[tuple[int, bytes]]]:
    """The file's lines with their numbers, about READ_CHUNK_BYTES at a time; a line too long, or a read error (which
    ends the file), goes to ``problems`` as the in-process reader words it."""
    source = str(path)
    chunk: list[tuple[int, bytes]] = []
    size = 0
    for number, line in read_lines(path):
        if isinstance(line, Exception):
            too_long = isinstance(line, LineTooLong)
            problems.append(Quarantined(source=source, locator=f"{source}:{number}", reason=str(line) if too_long else f"could not read the rest of the file: {line}"))
            if too_long:
                continue
            break
        chunk.append((number, line))
        size += len(line)
        if size >= READ_CHUNK_BYTES:
            yield chunk
            chunk, size = [], 0
    if chunk:
        yield chunk


def read_chunk(
    source: str, lines: list[tuple[int, bytes]], config: ClassifyConfig | None = None
) -> tuple[list[SpanRow], list[Prebuilt], list[Quarantined], int]:
    """In a worker: lines of an OTLP file -> (its spans as rows to store, with ``config`` the conversations wholly in
    them built and classified (:func:`prebuild`), quarantined lines, how many spans were read)."""
    seen = [0]
    spans: list[Span] = []
    quarantined: list[Quarantined] = []
    for number, line in lines:
        for item in line_spans(source, number, line, seen):
            (quarantined if isinstance(item, Quarantined) else spans).append(item)
    rows = span_rows(spans)
    return rows, prebuild(spans, rows, config) if config is not None else [], quarantined, seen[0]


def chunk_builder(conversations: int, config: ClassifyConfig | None, workers: int | Workers | None = None) -> ChunkBuilder:
    """A pool when there are enough conversations, idle cores and a classifier config (the rule detectors), else in-process.

    ``workers``: how many processes (0 = in-process), or the ingest's running :class:`Workers`; ``None`` = :func:`auto_workers`.
    """
    if workers is None:
        workers = auto_workers(conversations)
    if config is None or (workers < 1 if isinstance(workers, int) else workers.executor is None):
        return InProcess()
    return WorkerPool(config, workers)


def workers_for(sources: Iterable[SpanSource], workers: int | None) -> int:
    """How many worker processes an ingest of ``sources`` starts up front (``workers`` None: from the size of its OTLP
    files and the idle cores; 0 leaves the rebuild to decide by its own size, see :func:`auto_workers`)."""
    if workers is not None:
        return workers
    size = sum(_size(path) for source in sources if isinstance(source, OtelSource) for path in source.paths)
    return idle_workers() if size >= MIN_PARALLEL_BYTES else 0


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0
