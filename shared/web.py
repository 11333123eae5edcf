"""FastAPI plumbing shared by the services: errors, health, metrics, body limits."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Callable
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shared.errors import AppError, Problem
from shared.logging import get_logger
from shared.metrics import HTTP_REQUESTS, HTTP_SECONDS

log = get_logger(__name__)
ReadyCheck = Callable[[], str | None]  # returns None when fine, else what is wrong


def _validation_problems(exc: RequestValidationError) -> list[Problem]:
    problems = []
    for item in exc.errors():
        loc = [str(p) for p in item.get("loc", ()) if p not in ("body",)]
        problems.append(
            Problem(
                ".".join(loc) or "body",
                "is required" if item.get("type") == "missing" else str(item.get("msg", "is invalid")),
            )
        )
    return problems


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(AppError)
    async def _app_error(_request: Request, exc: AppError) -> JSONResponse:
        return JSONResponse(exc.as_dict(), status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = _validation_problems(exc)
        body = {
            "error": "validation_failed",
            "message": "the request is invalid: " + "; ".join(f"{p.field}: {p.message}" for p in problems),
            "problems": [p.as_dict() for p in problems],
        }
        return JSONResponse(body, status_code=422)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        # Never a stack trace to the caller; the log has it.
        log.error("http.unhandled", path=request.url.path, error_type=type(exc).__name__, exc_info=exc)
        return JSONResponse(
            {"error": "internal", "message": "internal error; see the service log"}, status_code=500
        )


class BodyLimit:
    """Answer 413 for bodies over `max_bytes`, by Content-Length or while streaming."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        length = headers.get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.max_bytes:
            await self._reject(send)
            return
        seen = 0
        too_large = False

        async def limited_receive() -> Message:
            nonlocal seen, too_large
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    too_large = True
                    raise _TooLarge
            return message

        try:
            await self.app(scope, limited_receive, send)
        except _TooLarge:
            await self._reject(send)

    async def _reject(self, send: Send) -> None:
        body = json.dumps(
            {
                "error": "payload_too_large",
                "message": f"request body is larger than {self.max_bytes} bytes; "
                "split it into smaller batches",
            }
        ).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})


class _TooLarge(Exception):
    pass


def broker_reachable(bootstrap: str) -> str | None:
    for address in bootstrap.split(","):
        host, _, port = address.strip().rpartition(":")
        try:
            with socket.create_connection((host, int(port)), timeout=1):
                return None
        except OSError:
            continue
    return f"no broker answers at {bootstrap}"


def install_ops_routes(app: FastAPI, service: str, checks: dict[str, ReadyCheck]) -> None:
    """/healthz (alive), /readyz (dependencies reachable), /metrics, plus request metrics."""

    @app.middleware("http")
    async def _measure(request: Request, call_next: Callable[[Request], Any]) -> Response:
        started = time.perf_counter()
        response: Response = await call_next(request)
        route = request.scope.get("route")
        path = getattr(route, "path", "unmatched")
        HTTP_REQUESTS.labels(service, path, str(response.status_code)).inc()
        HTTP_SECONDS.labels(service, path).observe(time.perf_counter() - started)
        return response

    @app.get("/healthz", include_in_schema=False)
    def healthz() -> dict[str, str]:
        return {"status": "ok", "service": service}

    @app.get("/readyz", include_in_schema=False)
    def readyz() -> JSONResponse:
        failures = {}
        for name, check in checks.items():
            try:
                problem = check()
            except Exception as exc:
                problem = f"{type(exc).__name__}"
            if problem:
                failures[name] = problem
        status = 503 if failures else 200
        return JSONResponse(
            {"status": "unready" if failures else "ready", "service": service, "failures": failures},
            status_code=status,
        )

    @app.get("/metrics", include_in_schema=False)
    def metrics() -> PlainTextResponse:
        return PlainTextResponse(generate_latest().decode(), media_type=CONTENT_TYPE_LATEST)
