"""The page's defences: who may connect, CSRF on every state change, and the headers every response carries.

- Loopback binds need no token; any other bind refuses to start without one (:func:`check_bind`).
- With a token, a browser proves it once with ``?token=…`` (or an ``Authorization: Bearer`` header); the server
  answers with an HttpOnly, SameSite=Strict cookie and the token never appears in a page.
- CSRF: a random per-browser value in an HttpOnly cookie must come back in the form's hidden field (double submit),
  and a POST whose ``Origin`` names another site is refused before that.
- Every response carries a Content-Security-Policy that allows no script at all, so text that slipped past
  escaping still cannot run.
"""

from __future__ import annotations

import hmac
import ipaddress
import secrets
from urllib.parse import urlsplit

from starlette.datastructures import URL
from starlette.middleware.base import BaseHTTPMiddleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response

from nightloop.errors import NightloopError

__all__ = [
    "CONTENT_SECURITY_POLICY",
    "CSRF_COOKIE",
    "CSRF_FIELD",
    "SecurityMiddleware",
    "TOKEN_COOKIE",
    "check_bind",
    "csrf_ok",
    "csrf_value",
    "is_loopback",
]

CSRF_COOKIE = "nightloop_csrf"
CSRF_FIELD = "csrf_token"
TOKEN_COOKIE = "nightloop_token"

CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'none'; style-src 'self'; img-src 'self' data:; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",  # no-referrer would make browsers send `Origin: null` on our own forms
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
}


def is_loopback(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 and ``localhost``."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_bind(host: str, token: str | None) -> None:
    """Refuse to serve a non-loopback address without a token."""
    if not is_loopback(host) and not token:
        raise NightloopError(
            f"Binding {host} exposes the review page beyond this machine; give it a token with "
            "`--token SECRET` (or NIGHTLOOP_UI_TOKEN), or bind 127.0.0.1."
        )


def csrf_ok(request: Request, submitted: str | None) -> bool:
    cookie = request.cookies.get(CSRF_COOKIE)
    return bool(cookie and submitted) and hmac.compare_digest(cookie, submitted)


def _same_origin(request: Request) -> bool:
    origin = request.headers.get("origin")
    if not origin or origin == "null":
        return origin is None  # "null" is what sandboxed or opaque contexts send: never trusted
    return urlsplit(origin).netloc == request.headers.get("host", "")


class SecurityMiddleware(BaseHTTPMiddleware):
    """Token check (when configured), origin check on POST, the CSRF cookie, and the security headers."""

    def __init__(self, app, token: str | None) -> None:
        super().__init__(app)
        self.token = token

    async def dispatch(self, request: Request, call_next) -> Response:
        if self.token:
            given = request.query_params.get("token")
            if given is not None and hmac.compare_digest(given, self.token):
                target = URL(str(request.url)).remove_query_params("token")
                return self._finish(request, RedirectResponse(str(target.path) + (f"?{target.query}" if target.query else ""), 303), set_token=True)
            if not self._authorised(request):
                return self._finish(
                    request,
                    PlainTextResponse("This nightloop UI needs its token: open it with ?token=SECRET once.", 401),
                )
        if request.method not in ("GET", "HEAD") and not _same_origin(request):
            return self._finish(request, PlainTextResponse("Cross-site request refused.", 403))
        return self._finish(request, await call_next(request))

    def _authorised(self, request: Request) -> bool:
        cookie = request.cookies.get(TOKEN_COOKIE) or ""
        header = request.headers.get("authorization", "")
        bearer = header[7:] if header.lower().startswith("bearer ") else ""
        return any(v and hmac.compare_digest(v, self.token or "") for v in (cookie, bearer))

    def _finish(self, request: Request, response: Response, *, set_token: bool = False) -> Response:
        for name, value in _HEADERS.items():
            response.headers.setdefault(name, value)
        if set_token:
            response.set_cookie(TOKEN_COOKIE, self.token or "", httponly=True, samesite="strict")
        if not request.cookies.get(CSRF_COOKIE):
            value = request.state.csrf if hasattr(request.state, "csrf") else secrets.token_urlsafe(32)
            response.set_cookie(CSRF_COOKIE, value, httponly=True, samesite="strict")
        return response


def csrf_value(request: Request) -> str:
    """The CSRF value a form on this page must send back (the cookie's, or a new one set with this response)."""
    existing = request.cookies.get(CSRF_COOKIE)
    if existing:
        return existing
    if not hasattr(request.state, "csrf"):
        request.state.csrf = secrets.token_urlsafe(32)
    return request.state.csrf
