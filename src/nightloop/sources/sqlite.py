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
from nightloop.sources.base import NESTED_TOO_DEEPLY, Record, Window, conversation_from_json, conversation_from_object, excerpt, select

__all__ = ["SqliteSource", "parse_sqlite_spec"]

DEFAULT_TABLE = "conversations"
#: A column holding a whole canonical conversation as JSON text.
DOCUMENT_COLUMNS = ("json", "data", "conversation")
#: Columns holding JSON text when the row spreads the conversation over columns.
JSON_FIELDS = ("messages", "outcome", "metadata", "variables")
FIELDS = ("id", "prompt_name", "prompt_version", "started_at", "ended_at", *JSON_FIELDS)
FETCH_ROWS = 500


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
            raise SourceError(f"{self.path} is not a readable SQLite database ({exc}); pass --format to read it another way.") from exc
        return conn

    def _cursor(self, conn: sqlite3.Connection) -> sqlite3.Cursor:
        if self.query is not None:
            try:
                return conn.execute(self.query)
            except sqlite3.Error as exc:
                raise SourceError(f"The query for {self.path} failed: {exc}; fix the SQL in the spec.") from exc
        tables = [row[0] for row in conn.execute("select name from sqlite_master where type in ('table', 'view')")]
        if self.table not in tables:
            raise SourceError(
                f"{self.path} has no table {self.table!r} (tables: {', '.join(tables) or 'none'}); "
                f"name one with {self.path}::TABLE."
            )
        quoted = '"' + self.table.replace('"', '""') + '"'
        try:
            return conn.execute(f"select rowid as _rowid_, * from {quoted}")
        except sqlite3.OperationalError:  # a view or WITHOUT ROWID table
            return conn.execute(f"select * from {quoted}")

    def records(self) -> Iterator[Record]:
        conn = self._connect()
        try:
            cursor = self._cursor(conn)
            columns = [d[0] for d in cursor.description]
            label = self.table if self.query is None else "query"
            number = 0
            while True:
                try:
                    rows = cursor.fetchmany(FETCH_ROWS)
                except sqlite3.DatabaseError as exc:  # a corrupt page mid-table: keep what was read
                    yield Quarantined(
                        source=str(self.path),
                        locator=f"{self.path}:{label}:after-row-{number}",
                        reason=f"could not read the rest of the table: {exc}",
                    )
                    return
                if not rows:
                    return
                for row in rows:
                    number += 1
                    values = dict(zip(columns, row, strict=True))
                    rowid = values.pop("_rowid_", number)
                    locator = f"{self.path}:{label}:{rowid}"
                    try:
                        record = row_to_record(values, str(self.path), locator)
                    except RecursionError:
                        record = Quarantined(source=str(self.path), locator=locator, reason=NESTED_TOO_DEEPLY)
                    yield record
        finally:
            conn.close()

    def fetch(self, window: Window | None = None, limit: int | None = None) -> Iterator[Record]:
        return select(self.records(), window, limit)

    def __repr__(self) -> str:
        return f"SqliteSource({self.spec!r})"


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
