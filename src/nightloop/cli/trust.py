"""CLI command: trust — a prompt's earned autonomy: its level, the record behind it, what the next level needs."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from nightloop.cli.common import (
    ConfigOption,
    DbOption,
    JsonOption,
    console,
    current_user,
    fail,
    open_store,
    print_json,
    settings_from,
)
from nightloop.errors import NightloopError


def register(app: typer.Typer) -> None:
    """Add the `trust` command."""

    @app.command("trust")
    def trust(
        name: Annotated[str, typer.Argument(help="Prompt name.")],
        set_level: Annotated[
            str | None, typer.Option("--set", help="Set the level yourself (propose, review or auto; up to the ceiling).")
        ] = None,
        reason: Annotated[str, typer.Option("--reason", help="Why you set it (required with --set; recorded).")] = "",
        by: Annotated[str | None, typer.Option("--by", help="Who sets it (default: your user name).")] = None,
        db: DbOption = None,
        config: ConfigOption = None,
        as_json: JsonOption = False,
    ) -> None:
        """Show NAME's autonomy level, the promotions and breakages behind it, what the next level needs, and every change.

        Example: nightloop trust support_agent
        """
        from nightloop import autonomy

        settings = settings_from(db, config)
        with open_store(settings) as store:
            try:
                store.prompts.get_meta(name)  # NotFound naming the known prompts
                if set_level is not None:
                    event = autonomy.set_level(store, name, set_level, settings.autonomy, actor=current_user(by), reason=reason)
                    console.print(f"{name}: autonomy {event.from_level} → {event.to_level} (recorded).")
                record = autonomy.trust_record(store, name, settings.autonomy)
            except NightloopError as exc:
                fail(str(exc))
        if as_json:
            print_json(record)
            return
        policy = record.policy
        console.print(
            f"[bold]{name}[/]: autonomy [bold]{record.level}[/] · ceiling {policy.ceiling} · declared {policy.declared} · "
            f"policy: {policy.promotions} approved promotions within {policy.days} days, no breakage",
            highlight=False,
        )
        last = f"{record.last_breakage:%Y-%m-%d %H:%M} UTC" if record.last_breakage else "never"
        console.print(f"Counted promotions: {len(record.counted)} · last breakage: {last}", highlight=False)
        if record.next_level:
            console.print(f"Next level ({record.next_level}): {record.needs}", highlight=False)
        else:
            console.print(record.needs, highlight=False)
        if record.events:
            table = Table("when (UTC)", "from", "to", "why", "by", title="autonomy changes")
            for e in record.events:
                table.add_row(f"{e.at:%Y-%m-%d %H:%M}", e.from_level, e.to_level, e.reason, e.actor)
            console.print(table)
        else:
            console.print(f"No change recorded yet: {name} is at the level its prompts/{name}.yaml declares.")
