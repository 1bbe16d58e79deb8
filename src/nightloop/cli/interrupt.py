"""Ctrl-C during a night: the first stops it gracefully, the second stops it now; never a traceback."""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from nightloop.cli.common import err_console

__all__ = ["INTERRUPTED_EXIT", "graceful_ctrl_c"]

#: The shell's convention for "ended by SIGINT".
INTERRUPTED_EXIT = 130


@contextmanager
def graceful_ctrl_c() -> Iterator[threading.Event]:
    """Yield an event the first SIGINT sets (pass it to ``run_night(stop=...)``); a second one raises KeyboardInterrupt.

    Only in the main thread (signal handlers can be set nowhere else); elsewhere the event is never set.
    """
    stop = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield stop
        return

    def on_sigint(signum: int, frame: object) -> None:
        if stop.is_set():
            raise KeyboardInterrupt
        stop.set()
        err_console.print(
            "\n[yellow]Stopping:[/] no new model calls; calls in flight get 2 s to finish, then the night is "
            "recorded as interrupted. Press Ctrl-C again to stop at once.",
            highlight=False,
        )

    previous = signal.signal(signal.SIGINT, on_sigint)
    try:
        yield stop
    finally:
        signal.signal(signal.SIGINT, previous)
