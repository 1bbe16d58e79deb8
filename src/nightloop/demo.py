"""`make demo`: three simulated nights of the full loop on the bundled demo prompt, offline.

Every model here is nightloop's offline simulator (provider ``sim``), a
stand-in for a real model. The demo approves the gate's winner on the
reviewer's behalf and says so, showing the diff it approves.
"""

from __future__ import annotations

import shutil
import sys
import time
from datetime import date, timedelta
from pathlib import Path

import typer
from rich.console import Console
from rich.markup import escape
from rich.panel import Panel
from rich.table import Table

from nightloop import pipeline
from nightloop.config import BudgetConfig, LLMConfig, load_settings
from nightloop.errors import NightloopError
from nightloop.ingest import ingest
from nightloop.prompt_files import import_prompts
from nightloop.review import approve, render_diff, unified_diff
from nightloop.simulate import simulate_from_store
from nightloop.store import Store

PROMPT = "support_agent"
FIRST_DAY = date(2026, 11, 17)


def run_demo(
    workdir: Path = Path("demo"),
    prompts_dir: Path = Path("prompts"),
    nights: int = 3,
    per_night: int = 100,
    seed: int = 7,
    console: Console | None = None,
) -> list[dict]:
    """Run the demo in ``workdir`` (wiped first) and return one row per night."""
    console = console or (Console() if sys.stdout.isatty() else Console(width=120))
    _fresh_workdir(workdir)
    # Every role on the simulator whatever the environment says: the demo promises no network and no keys.
    settings = load_settings(db=workdir / "nightloop.db", seed=seed, llm=LLMConfig(), budget=BudgetConfig())
    console.print(
        Panel(
            "nightloop demo — every model here is the [bold]offline simulator[/] (provider 'sim'), "
            "a deterministic stand-in for a real LLM. No network, no keys.\n"
            f"Store: {settings.db}   Prompt: {PROMPT}   Nights: {nights} × {per_night} conversations",
            title="nightloop",
        )
    )
    rows = []
    with Store(settings.db) as store:
        imported = import_prompts(store, prompts_dir, created_by="demo (from prompts/)")
        console.print(f"Imported {len(imported)} prompt version(s) from {prompts_dir}/.")
        for n in range(nights):
            rows.append(_one_night(store, settings, n + 1, FIRST_DAY + timedelta(days=n), per_night, seed, workdir, console))
        _summary(store, rows, console, workdir)
    console.print(ui_hint(settings.db))
    return rows


def ui_hint(db: Path) -> str:
    """The demo's closing line: how to review and operate this store in the browser."""
    return (
        f"Open it in the browser: `{nightloop_command()} ui --db {db}`, then http://127.0.0.1:8765/ "
        "(review queue, history, /dashboard with the operations plots; Ctrl-C stops it)."
    )


MARKER = ".nightloop-demo"


def _fresh_workdir(workdir: Path) -> None:
    """Empty the demo's own folder; refuse to wipe a folder the demo did not create."""
    if workdir.exists() and any(workdir.iterdir()):
        made_by_demo = all(p.name.startswith("nightloop.db") or p.name in ("logs", MARKER) for p in workdir.iterdir())
        if not made_by_demo:
            raise NightloopError(
                f"{workdir} exists and was not made by the demo; pick another --workdir or remove it yourself."
            )
        shutil.rmtree(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / MARKER).write_text("made by `make demo`; the next demo run wipes this folder\n")


