"""A real `nightloop ui` process on a free loopback port (the way a user starts it), killed by pid."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

CHROMIUM = os.environ.get("NIGHTLOOP_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
    "--disable-sync", "--no-first-run",
]
INSTALL_HINT = "install the browser with `apt-get install -y chromium` and the driver with `pip install -e '.[dev]'` (playwright)"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def ui_server(db: Path, *extra: str, host: str = "127.0.0.1", env: dict[str, str] | None = None) -> Iterator[str]:
    """`nightloop ui --db DB` as a user starts it; yields its base URL; killed by pid whatever happens."""
    port = free_port()
    command = [sys.executable, "-c", "from nightloop.cli import main; main()", "ui", "--db", str(db),
               "--host", host, "--port", str(port), "--reviewer", "bob", *extra]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})},
                               start_new_session=True)
    base = f"http://{host}:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"nightloop ui exited: {process.stdout.read().decode(errors='replace')}")
            try:
                urllib.request.urlopen(base + "/static/style.css", timeout=2)
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise TimeoutError("nightloop ui did not answer within 60 s") from None
                time.sleep(0.2)
        yield base
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)


