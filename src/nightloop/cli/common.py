"""What every CLI command shares: options, settings, the store, output, error handling.

Nothing heavy is imported at module level (the store, the config schema, a stage): `nightloop --help` loads only
the command modules and typer. Commands import what they use inside their functions.
"""

from __future__ import annotations

import getpass
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape

from nightloop.errors import NightloopError

if TYPE_CHECKING:
    from nightloop.config import Settings
    from nightloop.store import Store

__all__ = [
    "ConfigOption",
    "DbOption",
    "JsonOption",
    "console",
    "err_console",
    "current_user",
    "fail",
    "failures_text",
    "open_store",
    "print_json",
    "settings_from",
]

console = Console()
err_console = Console(stderr=True)

DbOption = Annotated[
    Path | None,
    typer.Option("--db", help="Store file (default: NIGHTLOOP_DB, then nightloop.toml, then ./nightloop.db)."),
]
ConfigOption = Annotated[
    Path | None,
    typer.Option("--config", help="Config file (default: NIGHTLOOP_CONFIG, then ./nightloop.toml)."),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON instead of tables.")]


def settings_from(db: Path | None = None, config: Path | None = None) -> Settings:
    """Settings with the command-line ``--db`` taking precedence."""
    from nightloop.config import load_settings

    overrides: dict[str, Any] = {"db": db} if db is not None else {}
    try:
        return load_settings(config, **overrides)
    except NightloopError as exc:
        fail(str(exc))


def open_store(settings: Settings, *, read_only: bool = False) -> Store:
    """The configured store; commands that only read pass ``read_only`` (they never create or migrate one)."""
    from nightloop.store import Store

    try:
        return Store(settings.db, read_only=read_only)
    except NightloopError as exc:
        fail(str(exc))


def fail(message: str, code: int = 1) -> typer.Exit:
    """Print an error that names the fix and exit non-zero (the message is text, never rich markup)."""
    err_console.print(f"[bold red]Error:[/] {escape(message)}", highlight=False)
    raise typer.Exit(code)


def to_jsonable(value: Any) -> Any:
    from pydantic import BaseModel

    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, list | tuple):
        return [to_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {k: to_jsonable(v) for k, v in value.items()}
    return value


def print_json(value: Any) -> None:
    """Plain JSON on stdout (no rich markup), so it pipes into jq."""
    sys.stdout.write(json.dumps(to_jsonable(value), indent=2, ensure_ascii=False, default=str) + "\n")
    sys.stdout.flush()


SHORT_KIND = {"user_correction": "correction", "wrong_output": "wrong", "tool_error": "tool error"}


def failures_text(failures: dict[str, int]) -> str:
    """Failures by kind in a table cell: ``timeout 4 · correction 5``."""
    return " · ".join(f"{SHORT_KIND.get(k, k)} {n}" for k, n in sorted(failures.items())) or "—"


def current_user(given: str | None, fallback: str | None = "human") -> str:
    """``given``, else the login name; where there is none (some containers), ``fallback`` or an error naming the fix."""
    if given:
        return given
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        if fallback is None:
            fail("Could not tell who you are; say it with --reviewer NAME.")
        return fallback
