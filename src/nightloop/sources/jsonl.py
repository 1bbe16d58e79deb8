"""Canonical Conversation JSONL files (DESIGN.md, "Conversation JSONL"), plain or gzipped.

A ``.json`` file whose first line is not a whole record is read as one JSON document instead: an
array of conversations (locator ``<file>:[<index>]``) or a single pretty-printed conversation.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from nightloop.models import Quarantined
from nightloop.sources.base import (
    NESTED_TOO_DEEPLY,
    LineTooLong,
    Record,
    Window,
    conversation_from_json,
    excerpt,
    guard_file,
    read_all_bytes,
    read_lines,
    select,
    unreadable_reason,
)

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
            yield from guard_file(_file_records(path, self.parse_line), str(path))

    def fetch(self, window: Window | None = None, limit: int | None = None) -> Iterator[Record]:
        return select(self.records(), window, limit)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({[str(p) for p in self.paths]!r})"


def _file_records(path: Path, parse: LineParser) -> Iterator[Record]:
    if _is_json_document(path):
        yield from _document_records(path, parse)
        return
    source = str(path)
    for number, line in read_lines(path):
        locator = f"{source}:{number}"
        if isinstance(line, LineTooLong):
            yield Quarantined(source=source, locator=locator, raw_excerpt="", reason=str(line))
            continue
        if isinstance(line, Exception):
            yield Quarantined(source=source, locator=locator, raw_excerpt="", reason=f"could not read the rest of the file: {line}")
            return
        stripped = line.strip()
        if not stripped:
            continue
        record = _parse_guarded(parse, stripped, source, locator)
        if isinstance(record, Quarantined) and not record.raw_excerpt:
            record.raw_excerpt = excerpt(stripped)
        yield record


def _parse_guarded(parse: LineParser, raw: bytes, source: str, locator: str) -> Record:
    """One line's record; whatever the line makes the parser raise quarantines that line only."""
    try:
        return parse(raw, source, locator)
    except RecursionError:
        return Quarantined(source=source, locator=locator, raw_excerpt=excerpt(raw), reason=NESTED_TOO_DEEPLY)
    except Exception as exc:  # noqa: BLE001 - one odd line must never cost the lines after it
        return Quarantined(source=source, locator=locator, raw_excerpt=excerpt(raw), reason=unreadable_reason(exc))


def _is_json_document(path: Path) -> bool:
    """A ``.json`` file that is one document (an array, or an object spread over lines), not JSON Lines."""
    if not path.name.endswith((".json", ".json.gz")):
        return False
    for _, line in read_lines(path):
        if isinstance(line, Exception):
            return False
        if line.strip():
            try:
                json.loads(line)
            except RecursionError:
                pass  # a whole (if too deep) value on one line: JSON Lines
            except ValueError:
                return line.lstrip().startswith((b"[", b"{"))
            return line.lstrip().startswith(b"[")
    return False


def _document_records(path: Path, parse: LineParser) -> Iterator[Record]:
    """Records of a whole-document ``.json`` file (read whole: such files are exports, not logs)."""
    source = str(path)
    try:
        data, damage = read_all_bytes(path)
        if damage is not None:
            raise ValueError(damage)
        document = json.loads(data)
    except RecursionError:
        yield Quarantined(source=source, locator=source, raw_excerpt="", reason=NESTED_TOO_DEEPLY)
        return
    except (OSError, EOFError, ValueError) as exc:
        reason = f"invalid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}" if isinstance(exc, json.JSONDecodeError) else f"could not read the file: {exc}"
        yield Quarantined(source=source, locator=source, raw_excerpt="", reason=reason)
        return
    items = enumerate(document) if isinstance(document, list) else [(None, document)]
    for index, item in items:
        locator = source if index is None else f"{source}:[{index}]"
        try:
            raw = json.dumps(item, ensure_ascii=False).encode("utf-8")
        except RecursionError:
            yield Quarantined(source=source, locator=locator, raw_excerpt="", reason=NESTED_TOO_DEEPLY)
            continue
        yield _parse_guarded(parse, raw, source, locator)
