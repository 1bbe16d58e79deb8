"""What every conversation source shares: the Protocol, windows and limits, line reading, plain-words reasons."""

from __future__ import annotations

import io
import json
import zlib
from collections.abc import Iterable, Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from pydantic import ValidationError

from nightloop.models import Conversation, Quarantined

__all__ = [
    "EXCERPT_CHARS",
    "MAX_LINE_BYTES",
    "MAX_NESTING",
    "NESTED_TOO_DEEPLY",
    "ROLES",
    "GzipDamage",
    "LineTooLong",
    "Record",
    "Source",
    "Window",
    "as_utc",
    "conversation_from_json",
    "conversation_and_json",
    "conversation_from_object",
    "excerpt",
    "explain_invalid",
    "guard_file",
    "in_window",
    "open_bytes",
    "read_all_bytes",
    "read_lines",
    "select",
    "too_deep",
    "unreadable_reason",
]

Window = tuple[datetime | None, datetime | None]
Record = Conversation | Quarantined

EXCERPT_CHARS = 200
ROLES = ("system", "user", "assistant", "tool")
#: A longer line is skipped (to its end, without holding it in memory) and quarantined.
MAX_LINE_BYTES = 32 * 1024 * 1024
#: Deeper JSON cannot be stored (pydantic refuses to serialise it) and recursion would crash the reader.
MAX_NESTING = 200
NESTED_TOO_DEEPLY = f"nested too deeply (more than {MAX_NESTING} levels of JSON)"
SKIP_CHUNK_BYTES = 1 << 20


class LineTooLong(ValueError):
    """A line over :data:`MAX_LINE_BYTES`: the reader skipped it and goes on with the next one."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"line longer than {_size_words(limit)}; split the record or drop it")


def _size_words(size: int) -> str:
    return f"{size // (1024 * 1024)} MB" if size >= 1024 * 1024 else f"{size} bytes"


@runtime_checkable
class Source(Protocol):
    """A place conversations come from.

    ``fetch`` streams every readable record as a :class:`Conversation` and every unreadable one as a
    :class:`Quarantined` with a plain-words reason; it never raises for a bad record (only
    :class:`~nightloop.errors.SourceError` when the source cannot be opened at all). ``window`` is
    ``(start, end)``: conversations ending in ``[start, end)`` (either side may be ``None``; a
    conversation with no timestamp is always kept). ``limit`` caps the conversations yielded.
    """

    def fetch(self, window: Window | None = None, limit: int | None = None) -> Iterator[Record]: ...


def as_utc(moment: datetime) -> datetime:
    """Aware UTC datetime; a naive one is taken to be UTC already."""
    if moment.tzinfo is None:
        return moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(timezone.utc)


def in_window(conversation: Conversation, window: Window | None) -> bool:
    if window is None:
        return True
    moment = conversation.ended_at or conversation.started_at
    if moment is None:
        return True
    start, end = window
    moment = as_utc(moment)
    if start is not None and moment < as_utc(start):
        return False
    return not (end is not None and moment >= as_utc(end))


def select(records: Iterable[Record], window: Window | None, limit: int | None) -> Iterator[Record]:
    """Apply a window and a limit (on conversations; quarantined records pass through until the limit)."""
    if limit is not None and limit <= 0:
        return
    kept = 0
    for record in records:
        if isinstance(record, Conversation):
            if not in_window(record, window):
                continue
            kept += 1
        yield record
        if limit is not None and kept >= limit:
            return


def excerpt(raw: bytes | str) -> str:
    text = raw.decode("utf-8", errors="replace") if isinstance(raw, bytes) else raw
    return text[:EXCERPT_CHARS]


def read_lines(path: Path) -> Iterator[tuple[int, bytes | Exception]]:
    """Yield ``(line_number, raw_line)`` lazily, gunzipping ``.gz``.

    A line longer than :data:`MAX_LINE_BYTES` is yielded as a :class:`LineTooLong` and reading goes on;
    any other exception is a read error, yielded once, then the file ends. A damaged ``.gz`` keeps every
    line before the damage: the error comes after them (and after the incomplete last line, if any).
    """
    limit = MAX_LINE_BYTES  # read once: a caller (or test) may change the module constant between files
    number = 0
    try:
        with open_bytes(path) as handle:
            while line := handle.readline(limit + 1):
                number += 1
                if len(line) > limit and not line.endswith(b"\n"):
                    _skip_to_line_end(handle)
                    yield number, LineTooLong(limit)
                    continue
                yield number, (line[3:] if number == 1 and line.startswith(b"\xef\xbb\xbf") else line)
            problem = getattr(handle.raw, "problem", None)
            if problem is not None:
                yield number + 1, GzipDamage(problem)
    except (OSError, EOFError, ValueError) as exc:  # unreadable file
        yield number + 1, exc


def open_bytes(path: Path) -> Any:
    """A binary reader of a file's content, gunzipping ``.gz`` tolerantly (:class:`TolerantGunzip`)."""
    if path.name.endswith(".gz"):
        return io.BufferedReader(TolerantGunzip(path), buffer_size=TolerantGunzip.CHUNK)
    return open(path, "rb")  # noqa: SIM115 - the caller's with-block closes it


