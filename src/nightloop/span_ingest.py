"""Ingest spans: store them (once per trace and span id), then re-merge every conversation they touched.

One ingest groups the spans of all its span sources, and of earlier ingests: spans are grouped in the
store, so a conversation whose spans arrive in several files, arguments or ingests (rotated collector
files, a conversation crossing midnight, ``nightloop collect``) is merged again, reclassified and counted
as updated. A re-sent batch adds no span and changes nothing. Memory stays flat: spans go to the store in
batches and conversations are rebuilt one at a time.

An OTLP file of one export per line goes in one pass (:class:`OnePass`): whoever reads a chunk of it (a worker
process, or the ingesting process itself) also builds and classifies the conversations wholly in it, stored with the
chunk's spans as each chunk comes back, so only conversations whose spans lie in several chunks, files or ingests are
rebuilt after the spans are in.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from nightloop.config import ClassifyConfig
from nightloop.conversation_rows import StoredForm
from nightloop.models import Conversation, IngestStats, Quarantined
from nightloop.sources.base import Window, in_window
from nightloop.sources.spans import Span, SpanSource
from nightloop.span_workers import Building, SpanRows, Workers, chunk_builder, fewer_collections, read_spans, workers_for

if TYPE_CHECKING:
    from nightloop.store import Store
    from nightloop.store.conversations import OnBatch

__all__ = ["Classifying", "OnePass", "ingest_span_items", "ingest_spans", "remerge", "store_spans"]

SPAN_BATCH = 2000
CONVERSATION_BATCH = 500


def _trace_of(span: Span) -> str:
    return span.trace_id or f"span:{span.span_id}"


def store_spans(
    store: Store, items: Iterable[Span | Quarantined | SpanRows], stats: IngestStats, one_pass: OnePass | None = None
) -> tuple[set[str], set[str], dict[str, set[str]]]:
    """Write spans (and rows of spans read by workers, with the conversations they built: ``one_pass``) in batches, and
    quarantined records; returns (traces seen, traces that got new spans, those of them wholly in one batch with their
    conversations: no rekey needed)."""
    seen: set[str] = set()
    changed: set[str] = set()
    whole: dict[str, set[str]] = {}
    batch: list[Span] = []
    quarantined: list[Quarantined] = []

    def added(result: tuple[set[str], int, dict[str, set[str]]]) -> None:
        traces, _, wholly = result
        for trace in traces & changed:  # a trace that got spans before, in an earlier batch
            whole.pop(trace, None)
        whole.update((trace, conversations) for trace, conversations in wholly.items() if trace not in changed)
        changed.update(traces)

    def add(spans: list[Span]) -> None:
        result = store.spans.add(spans)
        if one_pass is not None:
            one_pass.spoil(result)
        added(result)

    for item in items:
        if isinstance(item, Quarantined):
            quarantined.append(item)
            if len(quarantined) >= SPAN_BATCH:
                store.conversations.add_quarantined(quarantined, stats)
                quarantined = []
            continue
        if isinstance(item, SpanRows):
            seen.update(trace or f"span:{span}" for trace, span, *_ in item.rows)
            added(one_pass.add(item) if one_pass is not None else store.spans.add_rows(item.rows))
            continue
        seen.add(_trace_of(item))
        batch.append(item)
        if len(batch) >= SPAN_BATCH:
            add(batch)
            batch = []
    if batch:
        add(batch)
    store.conversations.add_quarantined(quarantined, stats)
    return seen, changed, whole


class OnePass:
    """Stores the conversations workers built while reading (``SpanRows.built``) with their chunk's spans, so that most
    conversations need no rebuild after the spans are in.

    One is stored, as new, when its spans are all in its chunk (its traces wholly there) and none was stored before; if
    a later batch brings more of its spans (a trace across chunks, late spans in another file of the ingest), it is
    spoiled: :meth:`settle` withdraws it, uncounted, and the rebuild stores it from all its spans, as it would have.
    """

    def __init__(self, store: Store, stats: IngestStats, on_batch: OnBatch | None, building: Building | None) -> None:
        self.store, self.stats, self.on_batch, self.building = store, stats, on_batch, building
        self.written: dict[str, str] = {}  # conversation key -> its storage id
        self.spoiled: set[str] = set()

    def add(self, item: SpanRows) -> tuple[set[str], int, dict[str, set[str]]]:
        """Store a chunk's spans and, in the same transaction, those of its conversations that are wholly in it."""
        store = self.store
        with store.transaction():
            keys = [key for key, _, _ in item.built]
            before = store.spans.conversations_with_spans(keys) if keys else set()
            result = store.spans.add_rows(item.rows)
            self.spoil(result)
            wholly = result[2]
            built = [(key, traces, form) for key, traces, form in item.built if key not in before and all(t in wholly for t in traces)]
            stored = store.conversations.where_and_when([form.id for _, _, form in built]).keys() if built else set()
            built = [(key, traces, form) for key, traces, form in built if form.id not in stored]
            if built:
                store.conversations.upsert([form for _, _, form in built], self.stats, self.on_batch)
        self.written.update((key, form.id) for key, _, form in built)
        if self.building is not None:
            self.building.on = result[1] > 0  # a chunk of spans all stored already: the export is being re-sent
        return result

    def spoil(self, result: tuple[set[str], int, dict[str, set[str]]]) -> None:
        """A batch stored after a written conversation brings another trace of it (more spans of one of its traces
        make that trace's conversations the rekey's: :meth:`settle`)."""
        self.spoiled.update(key for keys in result[2].values() for key in keys if key in self.written)

    def settle(self, rekeyed: set[str]) -> set[str]:
        """Withdraw the spoiled conversations and those the rekey touched (a trace of theirs got spans in a later
        batch, or a span moved in or out); returns the rest: done."""
        spoiled = self.spoiled | (rekeyed & self.written.keys())
        if spoiled:
            self.store.conversations.withdraw([self.written[key] for key in spoiled], self.stats)
        return self.written.keys() - spoiled


