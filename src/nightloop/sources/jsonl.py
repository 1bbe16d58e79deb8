"""Canonical Conversation JSONL files (DESIGN.md, "Conversation JSONL"), plain or gzipped."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from nightloop.models import Quarantined
from nightloop.sources.base import Record, Window, conversation_from_json, excerpt, read_lines, select

__all__ = ["JsonlSource", "LineParser"]

#: ``(raw_line, source, locator) -> Conversation | Quarantined``
LineParser = Callable[[bytes, str, str], Record]


class JsonlSource:
    """One conversation per line; every unreadable line is quarantined as ``<file>:<line>``."""

    format = "jsonl"

    def __init__(self, paths: Path | str | Sequence[Path | str]) -> None:
        self.paths = [Path(paths)] if isinstance(paths, str | Path) else [Path(p) for p in paths]

    def parse_line(self, raw: bytes, source: str, locator: str) -> Record:
        return conversation_from_json(raw, source, locator)

    def records(self) -> Iterator[Record]:
        for path in self.paths:
            yield from _file_records(path, self.parse_line)

    def fetch(self, window: Window | None = None, limit: int | None = None) -> Iterator[Record]:
        return select(self.records(), window, limit)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({[str(p) for p in self.paths]!r})"


def _file_records(path: Path, parse: LineParser) -> Iterator[Record]:
    source = str(path)
    for number, line in read_lines(path):
        locator = f"{source}:{number}"
        if isinstance(line, Exception):
            yield Quarantined(source=source, locator=locator, raw_excerpt="", reason=f"could not read the rest of the file: {line}")
            return
        stripped = line.strip()
        if not stripped:
            continue
        record = parse(stripped, source, locator)
        if isinstance(record, Quarantined) and not record.raw_excerpt:
            record.raw_excerpt = excerpt(stripped)
        yield record
