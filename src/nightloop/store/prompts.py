"""Store area: prompts — immutable numbered versions, labels moved by compare-and-swap, and their history.

Choices worth knowing:

- A version is never updated or deleted (SQLite triggers refuse it); a change is a new version.
- ``create_version(parent=None)`` records the current ``production`` version as the parent (or the latest
  version when there is no production label yet), because a new version is almost always an edit of what
  production runs. Pass ``parent`` explicitly when it is an edit of something else.
- Every label move is a compare-and-swap under ``BEGIN IMMEDIATE`` and is appended to ``label_history``.
- ``latest`` is a virtual label (the highest version) and cannot be set.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime

import sqlite_utils
import yaml
from pydantic import BaseModel

from nightloop.errors import LabelConflict, NightloopError, NotFound
from nightloop.labels import LATEST, PRODUCTION
from nightloop.models import PromptMeta, PromptVersion, sha256_text
from nightloop.store.db import transaction
from nightloop.templates import check_template

__all__ = [
    "LATEST",
    "PRODUCTION",
    "InvalidName",
    "LabelMove",
    "PromptRef",
    "PromptRepo",
    "check_name",
    "migrations",
    "parse_ref",
]


_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_IMPORT_HINT = "Import it with `nightloop prompts import prompts/`."

migrations = sqlite_utils.Migrations("nightloop.prompts")


@migrations()
def m001_prompt_tables(db: sqlite_utils.Database) -> None:
    db.execute(
        """CREATE TABLE prompt_versions (
            name TEXT NOT NULL,
            version INTEGER NOT NULL,
            template TEXT NOT NULL,
            sha256 TEXT NOT NULL,
            parent INTEGER,
            created_at TEXT NOT NULL,
            created_by TEXT NOT NULL,
            message TEXT NOT NULL DEFAULT '',
            source_run TEXT,
            PRIMARY KEY (name, version)
        )"""
    )
    db.execute("CREATE INDEX idx_prompt_versions_sha ON prompt_versions (name, sha256)")
    db.execute("CREATE TABLE prompt_meta (name TEXT PRIMARY KEY, meta TEXT NOT NULL)")
    db.execute(
        """CREATE TABLE labels (
            name TEXT NOT NULL,
            label TEXT NOT NULL,
            version INTEGER NOT NULL,
            PRIMARY KEY (name, label)
        )"""
    )
    db.execute(
        """CREATE TABLE label_history (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            name TEXT NOT NULL,
            label TEXT NOT NULL,
            from_version INTEGER,
            to_version INTEGER NOT NULL,
            moved_at TEXT NOT NULL,
            moved_by TEXT NOT NULL,
            reason TEXT NOT NULL DEFAULT ''
        )"""
    )
    db.execute("CREATE INDEX idx_label_history_name ON label_history (name, label)")


@migrations()
def m002_append_only_triggers(db: sqlite_utils.Database) -> None:
    # History is evidence: versions and label moves can be added, never rewritten.
    for table in ("prompt_versions", "label_history"):
        for action in ("UPDATE", "DELETE"):
            db.execute(
                f"""CREATE TRIGGER {table}_no_{action.lower()} BEFORE {action} ON {table}
                BEGIN SELECT RAISE(ABORT, '{table} is append-only'); END"""
            )


class InvalidName(NightloopError):
    """A prompt or label name that the ref syntax (``NAME@LABEL``, ``NAME/VERSION``) could not express."""


class LabelMove(BaseModel):
    """One row of ``label_history``."""

    id: int
    name: str
    label: str
    from_version: int | None
    to_version: int
    moved_at: datetime
    moved_by: str
    reason: str = ""


class PromptRef(BaseModel):
    """A parsed ``NAME``, ``NAME@LABEL`` or ``NAME/VERSION``."""

    name: str
    label: str | None = None
    version: int | None = None

    def __str__(self) -> str:
        if self.version is not None:
            return f"{self.name}/{self.version}"
        return f"{self.name}@{self.label or PRODUCTION}"


def parse_ref(ref: str) -> PromptRef:
    """Parse the CLI syntax; a plain ``NAME`` means ``NAME@production``."""
    ref = ref.strip()
    if "/" in ref:
        name, _, version_text = ref.rpartition("/")
        if not version_text.isdigit():
            raise InvalidName(f"{ref!r}: the part after '/' must be a version number, e.g. {name or 'NAME'}/3.")
        return PromptRef(name=check_name(name), version=int(version_text))
    if "@" in ref:
        name, _, label = ref.partition("@")
        return PromptRef(name=check_name(name), label=_checked_label(label, allow_latest=True))
    return PromptRef(name=check_name(ref), label=PRODUCTION)


def check_name(name: str) -> str:
    """``name`` if it is a valid prompt name, else :class:`InvalidName`."""
    if not _NAME_RE.match(name or ""):
        raise InvalidName(
            f"{name!r} is not a valid prompt name: use letters, digits, '_', '-' and '.', "
            "starting with a letter or digit."
        )
    return name


def _checked_label(label: str, *, allow_latest: bool = False) -> str:
    if not _NAME_RE.match(label or ""):
        raise InvalidName(f"{label!r} is not a valid label: use letters, digits, '_', '-' and '.'.")
    if label == LATEST and not allow_latest:
        raise InvalidName(f"'{LATEST}' always means the highest version and cannot be moved; pick another label.")
    return label


def _now() -> str:
    return datetime.now(UTC).isoformat()


def _version_list(numbers: list[int]) -> str:
    if not numbers:
        return "none"
    if numbers == list(range(numbers[0], numbers[-1] + 1)) and len(numbers) > 2:
        return f"v{numbers[0]}-v{numbers[-1]}"
    return ", ".join(f"v{n}" for n in numbers)


def _describe(version: int | None) -> str:
    return "unset" if version is None else f"v{version}"


class PromptRepo:
    """Versions, metadata and labels of managed prompts."""

    def __init__(self, db: sqlite_utils.Database) -> None:
        self.db = db

    # --- versions ---

    def create_version(
        self,
        name: str,
        template: str,
        *,
        created_by: str,
        message: str = "",
        parent: int | None = None,
        source_run: str | None = None,
    ) -> PromptVersion:
        """Add the next version of ``name`` (``parent=None``: the production version, else the latest)."""
        check_name(name)
        check_template(template)
        with transaction(self.db):
            latest = self._max_version(name)
            if parent is None:
                parent = self.label_version(name, PRODUCTION) or latest
            elif parent not in self._version_numbers(name):
                raise NotFound(f"Cannot use v{parent} of {name!r} as parent: {self._no_version_hint(name)}")
            row = {
                "name": name,
                "version": (latest or 0) + 1,
                "template": template,
                "sha256": sha256_text(template),
                "parent": parent,
                "created_at": _now(),
                "created_by": created_by,
                "message": message,
                "source_run": source_run,
            }
            self.db["prompt_versions"].insert(row)
        return PromptVersion.model_validate(row)

    def get(self, name: str, version: int) -> PromptVersion:
        rows = list(self.db.query("SELECT * FROM prompt_versions WHERE name = ? AND version = ?", [name, version]))
        if not rows:
            raise NotFound(f"{name!r} has no version {version}: {self._no_version_hint(name)}")
        return PromptVersion.model_validate(rows[0])

    def latest(self, name: str) -> PromptVersion:
        latest = self._max_version(name)
        if latest is None:
            raise NotFound(self._unknown_prompt(name))
        return self.get(name, latest)

    def versions(self, name: str) -> list[PromptVersion]:
        rows = self.db.query("SELECT * FROM prompt_versions WHERE name = ? ORDER BY version", [name])
        return [PromptVersion.model_validate(r) for r in rows]

    def names(self) -> list[str]:
        rows = self.db.query("SELECT name FROM prompt_versions UNION SELECT name FROM prompt_meta ORDER BY name")
        return [r["name"] for r in rows]

    def find_by_sha(self, name: str, sha256: str) -> PromptVersion | None:
        """The earliest version of ``name`` whose template has this hash."""
        rows = list(
            self.db.query(
                "SELECT * FROM prompt_versions WHERE name = ? AND sha256 = ? ORDER BY version LIMIT 1", [name, sha256]
            )
        )
        return PromptVersion.model_validate(rows[0]) if rows else None

    def resolve(self, ref: str | PromptRef) -> PromptVersion:
        """The version that ``NAME``, ``NAME@LABEL`` or ``NAME/VERSION`` points at."""
        parsed = parse_ref(ref) if isinstance(ref, str) else ref
        if parsed.version is not None:
            return self.get(parsed.name, parsed.version)
        return self.at_label(parsed.name, parsed.label or PRODUCTION)

    def at_label(self, name: str, label: str = PRODUCTION) -> PromptVersion:
        """The version ``label`` points at (``latest``: the highest version)."""
        if label == LATEST:
            return self.latest(name)
        version = self.label_version(name, label)
        if version is None:
            if self._max_version(name) is None:
                raise NotFound(self._unknown_prompt(name))
            raise NotFound(
                f"{name!r} has no label {label!r} (labels: {self._label_list(name)}). "
                f"Set it with `nightloop prompts label {name} VERSION {label}`."
            )
        return self.get(name, version)

    # --- metadata ---

    def get_meta(self, name: str) -> PromptMeta:
        """The stored ``prompts/<name>.yaml`` metadata (defaults when none was imported)."""
        rows = list(self.db.query("SELECT meta FROM prompt_meta WHERE name = ?", [name]))
        if rows:
            return PromptMeta.model_validate(yaml.safe_load(rows[0]["meta"]) or {})
        if self._max_version(name) is None:
            raise NotFound(self._unknown_prompt(name))
        return PromptMeta()

    def set_meta(self, name: str, meta: PromptMeta) -> None:
        check_name(name)
        text = yaml.safe_dump(meta.model_dump(mode="json"), sort_keys=False, allow_unicode=True)
        with transaction(self.db):
            self.db["prompt_meta"].upsert({"name": name, "meta": text}, pk="name")

    # --- labels ---

    def label_version(self, name: str, label: str) -> int | None:
        if label == LATEST:
            return self._max_version(name)
        rows = list(self.db.query("SELECT version FROM labels WHERE name = ? AND label = ?", [name, label]))
        return rows[0]["version"] if rows else None

    def labels(self, name: str) -> dict[str, int]:
        rows = self.db.query("SELECT label, version FROM labels WHERE name = ? ORDER BY label", [name])
        return {r["label"]: r["version"] for r in rows}

    def move_label(
        self,
        name: str,
        label: str,
        to_version: int,
        *,
        expected_version: int | None,
        moved_by: str,
        reason: str = "",
    ) -> None:
        """Point ``label`` at ``to_version`` if it still points at ``expected_version`` (None = unset).

        Raises :class:`LabelConflict` when another writer moved it first; the move and the history row are
        one transaction, taken with the write lock up front so two writers cannot both read the old value.
        """
        _checked_label(label)
        with transaction(self.db):
            self.get(name, to_version)  # NotFound for an unknown target
            current = self.label_version(name, label)
            if current != expected_version:
                raise LabelConflict(
                    f"{name}@{label} moved from {_describe(expected_version)} to {_describe(current)} since you "
                    f"read it; re-read it (`nightloop prompts show {name}@{label}`) and decide again whether "
                    f"v{to_version} should replace {_describe(current)}."
                )
            if current == to_version:
                return
            self.db["labels"].upsert({"name": name, "label": label, "version": to_version}, pk=("name", "label"))
            self.db["label_history"].insert(
                {
                    "name": name,
                    "label": label,
                    "from_version": current,
                    "to_version": to_version,
                    "moved_at": _now(),
                    "moved_by": moved_by,
                    "reason": reason,
                }
            )

    def set_label(self, name: str, label: str, version: int, moved_by: str, reason: str = "") -> None:
        """Point ``label`` at ``version`` whatever it points at now (read, then compare-and-swap)."""
        with transaction(self.db):
            current = self.label_version(name, label) if label != LATEST else None
            self.move_label(name, label, version, expected_version=current, moved_by=moved_by, reason=reason)

    def label_history(self, name: str, label: str | None = None) -> list[LabelMove]:
        """Every move of ``name``'s labels (or just ``label``), oldest first."""
        sql, params = "SELECT * FROM label_history WHERE name = ?", [name]
        if label is not None:
            sql, params = sql + " AND label = ?", [*params, label]
        return [LabelMove.model_validate(r) for r in self.db.query(sql + " ORDER BY id", params)]

    def rollback(
        self, name: str, label: str = PRODUCTION, *, moved_by: str, reason: str = "", to_version: int | None = None
    ) -> int:
        """Move ``label`` back and return the version it now points at.

        To ``to_version`` when given (only a version the label pointed at before: anything else must pass the
        gate first); otherwise to the version the label pointed at before its current version first arrived, so
        repeated rollbacks walk back through the history (v3 → v2 → v1) instead of toggling.
        """
        with transaction(self.db):
            history = self.label_history(name, label)
            current = self.label_version(name, label)
            if current is None and self._max_version(name) is None:
                raise NotFound(self._unknown_prompt(name))
            target = self._walk_back(name, label, history, current) if to_version is None else to_version
            if to_version is not None:
                self._check_rollback_target(name, label, history, current, to_version)
            self.move_label(
                name, label, target, expected_version=current, moved_by=moved_by, reason=reason or "rollback"
            )
        return target

    def _walk_back(self, name: str, label: str, history: list[LabelMove], current: int | None) -> int:
        arrival = next((move for move in history if move.to_version == current), None)
        if arrival is None or arrival.from_version is None:
            raise NotFound(
                f"{name}@{label} has no earlier version to roll back to "
                f"(it points at {_describe(current)} and was never moved from another version)."
            )
        return arrival.from_version

    def _check_rollback_target(
        self, name: str, label: str, history: list[LabelMove], current: int | None, to_version: int
    ) -> None:
        self.get(name, to_version)  # NotFound, listing the versions, for one that does not exist
        if to_version == current:
            raise NightloopError(f"{name}@{label} already points at v{to_version}; nothing to roll back.")
        earlier = {move.to_version for move in history} | {m.from_version for m in history if m.from_version is not None}
        if to_version not in earlier:
            raise NightloopError(
                f"{name}@{label} never pointed at v{to_version} (it pointed at {_version_list(sorted(earlier))}); "
                f"a rollback only returns to one of those. A version that was never in {label} passes the gate "
                f"first: `nightloop eval {name} --version {to_version} --queue`."
            )

    # --- helpers ---

    def _max_version(self, name: str) -> int | None:
        rows = list(self.db.query("SELECT MAX(version) AS v FROM prompt_versions WHERE name = ?", [name]))
        return rows[0]["v"]

    def _version_numbers(self, name: str) -> list[int]:
        return [
            r["version"]
            for r in self.db.query("SELECT version FROM prompt_versions WHERE name = ? ORDER BY version", [name])
        ]

    def _label_list(self, name: str) -> str:
        labels = self.labels(name)
        return ", ".join(f"{label}→v{v}" for label, v in labels.items()) or "none"

    def _no_version_hint(self, name: str) -> str:
        numbers = self._version_numbers(name)
        if not numbers:
            return self._unknown_prompt(name)
        return f"it has {_version_list(numbers)}."

    def _unknown_prompt(self, name: str) -> str:
        known = self.names()
        listing = f" (known: {', '.join(known)})" if known else " (the store has no prompts yet)"
        return f"No prompt named {name!r} in the store{listing}. {_IMPORT_HINT}"
