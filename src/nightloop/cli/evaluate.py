"""CLI command: `nightloop eval` — a hand-written template through the night's validation, replay and gate."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from nightloop.cli.common import (
    ConfigOption,
    DbOption,
    JsonOption,
    console,
    current_user,
    err_console,
    open_store,
    print_json,
    settings_from,
)
from nightloop.cli.night import parse_date
from nightloop.cli.review import show_evidence
from nightloop.errors import NightloopError

if TYPE_CHECKING:
    from nightloop.evaluate import EvalReport, HandEdit
    from nightloop.store import Store

__all__ = ["register"]

VERDICT_WORDS = {"promote": "would promote", "hold": "held: not enough evidence", "reject": "rejected"}


def register(app: typer.Typer) -> None:
    """Add the `eval` command."""
    app.command("eval")(eval_command)


def eval_command(
    name: Annotated[str | None, typer.Argument(help="Prompt name (omit with --changed-since).")] = None,
    template: Annotated[
        Path | None, typer.Option("--template", help="Template file to evaluate (default: <prompts_dir>/NAME.j2).")
    ] = None,
    version: Annotated[int | None, typer.Option("--version", help="Evaluate this stored version instead of a file.")] = None,
    against: Annotated[
        str, typer.Option("--against", help="Compare with this label or version number.")
    ] = "production",
    date_: Annotated[
        str | None, typer.Option("--date", help="Use that night's replay set (default: the latest night's).")
    ] = None,
    changed_since: Annotated[
        str | None,
        typer.Option("--changed-since", help="Evaluate every prompts/<name>.j2 that changed since this git ref."),
    ] = None,
    queue: Annotated[
        bool, typer.Option("--queue", help="Put an edit the gate would promote in the review queue, with its evidence.")
    ] = False,
    db: DbOption = None,
    config: ConfigOption = None,
    as_json: JsonOption = False,
) -> None:
    """Replay a hand-edited template with the night's cases and gate it like a judge candidate.

    Exit code: 0 would promote, 1 held (not enough evidence), 2 rejected, 3 could not evaluate.

    Example: nightloop eval support_agent --template prompts/support_agent.j2
    """

    from nightloop.evaluate import evaluate

    settings = settings_from(db, config)
    logical_date = parse_date(date_, "--date") if date_ else None
    reports: list[EvalReport] = []
    with open_store(settings) as store:
        try:
            edits = _edits(store, settings, name, template, version, changed_since)
        except NightloopError as exc:
            _stop(str(exc))
        if not edits:
            if as_json:
                print_json([])
            else:
                console.print(f"No template under {settings.prompts_dir}/ changed since {changed_since}; nothing to evaluate.")
            raise typer.Exit(0)
        for edit in edits:
            try:
                with err_console.status(f"{edit.prompt_name}: evaluating {edit.source}") as status:
                    report = evaluate(
                        settings, store, edit, against=against, logical_date=logical_date, queue=queue,
                        progress=lambda stage, message, s=status, n=edit.prompt_name: s.update(f"{n}: {stage} — {message}"),
                    )
            except NightloopError as exc:
                _stop(f"{edit.prompt_name}: {exc}")
            reports.append(report)
            if not as_json:
                _print(store, report)
    if as_json:
        print_json(reports if changed_since else reports[0])
    raise typer.Exit(max(r.exit_code for r in reports))


def _stop(message: str) -> None:
    from nightloop.evaluate import EXIT_NOT_EVALUATED

    err_console.print(f"[bold red]Error:[/] {message}", highlight=False)
    raise typer.Exit(EXIT_NOT_EVALUATED)


def _edits(store: Store, settings, name: str | None, template: Path | None, version: int | None, changed_since: str | None) -> list[HandEdit]:
    from nightloop.evaluate import HandEdit

    author = current_user(None)
    if changed_since is not None:
        if name or template or version is not None:
            raise NightloopError("--changed-since finds the prompts itself; drop NAME, --template and --version.")
        return [_file_edit(path.stem, path, author) for path in changed_templates(Path(settings.prompts_dir), changed_since)]
    if name is None:
        raise NightloopError("Say which prompt: `nightloop eval NAME`, or `nightloop eval --changed-since REF`.")
    if template is not None and version is not None:
        raise NightloopError("Give --template FILE or --version N, not both.")
    if version is not None:
        stored = store.prompts.get(name, version)
        return [HandEdit(prompt_name=name, template=stored.template, source=f"{name}/{version}", author=stored.created_by, args=f"--version {version}")]
    return [_file_edit(name, template or Path(settings.prompts_dir) / f"{name}.j2", author)]


def _file_edit(name: str, path: Path, author: str) -> HandEdit:
    from nightloop.evaluate import HandEdit

    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise NightloopError(
            f"Cannot read {path}: {exc.strerror or exc}; give the template with --template FILE or a stored one with --version N."
        ) from exc
    return HandEdit(prompt_name=name, template=text, source=str(path), author=author, args=f"--template {path}")


def changed_templates(prompts_dir: Path, ref: str) -> list[Path]:
    """The ``<name>.j2`` files under ``prompts_dir`` that differ from git ``ref`` (added or modified, not deleted)."""
    try:
        done = subprocess.run(
            ["git", "diff", "--name-only", "--diff-filter=AM", "--relative", ref, "--", str(prompts_dir)],
            capture_output=True, text=True, timeout=60, check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise NightloopError(f"Could not run git to find changed prompts: {exc}; install git or name the prompt.") from exc
    if done.returncode != 0:
        raise NightloopError(
            f"git could not compare with {ref!r}: {done.stderr.strip()}; fetch it first (e.g. `git fetch origin main`)."
        )
    files = [Path(line) for line in done.stdout.splitlines() if line.endswith(".j2")]
    return sorted(files)


def _print(store: Store, report: EvalReport) -> None:
    from nightloop.evaluate import EXIT_CODES

    console.print(
        f"[bold]eval[/] · {report.prompt_name} · {report.source} against v{report.baseline_version} · "
        f"replay set {report.replay_set} ({report.cases} cases, {report.gated_cases} gated)",
        highlight=False,
    )
    show_evidence(store, report.review_item())
    for note in report.notes:
        console.print(f"[dim]note:[/] {note}", highlight=False)
    console.print(
        f"[bold]{report.prompt_name}: {report.verdict}[/] — {VERDICT_WORDS[report.verdict]} (exit {EXIT_CODES[report.verdict]})",
        highlight=False,
    )
    if report.review_id:
        console.print(f"Queued for review: [bold]nightloop review show {report.review_id}[/]")
    elif report.verdict == "promote":
        console.print(f"Send it to review: [bold]nightloop eval {report.prompt_name} {report.args} --queue[/]")
