"""CLI commands: `nightloop prompts …` — the versioned prompt store, its labels and its prompts/ mirror."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table
from rich.text import Text

from nightloop.cli.common import (
    ConfigOption,
    DbOption,
    JsonOption,
    console,
    current_user,
    err_console,
    fail,
    open_store,
    print_json,
    settings_from,
)
from nightloop.errors import NightloopError
from nightloop.labels import PRODUCTION

if TYPE_CHECKING:
    from nightloop.store import Store

__all__ = ["register"]

prompts_app = typer.Typer(
    name="prompts",
    help="The versioned prompt store: list, show, diff, label, roll back, and mirror to prompts/.",
    no_args_is_help=True,
)

RefArg = Annotated[str, typer.Argument(help="NAME (its production version), NAME@LABEL, NAME@latest or NAME/VERSION.")]
NameArg = Annotated[str, typer.Argument(help="Prompt name.")]
DirArg = Annotated[
    Path | None,
    typer.Argument(help="Directory of <name>.j2 + <name>.yaml files (default: prompts_dir from config, ./prompts)."),
]
ByOption = Annotated[
    str | None, typer.Option("--by", help="Who is doing this, for the history (default: your OS user).")
]
ReasonOption = Annotated[str, typer.Option("--reason", help="Why, for the history.")]
LabelOption = Annotated[str, typer.Option("--label", help="Which label.")]


def register(app: typer.Typer) -> None:
    """Add this area's commands to the app."""
    app.add_typer(prompts_app, name="prompts")


def _store(db: Path | None, config: Path | None, *, read_only: bool = False) -> Store:
    try:
        return open_store(settings_from(db, config), read_only=read_only)
    except NightloopError as exc:
        fail(str(exc))


def _store_for(settings) -> Store:
    try:
        return open_store(settings)
    except NightloopError as exc:
        fail(str(exc))


def _who(by: str | None) -> str:
    return current_user(by)


@prompts_app.command("list")
def list_prompts(db: DbOption = None, config: ConfigOption = None, as_json: JsonOption = False) -> None:
    """List managed prompts: production and latest version, labels, autonomy (the level it has now)."""
    from nightloop.autonomy import current_level

    settings = settings_from(db, config)
    with open_store(settings, read_only=True) as store:
        repo = store.prompts
        rows = []
        for name in repo.names():
            latest = repo.label_version(name, "latest")
            rows.append(
                {
                    "name": name,
                    "production": repo.label_version(name, PRODUCTION),
                    "latest": latest,
                    "labels": repo.labels(name),
                    "autonomy": current_level(store, name, settings.autonomy),
                }
            )
    if as_json:
        print_json(rows)
        return
    if not rows:
        console.print("No prompts in the store yet. Add some with `nightloop prompts import prompts/`.")
        return
    table = Table("name", "production", "latest", "labels", "autonomy")
    for row in rows:
        labels = ", ".join(f"{k}→v{v}" for k, v in row["labels"].items() if k != PRODUCTION)
        table.add_row(row["name"], _v(row["production"]), _v(row["latest"]), labels or "-", row["autonomy"])
    console.print(table)