def read_all_bytes(path: Path) -> tuple[bytes, str | None]:
    """A whole file's content (gunzipped) and, for a damaged ``.gz``, what was wrong after the readable part."""
    if not path.name.endswith(".gz"):
        return path.read_bytes(), None
    with io.BufferedReader(TolerantGunzip(path)) as handle:
        data = handle.read()
        return data, handle.raw.problem


class GzipDamage(ValueError):
    """A ``.gz`` file is damaged after the lines already read: they are kept, the rest is quarantined."""


class TolerantGunzip(io.RawIOBase):
    """Gunzip that hands out every byte it could decompress and notes the damage instead of raising.

    ``gzip.open`` raises on a truncated member, a bad CRC or trailing garbage and loses the lines still in
    its buffer; here the readable part is read and :attr:`problem` says, in plain words, what came after it.
    """

    CHUNK = 64 * 1024

    def __init__(self, path: Path) -> None:
        super().__init__()
        self._file = open(path, "rb")  # noqa: SIM115 - closed in close()
        self._inflate = zlib.decompressobj(wbits=31)
        self._pending = b""
        self._done = False
        self._members = 0
        self.problem: str | None = None

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        while not self._pending and not self._done:
            self._pending = self._next_output()
        size = min(len(buffer), len(self._pending))
        buffer[:size] = self._pending[:size]
        self._pending = self._pending[size:]
        return size

    def _next_output(self) -> bytes:
        data = self._inflate.unused_data if self._inflate.eof else b""
        if self._inflate.eof:
            self._members += 1
            if not data:
                data = self._file.read(self.CHUNK)
            if not data:
                self._done = True
                return b""
            if not data.startswith(b"\x1f\x8b"):
                rest = len(data) + len(self._file.read())
                return self._stop(f"{rest} bytes after the end of the gzip data were ignored")
            self._inflate = zlib.decompressobj(wbits=31)
        else:
            data = self._file.read(self.CHUNK)
            if not data:
                return self._stop("the gzip file is truncated (it ends before its compressed data does)")
        return self._feed(data)

    def _feed(self, data: bytes) -> bytes:
        before = self._inflate.copy()
        try:
            return self._inflate.decompress(data)
        except zlib.error:
            pass
        # Replay the chunk byte by byte to keep whatever decompresses before the damage.
        self._inflate, kept = before, bytearray()
        for index in range(len(data)):
            try:
                kept += self._inflate.decompress(data[index : index + 1])
            except zlib.error as exc:
                self._stop(f"the gzip data is damaged ({_zlib_words(exc)})")
                return bytes(kept)
        return bytes(kept)

    def _stop(self, problem: str) -> bytes:
        self.problem = problem
        self._done = True
        return b""

    def close(self) -> None:
        self._file.close()
        super().close()


def _zlib_words(exc: zlib.error) -> str:
    text = str(exc)
    if "incorrect data check" in text:
        return "bad CRC: the last part may be wrong"
    return text.removeprefix("Error -3 while decompressing data: ")


def _skip_to_line_end(handle: Any) -> None:
    while chunk := handle.readline(SKIP_CHUNK_BYTES):
        if chunk.endswith(b"\n"):
            return


def too_deep(value: Any, limit: int = MAX_NESTING) -> bool:
    """Whether a parsed JSON value nests more than ``limit`` levels (checked level by level, without recursion)."""
    containers = (dict, list, tuple)
    level = [value] if isinstance(value, containers) else []
    depth = 1
    while level:
        if depth > limit:
            return True
        level = [child for item in level for child in (item.values() if isinstance(item, dict) else item) if isinstance(child, containers)]
        depth += 1
    return False


def guard_file(records: Iterator[Record], source: str) -> Iterator[Record]:
    """One file's records; an unexpected error ends that file with a quarantined note instead of the whole ingest."""
    try:
        yield from records
    except RecursionError:
        yield Quarantined(source=source, locator=f"{source}:rest", reason=f"could not read the rest of the file: {NESTED_TOO_DEEPLY}")
    except Exception as exc:  # noqa: BLE001 - a reader bug on one file must not stop the other files
        yield Quarantined(source=source, locator=f"{source}:rest", reason=f"could not read the rest of the file: {type(exc).__name__}: {exc}")


def _loc_words(loc: tuple[Any, ...]) -> str:
    """('messages', 1, 'content') -> "message 2 field 'content'"."""
    if len(loc) >= 2 and loc[0] == "messages" and isinstance(loc[1], int):
        rest = ".".join(str(p) for p in loc[2:])
        return f"message {loc[1] + 1}" + (f" field '{rest}'" if rest else "")
    return "field '" + ".".join(str(p) for p in loc) + "'"


