"""The dashboard's figures, counted and drawn in a worker process and kept while what they draw is unchanged.

Counting the metrics over a year of conversations and drawing with matplotlib are the slow parts, and in the serving
process they would hold the interpreter while pages wait. So one spawned worker process (started with the app,
shut down with it) counts and draws; the serving process only reads a few aggregates to see whether the store
changed, waits on futures and renders. When the store changed, a page waits ``fresh_wait_s`` for the recount (if
the last count of those figures took no longer) and otherwise shows the previous figures, saying so. Counted
figures are also kept in the store (``dashboard_figures``), so a restarted UI shows them at once.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import weakref
from collections import OrderedDict
from concurrent.futures import CancelledError, Future, ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field, replace
from multiprocessing import get_context
from pathlib import Path

from nightloop.metrics import Operations
from nightloop.plots import PLOTS
from nightloop.store import Store
from nightloop.ui import figures_worker

__all__ = ["Figures", "Shown", "state_of"]

log = logging.getLogger(__name__)


def state_of(store: Store) -> str:
    """Changes whenever anything the metrics read changes (a few indexed aggregates: milliseconds)."""
    row = store.db.execute(
        "select (select max(rowid) from conversations), (select count(*) from failures), "
        "(select max(id) from label_history), (select count(*) || ':' || sum(status = 'pending') from review_queue), "
        "(select count(*) || ':' || max(finished_at) from runs)"
    ).fetchone()
    return json.dumps(list(row))


@dataclass(frozen=True)
class Shown:
    """The metrics a page shows, their version (a hash of what the plots draw), and ``stale`` when newer data is
    still being counted."""

    ops: Operations
    version: str
    ops_json: str = field(repr=False)
    stale: bool = False


class Figures:
    """Operations metrics per prompt (recounted when the store's state changes) and their plots (LRU), for one store.

    :meth:`start` spawns the worker (the app's lifespan calls it, and any use does); :meth:`close` stops it. A
    Figures that is garbage-collected unclosed stops its worker too.
    """

    def __init__(self, db: Path, *, fresh_wait_s: float = 0.2, plot_wait_s: float = 60.0, plots: int = 320) -> None:
        self.db = str(db)
        self.fresh_wait_s = fresh_wait_s
        self.plot_wait_s = plot_wait_s
        self._latest: dict[str | None, tuple[str, Shown]] = {}
        self._loaded: set[str | None] = set()
        self._count_s: dict[str | None, float] = {}  # how long the last count of each prompt took (s)
        # One count at a time per prompt (of the state it started at): new data meanwhile waits for the next page.
        self._pending: dict[str | None, tuple[str, Future[Shown]]] = {}
        self._plots: OrderedDict[tuple[str, str], str] = OrderedDict()
        self._drawing: dict[tuple[str, str], Future[str]] = {}
        self._plot_limit = plots
        self._lock = threading.RLock()
        self._pool: ProcessPoolExecutor | None = None
        # Threads that wait on the worker's results (they hold no lock while waiting).
        self._waiters = ThreadPoolExecutor(max_workers=4, thread_name_prefix="nightloop-figures")
        self._closed = False

    # --- the worker process ----------------------------------------------------------------------------------

    def start(self) -> None:
        """Spawn the worker now; it imports what it needs while the first pages (which need no count) are served."""
        self._worker().submit(figures_worker.ready)

    def close(self) -> None:
        """Stop the worker (a count or drawing under way is finished first) and the threads waiting on it."""
        with self._lock:
            self._closed = True
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
        self._waiters.shutdown(wait=True, cancel_futures=True)

    def _worker(self) -> ProcessPoolExecutor:
        with self._lock:
            if self._closed:
                raise RuntimeError("the dashboard's figures were closed with the app")
            if self._pool is None:
                self._pool = ProcessPoolExecutor(max_workers=1, mp_context=get_context("spawn"), initializer=figures_worker.warm)
                weakref.finalize(self, self._pool.shutdown, wait=False, cancel_futures=True)
            return self._pool

    def _forget_broken(self, pool: ProcessPoolExecutor) -> None:
        with self._lock:
            if self._pool is pool:  # the next use spawns a new worker
                self._pool = None

    # --- metrics ------------------------------------------------------------------------------------------------

    def metrics(self, store: Store, prompt: str | None) -> Shown:
        """The metrics of the store's current state: counted already, or waited for up to ``fresh_wait_s`` (the
        first figures of a prompt are always waited for), else the previous ones marked stale."""
        state = state_of(store)
        with self._lock:
            latest = self._kept(store, prompt)
            if latest is not None and latest[0] == state:
                return latest[1]
            pending = self._start(prompt, state)
        if latest is None:
            return pending.result()
        try:
            if self._quick(prompt):
                return pending.result(timeout=self.fresh_wait_s)
        except FutureTimeout:
            pass
        except Exception as exc:  # a failed recount: the previous figures are still true of the older data
            log.warning("recounting the dashboard's figures failed: %r", exc)
        return replace(latest[1], stale=True)

    def _quick(self, prompt: str | None) -> bool:
        """Whether a recount of ``prompt`` may finish within ``fresh_wait_s``: its last count did (or none is known).

        A recount that takes longer (all prompts of a big store) would only make the page wait the whole time and
        then show the previous figures anyway.
        """
        with self._lock:
            return self.fresh_wait_s > 0 and self._count_s.get(prompt, 0.0) <= self.fresh_wait_s

    def prepare(self, store: Store, prompt: str | None) -> None:
        """Start counting in the background now (when the UI starts) if the kept figures are out of date."""
        state = state_of(store)
        with self._lock:
            latest = self._kept(store, prompt)
            if latest is None or latest[0] != state:
                self._start(prompt, state)

    def _kept(self, store: Store, prompt: str | None) -> tuple[str, Shown] | None:
        """The latest figures of ``prompt``: in memory, else the ones saved in the store (call with the lock held)."""
        if prompt not in self._loaded:
            self._loaded.add(prompt)
            saved = store.figures.load(prompt)
            if saved is not None and prompt not in self._latest:
                shown = Shown(Operations.model_validate_json(saved.ops), saved.version, saved.ops)
                self._latest[prompt] = (saved.state, shown)
                for key, svg in saved.plots.items():
                    self._remember(saved.version, key, svg)
        return self._latest.get(prompt)

    def _start(self, prompt: str | None, state: str) -> Future[Shown]:
        """The pending count of ``prompt``, started at ``state`` if there is none (call with the lock held); a count
        of an older state comes out marked stale."""
        counting, pending = self._pending.get(prompt) or (state, None)
        if pending is None:
            pending = self._waiters.submit(self._count, prompt, state)
            self._pending[prompt] = (state, pending)
        if counting == state:
            return pending
        marked: Future[Shown] = Future()
        pending.add_done_callback(lambda done: _mark_stale(done, marked))
        return marked

    def _count(self, prompt: str | None, state: str) -> Shown:
        pool = self._worker()
        started = time.monotonic()
        try:
            ops_json, version = pool.submit(figures_worker.count, self.db, prompt).result()
            shown = Shown(Operations.model_validate_json(ops_json), version, ops_json)
            with self._lock:
                self._latest[prompt] = (state, shown)
                self._count_s[prompt] = time.monotonic() - started
        except BrokenProcessPool:
            self._forget_broken(pool)
            raise
        finally:
            with self._lock:
                self._pending.pop(prompt, None)
        drawings = {key: self._draw(shown, key) for key, _ in PLOTS}  # ready before the browser asks for them
        self._waiters.submit(self._save, prompt, state, shown, drawings)
        return shown

    def _save(self, prompt: str | None, state: str, shown: Shown, drawings: dict[str, Future[str]]) -> None:
        try:
            plots = {key: drawing.result() for key, drawing in drawings.items()}
            self._worker().submit(figures_worker.save, self.db, prompt, state, shown.version, shown.ops_json, plots).result()
        except (CancelledError, RuntimeError):  # the app is closing
            pass
        except Exception as exc:  # a read-only or busy store: the figures are only not kept for the next start
            log.warning("keeping the dashboard's figures in the store failed: %r", exc)

    # --- plots --------------------------------------------------------------------------------------------------

    def cached_plot(self, version: str, key: str) -> str | None:
        """Plot ``key`` of the figures of ``version`` if it was drawn or is being drawn (then waited for): a plot
        URL names its version, so this needs neither the store nor the metrics."""
        with self._lock:
            svg = self._plots.get((version, key))
            if svg is not None:
                self._plots.move_to_end((version, key))
                return svg
            drawing = self._drawing.get((version, key))
        return None if drawing is None else drawing.result(timeout=self.plot_wait_s)

    def plot(self, shown: Shown, key: str) -> str:
        """The SVG text of plot ``key`` of :data:`nightloop.plots.PLOTS` of ``shown``, drawn if it was not."""
        return self._draw(shown, key).result(timeout=self.plot_wait_s)

    def _draw(self, shown: Shown, key: str) -> Future[str]:
        cache_key = (shown.version, key)
        with self._lock:
            drawing = self._drawing.get(cache_key)
            if drawing is not None:
                return drawing
            drawing = Future()
            svg = self._plots.get(cache_key)
            if svg is not None:
                drawing.set_result(svg)
                return drawing
            self._drawing[cache_key] = drawing
        # Submitted outside the lock: the worker's result callback takes it.
        try:
            submitted = self._worker().submit(figures_worker.draw, shown.ops_json, key)
        except Exception as exc:
            self._drawn(cache_key, drawing, exc)
            return drawing
        submitted.add_done_callback(
            lambda done: self._drawn(cache_key, drawing, None if done.cancelled() else done.exception() or done.result())
        )
        return drawing

    def _drawn(self, cache_key: tuple[str, str], drawing: Future[str], outcome: str | BaseException | None) -> None:
        with self._lock:
            self._drawing.pop(cache_key, None)
            if isinstance(outcome, str):
                self._remember(*cache_key, outcome)
        if isinstance(outcome, str):
            drawing.set_result(outcome)
        else:
            drawing.set_exception(outcome or CancelledError())

    def _remember(self, version: str, key: str, svg: str) -> None:
        """Keep a drawn plot, dropping the least recently used beyond the limit (call with the lock held)."""
        self._plots[(version, key)] = svg
        self._plots.move_to_end((version, key))
        while len(self._plots) > self._plot_limit:
            self._plots.popitem(last=False)


def _mark_stale(counted: Future[Shown], marked: Future[Shown]) -> None:
    """``marked`` gets the outcome of ``counted``, its figures marked stale (the store moved on while counting)."""
    if counted.cancelled():
        marked.cancel()
    elif counted.exception() is not None:
        marked.set_exception(counted.exception())
    else:
        marked.set_result(replace(counted.result(), stale=True))
