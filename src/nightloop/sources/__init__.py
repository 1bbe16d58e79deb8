"""Conversation sources: one module per format, a shared ``fetch()``, and the auto-detector.

``open_source("logs/")`` reads every ``*.jsonl``, ``*.jsonl.gz`` and ``*.json`` below a directory,
detecting each file's format from its first record; globs, single files and SQLite specs work too.
"""

from __future__ import annotations

import glob
import json
from collections.abc import Iterator, Sequence
from pathlib import Path

from nightloop.errors import SourceError
from nightloop.models import Quarantined
from nightloop.sources.base import Record, Source, Window, open_bytes, select
from nightloop.sources.jsonl import JsonlSource
from nightloop.sources.langfuse import LangfuseSource, is_langfuse_record
from nightloop.sources.langsmith import LangSmithSource, is_langsmith_run
from nightloop.sources.openai_chat import OpenAIChatSource
from nightloop.sources.otel import OtelSource
from nightloop.sources.phoenix import PhoenixSource, is_phoenix_row
from nightloop.sources.spans import SpanSource
from nightloop.sources.sqlite import SqliteSource

__all__ = [
    "FORMATS",
    "ChainSource",
    "JsonlSource",
    "LangSmithSource",
    "LangfuseSource",
    "OpenAIChatSource",
    "OtelSource",
    "PhoenixSource",
    "Source",
    "SpanSource",
    "SqliteSource",
    "UnrecognisedSource",
    "Window",
    "detect_format",
    "expand_spec",
    "open_source",
]

FORMATS: dict[str, type] = {
    "jsonl": JsonlSource,
    "openai": OpenAIChatSource,
    "sqlite": SqliteSource,
    "otel": OtelSource,
    "langfuse": LangfuseSource,
    "langsmith": LangSmithSource,
    "phoenix": PhoenixSource,
}
#: The record fields of canonical Conversation JSONL: a record with only these is a (broken) canonical one.
CANONICAL_FIELDS = {"id", "prompt_name", "prompt_version", "variables", "started_at", "ended_at", "messages", "outcome", "metadata"}
READABLE = "canonical conversation JSONL, OpenAI chat JSONL, OTLP JSON spans/logs, Langfuse, LangSmith or Phoenix exports"
DIRECTORY_PATTERNS = ("*.jsonl", "*.jsonl.gz", "*.json", "*.json.gz")
SQLITE_SUFFIXES = (".db", ".sqlite", ".sqlite3")
SQLITE_MAGIC = b"SQLite format 3\x00"
SNIFF_BYTES = 1 << 16
SNIFF_LINES = 20


class ChainSource:
    """Several sources read one after the other, with one window and one limit over all of them."""

    def __init__(self, sources: Sequence[Source]) -> None:
        self.sources = list(sources)

    def records(self) -> Iterator[Record]:
        for source in self.sources:
            yield from source.fetch()

    def fetch(self, window: Window | None = None, limit: int | None = None) -> Iterator[Record]:
        return select(self.records(), window, limit)

    def __repr__(self) -> str:
        return f"ChainSource({self.sources!r})"


def _is_sqlite_spec(text: str) -> bool:
    return text.startswith("sqlite:") or "::" in text


def expand_spec(spec: str | Path) -> list[Path]:
    """A file, glob or directory -> the files it names (sorted); nothing found -> SourceError."""
    text = str(spec)
    if any(ch in text for ch in "*?["):
        paths = sorted(Path(p) for p in glob.glob(text, recursive=True) if Path(p).is_file())
        if not paths:
            raise SourceError(f"No files match {text!r}; check the pattern (quote it so the shell does not expand it).")
        return paths
    path = Path(text)
    if path.is_dir():
        found = {p for pattern in DIRECTORY_PATTERNS for p in path.rglob(pattern) if p.is_file()}
        if not found:
            raise SourceError(f"Directory {path} holds no {', '.join(DIRECTORY_PATTERNS)} files; point at the files themselves.")
        return sorted(found)
    if not path.exists():
        raise SourceError(f"{path} does not exist; check the path, or pass a directory or a quoted glob.")
    if not path.is_file():
        raise SourceError(f"{path} is not a regular file; pass a file, a directory or a glob.")
    return [path]


def _head(path: Path) -> bytes:
    """The first bytes of a file's content (gunzipped)."""
    try:
        with open_bytes(path) as handle:  # a damaged .gz gives what it could decompress: the reader says the rest
            return handle.read(SNIFF_BYTES)
    except (OSError, EOFError) as exc:
        raise SourceError(f"Cannot read {path}: {exc}; check the file (is it a complete .gz?).") from exc


