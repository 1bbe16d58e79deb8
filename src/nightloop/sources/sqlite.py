"""Conversations in a SQLite table or query: a JSON column per conversation, or one column per field.

Specs: ``path.db`` (table ``conversations``), ``path.db::table``, ``sqlite:///path.db?table=name`` or
``sqlite:///path.db?query=SELECT ...`` (three slashes then the path: ``sqlite:////abs/path.db``).
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from nightloop.errors import SourceError
from nightloop.models import Quarantined
from nightloop.sources.base import (
    NESTED_TOO_DEEPLY,
    Record,
    Window,
    conversation_from_json,
    conversation_from_object,
    excerpt,
    select,
    unreadable_reason,
)

__all__ = ["SqliteSource", "parse_sqlite_spec"]

DEFAULT_TABLE = "conversations"
#: A column holding a whole canonical conversation as JSON text.
DOCUMENT_COLUMNS = ("json", "data", "conversation")
#: Columns holding JSON text when the row spreads the conversation over columns.
JSON_FIELDS = ("messages", "outcome", "metadata", "variables")
FIELDS = ("id", "prompt_name", "prompt_version", "started_at", "ended_at", *JSON_FIELDS)


def parse_sqlite_spec(spec: str | Path) -> tuple[Path, str | None, str | None]:
    """``spec`` -> ``(path, table, query)``; exactly one of table/query is set."""
    text = str(spec)
    if text.startswith("sqlite:"):
        rest = text[len("sqlite:") :]
        rest = rest[3:] if rest.startswith("///") else rest.lstrip("/")
        path_part, _, params = rest.partition("?")
        if params.startswith("query="):
            return Path(unquote(path_part)), None, unquote(params[len("query=") :])
        if params.startswith("table="):
            return Path(unquote(path_part)), unquote(params[len("table=") :]), None
        if params:
            raise SourceError(f"Unknown option in {text!r}: use ?table=NAME or ?query=SELECT ...")
        return Path(unquote(path_part)), DEFAULT_TABLE, None
    if "::" in text:
        path_part, _, table = text.rpartition("::")
        return Path(path_part), table or DEFAULT_TABLE, None
    return Path(text), DEFAULT_TABLE, None


class SqliteSource:
    """Rows of a table (or query), read-only; a bad row is quarantined as ``<path>:<table>:<rowid>``."""

    format = "sqlite"

    def __init__(self, spec: str | Path) -> None:
        self.spec = str(spec)
        self.path, self.table, self.query = parse_sqlite_spec(spec)
        if not self.path.is_file():
            raise SourceError(f"SQLite file {self.path} does not exist; check the path (specs: path.db, path.db::table).")

    def _connect(self) -> sqlite3.Connection:
        try:
            conn = sqlite3.connect(self.path.resolve().as_uri() + "?mode=ro", uri=True)
            conn.execute("select count(*) from sqlite_master").fetchone()
        except sqlite3.DatabaseError as exc:
            raise SourceError(f"{self.path} is not a readable SQLite database ({exc}); {_hint(exc)}") from exc
        return conn

    def _cursor(self, conn: sqlite3.Connection) -> tuple[sqlite3.Cursor, bool]:
        """The rows to read, and whether they come in rowid order (a table), so a corrupt page can be skipped."""
        if self.query is not None:
            try:
                return conn.execute(self.query), False
            except sqlite3.Error as exc:
                raise SourceError(f"The query for {self.path} failed: {exc}; fix the SQL in the spec.") from exc
        tables = [row[0] for row in conn.execute("select name from sqlite_master where type in ('table', 'view')")]
        if self.table not in tables:
            raise SourceError(
                f"{self.path} has no table {self.table!r} (tables: {', '.join(tables) or 'none'}); "
                f"name one with {self.path}::TABLE."
            )
        try:
            return conn.execute(f"select rowid as _rowid_, * from {self._quoted} order by rowid"), True
        except sqlite3.OperationalError:  # a view or WITHOUT ROWID table
            return conn.execute(f"select * from {self._quoted}"), False

    @property
    def _quoted(self) -> str:
        return '"' + (self.table or "").replace('"', '""') + '"'

    def records(self) -> Iterator[Record]:
        conn = self._connect()
        try:
            try:
                cursor, by_rowid = self._cursor(conn)
            except sqlite3.DatabaseError as exc:  # locked, or corrupt before the first row
                raise SourceError(f"Cannot read {self.path}: {exc}; {_hint(exc)}") from exc
            columns = [d[0] for d in cursor.description]
            label = self.table if self.query is None else "query"
            for number, row in enumerate(self._rows(conn, cursor, by_rowid, label), start=1):
                if isinstance(row, Quarantined):
                    yield row
                    continue
                values = dict(zip(columns, row, strict=True))
                rowid = values.pop("_rowid_", number)
                locator = f"{self.path}:{label}:{rowid}"
                try:
                    record = row_to_record(values, str(self.path), locator)
                except RecursionError:
                    record = Quarantined(source=str(self.path), locator=locator, reason=NESTED_TOO_DEEPLY)
                except Exception as exc:  # noqa: BLE001 - one odd row costs only itself
                    record = Quarantined(source=str(self.path), locator=locator, reason=unreadable_reason(exc))
                yield record
        finally:
            conn.close()

    def _rows(self, conn: sqlite3.Connection, cursor: sqlite3.Cursor, by_rowid: bool, label: str) -> Iterator[Any]:
        """Raw rows; past a corrupt page of a table, the rows after it (a note says which rows were lost)."""
        last, damage = 0, None
        while damage is None:
            try:
                row = cursor.fetchone()
            except sqlite3.DatabaseError as exc:
                if not by_rowid:
                    yield self._lost(label, last, None, exc)
                    return
                damage = exc
                continue
            if row is None:
                return
            last = row[0] if by_rowid else last + 1
            yield row
        # Point reads from here: a rowid seek goes through the interior pages, so it can step over a bad leaf.
        while True:
            lost, row = self._next_readable(conn, last)
            if lost:
                yield self._lost(label, last, None if row is None else row[0] - 1, damage)
            if row is None:
                return
            last = row[0]
            yield row

    def _lost(self, label: str, after: int, until: int | None, exc: Exception) -> Quarantined:
        rows = f"rows after rowid {after}" if until is None else f"rows with rowid {after + 1}..{until}"
        return Quarantined(
            source=str(self.path),
            locator=f"{self.path}:{label}:after-row-{after}",
            reason=f"could not read the {rows} of the table ({exc}); {_hint(exc)}",
        )

    def _next_readable(self, conn: sqlite3.Connection, last: int) -> tuple[bool, Any]:
        """``(rows were lost, next readable row or None at the end)`` after rowid ``last``.

        When the row after ``last`` cannot be read, the start of the search doubles until a read works, then
        is narrowed by bisection, so the fewest rows are lost.
        """

        def row_from(start: int) -> Any:
            try:
                return conn.execute(
                    f"select rowid as _rowid_, * from {self._quoted} where rowid >= ? order by rowid limit 1", [start]
                ).fetchone()
            except sqlite3.DatabaseError:
                return False

        row = row_from(last + 1)
        if row is not False:
            return False, row
        try:
            highest = conn.execute(f"select max(rowid) from {self._quoted}").fetchone()[0] or 0
        except sqlite3.DatabaseError:
            return True, None
        bad, step = last + 1, 1
        while row is False and bad + step <= highest:
            bad, step = bad + step, step * 2
            row = row_from(bad)
        if not row:
            return True, None
        low, high = bad, row[0]  # a read starting at `low` fails, one starting at `high` works
        while high - low > 1:
            middle = (low + high) // 2
            if row_from(middle) is False:
                low = middle
            else:
                high = middle
        return True, row_from(high) or row

    def fetch(self, window: Window | None = None, limit: int | None = None) -> Iterator[Record]:
        return select(self.records(), window, limit)

    def __repr__(self) -> str:
        return f"SqliteSource({self.spec!r})"


def _hint(exc: sqlite3.DatabaseError) -> str:
    """What to do about a SQLite source that cannot be read."""
    if "locked" in str(exc):
        return "another program holds a write lock on it: retry when it is done, or read a copy (sqlite3 PATH '.backup copy.db')"
    if "malformed" in str(exc) or "corrupt" in str(exc):
        return "the file is damaged: recover a copy with `sqlite3 PATH .recover | sqlite3 fixed.db` and read that"
    return "if it is not SQLite, pass --format to read it another way"


def row_to_record(values: dict[str, Any], source: str, locator: str) -> Record:
    """One row -> Conversation or Quarantined."""
    raw_row = json.dumps(values, default=str, ensure_ascii=False)
    document = next((values[c] for c in DOCUMENT_COLUMNS if isinstance(values.get(c), str | bytes)), None)
    if document is not None:
        record = conversation_from_json(document, source, locator)
        if isinstance(record, Quarantined) and values.get("id") is not None and "missing required field 'id'" in record.reason:
            # The id lives in its own column next to the document.
            try:
                obj = {**json.loads(document), "id": values["id"]}
            except (ValueError, TypeError, RecursionError):
                return record
            return conversation_from_object(obj, source, locator, raw_row)
        return record
    obj: dict[str, Any] = {}
    for field in FIELDS:
        value = values.get(field)
        if field in JSON_FIELDS and isinstance(value, str | bytes):
            try:
                value = json.loads(value)
            except RecursionError:
                return Quarantined(source=source, locator=locator, raw_excerpt=excerpt(raw_row), reason=f"column {field!r} is {NESTED_TOO_DEEPLY}")
            except ValueError as exc:
                return Quarantined(source=source, locator=locator, raw_excerpt=excerpt(raw_row), reason=f"column {field!r} is not valid JSON: {exc}")
        if value is not None:
            obj[field] = value
    return conversation_from_object(obj, source, locator, raw_row)
