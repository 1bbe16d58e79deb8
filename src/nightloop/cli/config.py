"""CLI commands: config check — the effective settings and where each came from."""

from __future__ import annotations

import json

import typer
from rich.markup import escape
from rich.table import Table

from nightloop.cli.common import ConfigOption, DbOption, JsonOption, console, print_json, settings_from


def register(app: typer.Typer) -> None:
    """Add the `config` group."""
    group = typer.Typer(help="Check the configuration.", no_args_is_help=True)
    app.add_typer(group, name="config")

    @group.command("check")
    def check(db: DbOption = None, config: ConfigOption = None, as_json: JsonOption = False) -> None:
        """Validate the configuration and print every effective setting with where it came from.

        Exit 1, naming each bad key and the fix, when a value is out of range or a key is unknown.
        Example: nightloop config check --config nightloop.toml
        """

        from nightloop.config import config_path
        from nightloop.config_sources import effective_settings

        settings = settings_from(db, config)
        path, chosen_by = config_path(config)
        overrides = {"db": str(db)} if db is not None else {}
        lines = effective_settings(settings, path=path, overrides=overrides)
        if as_json:
            print_json({"config_file": str(path), "config_file_found": path.is_file(), "settings": lines})
            return
        found = "found" if path.is_file() else "not found: defaults apply"
        console.print(f"Config file: {escape(str(path))} ({found}; chosen by {chosen_by})", highlight=False)
        table = Table(title="effective settings")
        for column in ("key", "value", "from"):
            table.add_column(column, overflow="fold")
        for line in lines:
            value = json.dumps(line.value, ensure_ascii=False) if not isinstance(line.value, str) else line.value
            table.add_row(escape(line.key), escape(value), escape(line.source))
        console.print(table)
        console.print("Configuration is valid.")