@prompts_app.command("show")
def show(ref: RefArg, db: DbOption = None, config: ConfigOption = None, as_json: JsonOption = False) -> None:
    """Show one prompt version: its template, where it came from, and the prompt's metadata."""

    from nightloop.invisible import escape_invisible as shown

    with _store(db, config, read_only=True) as store:
        try:
            version = store.prompts.resolve(ref)
        except NightloopError as exc:
            fail(str(exc))
        labels = [k for k, v in store.prompts.labels(version.name).items() if v == version.version]
        meta = store.prompts.get_meta(version.name)
        trust = _trust(store, settings_from(db, config), version.name)
    if as_json:
        print_json({**version.model_dump(mode="json"), "labels": labels, "meta": meta.model_dump(mode="json"),
                    "autonomy": {"level": trust.level, "ceiling": trust.policy.ceiling,
                                 "events": [e.model_dump(mode="json") for e in trust.events]}})
        return
    origin = f"parent v{version.parent}" if version.parent is not None else "no parent"
    console.print(
        Text.assemble(
            (f"{version.name} v{version.version}", "bold"),
            f"  {', '.join(labels) or 'no labels'}  ·  by {version.created_by}  ·  "
            f"{version.created_at:%Y-%m-%d %H:%M} UTC  ·  {origin}  ·  sha256 {version.sha256[:12]}",
        )
    )
    if version.message:
        console.print(Text(shown(version.message), style="dim"))
    described = f"{shown(meta.description)}  ·  " if meta.description else ""
    variables = ", ".join(meta.variables) or "none declared"
    console.print(Text(f"{described}autonomy {meta.autonomy}  ·  variables: {variables}", style="dim"))
    if meta.protected:
        console.print(Text(f"protected (the judge may not change): {len(meta.protected)} line(s)/section(s)", style="dim"))
    console.print(Text(f"earned autonomy: {trust.level} (ceiling {trust.policy.ceiling}); next: {trust.needs}", style="dim"))
    for event in trust.events:
        console.print(Text(f"  {event.at:%Y-%m-%d %H:%M} {event.from_level} → {event.to_level} by {event.actor}: {shown(event.reason)}", style="dim"))
    console.print(Text(shown(version.template)), highlight=False)


@prompts_app.command("diff")
def diff(
    old: Annotated[str, typer.Argument(help="The old side: NAME, NAME@LABEL or NAME/VERSION.")],
    new: Annotated[str, typer.Argument(help="The new side: NAME, NAME@LABEL or NAME/VERSION.")],
    db: DbOption = None,
    config: ConfigOption = None,
    as_json: JsonOption = False,
) -> None:
    """Show a colored diff between two prompt versions, e.g. `support_agent@production support_agent/5`."""

    from nightloop.review import diff_stats, render_diff, unified_diff

    with _store(db, config, read_only=True) as store:
        try:
            a, b = store.prompts.resolve(old), store.prompts.resolve(new)
        except NightloopError as exc:
            fail(str(exc))
    text = unified_diff(a.template, b.template, f"{a.name}/{a.version}", f"{b.name}/{b.version}")
    added, removed = diff_stats(a.template, b.template)
    if as_json:
        side = lambda v: {"name": v.name, "version": v.version, "sha256": v.sha256}  # noqa: E731
        print_json({"old": side(a), "new": side(b), "added": added, "removed": removed, "diff": text})
        return
    console.print(render_diff(text))
    console.print(Text(f"+{added} -{removed} lines", style="dim"))


@prompts_app.command("import")
def import_command(
    directory: DirArg = None, db: DbOption = None, config: ConfigOption = None, by: ByOption = None
) -> None:
    """Record changed templates in prompts/ as new versions (a new prompt's first version becomes production).

    Hand edits become versions but do not move production: evaluate one with `nightloop eval NAME --version N --queue`.
    """

    from nightloop.prompt_files import import_prompts, read_prompt_dir

    settings = settings_from(db, config)
    directory = directory or settings.prompts_dir
    with open_store(settings) as store:
        try:
            found = len(read_prompt_dir(directory))
            created = import_prompts(store, directory, created_by=_who(by))
        except NightloopError as exc:
            fail(str(exc))
        production = {v.name: store.prompts.label_version(v.name, PRODUCTION) for v in created}
    if not found:
        fail(f"No <name>.j2 templates in {directory}; add one (e.g. {directory}/support_agent.j2) and import again.")
    if not created:
        console.print(f"Nothing new in {directory}: all {found} templates are already stored versions.")
    for version in created:
        console.print(f"{version.name}: created v{version.version} (parent {_v(version.parent)})")
        console.print(_import_next_step(version, production[version.name]), highlight=False)


