"""Console plumbing: its parts, the signed-in user as a dependency, CSRF, rendering, error pages."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from jinja2 import Environment, FileSystemLoader, select_autoescape

from services.console import charts, views
from services.console.client import ApiError, Apis
from services.console.config import ConsoleSettings
from services.console.sessions import COOKIE, SessionStore, UserSession, mac, same
from shared.clock import Clock
from shared.logging import get_logger

log = get_logger(__name__)
TEMPLATES = Path(__file__).with_name("templates")
SECURITY_HEADERS = {
    # No inline script or style anywhere: the only script is /static/console.js.
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; style-src 'self'; "
    "script-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


@dataclass
class Console:
    """What every route needs, built once in create_app."""

    settings: ConsoleSettings
    apis: Apis
    store: SessionStore
    templates: Environment
    clock: Clock


class NeedsSignIn(Exception):
    def __init__(self, next_path: str) -> None:
        super().__init__(next_path)
        self.next_path = next_path


class Refused(Exception):
    """A request the console itself refuses (missing CSRF token, scope the key lacks)."""

    def __init__(self, status: int, title: str, message: str) -> None:
        super().__init__(message)
        self.status, self.title, self.message = status, title, message


def templates() -> Environment:
    env = Environment(
        loader=FileSystemLoader(TEMPLATES),
        autoescape=select_autoescape(default=True, default_for_string=True),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(money=views.money, pct=lambda v: f"{float(v):.0%}" if v is not None else "")
    env.globals.update(sparkline=charts.sparkline, trend_chart=charts.trend_chart, age=views.age)
    return env


def _console(request: Request) -> Console:
    console: Console = request.app.state.console
    return console


ConsoleDep = Annotated[Console, Depends(_console)]


def _user(request: Request, console: ConsoleDep) -> UserSession:
    """The signed-in user, from the proxy header (when configured) or the session cookie."""
    now = console.clock.now()
    settings = console.settings
    if settings.proxy_user_header and settings.proxy_api_key:
        proxied = request.headers.get(settings.proxy_user_header, "").strip()
        if proxied:
            return _proxy_session(console, proxied[:200], now)
    session = console.store.find(request.cookies.get(COOKIE), now)
    if session is None:
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        raise NeedsSignIn(target if request.method == "GET" else "/")
    return session


def _proxy_session(console: Console, user: str, now: datetime) -> UserSession:
    sid = mac(console.settings.session_secret, "proxy", user)
    session = console.store.get(sid, now)
    if session is None:
        key = console.settings.proxy_api_key or ""
        session = console.store.create(key, console.apis.whoami(key), user, now, sid=sid)
    return session


UserDep = Annotated[UserSession, Depends(_user)]


def check_csrf(user: UserSession, token: str | None) -> None:
    if not token or not same(token, user.csrf):
        raise Refused(
            403,
            "Form refused",
            "This form did not carry this session's security token (it expired or came from "
            "another site). Reload the page and try again.",
        )


def require(user: UserSession, scope: str, what: str) -> None:
    if not user.can(scope):
        raise Refused(
            403,
            "Not allowed with this key",
            f"Your API key lacks the scope '{scope}' needed to {what}. "
            f"Ask for a key with it (`kamwatch keys create --scopes {scope}`).",
        )


def safe_path(path: str | None, default: str = "/portfolio") -> str:
    """Only local paths: an open redirect would let a link send a signed-in user anywhere."""
    if not path or not path.startswith("/") or path.startswith("//") or "\\" in path:
        return default
    return path


def render(
    console: Console, template: str, user: UserSession | None, status: int = 200, **context: Any
) -> HTMLResponse:
    html = console.templates.get_template(template).render(
        user=user, csrf=user.csrf if user else "", now=console.clock.now(), **context
    )
    return HTMLResponse(html, status_code=status, headers=SECURITY_HEADERS)


def redirect(path: str) -> RedirectResponse:
    return RedirectResponse(path, status_code=303, headers={"Cache-Control": "no-store"})


def install_error_pages(app: FastAPI) -> None:
    def console(request: Request) -> Console:
        return _console(request)

    @app.exception_handler(NeedsSignIn)
    async def _sign_in(_request: Request, exc: NeedsSignIn) -> Response:
        return redirect(f"/signin?next={quote(exc.next_path, safe='')}")

    @app.exception_handler(Refused)
    async def _refused(request: Request, exc: Refused) -> Response:
        return render(console(request), "error.html", None, exc.status, title=exc.title, message=exc.message)

    @app.exception_handler(ApiError)
    async def _api(request: Request, exc: ApiError) -> Response:
        if exc.status == 401:  # the key was revoked since sign-in
            return redirect("/signin?expired=1")
        titles = {403: "Not allowed with this key", 404: "Not found", 503: "Service unavailable"}
        status = exc.status if exc.status in titles or exc.status == 409 else 502
        title = titles.get(exc.status, "Something went wrong")
        return render(console(request), "error.html", None, status, title=title, message=exc.message)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> Response:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e.get('loc', ())[1:])}: {e.get('msg', 'is invalid')}"
            for e in exc.errors()
        )
        message = f"This request is not valid ({problems}). Go back and correct it."
        return render(console(request), "error.html", None, 422, title="Not valid", message=message)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> Response:
        log.error("console.unhandled", path=request.url.path, error_type=type(exc).__name__, exc_info=exc)
        message = "An unexpected error happened; it is in the console's log."
        return render(
            console(request), "error.html", None, 500, title="Something went wrong", message=message
        )
