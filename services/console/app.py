"""Builds the console process: settings -> API clients -> session store -> FastAPI app."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import httpx
from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from services.console.actions import router as actions
from services.console.client import Apis
from services.console.config import ConsoleSettings
from services.console.pages import router as pages
from services.console.sessions import SessionStore
from services.console.web import Console, install_error_pages, templates
from shared.clock import Clock, clock_from_env
from shared.runtime import lifespan_with
from shared.web import install_ops_routes

STATIC = Path(__file__).with_name("static")


def _reachable(url: str) -> str | None:
    try:
        response = httpx.get(url.rstrip("/") + "/healthz", timeout=2)
    except httpx.HTTPError as exc:
        return f"{url} unreachable ({type(exc).__name__})"
    return None if response.status_code == 200 else f"{url} answered {response.status_code}"


def create_app(settings: ConsoleSettings | None = None, *, clock: Clock | None = None) -> FastAPI:
    settings = settings or ConsoleSettings()
    apis = Apis(settings.signals_url, settings.alerts_url, settings.api_timeout_s)
    store = SessionStore(
        settings.session_secret, timedelta(hours=settings.session_hours), settings.max_sessions
    )
    console = Console(settings, apis, store, templates(), clock or clock_from_env(settings.clock_file))
    app = FastAPI(
        title="kamwatch console",
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
        lifespan=lifespan_with(None, apis.close),
    )
    app.state.settings = settings
    app.state.console = console
    app.state.consumer = None
    install_error_pages(app)
    install_ops_routes(
        app,
        "console",
        {
            "signals": lambda: _reachable(settings.signals_url),
            "alerts": lambda: _reachable(settings.alerts_url),
        },
    )
    app.include_router(actions)
    app.include_router(pages)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    return app


def load_settings() -> ConsoleSettings:
    return ConsoleSettings()
