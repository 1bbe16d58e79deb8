"""A stop request (Ctrl-C) that reaches the nights a Prefect flow run starts in this process.

The CLI passes its stop event to :func:`nightloop.pipeline.run_night` directly when it runs nights itself. Under
Prefect the nights are started by the flow, whose parameters must be serializable, so the event travels in a
context variable instead: set for the duration of the flow call, read by ``run_night`` when no ``stop`` is given.
Prefect runs a flow called in-process in the caller's thread and copies the context into the threads it starts.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

__all__ = ["requested_stop", "stop_requests"]

_stop: ContextVar[threading.Event | None] = ContextVar("nightloop_stop", default=None)


@contextmanager
def stop_requests(event: threading.Event) -> Iterator[threading.Event]:
    """Nights started inside this block (in this context) stop when ``event`` is set."""
    token = _stop.set(event)
    try:
        yield event
    finally:
        _stop.reset(token)


def requested_stop() -> threading.Event | None:
    """The stop event of the enclosing :func:`stop_requests`, if any."""
    return _stop.get()