def _import_next_step(version, production: int | None) -> str:
    """What production is after an import, and how the new version gets there."""
    if production == version.version:
        return f"  production → v{version.version} (the prompt's first version)"
    return (
        f"  production is still {_v(production)}. Evaluate v{version.version} against it: "
        f"`nightloop eval {version.name} --version {version.version}` (add --queue to send it to review)"
    )


@prompts_app.command("adopt")
def adopt_command(
    names: Annotated[
        list[str] | None, typer.Argument(help="Prompt names to adopt (default: every unmanaged prompt in the store).")
    ] = None,
    db: DbOption = None,
    config: ConfigOption = None,
    by: ByOption = None,
) -> None:
    """Start managing prompts known only from ingested conversations: their logged system prompt becomes v1 and production."""

    from nightloop.prompt_files import adopt_prompt, unmanaged_prompts

    with _store(db, config) as store:
        todo = names or unmanaged_prompts(store)
        unnamed = store.conversations.count_without_prompt()
        if unnamed:
            err_console.print(UNNAMED_HINT.format(n=unnamed), highlight=False)
        if not todo:
            console.print("Every named prompt in the stored conversations is already managed." if unnamed else "Every prompt in the stored conversations is already managed.")
            return
        refused = []
        for name in todo:
            try:
                version = adopt_prompt(store, name, created_by=_who(by))
            except NightloopError as exc:
                refused.append(name)
                err_console.print(f"[yellow]{name}: not adopted:[/] {exc}", highlight=False)
                continue
            console.print(f"{name}: adopted as v{version.version} ({version.message}); production → v{version.version}")
    if refused:
        fail(f"{len(refused)} prompt(s) not adopted: {', '.join(refused)}")


UNNAMED_HINT = (
    "{n} stored conversation(s) have no prompt name, so no night and no adoption sees them: record it as the span "
    "attribute nightloop.prompt_name (or gen_ai.prompt.name; Langfuse promptName; the JSONL field prompt_name) "
    "in what the agent logs from now on (README, 'Traces')."
)


@prompts_app.command("export")
def export_command(directory: DirArg = None, db: DbOption = None, config: ConfigOption = None) -> None:
    """Write the production (else latest) version of every prompt to <dir>/<name>.j2 + <name>.yaml."""

    from nightloop.prompt_files import export_prompts

    settings = settings_from(db, config)
    directory = directory or settings.prompts_dir
    with open_store(settings) as store:
        try:
            written = export_prompts(store, directory)
        except NightloopError as exc:
            fail(str(exc))
    if not written:
        console.print("The store has no prompt versions to export. Add some with `nightloop prompts import prompts/`.")
    for version in written:
        console.print(f"{version.name}: wrote v{version.version} to {directory}")


@prompts_app.command("label")
def label_command(
    name: NameArg,
    version: Annotated[int, typer.Argument(help="Version number the label should point at.")],
    label: Annotated[str, typer.Argument(help="Label to move, e.g. production or staging.")],
    db: DbOption = None,
    config: ConfigOption = None,
    by: ByOption = None,
    reason: ReasonOption = "",
    expect: Annotated[
        int | None,
        typer.Option("--expect", help="Only move if LABEL still points at this version (compare-and-swap)."),
    ] = None,
) -> None:
    """Point LABEL of NAME at VERSION (recorded in the label history); --expect makes it a compare-and-swap."""
    with _store(db, config) as store:
        try:
            before = store.prompts.label_version(name, label)
            if expect is None:
                store.prompts.set_label(name, label, version, _who(by), reason)
            else:
                store.prompts.move_label(name, label, version, expected_version=expect, moved_by=_who(by), reason=reason)
        except NightloopError as exc:
            fail(str(exc))
    console.print(f"{name}@{label}: {_v(before)} → v{version}")


