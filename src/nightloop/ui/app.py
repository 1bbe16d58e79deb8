"""`nightloop ui`: the review queue, candidate pages, history and the operations dashboard, server-rendered.

Jinja2 with autoescape on renders every page; the package ships its one stylesheet, so the page works offline and
runs no script at all (the CSP forbids it). Approve, reject and rollback call the same library functions as the CLI
(:func:`nightloop.review.approve` / :func:`~nightloop.review.reject`, ``PromptRepo.rollback``), so the same
compare-and-swap refuses a stale candidate here as there.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, urlencode

import jinja2
from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles

from nightloop.autonomy import after_breakage, current_level, trust_record
from nightloop.config import AutonomyConfig
from nightloop.errors import NightloopError, NotFound, StaleCandidate
from nightloop.store import Store
from nightloop.store.prompts import PRODUCTION
from nightloop.ui import security, views
from nightloop.ui.filters import install_filters

__all__ = ["UIConfig", "create_app"]

HERE = Path(__file__).parent


class UIConfig:
    """What the app needs: the store path, the token (None on loopback), the default reviewer, the autonomy policy."""

    def __init__(
        self, db: Path, *, token: str | None = None, reviewer: str = "reviewer", autonomy: AutonomyConfig | None = None,
        fresh_wait_s: float = 0.2,
    ) -> None:
        self.db = Path(db)
        #: How long a dashboard waits for metrics recomputed after the store changed before it shows the previous ones.
        self.fresh_wait_s = fresh_wait_s
        self.token = token
        self.reviewer = reviewer
        self.autonomy = autonomy or AutonomyConfig()


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(HERE / "templates"),
        autoescape=True,  # every template: conversation text, templates and rationales are untrusted
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    install_filters(env)
    return env


async def _form(request: Request) -> dict[str, str]:
    """An urlencoded form body (the pages post nothing else)."""
    body = (await request.body()).decode("utf-8", errors="replace")
    return {k: v[-1] for k, v in parse_qs(body, keep_blank_values=True).items()}


def create_app(config: UIConfig) -> FastAPI:
    """The ASGI app over one store file."""
    if not config.db.exists():
        raise NightloopError(
            f"The store {config.db} does not exist; point --db at a nightloop store (e.g. demo/nightloop.db after `make demo`)."
        )
    from nightloop.ui.plots_cache import Figures

    figures = Figures(config.db, fresh_wait_s=config.fresh_wait_s)

    @contextmanager
    def store() -> Iterator[Store]:
        with Store(config.db) as opened:
            yield opened

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        """The figures' worker process lives exactly as long as the app serves."""
        figures.start()
        for template in env.list_templates():  # compiled now, not in the first view of each page
            env.get_template(template)
        with store() as s:  # the dashboard of all prompts is counted now (if the kept one is out of date)
            figures.prepare(s, None)
        try:
            yield
        finally:
            figures.close()

    app = FastAPI(title="nightloop", docs_url=None, redoc_url=None, openapi_url=None, lifespan=lifespan)
    app.state.figures = figures
    app.add_middleware(security.SecurityMiddleware, token=config.token)
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
    env = _environment()

    def page(request: Request, template: str, status_code: int = 200, **context: Any) -> HTMLResponse:
        html = env.get_template(template).render(
            csrf=security.csrf_value(request),
            db=str(config.db),
            reviewer=config.reviewer,
            now=datetime.now(UTC),
            notice=request.query_params.get("notice", ""),
            **context,
        )
        return HTMLResponse(html, status_code=status_code)

    def refused(request: Request, message: str, status_code: int = 400) -> HTMLResponse:
        return page(request, "message.html", status_code=status_code, title="Refused", message=message)

    @app.exception_handler(NotFound)
    async def not_found(request: Request, exc: NotFound) -> HTMLResponse:
        return page(request, "message.html", status_code=404, title="Not found", message=str(exc))

    @app.get("/", response_class=HTMLResponse)
    def queue(request: Request) -> HTMLResponse:
        with store() as s:
            return page(request, "queue.html", rows=views.queue_rows(s))

    @app.get("/review/{item_id}", response_class=HTMLResponse)
    def candidate(request: Request, item_id: str) -> HTMLResponse:
        with store() as s:
            return page(request, "candidate.html", p=views.candidate_page(s, item_id), error="")

    async def decision_form(request: Request) -> tuple[dict[str, str], str | None]:
        form = await _form(request)
        if not security.csrf_ok(request, form.get(security.CSRF_FIELD)):
            return form, "The form's CSRF token is missing or wrong; reload the page and try again."
        if not form.get("reviewer", "").strip():
            return form, "Say who you are: the reviewer field is recorded with the decision."
        return form, None

    @app.post("/review/{item_id}/approve")
    async def approve(request: Request, item_id: str) -> Response:
        from nightloop.review import approve as approve_item

        form, problem = await decision_form(request)
        if problem:
            return refused(request, problem, 403 if "CSRF" in problem else 400)
        with store() as s:
            try:
                version = approve_item(
                    s, item_id, reviewer=form["reviewer"].strip(), comment=form.get("comment", "").strip() or None,
                    autonomy=config.autonomy,
                )
            except StaleCandidate as exc:
                return page(request, "candidate.html", status_code=409, p=views.candidate_page(s, item_id), error=str(exc))
            except NotFound:
                raise
            except NightloopError as exc:
                return page(request, "candidate.html", status_code=409, p=views.candidate_page(s, item_id), error=str(exc))
        notice = f"Approved: {version.name} v{version.version} is now production."
        return RedirectResponse(f"/review/{quote(item_id)}?notice={quote(notice)}", status_code=303)

    @app.post("/review/{item_id}/reject")
    async def reject(request: Request, item_id: str) -> Response:
        from nightloop.review import reject as reject_item

        form, problem = await decision_form(request)
        if problem:
            return refused(request, problem, 403 if "CSRF" in problem else 400)
        with store() as s:
            try:
                reject_item(s, item_id, reviewer=form["reviewer"].strip(), comment=form.get("comment", ""))
            except NotFound:
                raise
            except NightloopError as exc:
                return page(request, "candidate.html", status_code=409, p=views.candidate_page(s, item_id), error=str(exc))
        return RedirectResponse(f"/review/{quote(item_id)}?notice={quote('Rejected; production stays as it is.')}", 303)

    @app.get("/history", response_class=HTMLResponse)
    def history(request: Request, prompt: str | None = None, nights: int = 60) -> HTMLResponse:
        with store() as s:
            rows = views.history_rows(s, prompt or None, last=nights if nights > 0 else None)
            return page(request, "history.html", rows=rows, prompt=prompt or "", prompts=s.prompts.names(), nights=nights)

    @app.get("/prompts", response_class=HTMLResponse)
    def prompts(request: Request) -> HTMLResponse:
        with store() as s:
            rows = [
                {"name": n, "production": s.prompts.label_version(n, PRODUCTION), "latest": s.prompts.label_version(n, "latest"),
                 "autonomy": current_level(s, n, config.autonomy)}
                for n in s.prompts.names()
            ]
            return page(request, "prompts.html", rows=rows)

    @app.get("/prompts/{name}", response_class=HTMLResponse)
    def prompt(request: Request, name: str) -> HTMLResponse:
        with store() as s:
            return page(request, "prompt.html", p=views.prompt_page(s, name), trust=trust_record(s, name, config.autonomy), error="")

    @app.get("/prompts/{name}/diff", response_class=HTMLResponse)
    def diff(request: Request, name: str, a: int, b: int) -> HTMLResponse:
        with store() as s:
            old, new, rows = views.diff_page(s, name, a, b)
            return page(request, "diff.html", name=name, old=old, new=new, rows=rows)

    @app.post("/prompts/{name}/rollback")
    async def rollback(request: Request, name: str) -> Response:
        form = await _form(request)
        if not security.csrf_ok(request, form.get(security.CSRF_FIELD)):
            return refused(request, "The form's CSRF token is missing or wrong; reload the page and try again.", 403)
        who = form.get("reviewer", "").strip()
        if not who:
            return refused(request, "Say who you are: the reviewer field is recorded with the rollback.")
        with store() as s:
            expected = int(form["expected"]) if form.get("expected", "").isdigit() else None
            try:
                if s.prompts.label_version(name, PRODUCTION) != expected:
                    raise NightloopError(
                        f"{name}@production moved to v{s.prompts.label_version(name, PRODUCTION)} since you loaded "
                        f"the page (it was v{expected}); look again before rolling back."
                    )
                reason = form.get("reason", "").strip() or "rollback from the UI"
                with s.transaction():  # the rollback is a breakage: the prompt's autonomy drops with it
                    to = s.prompts.rollback(name, PRODUCTION, moved_by=who, reason=reason)
                    after_breakage(s, name, config.autonomy, actor=who, reason=f"{reason} (v{expected} → v{to})")
            except NotFound:
                raise
            except NightloopError as exc:
                return page(request, "prompt.html", status_code=409, p=views.prompt_page(s, name),
                            trust=trust_record(s, name, config.autonomy), error=str(exc))
        return RedirectResponse(f"/prompts/{quote(name)}?notice={quote(f'Rolled back: production is v{to}.')}", 303)

    @app.get("/dashboard", response_class=HTMLResponse)
    def dashboard(request: Request, prompt: str | None = None) -> HTMLResponse:
        """The numbers at once; each plot is its own image request (drawing them is the slow part)."""
        from nightloop.plots import PLOTS

        with store() as s:
            shown = figures.metrics(s, prompt or None)
            query = urlencode({"prompt": prompt or "", "v": shown.version})
            plots = [(key, title, f"/dashboard/plots/{key}.svg?{query}") for key, title in PLOTS]
            return page(request, "dashboard.html", ops=shown.ops, stale=shown.stale, plots=plots, prompt=prompt or "",
                        prompts=s.prompts.names())

    @app.get("/dashboard/plots/{key}.svg")
    def dashboard_plot(key: str, prompt: str | None = None, v: str | None = None) -> Response:
        from nightloop.plots import PLOTS

        if key not in dict(PLOTS):
            raise NotFound(f"There is no plot {key!r}; the plots are {', '.join(k for k, _ in PLOTS)}.")
        svg = figures.cached_plot(v, key) if v else None  # the page's version, drawn (or drawing): no store, no recount
        cache = "private, max-age=86400"  # the URL carries the figures' version, so the browser may keep what it fetched
        if svg is None:  # a version this app never counted (an old page): the current figures, not to be kept
            with store() as s:
                svg, cache = figures.plot(figures.metrics(s, prompt or None), key), "no-store"
        return Response(svg, media_type="image/svg+xml", headers={"Cache-Control": cache})

    return app