def _structure_problem(obj: Any) -> str | None:
    """The first structural problem of a would-be canonical conversation, in plain words."""
    if not isinstance(obj, dict):
        return f"expected a JSON object, got {type(obj).__name__}"
    for field in ("id", "messages"):
        if obj.get(field) in (None, ""):
            return f"missing required field '{field}'"
    messages = obj["messages"]
    if not isinstance(messages, list):
        return f"field 'messages' must be a list, got {type(messages).__name__}"
    if not messages:
        return "field 'messages' is empty"
    for number, message in enumerate(messages, start=1):
        if not isinstance(message, dict):
            return f"message {number} is not an object"
        role = message.get("role")
        if role is None:
            return f"message {number} has no role"
        if role not in ROLES:
            return f"message {number} has unknown role {role!r}"
    return None


def explain_invalid(obj: Any, exc: ValidationError | None = None) -> str:
    """Why ``obj`` is not a canonical conversation, in plain words."""
    problem = _structure_problem(obj)
    if problem is not None or exc is None:
        return problem or "not a conversation"
    errors = exc.errors()
    first = errors[0]
    reason = f"{_loc_words(tuple(first['loc']))}: {first['msg']}"
    if len(errors) > 1:
        reason += f" (and {len(errors) - 1} more problems)"
    return reason


def conversation_from_object(obj: Any, source: str, locator: str, raw: bytes | str) -> Record:
    """A parsed JSON value -> Conversation, or Quarantined with the reason."""
    return conversation_and_json(obj, source, locator, raw)[0]


def conversation_and_json(obj: Any, source: str, locator: str, raw: bytes | str) -> tuple[Record, str | None]:
    """:func:`conversation_from_object` and the conversation's JSON (written anyway, to check it; None if quarantined).

    A structural problem (:func:`_structure_problem`) is looked for only when the conversation does not validate or
    nests too deeply: pydantic refuses every one of them, and the reason is worded as when it is looked for first."""
    if too_deep(obj):
        return Quarantined(source=source, locator=locator, raw_excerpt=excerpt(raw), reason=_structure_problem(obj) or NESTED_TOO_DEEPLY), None
    try:
        conversation = Conversation.model_validate(obj)
        dumped = conversation.model_dump_json()  # what the store will write: a lone surrogate only fails here
    except ValidationError as exc:
        return Quarantined(source=source, locator=locator, raw_excerpt=excerpt(raw), reason=explain_invalid(obj, exc)), None
    except Exception as exc:  # noqa: BLE001 - pydantic's serialisation error wraps the UnicodeEncodeError
        return Quarantined(source=source, locator=locator, raw_excerpt=excerpt(raw), reason=unreadable_reason(exc)), None
    return conversation, dumped


#: Python refuses to turn longer digit strings into numbers (``sys.set_int_max_str_digits``).
_DIGITS_LIMIT_WORDS = "Exceeds the limit"


def unreadable_reason(exc: BaseException) -> str:
    """Plain words for what one record made a reader (or the store's encoder) raise."""
    text = str(exc)
    if isinstance(exc, RecursionError):
        return NESTED_TOO_DEEPLY
    if "surrogate" in text:
        return "text holds a lone surrogate (half of an emoji, such as \\ud83d), which is not valid Unicode"
    if _DIGITS_LIMIT_WORDS in text and "digits" in text:
        return "a number has more than 4300 digits"
    if isinstance(exc, OverflowError):
        return f"a value is out of range ({text})"
    return f"could not be read ({type(exc).__name__}: {text[:200]})"


def conversation_from_json(raw: bytes | str, source: str, locator: str) -> Record:
    """One canonical JSON document -> Conversation, or Quarantined with the reason.

    The fast path is pydantic's own JSON parser; only a record that fails it is decoded again to say why.
    """
    try:
        return Conversation.model_validate_json(raw)  # its parser refuses more than 200 levels itself
    except ValidationError:
        pass
    except RecursionError:
        return Quarantined(source=source, locator=locator, raw_excerpt=excerpt(raw), reason=NESTED_TOO_DEEPLY)
    if isinstance(raw, bytes):
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            return Quarantined(
                source=source, locator=locator, raw_excerpt=excerpt(raw), reason=f"invalid UTF-8 at byte {exc.start}"
            )
    else:
        text = raw
    try:
        obj = json.loads(text)
    except RecursionError:
        return Quarantined(source=source, locator=locator, raw_excerpt=excerpt(text), reason=NESTED_TOO_DEEPLY)
    except json.JSONDecodeError as exc:
        return Quarantined(
            source=source,
            locator=locator,
            raw_excerpt=excerpt(text),
            reason=f"invalid JSON: {exc.msg} at column {exc.colno}",
        )
    except ValueError as exc:  # more digits than Python turns into a number
        return Quarantined(source=source, locator=locator, raw_excerpt=excerpt(text), reason=unreadable_reason(exc))
    return conversation_from_object(obj, source, locator, text)
