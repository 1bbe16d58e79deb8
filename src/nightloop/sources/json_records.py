"""JSON objects of an export file: a JSON document (an object, or an array of objects) or JSON Lines, plain or gzipped.

Used by the platform-export readers (Langfuse, LangSmith, Phoenix), which get ``(locator, object)`` pairs
and quarantines for what is not JSON, and build spans from the objects.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from nightloop.models import Quarantined
from nightloop.sources import json_codec
from nightloop.sources.base import NESTED_TOO_DEEPLY, LineTooLong, excerpt, read_lines

__all__ = ["JSON_DOCUMENT_MAX_BYTES", "json_lines", "json_objects"]

#: A whole-document export above this is read line by line instead (JSON Lines is the streaming form).
JSON_DOCUMENT_MAX_BYTES = 256 * 1024 * 1024


def _opener(path: Path):
    return gzip.open(path, "rb") if path.name.endswith(".gz") else open(path, "rb")  # noqa: SIM115


def _starts_document(path: Path) -> bool:
    """A file whose first line is not a whole JSON value is one (pretty-printed) document."""
    with _opener(path) as handle:
        first = handle.readline(1 << 20).strip()
    if first.startswith(b"\xef\xbb\xbf"):
        first = first[3:]
    if first.startswith(b"["):
        return True
    try:
        json.loads(first)
    except (ValueError, RecursionError):
        return bool(first.startswith(b"{"))
    return False


def json_objects(path: Path) -> Iterator[tuple[str, Any] | Quarantined]:
    """Each JSON value of the file with its locator (``file:line`` or ``file:[index]``); bad ones quarantined."""
    source = str(path)
    try:
        as_document = _starts_document(path)
    except (OSError, EOFError) as exc:
        yield Quarantined(source=source, locator=source, reason=f"could not read the file: {exc}")
        return
    if as_document:
        yield from _document(path)
        return
    yield from json_lines(path)


def json_lines(path: Path, loads: Callable[[bytes], Any] = json_codec.loads) -> Iterator[tuple[str, Any] | Quarantined]:
    """Each line of a JSON Lines file as a JSON value with its locator (``file:line``), streamed; bad lines quarantined.
    ``loads`` reads a line (it raises ValueError for a bad one)."""
    source = str(path)
    for number, line in read_lines(path):
        locator = f"{source}:{number}"
        if isinstance(line, LineTooLong):
            yield Quarantined(source=source, locator=locator, reason=str(line))
            continue
        if isinstance(line, Exception):
            yield Quarantined(source=source, locator=locator, reason=f"could not read the rest of the file: {line}")
            return
        if not line.strip():
            continue
        try:
            yield locator, loads(line)
        except RecursionError:
            yield Quarantined(source=source, locator=locator, raw_excerpt=excerpt(line), reason=NESTED_TOO_DEEPLY)
        except ValueError as exc:
            yield Quarantined(source=source, locator=locator, raw_excerpt=excerpt(line), reason=f"invalid JSON: {exc}")


def _document(path: Path) -> Iterator[tuple[str, Any] | Quarantined]:
    source = str(path)
    try:
        with _opener(path) as handle:
            data = handle.read(JSON_DOCUMENT_MAX_BYTES + 1)
        if len(data) > JSON_DOCUMENT_MAX_BYTES:
            yield Quarantined(source=source, locator=source, reason="JSON document over 256 MB; export it as JSON Lines instead")
            return
        document = json.loads(data.decode("utf-8-sig"))
    except RecursionError:
        yield Quarantined(source=source, locator=source, reason=NESTED_TOO_DEEPLY)
        return
    except (OSError, EOFError, ValueError) as exc:
        yield Quarantined(source=source, locator=source, reason=f"invalid JSON document: {exc}")
        return
    if isinstance(document, list):
        for index, item in enumerate(document):
            yield f"{source}:[{index}]", item
    else:
        yield source, document
