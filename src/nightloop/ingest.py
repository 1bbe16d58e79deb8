"""Ingest: stream sources into the store and classify each new conversation, batch by batch.

Conversations and their failures are written in the same transaction, so an interrupted ingest
never leaves a stored conversation unclassified; re-running it only counts duplicates.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from itertools import chain
from pathlib import Path
from typing import TYPE_CHECKING

from nightloop.classify import classify_conversation, make_detectors, rules_version
from nightloop.config import ClassifyConfig
from nightloop.conversation_rows import StoredForm
from nightloop.models import Conversation, Failure, IngestStats
from nightloop.sources import ChainSource, Source, SpanSource, Window, open_source
from nightloop.span_ingest import Classifying, ingest_spans

if TYPE_CHECKING:
    from nightloop.store import Store
    from nightloop.store.conversations import OnBatch

__all__ = ["Classifier", "RuleClassifier", "classify_batch", "default_classifier", "ingest", "open_sources"]

log = logging.getLogger(__name__)

Classifier = Callable[[Conversation], list[Failure]]
#: Called after each batch with the running stats (a failing observer is logged, never raised).
OnProgress = Callable[[IngestStats], None]

MAX_ERRORS_KEPT = 20


def open_sources(specs: Sequence[str | Path], format: str | None = None) -> list[Source]:
    """Open every spec up front, so a missing file fails before anything is written (SourceError)."""
    return [open_source(spec, format) for spec in specs]


@dataclass
class RuleClassifier:
    """The rule detectors of :mod:`nightloop.classify` with ``config``; what they find is stored under ``rules``
    (their version), so the night's classify stage reuses it instead of classifying again."""

    config: ClassifyConfig
    rules: str = field(init=False)

    def __post_init__(self) -> None:
        self.rules = rules_version(self.config)
        self._detectors = make_detectors(self.config.detectors)

    def __call__(self, conversation: Conversation) -> list[Failure]:
        return classify_conversation(conversation, self.config, self._detectors)


def default_classifier(config: ClassifyConfig) -> Classifier:
    """The rule detectors of :mod:`nightloop.classify`, with ``config``."""
    return RuleClassifier(config)


def ingest(
    store: Store,
    specs: Sequence[str | Path],
    *,
    format: str | None = None,
    classify_config: ClassifyConfig | None = None,
    on_progress: OnProgress | None = None,
    window: Window | None = None,
    limit: int | None = None,
    classifier: Classifier | None = None,
    batch_size: int = 1000,
    workers: int | None = None,
) -> IngestStats:
    """Read ``specs`` into ``store``, classifying each new conversation; returns what happened.

    ``limit`` caps conversations per spec; ``classifier`` replaces the rule classifier (tests, custom detectors);
    ``workers``: processes that rebuild and classify span conversations (None: one per core, up to 2, for large ingests).
    """
    sources = [leaf for source in open_sources(specs, format) for leaf in _leaves(source)]
    span_sources = [source for source in sources if isinstance(source, SpanSource)]
    classify = classifier or default_classifier(classify_config or ClassifyConfig())
    records = chain.from_iterable(source.fetch(window, limit) for source in sources if source not in span_sources)

    # The rule detectors (not a custom classifier) may run in span_workers' processes, beside the merging.
    classifying = Classifying(classify_config or ClassifyConfig(), workers=workers) if classifier is None else None
    on_batch = classify_batch(store, classify, on_progress)
    stats = store.conversations.add(records, batch_size=batch_size, on_batch=on_batch)
    if span_sources:  # grouped across every span source of this ingest, and earlier ones (span_ingest.py)
        ingest_spans(store, span_sources, stats, on_batch, window, limit, classifying)
    return stats


def classify_batch(store: Store, classify: Classifier, on_progress: OnProgress | None = None) -> OnBatch:
    """The callback each stored batch runs in its transaction: classify its new (or re-merged) conversations.

    A conversation a span worker classified (``StoredForm.failures``: ``classify``'s detectors, see ``ingest``) keeps them.
    """

    rules = classify.rules if isinstance(classify, RuleClassifier) else None

    def on_batch(new: list[Conversation | StoredForm], stats: IngestStats) -> None:
        found = {c.id: _failures_of(classify, c, stats) for c in new}
        store.conversations.save_failures_many(found, rules=rules)
        for failures in found.values():
            for failure in failures:
                stats.failures[failure.kind] = stats.failures.get(failure.kind, 0) + 1
        if on_progress is not None:
            _notify(on_progress, stats)

    return on_batch


def _leaves(source: Source) -> list[Source]:
    return [leaf for inner in source.sources for leaf in _leaves(inner)] if isinstance(source, ChainSource) else [source]


def _failures_of(classify: Classifier, item: Conversation | StoredForm, stats: IngestStats) -> list[Failure]:
    if isinstance(item, StoredForm):
        if item.failures is not None:
            return item.failures
        item = item.conversation()
    return _classify_safely(classify, item, stats)


def _classify_safely(classify: Classifier, conversation: Conversation, stats: IngestStats) -> list[Failure]:
    """One conversation the classifier chokes on is recorded, not fatal."""
    try:
        return list(classify(conversation))
    except Exception as exc:  # noqa: BLE001 - a detector bug must not abort the ingest
        log.warning("classifier failed on %s: %s", conversation.id, exc)
        if len(stats.errors) < MAX_ERRORS_KEPT:
            stats.errors.append(f"classify {conversation.id}: {type(exc).__name__}: {exc}")
        return []


def _notify(on_progress: OnProgress, stats: IngestStats) -> None:
    try:
        on_progress(stats)
    except Exception as exc:  # noqa: BLE001 - observers can't crash the run
        log.warning("progress callback failed: %s", exc)

