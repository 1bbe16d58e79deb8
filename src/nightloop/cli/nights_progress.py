"""Progress for many nights at once on stderr: nights done / running / waiting, each running night's stage,
and the calls spent against each provider's rate limits."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date

from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn

from nightloop.cli.common import err_console
from nightloop.rate_limits import RateLimits

__all__ = ["NightsBoard", "nights_board"]


class NightsBoard:
    """Receives ``run_nights`` events (thread-safe) and shows them as rich progress lines."""

    def __init__(self, progress: Progress, total: int, limits: RateLimits) -> None:
        self.progress = progress
        self.limits = limits
        self._lock = threading.Lock()
        self.waiting = 0
        self.running = 0
        self.done = 0
        self._overall = progress.add_task(self._summary(), total=total)
        self._lines: dict[tuple[str, date], TaskID] = {}

    def _summary(self) -> str:
        line = f"nights: {self.done} done · {self.running} running · {self.waiting} waiting"
        usage = self.limits.describe()
        return escape(line + (f"\n  {usage}" if usage else ""))

    def __call__(self, prompt: str, night_date: date, stage: str, message: str) -> None:
        with self._lock:
            key = (prompt, night_date)
            if stage == "waiting":
                self.waiting += 1
            elif stage == "starting":
                self.waiting -= 1
                self.running += 1
                self._lines[key] = self.progress.add_task(escape(f"  {prompt} {night_date}: starting"), total=None)
            elif stage == "finished":
                self.running -= 1
                self.done += 1
                self.progress.remove_task(self._lines.pop(key))
                self.progress.advance(self._overall)
            elif key in self._lines:
                self.progress.update(self._lines[key], description=escape(f"  {prompt} {night_date}: {stage} — {message}"))
            self.progress.update(self._overall, description=self._summary())


@contextmanager
def nights_board(total: int, limits: RateLimits, *, transient: bool = False) -> Iterator[NightsBoard]:
    """A live board on stderr for ``total`` nights (pass it as ``run_nights(event=...)``)."""
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=err_console, transient=transient) as progress:
        yield NightsBoard(progress, total, limits)