def _one_night(store: Store, settings, number: int, day: date, per_night: int, seed: int, workdir: Path, console: Console) -> dict:
    started = time.monotonic()
    production = store.prompts.label_version(PROMPT, "production")
    console.rule(f"Night {number}: {day} traffic on {PROMPT} v{production}")
    with console.status(f"simulating {per_night} production conversations with v{production}…"):
        files = simulate_from_store(
            store, PROMPT, nights=1, per_night=per_night, seed=seed + number, out=workdir / "logs", start_date=day
        )
        stats = ingest(store, [str(f) for f in files], classify_config=settings.classify)
    console.print(f"Day {day}: {stats.ingested} conversations ingested, {stats.quarantined} quarantined.")
    with console.status("running the night…") as status:
        # One date at a time: tomorrow's traffic is simulated from whatever tonight's review approves.
        [report] = pipeline.run_nights(
            settings, [PROMPT], [day + timedelta(days=1)],
            event=lambda _prompt, _date, stage, message: status.update(f"night {number}: {stage} — {message}"),
        )
    failures = ", ".join(f"{k} {v}" for k, v in sorted(report.failures.items())) or "none"
    console.print(f"Failure rate {report.failure_rate:.1%} ({failures}); {report.candidates} candidate(s) evaluated.")
    for note in report.notes:
        # The search's rounds, and a challenger held from an earlier night (tested again or dropped).
        if note.startswith(("search round ", "challenger ")):
            console.print(f"  {note}", highlight=False)
    for d in report.decisions:
        measured = f"pass rate {d.baseline_rate:.2f} → {d.candidate_rate:.2f} ({d.delta:+.2f}); " if d.n_cases else ""
        console.print(
            f"  {d.candidate_id}: [bold]{d.verdict}[/] — {measured}{d.reasons[-1] if d.reasons else ''}", highlight=False
        )
        if d.regressions:
            console.print(f"      regressed cases: {', '.join(d.regressions)}", highlight=False)
    promoted = None
    if report.review_id:
        item = store.runs.review_item(report.review_id)
        base = store.prompts.get(PROMPT, item.candidate.base_version)
        console.print(
            "[bold yellow]The demo approves this candidate on the reviewer's behalf[/] "
            f"(in production a prompt author runs `nightloop review approve {item.id}`). The diff it approves:"
        )
        console.print(render_diff(unified_diff(base.template, item.candidate.template, f"v{base.version}", "candidate")))
        promoted = approve(store, item.id, reviewer="demo (on the reviewer's behalf)", comment="approved by make demo").version
        console.print(f"production: v{base.version} → v{promoted}")
    else:
        console.print("No candidate passed the gate tonight; production stays.")
    console.print(f"[dim]night {number} took {time.monotonic() - started:.1f}s[/]")
    return {
        "night": number,
        "day": day.isoformat(),
        "version": production,
        "conversations": report.conversations,
        "failure_rate": report.failure_rate,
        "failures": report.failures,
        "promoted": promoted,
        "cost_usd": report.cost_usd,
    }


def _summary(store: Store, rows: list[dict], console: Console, workdir: Path) -> None:
    table = Table(title="failure rate per night (simulated production traffic)")
    for column in ("night", "day", "prompt version", "conversations", "failure rate", "failures", "promoted", "sim cost $"):
        table.add_column(column)
    for r in rows:
        table.add_row(
            str(r["night"]), r["day"], f"v{r['version']}", str(r["conversations"]), f"{r['failure_rate']:.1%}",
            " ".join(f"{k}:{v}" for k, v in sorted(r["failures"].items())) or "—",
            f"v{r['promoted']}" if r["promoted"] else "—", f"{r['cost_usd']:.4f}",
        )
    console.print(table)
    history = Table(title=f"{PROMPT} version history")
    history.add_column("version", min_width=7)
    history.add_column("parent", min_width=6)
    history.add_column("created by", no_wrap=True)
    history.add_column("message", overflow="ellipsis", no_wrap=True, max_width=60)
    for v in store.prompts.versions(PROMPT):
        history.add_row(f"v{v.version}", f"v{v.parent}" if v.parent else "—", v.created_by, v.message or "")
    console.print(history)
    first, last = rows[0]["failure_rate"], rows[-1]["failure_rate"]
    verdict = "lower" if last < first else "NOT lower"
    console.print(f"Failure rate night 1 → night {len(rows)}: {first:.1%} → {last:.1%} ({verdict}).")
    nightloop, db = nightloop_command(), _shown_path(workdir / "nightloop.db")
    console.print(
        f"Next: `{nightloop} report --db {db}`, `{nightloop} prompts versions {PROMPT} --db {db}`, "
        f"`{nightloop} prompts history {PROMPT} --db {db}`"
        + (" (or `source .venv/bin/activate` once, then plain `nightloop …`)." if nightloop != "nightloop" else "."),
        highlight=False,
        soft_wrap=True,
    )


def nightloop_command() -> str:
    """How to type `nightloop` so that it works as printed: plain when this venv's script is on PATH, else its path."""
    script = Path(sys.executable).parent / "nightloop"
    found = shutil.which("nightloop")
    if found and Path(found).resolve() == script.resolve():
        return "nightloop"
    return _shown_path(script)


def _shown_path(path: Path) -> str:
    """``path`` relative to the working directory when it is inside it (`.venv/bin/nightloop`), else absolute."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path.resolve())


def main(
    workdir: Path = typer.Option(Path("demo"), help="Where the demo writes its store and logs (wiped first)."),
    nights: int = typer.Option(3, help="How many nights to simulate."),
    per_night: int = typer.Option(100, help="Conversations per simulated day."),
    seed: int = typer.Option(7, help="Simulator seed."),
) -> None:
    """Run the offline demo of the nightly loop."""
    try:
        rows = run_demo(workdir=workdir, nights=nights, per_night=per_night, seed=seed)
    except NightloopError as exc:
        Console(stderr=True).print(f"[bold red]Error:[/] {escape(str(exc))}", highlight=False)
        sys.exit(1)
    if len(rows) > 1 and rows[-1]["failure_rate"] >= rows[0]["failure_rate"]:
        sys.exit(1)


if __name__ == "__main__":
    typer.run(main)
