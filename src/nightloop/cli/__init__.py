"""The ``nightloop`` command: a thin typer app over the library.

Each area registers its commands from its own module (split early, as
``llm``'s 4,000-line cli.py taught).
"""

from __future__ import annotations

import importlib
import os

import typer

from nightloop.errors import NightloopError

__all__ = ["app", "main"]

app = typer.Typer(
    name="nightloop",
    help="Close the loop between an agent's production conversations and its prompts, every night.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)

# Each module defines register(app: typer.Typer) -> None.
COMMAND_MODULES = ["ingest", "prompts", "simulate", "night", "review", "report", "evaluate", "ui", "trust", "config", "collect"]


def _print_version(value: bool) -> None:
    if value:
        from importlib.metadata import version

        typer.echo(f"nightloop {version('nightloop')}")
        raise typer.Exit()


@app.callback()
def _root(
    _version: bool = typer.Option(False, "--version", help="Print the version and exit.", callback=_print_version, is_eager=True),
) -> None:
    """Close the loop between an agent's production conversations and its prompts, every night."""


for _name in COMMAND_MODULES:
    _module = importlib.import_module(f"nightloop.cli.{_name}")
    _module.register(app)


#: Prefect settings nightloop sets for the processes it starts, unless the user set them: offline, Prefect's
#: telemetry only fails ("Failed to send telemetry") and its retries lock the temporary server's database.
PREFECT_QUIET = {"PREFECT_SERVER_ANALYTICS_ENABLED": "false"}


def main() -> None:
    for name, value in PREFECT_QUIET.items():
        os.environ.setdefault(name, value)
    try:
        app()
    except NightloopError as exc:  # a domain error that escaped a command: still say it plainly
        from rich.markup import escape

        from nightloop.cli.common import err_console

        err_console.print(f"[bold red]Error:[/] {escape(str(exc))}", highlight=False)
        raise SystemExit(1) from None
    except Exception as exc:
        from nightloop.store.db import is_disk_full, store_full

        if not is_disk_full(exc):
            raise
        from nightloop.cli.common import err_console

        err_console.print(f"[bold red]Error:[/] {store_full(None)}", highlight=False)  # not a chain of tracebacks
        raise SystemExit(1) from None