def ingest_spans(
    store: Store,
    sources: Iterable[SpanSource],
    stats: IngestStats,
    on_batch: OnBatch | None = None,
    window: Window | None = None,
    limit: int | None = None,
    classifying: Classifying | None = None,
) -> IngestStats:
    """Spans of ``sources`` into the store; conversations they touch are (re-)merged and reclassified via ``on_batch``.

    A large ingest reads its OTLP files and rebuilds its conversations in worker processes (``span_workers``).
    """
    sources = list(sources)
    # Workers build the conversations of each chunk they read, unless only some are wanted (a window, a limit).
    building = Building(classifying.config) if classifying is not None and window is None and limit is None else None
    with Workers(workers_for(sources, classifying.workers) if classifying is not None else 0) as workers:
        items = (item for source in sources for item in read_spans(source, workers, building))
        return ingest_span_items(store, items, stats, on_batch, window, limit, classifying, workers if workers.executor else None, building)


@dataclass
class Classifying:
    """Lets workers classify what they rebuild (``span_workers``): the rule detectors' config; ``workers``: None = auto.
    What they find comes with each conversation (``StoredForm.failures``) to ``on_batch`` (``ingest.classify_batch``)."""

    config: ClassifyConfig
    workers: int | None = None


@fewer_collections()
def ingest_span_items(
    store: Store,
    items: Iterable[Span | Quarantined],
    stats: IngestStats,
    on_batch: OnBatch | None = None,
    window: Window | None = None,
    limit: int | None = None,
    classifying: Classifying | None = None,
    workers: Workers | None = None,
    building: Building | None = None,
) -> IngestStats:
    """Spans (and quarantined records) from anywhere, e.g. ``nightloop collect``'s requests, into the store.

    ``workers``: the ingest's running worker processes, to rebuild in (default: :func:`span_workers.chunk_builder` decides);
    ``building``: whether they build conversations as they read (:class:`OnePass`)."""
    one_pass = OnePass(store, stats, on_batch, building)
    seen, changed, whole = store_spans(store, items, stats, one_pass)
    touched, moved = store.spans.rekey(changed - whole.keys())  # a trace wholly in one batch is keyed already
    done = one_pass.settle(touched)
    touched.update(conversation for conversations in whole.values() for conversation in conversations)
    touched -= done
    stats.duplicates += len(store.spans.conversations_of(seen - changed) - touched - done)
    renamed = {after for after, befores in moved.items() if any(store.conversations.exists(before) for before in befores)}
    remerge(store, sorted(touched), stats, on_batch, window, limit, renamed, classifying, workers)
    return stats


def _in_chunks(store: Store, conversation_ids: list[str]) -> Iterator[list[tuple[str, list[str]]]]:
    for start in range(0, len(conversation_ids), CONVERSATION_BATCH):
        yield list(store.spans.span_texts_of_many(conversation_ids[start : start + CONVERSATION_BATCH]).items())


def remerge(
    store: Store,
    conversation_ids: Iterable[str],
    stats: IngestStats,
    on_batch: OnBatch | None = None,
    window: Window | None = None,
    limit: int | None = None,
    renamed: set[str] | None = None,
    classifying: Classifying | None = None,
    workers: Workers | None = None,
) -> None:
    """Rebuild each conversation from all its stored spans; one left without spans (re-keyed away) is deleted.

    A conversation in ``renamed`` was stored under another id (its trace's) until a later span named it: it is
    counted as updated, not as new. With ``classifying``, a large rebuild runs in worker processes.
    """
    conversation_ids = list(conversation_ids)
    count = workers or (classifying.workers if classifying else 0)
    builder = chunk_builder(len(conversation_ids), classifying.config if classifying else None, count)
    pending: list[Conversation | StoredForm] = []
    quarantined: list[Quarantined] = []
    gone: list[str] = []
    kept = 0
    for built in builder.build(_in_chunks(store, conversation_ids)):
        for conversation_id, record in built:
            if record is None:
                gone.append(conversation_id)
            elif isinstance(record, Quarantined):
                quarantined.append(record)
            elif in_window(record, window) and (limit is None or kept < limit):
                kept += 1
                pending.append(record)
        if len(pending) >= CONVERSATION_BATCH:
            store.conversations.upsert(pending, stats, on_batch, renamed)
            pending = []
    if pending:
        store.conversations.upsert(pending, stats, on_batch, renamed)
    store.conversations.add_quarantined(quarantined, stats)
    if gone:
        store.conversations.delete(gone)