@prompts_app.command("history")
def history(
    name: NameArg,
    label: Annotated[str | None, typer.Option("--label", help="Only this label's moves.")] = None,
    db: DbOption = None,
    config: ConfigOption = None,
    as_json: JsonOption = False,
) -> None:
    """Show every label move of NAME, oldest first."""
    with _store(db, config, read_only=True) as store:
        try:
            store.prompts.latest(name)  # NotFound with a hint for an unknown prompt
        except NightloopError as exc:
            fail(str(exc))
        moves = store.prompts.label_history(name, label)
    if as_json:
        print_json(moves)
        return
    if not moves:
        console.print(f"No label of {name} has ever moved.")
        return
    table = Table("when (UTC)", "label", "from", "to", "by", "reason")
    for move in moves:
        table.add_row(
            f"{move.moved_at:%Y-%m-%d %H:%M:%S}",
            move.label,
            _v(move.from_version),
            _v(move.to_version),
            move.moved_by,
            move.reason,
        )
    console.print(table)


@prompts_app.command("rollback")
def rollback(
    name: NameArg,
    label: LabelOption = PRODUCTION,
    db: DbOption = None,
    config: ConfigOption = None,
    by: ByOption = None,
    reason: ReasonOption = "",
    to: Annotated[
        int | None, typer.Option("--to", help="Roll back to this version (one the label pointed at before).")
    ] = None,
) -> None:
    """Move a label back: to --to N, or to where it pointed before its current version (repeat to walk further back)."""
    settings = settings_from(db, config)
    with _store_for(settings) as store:
        try:
            with store.transaction():  # the move and the autonomy it costs land together
                before = store.prompts.label_version(name, label)
                after = store.prompts.rollback(name, label, moved_by=_who(by), reason=reason, to_version=to)
                dropped = _rolled_back(store, settings, name, label, before, after, _who(by), reason)
        except NightloopError as exc:
            fail(str(exc))
    console.print(f"{name}@{label}: rolled back {_v(before)} → v{after}")
    if dropped:
        console.print(f"autonomy of {name}: {dropped.from_level} → {dropped.to_level} ({dropped.reason})")


def _rolled_back(store, settings, name: str, label: str, before: int | None, after: int, who: str, reason: str):
    """A rollback of production is a breakage: the prompt's earned autonomy drops one level."""
    if label != PRODUCTION:
        return None
    from nightloop.autonomy import after_breakage

    return after_breakage(store, name, settings.autonomy, actor=who, reason=reason or f"rolled {_v(before)} back to v{after}")


def _trust(store: Store, settings, name: str):
    from nightloop.autonomy import trust_record

    return trust_record(store, name, settings.autonomy)


@prompts_app.command("versions")
def versions(name: NameArg, db: DbOption = None, config: ConfigOption = None, as_json: JsonOption = False) -> None:
    """List every version of NAME: number, when, who, parent, message, and the labels on it."""
    with _store(db, config) as store:
        try:
            store.prompts.latest(name)  # NotFound with a hint for an unknown prompt
        except NightloopError as exc:
            fail(str(exc))
        found = store.prompts.versions(name)
        labels = store.prompts.labels(name)
    rows = [
        {
            "version": v.version,
            "created_at": v.created_at.isoformat(),
            "created_by": v.created_by,
            "parent": v.parent,
            "message": v.message,
            "labels": [label for label, at in labels.items() if at == v.version],
            "sha256": v.sha256,
        }
        for v in found
    ]
    if as_json:
        print_json(rows)
        return
    table = Table("version", "created (UTC)", "author", "parent", "labels", "message")
    for row, v in zip(rows, found, strict=True):
        table.add_row(
            f"v{v.version}", f"{v.created_at:%Y-%m-%d %H:%M}", Text(v.created_by), _v(v.parent),
            ", ".join(row["labels"]) or "-", Text(v.message),
        )
    console.print(table)


def _v(version: int | None) -> str:
    return "-" if version is None else f"v{version}"
