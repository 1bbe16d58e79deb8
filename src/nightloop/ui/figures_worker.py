"""What the dashboard's worker process runs: counting the operations metrics, drawing a plot, saving the figures.

The UI serves pages in one process and counts and draws in another (spawned, see
:class:`nightloop.ui.plots_cache.Figures`), so a page never waits on matplotlib or on a year of aggregation holding
the interpreter. Everything here takes and returns plain text (JSON, SVG) so it crosses the process boundary cheaply.
"""

from __future__ import annotations

from nightloop.models import sha256_text

__all__ = ["count", "draw", "ready", "save", "version_of", "warm"]


def warm() -> None:
    """The worker's initializer: dies with the UI, imports what counting and drawing need, builds the font cache."""
    from nightloop.cli.prefect_api import die_with_parent
    from nightloop.metrics import OVERALL, Operations
    from nightloop.plots import operations_plot

    die_with_parent()
    operations_plot(Operations(store=":warm:", generated_at="2026-01-01T00:00:00Z", prompt=OVERALL), "ship")


def ready() -> bool:
    """Answers once the initializer has run (the UI waits for it when it starts)."""
    return True


def version_of(ops_json_without_time: str) -> str:
    """A short hash of what the plots draw: part of each plot's URL, so a browser re-fetches only changed plots."""
    return sha256_text(ops_json_without_time)[:16]


def count(db: str, prompt: str | None) -> tuple[str, str]:
    """The operations metrics of ``prompt`` (None = all prompts) as JSON, and their version."""
    from nightloop.metrics import operations
    from nightloop.store import Store

    with Store(db) as store:
        ops = operations(store, prompt)
    return ops.model_dump_json(), version_of(ops.model_dump_json(exclude={"generated_at"}))


def draw(ops_json: str, key: str) -> str:
    """Plot ``key`` of :data:`nightloop.plots.PLOTS` of the metrics, as SVG text."""
    from nightloop.metrics import Operations
    from nightloop.plots import operations_plot

    return operations_plot(Operations.model_validate_json(ops_json), key)


def save(db: str, prompt: str | None, state: str, version: str, ops_json: str, plots: dict[str, str]) -> None:
    """Keep the figures in the store, so a restarted UI shows them without waiting for a count."""
    from nightloop.store import Store
    from nightloop.store.figures import SavedFigures

    with Store(db) as store:
        store.figures.save(prompt, SavedFigures(state, version, ops_json, plots))