def detect_format(path: Path) -> str:
    """Sniff one file: SQLite by magic/suffix, OTLP by ``resourceSpans``/``resourceLogs``, else by its first record's shape.

    Returns a name of :data:`FORMATS`, or ``"unrecognised"`` (see :func:`unrecognised_reason`).
    """
    if path.suffix.lower() in SQLITE_SUFFIXES:
        return "sqlite"
    head = _head(path)
    if head.startswith(SQLITE_MAGIC):
        return "sqlite"
    if b'"resourceSpans"' in head or b'"resourceLogs"' in head:
        return "otel"
    if unrecognised_reason(path, head) is not None:
        return "unrecognised"
    for record in _first_records(head):
        if is_langsmith_run(record):
            return "langsmith"
        if is_phoenix_row(record):
            return "phoenix"
        if isinstance(record, dict) and "messages" in record:
            return "jsonl" if "id" in record else "openai"
        if is_langfuse_record(record):
            return "langfuse"
        break
    return "jsonl"  # the canonical reader quarantines each record with its reason


#: Shapes nightloop recognises but does not read, and what to export instead.
KNOWN_UNSUPPORTED: tuple[tuple[str, str], ...] = (
    ("resourceMetrics", "OTLP metrics export: metrics hold no conversations; export traces (resourceSpans) or logs (resourceLogs)"),
    ("dataset_id", "a dataset export (LangSmith examples or Langfuse dataset items): datasets hold no production conversations; export runs, traces or observations"),
    ("datasetId", "a Langfuse dataset export: datasets hold no production conversations; export traces or observations"),
)


def unrecognised_reason(path: Path, head: bytes | None = None) -> str | None:
    """Why a file is not one nightloop reads (naming the shape it looks like), or None when it may be one."""
    head = _head(path) if head is None else head
    if head.startswith(b"PAR1"):
        return "Parquet file (e.g. a Phoenix spans dataframe): write it as JSON Lines with df.to_json(path, orient='records', lines=True)"
    if head and b"\x00" in head[:512] and not head.lstrip()[:1] in (b"{", b"["):
        return "binary data (an OTLP protobuf dump?): export OTLP JSON, or point the exporter at `nightloop collect`"
    for record in _first_records(head):
        if not isinstance(record, dict):
            return None
        for key, reason in KNOWN_UNSUPPORTED:
            if key in record:
                return reason
        keys = set(record)
        if "messages" in keys or is_langsmith_run(record) or is_phoenix_row(record) or is_langfuse_record(record) or keys <= CANONICAL_FIELDS:
            return None
        shown = ", ".join(sorted(keys)[:8])
        return f"unrecognised record shape (keys: {shown}); nightloop reads {READABLE} (README, 'Sources')"
    return None


class UnrecognisedSource:
    """A file of a shape nightloop does not read: one quarantined record per file, with the reason naming the shape."""

    format = "unrecognised"

    def __init__(self, paths: Path | str | Sequence[Path | str]) -> None:
        self.paths = [Path(paths)] if isinstance(paths, str | Path) else [Path(p) for p in paths]

    def fetch(self, window: Window | None = None, limit: int | None = None) -> Iterator[Record]:
        for path in self.paths:
            reason = unrecognised_reason(path) or f"not a format nightloop reads; nightloop reads {READABLE}"
            yield Quarantined(source=str(path), locator=str(path), raw_excerpt=_head(path)[:200].decode("utf-8", "replace"), reason=reason)

    def __repr__(self) -> str:
        return f"UnrecognisedSource({[str(p) for p in self.paths]!r})"


def _first_records(head: bytes) -> Iterator[object]:
    """The first parseable records of a file's head: whole lines, or the first item of one JSON document."""
    try:
        document = json.loads(head)
    except (ValueError, RecursionError):
        document = None
    if isinstance(document, list):
        yield from document[:1]
        return
    if isinstance(document, dict):
        yield document
        return
    for line in head.splitlines()[:SNIFF_LINES]:
        if not line.strip():
            continue
        try:
            yield json.loads(line)
        except (ValueError, RecursionError):
            continue  # a bad first line is quarantined by the reader; look at the next one


def open_source(spec: str | Path, format: str | None = None) -> Source:
    """Open a source by spec (file, glob, directory, ``path.db[::table]``, ``sqlite:///…``); ``format`` overrides detection."""
    if format is not None and format not in FORMATS:
        from nightloop.plugins import registered

        # A ``nightloop.sources`` plug-in: a Source class (or factory) taking the expanded paths, like the built-ins.
        known = registered("sources")
        if format not in known:
            raise ValueError(f"Unknown source format {format!r}; valid formats: {', '.join(known)}")
        return known[format](expand_spec(spec))
    text = str(spec)
    if format == "sqlite" or (format is None and _is_sqlite_spec(text)):
        if _is_sqlite_spec(text):
            return SqliteSource(text)
        return _chain([SqliteSource(p) for p in expand_spec(spec)])
    paths = expand_spec(spec)
    if format is not None:
        return FORMATS[format](paths)
    by_format: dict[str, list[Path]] = {}
    for path in paths:
        by_format.setdefault(detect_format(path), []).append(path)
    sources = [SqliteSource(p) for p in by_format.pop("sqlite", [])]
    unrecognised = by_format.pop("unrecognised", [])
    sources += [FORMATS[name](group) for name, group in by_format.items()]
    if unrecognised:
        sources.append(UnrecognisedSource(unrecognised))
    return _chain(sources)


def _chain(sources: list[Source]) -> Source:
    return sources[0] if len(sources) == 1 else ChainSource(sources)
