"""Rendered dashboard plots, kept while the figures behind them are unchanged (matplotlib is the slow part)."""

from __future__ import annotations

import threading
from collections import OrderedDict

from nightloop.metrics import Operations
from nightloop.models import sha256_text
from nightloop.plots import PLOTS, as_data_uri, operations_plots

__all__ = ["PlotCache"]


class PlotCache:
    """Data URIs of :data:`nightloop.plots.PLOTS`, keyed by a hash of the metrics they draw (LRU)."""

    def __init__(self, size: int = 64) -> None:
        self.size = size
        self._entries: OrderedDict[str, list[tuple[str, str, str]]] = OrderedDict()
        self._lock = threading.Lock()

    def svgs(self, ops: Operations) -> list[tuple[str, str, str]]:
        """``(key, title, data URI)`` per plot."""
        key = sha256_text(ops.model_dump_json(exclude={"generated_at"}))
        with self._lock:
            if key in self._entries:
                self._entries.move_to_end(key)
                return self._entries[key]
        rendered = operations_plots(ops)
        entry = [(name, title, as_data_uri(rendered[name])) for name, title in PLOTS]
        with self._lock:
            self._entries[key] = entry
            while len(self._entries) > self.size:
                self._entries.popitem(last=False)
        return entry
