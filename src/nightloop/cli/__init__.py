"""The ``nightloop`` command: a thin typer app over the library.

Each area registers its commands from its own module (split early, as
``llm``'s 4,000-line cli.py taught).
"""

from __future__ import annotations

import importlib

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
COMMAND_MODULES = ["ingest", "prompts", "simulate", "night", "review", "report", "evaluate", "ui", "trust"]

for _name in COMMAND_MODULES:
    _module = importlib.import_module(f"nightloop.cli.{_name}")
    _module.register(app)


def main() -> None:
    try:
        app()
    except NightloopError as exc:  # a domain error that escaped a command: still say it plainly
        from nightloop.cli.common import err_console

        err_console.print(f"[bold red]Error:[/] {exc}", highlight=False)
        raise SystemExit(1) from None
