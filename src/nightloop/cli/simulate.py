"""CLI command: `nightloop simulate` — production-like logs from the offline simulator."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Annotated

import typer

from nightloop.cli.common import (
    ConfigOption,
    DbOption,
    JsonOption,
    console,
    fail,
    open_store,
    print_json,
    settings_from,
)
from nightloop.errors import NightloopError

__all__ = ["register"]


def register(app: typer.Typer) -> None:
    """Add this area's commands to the app."""
    app.command("simulate")(simulate_command)


def simulate_command(
    nights: Annotated[int, typer.Option("--nights", min=1, help="How many days of conversations to write (one file each).")] = 1,
    per_night: Annotated[int, typer.Option("--per-night", min=1, help="Conversations per day.")] = 100,
    seed: Annotated[int | None, typer.Option("--seed", help="Simulator seed (default: seed from config, 0).")] = None,
    out: Annotated[Path, typer.Option("--out", help="Directory for the <prompt>-<YYYY-MM-DD>.jsonl files.")] = Path("sim-logs"),
    prompt: Annotated[str, typer.Option("--prompt", help="Managed prompt whose production version the agent runs.")] = "support_agent",
    start: Annotated[
        datetime | None,
        typer.Option("--start", formats=["%Y-%m-%d"], help="First day (YYYY-MM-DD; default: NIGHTS days before today)."),
    ] = None,
    db: DbOption = None,
    config: ConfigOption = None,
    as_json: JsonOption = False,
) -> None:
    """Write simulated support conversations (the offline simulator, provider 'sim', playing agent and customers).

    The agent runs the store's production version of --prompt (imported from the prompts directory first when the store does not know it). Same arguments, byte-identical files.

    Example: nightloop simulate --nights 3 --per-night 100 --seed 1 --out sim-logs
    """
    from nightloop.simulate import simulate_from_store

    settings = settings_from(db, config)
    first_day = start.date() if start else date.today() - timedelta(days=nights)
    try:
        with open_store(settings) as store:
            _ensure_prompt(store, prompt, settings.prompts_dir)
            paths = simulate_from_store(
                store,
                prompt,
                nights=nights,
                per_night=per_night,
                seed=settings.seed if seed is None else seed,
                out=out,
                start_date=first_day,
            )
    except NightloopError as exc:
        fail(str(exc))
    if as_json:
        print_json([{"path": str(p), "conversations": per_night} for p in paths])
        return
    for path in paths:
        console.print(f"wrote {per_night} simulated conversations to {path}", highlight=False)
    console.print(f"next: nightloop ingest {out}", highlight=False)


def _ensure_prompt(store, name: str, prompts_dir: Path) -> None:
    """Import ./prompts when the store has never seen ``name`` (a fresh demo checkout)."""

    from nightloop.store.prompts import PRODUCTION

    if name in store.prompts.names() and store.prompts.label_version(name, PRODUCTION) is not None:
        return
    template_file = Path(prompts_dir) / f"{name}.j2"
    if name not in store.prompts.names() and template_file.is_file():
        from nightloop.prompt_files import import_prompts

        import_prompts(store, prompts_dir)
    if store.prompts.label_version(name, PRODUCTION) is None:
        fail(
            f"The store has no production version of {name!r}. "
            f"Run `nightloop prompts import prompts/` (or set one with `nightloop prompts label`)."
        )
