"""CLI command: ui — the review queue, history and operations dashboard in the browser."""

from __future__ import annotations

from typing import Annotated

import typer

from nightloop.cli.common import ConfigOption, DbOption, console, current_user, fail, settings_from
from nightloop.errors import NightloopError
from nightloop.extras import require


def register(app: typer.Typer) -> None:
    """Add the `ui` command."""

    @app.command("ui")
    def ui(
        host: Annotated[str, typer.Option("--host", help="Address to bind; anything but loopback needs --token.")] = "127.0.0.1",
        port: Annotated[int, typer.Option("--port", help="Port to listen on.")] = 8765,
        token: Annotated[
            str | None,
            typer.Option("--token", envvar="NIGHTLOOP_UI_TOKEN", help="Secret a browser must present once (?token=…); required off loopback."),
        ] = None,
        reviewer: Annotated[
            str | None, typer.Option("--reviewer", help="Name the decision forms start with (default: your user name).")
        ] = None,
        db: DbOption = None,
        config: ConfigOption = None,
    ) -> None:
        """Review candidates, browse history and see the operations dashboard in a browser.

        Example: nightloop ui --db demo/nightloop.db   (then open http://127.0.0.1:8765/)
        """
        for module in ("fastapi", "uvicorn", "matplotlib"):
            require(module, "ui", "`nightloop ui`")
        import uvicorn

        from nightloop.ui.app import UIConfig, create_app
        from nightloop.ui.security import check_bind

        settings = settings_from(db, config)
        try:
            check_bind(host, token)
            app = create_app(
                UIConfig(settings.db, token=token, reviewer=current_user(reviewer), autonomy=settings.autonomy)
            )
        except NightloopError as exc:
            fail(str(exc))
        server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="warning", access_log=False))
        shown_host = f"[{host}]" if ":" in host else host
        suffix = "?token=…" if token else ""
        console.print(f"nightloop UI on the store {settings.db}: http://{shown_host}:{port}/{suffix}  (Ctrl-C stops it)")
        server.run()
