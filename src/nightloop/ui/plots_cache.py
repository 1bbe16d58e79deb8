"""The dashboard's figures, kept while what they draw is unchanged: the metrics per prompt and each rendered plot.

Computing the metrics over a year of conversations and drawing with matplotlib are the slow parts. When the store
changed, the metrics are recomputed in the background and their plots drawn after them; a page waits
``fresh_wait_s`` for the metrics and otherwise shows the previous figures, saying so (a page never waits on a big
store's recount).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass

from nightloop.metrics import Operations
from nightloop.models import sha256_text
from nightloop.plots import PLOTS, operations_plot

__all__ = ["Figures", "Shown", "version_of"]


def version_of(ops: Operations) -> str:
    """A short hash of what the plots draw: part of each plot's URL, so a browser re-fetches only changed plots."""
    return sha256_text(ops.model_dump_json(exclude={"generated_at"}))[:16]


@dataclass(frozen=True)
class Shown:
    """The metrics a page shows, their :func:`version_of` (hashed once, in the background), and ``stale`` when newer
    data is still being counted."""

    ops: Operations
    version: str
    stale: bool = False


class Figures:
    """Operations metrics per prompt (recomputed when the store's state changes) and rendered plots (LRU)."""

    def __init__(self, *, fresh_wait_s: float = 0.2, plots: int = 320) -> None:
        self.fresh_wait_s = fresh_wait_s
        self._latest: dict[str | None, tuple[Hashable, Shown]] = {}
        self._pending: dict[tuple[str | None, Hashable], Future[Shown]] = {}
        self._plots: OrderedDict[tuple[str, str], str] = OrderedDict()
        self._plot_limit = plots
        self._lock = threading.Lock()
        self._workers = ThreadPoolExecutor(max_workers=1, thread_name_prefix="nightloop-figures")

    def metrics(self, prompt: str | None, state: Hashable, compute: Callable[[], Operations]) -> Shown:
        """The metrics for ``state`` of the store; ``compute`` must open its own store (it runs in a worker thread)."""
        with self._lock:
            latest = self._latest.get(prompt)
            if latest is not None and latest[0] == state:
                return latest[1]
            pending = self._start(prompt, state, compute)
        if latest is None:  # nothing to show yet: wait for the first figures
            return pending.result()
        if self.fresh_wait_s > 0:
            try:
                return pending.result(timeout=self.fresh_wait_s)
            except FutureTimeout:
                pass
        return Shown(latest[1].ops, latest[1].version, stale=True)

    def prepare(self, prompt: str | None, state: Hashable, compute: Callable[[], Operations]) -> None:
        """Start counting in the background now (when the UI starts), so the first page need not wait as long."""
        with self._lock:
            latest = self._latest.get(prompt)
            if latest is None or latest[0] != state:
                self._start(prompt, state, compute)

    def _start(self, prompt: str | None, state: Hashable, compute: Callable[[], Operations]) -> Future[Shown]:
        """The pending count for (prompt, state), started if there is none (call with the lock held)."""
        pending = self._pending.get((prompt, state))
        if pending is None:
            pending = self._pending[(prompt, state)] = self._workers.submit(self._compute, prompt, state, compute)
        return pending

    def _compute(self, prompt: str | None, state: Hashable, compute: Callable[[], Operations]) -> Shown:
        try:
            ops = compute()
            shown = Shown(ops, version_of(ops))
            with self._lock:
                self._latest[prompt] = (state, shown)
        finally:
            with self._lock:
                self._pending.pop((prompt, state), None)
        self._workers.submit(self._draw_all, shown)  # ready before the browser asks for them
        return shown

    def _draw_all(self, shown: Shown) -> None:
        for key, _ in PLOTS:
            self.plot(shown, key)

    def cached_plot(self, version: str, key: str) -> str | None:
        """Plot ``key`` of the figures of ``version``, if it was drawn: a plot URL names its version, so this needs
        neither the store nor the metrics."""
        with self._lock:
            return self._plots.get((version, key))

    def plot(self, shown: Shown, key: str) -> str:
        """The SVG text of plot ``key`` of :data:`nightloop.plots.PLOTS`."""
        ops = shown.ops
        cache_key = (shown.version, key)
        with self._lock:
            if cache_key in self._plots:
                self._plots.move_to_end(cache_key)
                return self._plots[cache_key]
        svg = operations_plot(ops, key)
        with self._lock:
            self._plots[cache_key] = svg
            while len(self._plots) > self._plot_limit:
                self._plots.popitem(last=False)
        return svg
