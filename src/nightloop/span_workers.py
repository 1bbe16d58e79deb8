"""Conversations rebuilt from their stored spans, and classified, in worker processes: a large span ingest uses every core.

Merging spans and running the rule detectors is most of a span ingest's CPU time and needs nothing but the spans, so
it runs in a process pool (spawned: no state is inherited) while the ingesting process stays the store's only writer
(SQLite has one). Workers get each chunk's spans as their stored JSON and send back each conversation under its
storage id with the failures the detectors found. Small ingests, and machines with no idle core, build in-process; a pool
that cannot start or breaks (a daemonic parent, a killed worker) costs only speed: that chunk is built in-process.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from typing import Protocol

from nightloop.classify import classify_conversation
from nightloop.config import ClassifyConfig
from nightloop.models import Conversation, Failure
from nightloop.redact import with_storage_id
from nightloop.sources.base import Record
from nightloop.sources.span_merge import build_conversation
from nightloop.sources.spans import Span

__all__ = ["Built", "ChunkBuilder", "InProcess", "WorkerPool", "build_chunk", "auto_workers", "build_chunk_to_send", "chunk_builder"]

log = logging.getLogger(__name__)

#: Below this many conversations to rebuild, starting workers costs more than it saves (an interpreter each).
MIN_CONVERSATIONS = 10_000
#: Chunks in flight per worker: enough to keep each busy while the store writes, few enough to keep memory flat.
AHEAD_PER_WORKER = 2

#: One conversation rebuilt: (conversation id, its record or None when no span is left, its failures or None when
#: the ingesting process classifies it).
Built = tuple[str, Record | None, list[Failure] | None]
#: What a worker sends back: a conversation as its JSON (``model_dump_json``), anything else as it is.
Sent = tuple[str, Record | str | None, list[Failure] | None]
#: A chunk to rebuild: each conversation id with its stored spans' JSON.
Chunk = list[tuple[str, list[str]]]


class ChunkBuilder(Protocol):
    """Turns chunks of stored spans into conversations, in the order the chunks come; never raises for a bad span."""

    def build(self, chunks: Iterable[Chunk]) -> Iterator[list[Built]]: ...


def build_chunk(chunk: Chunk, config: ClassifyConfig | None = None) -> list[Built]:
    """Rebuild each conversation of ``chunk``; with ``config``, also put it under its storage id and classify it."""
    built: list[Built] = []
    for conversation_id, texts in chunk:
        if not texts:
            built.append((conversation_id, None, None))
            continue
        record = build_conversation(conversation_id, sorted((Span.from_json(t) for t in texts), key=lambda s: (s.start_ns, s.span_id)))
        failures = None
        if config is not None and isinstance(record, Conversation):
            record = with_storage_id(record)
            try:
                failures = classify_conversation(record, config)
            except Exception:  # noqa: BLE001 - left to the ingesting process, which records the error
                failures = None
        built.append((conversation_id, record, failures))
    return built


class InProcess:
    """Builds in the ingesting process; conversations are classified when they are stored."""

    def build(self, chunks: Iterable[Chunk]) -> Iterator[list[Built]]:
        for chunk in chunks:
            yield build_chunk(chunk)


class WorkerPool:
    """Builds and classifies in ``workers`` spawned processes, a few chunks ahead, results in chunk order."""

    def __init__(self, config: ClassifyConfig, workers: int) -> None:
        self.config = config
        self.workers = workers

    def build(self, chunks: Iterable[Chunk]) -> Iterator[list[Built]]:
        try:
            executor = ProcessPoolExecutor(self.workers, mp_context=multiprocessing.get_context("spawn"))
        except Exception as exc:  # noqa: BLE001 - e.g. no semaphores: build in-process
            log.warning("span ingest workers could not start (%s); building in-process", exc)
            yield from InProcess().build(chunks)
            return
        with executor:
            pending: deque[tuple[Chunk, Future[list[Built]] | None]] = deque()
            for chunk in chunks:
                pending.append((chunk, self._submit(executor, chunk)))
                if len(pending) >= self.workers * AHEAD_PER_WORKER:
                    yield self._result(*pending.popleft())
            while pending:
                yield self._result(*pending.popleft())

    def _submit(self, executor: ProcessPoolExecutor, chunk: Chunk) -> Future[list[Sent]] | None:
        try:
            return executor.submit(build_chunk_to_send, chunk, self.config)
        except Exception as exc:  # noqa: BLE001 - a broken pool, or a daemonic parent that may not have children
            log.warning("span ingest workers unavailable (%s); building in-process", exc)
            return None

    def _result(self, chunk: Chunk, future: Future[list[Sent]] | None) -> list[Built]:
        if future is not None:
            try:
                sent = future.result()
            except Exception as exc:  # noqa: BLE001 - a killed worker costs only this chunk's speed
                log.warning("a span ingest worker failed (%s); building its chunk in-process", exc)
            else:
                return [(cid, Conversation.model_validate_json(record) if isinstance(record, str) else record, failures) for cid, record, failures in sent]
        return build_chunk(chunk)


def build_chunk_to_send(chunk: Chunk, config: ClassifyConfig) -> list[Sent]:
    """:func:`build_chunk` in a worker: each conversation as its JSON (a third of the cost of pickling the model)."""
    return [(cid, record.model_dump_json() if isinstance(record, Conversation) else record, failures) for cid, record, failures in build_chunk(chunk, config)]


def auto_workers(conversations: int) -> int:
    """How many worker processes a rebuild of ``conversations`` gets by default: one per idle core, up to 2, and none
    for a small rebuild or on a busy machine (measured: with every core taken, workers add 20-30 % CPU and no speed)."""
    cores = os.cpu_count() or 1
    idle = cores - os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0
    return min(2, cores, int(idle + 0.5)) if conversations >= MIN_CONVERSATIONS and cores > 1 and idle >= 1.5 else 0


def chunk_builder(conversations: int, config: ClassifyConfig | None, workers: int | None = None) -> ChunkBuilder:
    """A pool when there are enough conversations, idle cores and a classifier config (the rule detectors), else in-process.

    ``workers``: how many processes (0 = in-process); ``None`` = :func:`auto_workers`.
    """
    if workers is None:
        workers = auto_workers(conversations)
    if config is None or workers < 1:
        return InProcess()
    return WorkerPool(config, workers)
