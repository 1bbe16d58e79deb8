"""Docs cannot drift: every CLI command has help text and appears in the README."""

from __future__ import annotations

from pathlib import Path

import typer.main

from nightloop.cli import app

README = (Path(__file__).resolve().parents[1] / "README.md").read_text()


def _commands(group, prefix: str = ""):
    for name, command in getattr(group, "commands", {}).items():
        path = f"{prefix}{name}"
        yield path, command
        yield from _commands(command, path + " ")


def test_every_command_has_help_and_is_documented() -> None:
    root = typer.main.get_command(app)
    commands = dict(_commands(root))
    assert {"ingest", "failures", "prompts", "run", "backfill", "review", "report", "simulate", "serve"} <= set(commands)
    for path, command in commands.items():
        assert (command.help or "").strip(), f"`nightloop {path}` has no help text"
        assert f"nightloop {path}" in README, f"`nightloop {path}` is not documented in README.md"
        for param in command.params:
            if param.param_type_name == "option" and param.name not in ("help",):
                assert (getattr(param, "help", None) or "").strip(), f"option {param.opts} of `nightloop {path}` has no help"
