"""CLI command: `nightloop collect` (an OTLP/HTTP receiver writing into the store)."""

from __future__ import annotations

import signal
from typing import Annotated

import typer

from nightloop.cli.common import ConfigOption, DbOption, console, err_console, fail, open_store, settings_from
from nightloop.errors import NightloopError

__all__ = ["register"]

LOOPBACK = ("127.0.0.1", "localhost", "::1")


def _stop(*_: object) -> None:
    raise KeyboardInterrupt  # SIGTERM (and SIGINT, whatever the collector inherited) stops it as Ctrl-C does


def register(app: typer.Typer) -> None:
    """Add this area's commands to the app."""
    app.command("collect")(collect)


def collect(
    host: Annotated[str, typer.Option("--host", help="Address to listen on (loopback by default; another address exposes an unauthenticated receiver).")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="Port to listen on (OTLP/HTTP's default is 4318).", min=0, max=65535)] = 4318,
    max_request_mb: Annotated[
        float | None,
        typer.Option("--max-request-mb", help="Refuse (413) requests larger than this many megabytes (default: 16 MiB).", min=0.001),
    ] = None,
    db: DbOption = None,
    config: ConfigOption = None,
) -> None:
    """Receive OTLP/HTTP traces and logs (protobuf or JSON) and store them as they arrive; Ctrl-C stops it.

    Example: nightloop collect --port 4318   (then OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:4318 in the agent)
    """

    from nightloop.collect import DEFAULT_MAX_REQUEST_BYTES, Collector, make_server
    from nightloop.ingest import default_classifier

    settings = settings_from(db, config)
    if host not in LOOPBACK:
        err_console.print(f"[yellow]warning:[/] listening on {host}: anyone who can reach it can write spans into the store", highlight=False)
    try:
        store = open_store(settings)
    except NightloopError as exc:
        fail(str(exc))
    limit = DEFAULT_MAX_REQUEST_BYTES if max_request_mb is None else int(max_request_mb * 1e6)
    collector = Collector(store, default_classifier(settings.classify), limit)
    try:
        server = make_server(collector, host, port)
    except OSError as exc:
        store.close()
        fail(f"cannot listen on {host}:{port}: {exc.strerror or exc}; pick another --port (or stop what uses it).")
    bound_host, bound_port = server.server_address[:2]
    # SIGINT too: a collector started in the background of a script inherits SIGINT ignored, and Ctrl-C (or kill -INT)
    # would then never stop it
    for stop_signal in (signal.SIGINT, signal.SIGTERM):
        signal.signal(stop_signal, _stop)
    try:  # from the moment the handler is set: a SIGTERM right after the banner (a busy machine) still stops cleanly
        console.print(f"collecting OTLP/HTTP on http://{bound_host}:{bound_port} (POST /v1/traces, /v1/logs) into {settings.db}; Ctrl-C stops", highlight=False)
        server.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        pass
    finally:
        for stop_signal in (signal.SIGINT, signal.SIGTERM):  # a second Ctrl-C (or SIGTERM then SIGINT) must not cut the shutdown short
            signal.signal(stop_signal, signal.SIG_IGN)
        server.server_close()
        store.close()
    stats = collector.stats
    kinds = ", ".join(f"{kind} {n}" for kind, n in sorted(stats.failures.items())) or "none"
    console.print(
        f"stopped: {stats.requests} request(s), {stats.spans} span(s), conversations new {stats.conversations_new}, "
        f"updated {stats.conversations_updated}; rejected {stats.rejected} bad request(s); failures found: {kinds}",
        highlight=False,
    )
