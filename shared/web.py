"""FastAPI plumbing shared by the services: request dependencies (session, clock, publisher,
API-key scope), errors, health, metrics, body limits."""

from __future__ import annotations

import asyncio
import hmac
import json
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated, Any, TypeVar

from fastapi import Depends, FastAPI, Header, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import Executable, Row
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.orm import Session, sessionmaker
from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shared.auth import KeyCache, lookup_scopes
from shared.clock import Clock
from shared.db import ReadPlan, ReadStep, transaction
from shared.errors import AppError, Forbidden, Problem, Unauthorized, ValidationFailed, problems_from, summary
from shared.kafka import Publisher
from shared.logging import get_logger
from shared.metrics import HTTP_REQUESTS, HTTP_SECONDS
from shared.openapi import install_openapi

log = get_logger(__name__)
T = TypeVar("T")
ReadyCheck = Callable[[], str | None]  # returns None when fine, else what is wrong


# --- request-scoped dependencies --------------------------------------------------------------
async def _session(request: Request) -> AsyncIterator[Session]:
    """One transaction per request: commit when the route returns, roll back when it raises.

    The session is made on the event loop (no I/O: it connects on its first statement), and the
    commit or rollback runs on a worker thread only when a statement began a transaction, so a
    read route costs one thread hop (its own) rather than three."""
    factory: sessionmaker[Session] = request.app.state.sessions
    session = factory()
    try:
        yield session
    except BaseException:
        await _finish(session, commit=False)
        raise
    await _finish(session, commit=True)


async def _finish(session: Session, *, commit: bool) -> None:
    """Commit (or roll back) and close the request's session; blocking work off the event loop."""
    if not session.in_transaction():
        session.close()  # nothing began: no connection to give back
        return

    def finish() -> None:
        try:
            if commit:
                session.commit()
            else:
                session.rollback()
        except BaseException:
            session.rollback()
            raise
        finally:
            session.close()

    await run_in_threadpool(finish)


class Reader:
    """A read-only unit of work in one transaction on one worker thread: `await reader(work)`
    runs `work(session)` there, then commits and closes. A read route built on it costs one
    thread hop in all (a route on SessionDep costs two: the route, then the commit); on this
    2-core machine the hand-offs to worker threads, not the queries, bounded the Risk API.

    `await reader.plan(steps)` runs a ReadPlan in autocommit: on PostgreSQL on the event loop
    (asyncio connections, no worker thread at all), on SQLite on one worker thread."""

    def __init__(self, factory: sessionmaker[Session], async_engine: AsyncEngine | None = None) -> None:
        self.factory = factory
        self.async_engine = async_engine

    @property
    def dialect(self) -> str:
        bind = self.factory.kw["bind"]
        return str(bind.dialect.name)

    async def plan(self, steps: ReadPlan[T]) -> T:
        """Drive `steps`: each statement it yields is executed and its rows sent back."""
        if self.async_engine is None:

            def run(session: Session) -> T:
                return _drive(steps, lambda step: list(session.execute(*_statement(step))))

            return await self(run, autocommit=True)
        async with self.async_engine.connect() as connection:
            rows: list[Row[Any]] | None = None
            try:
                while True:
                    statement = next(steps) if rows is None else steps.send(rows)
                    rows = list(await connection.execute(*_statement(statement)))
            except StopIteration as done:
                return done.value

    async def __call__(self, work: Callable[[Session], T], *, autocommit: bool = False) -> T:
        """`autocommit`: the work needs no transaction of its own (a lookup by key, or reads that
        need no common snapshot: under READ COMMITTED they would not share one anyway); on
        PostgreSQL it runs in autocommit, saving the BEGIN and COMMIT round trips."""

        def run() -> T:
            with transaction(self.factory) as session:
                if autocommit and session.get_bind().dialect.name == "postgresql":
                    session.connection(execution_options={"isolation_level": "AUTOCOMMIT"})
                return work(session)

        return await run_in_threadpool(run)


def _statement(step: ReadStep) -> tuple[Executable, dict[str, Any] | None]:
    return step if isinstance(step, tuple) else (step, None)


def _drive(steps: ReadPlan[T], execute: Callable[[ReadStep], list[Row[Any]]]) -> T:
    rows: list[Row[Any]] | None = None
    try:
        while True:
            statement = next(steps) if rows is None else steps.send(rows)
            rows = execute(statement)
    except StopIteration as done:
        return done.value


async def _reader(request: Request) -> Reader:
    return Reader(request.app.state.sessions, getattr(request.app.state, "async_engine", None))


async def _clock(request: Request) -> Clock:
    clock: Clock = request.app.state.clock
    return clock


async def _publisher(request: Request) -> Publisher:
    publisher: Publisher = request.app.state.publisher
    return publisher


async def _raw_body(request: Request) -> bytes:
    return await request.body()


# scope="function": the commit happens before the response is sent, so a 2xx means committed.
SessionDep = Annotated[Session, Depends(_session, scope="function")]
ReaderDep = Annotated[Reader, Depends(_reader)]
ClockDep = Annotated[Clock, Depends(_clock)]
PublisherDep = Annotated[Publisher, Depends(_publisher)]
# The raw request bytes, read on the event loop, so the route itself can be a `def` (thread pool).
RawBodyDep = Annotated[bytes, Depends(_raw_body)]


def app_part(name: str) -> Callable[[Request], Any]:
    """A dependency returning a part that build_service put on the app (e.g. the alert lifecycle);
    async: it only reads app.state, so it needs no worker thread."""

    async def dependency(request: Request) -> Any:
        return getattr(request.app.state, name)

    return dependency


@dataclass(frozen=True)
class Principal:
    """Who called: the API key's id and its scopes."""

    key_id: str
    scopes: frozenset[str]


_NO_CACHE = KeyCache(ttl_s=0)


def _key_cache(app: Any) -> KeyCache:
    """The app's API-key cache (`build_service` puts one on app.state), else no caching."""
    cache = getattr(getattr(app, "state", None), "key_cache", None)
    return cache if isinstance(cache, KeyCache) else _NO_CACHE


def require_scope(scope: str) -> Callable[..., Awaitable[Principal]]:
    """Dependency: a bearer key holding `scope` (or `admin`). A key in the cache
    (shared.auth.KeyCache) is checked on the event loop; a miss reads the key table in a short
    transaction of its own on a worker thread."""

    async def dependency(
        request: Request,
        authorization: Annotated[str, Header(include_in_schema=False)] = "",
    ) -> Principal:
        scheme, _, key = authorization.partition(" ")
        key = key.strip()
        if scheme.lower() != "bearer" or not key:
            raise Unauthorized(
                "missing API key: send 'Authorization: Bearer <key>' "
                "(make run prints a local key; `kamwatch keys create` makes others)",
                headers={"WWW-Authenticate": "Bearer"},
            )
        cache = _key_cache(request.app)
        scopes = cache.cached(key)
        if scopes is None:
            factory: sessionmaker[Session] = request.app.state.sessions

            def load() -> set[str] | None:
                with transaction(factory) as session:
                    return lookup_scopes(session, key)

            scopes = await run_in_threadpool(cache.scopes, key, load)
        if scopes is None:
            raise Unauthorized("API key is unknown or revoked", headers={"WWW-Authenticate": "Bearer"})
        if scope not in scopes and "admin" not in scopes:
            raise Forbidden(
                f"this API key lacks the scope '{scope}'; create one with "
                f"`kamwatch keys create --scopes {scope}`"
            )
        key_id = key[3:].split("_", 1)[0]
        return Principal(key_id, frozenset(scopes))

    return dependency


def _query_names(dependant: Any) -> frozenset[str]:
    """Every query parameter a route declares, its dependencies' included (by their aliases)."""
    names: set[str] = set()
    stack = [dependant]
    while stack:
        current = stack.pop()
        names.update(field.alias for field in current.query_params)
        stack.extend(current.dependencies)
    return frozenset(names)


async def reject_unknown_query(request: Request) -> None:
    """Dependency: a query parameter the route does not declare is a 422 naming it (a misspelt
    filter would otherwise be ignored silently and answer the unfiltered list). Use it as
    `@router.get(..., dependencies=[StrictQuery])`."""
    route = request.scope.get("route")
    dependant = getattr(route, "dependant", None)
    if dependant is None:
        return
    known = _query_names(dependant)
    unknown = sorted(set(request.query_params) - known)
    if unknown:
        listed = ", ".join(sorted(known)) or "none"
        raise ValidationFailed(
            f"unknown query parameter{'s' if len(unknown) > 1 else ''} {', '.join(map(repr, unknown))}; "
            f"known: {listed}",
            problems=[Problem(name, f"unknown query parameter; known: {listed}") for name in unknown],
        )


StrictQuery = Depends(reject_unknown_query)


# --- errors -----------------------------------------------------------------------------------


def install_error_handlers(app: FastAPI) -> None:
    install_openapi(app)  # documents the error shape below, the bearer scheme and the events body

    @app.exception_handler(AppError)
    async def _app_error(_request: Request, exc: AppError) -> JSONResponse:
        return JSONResponse(exc.as_dict(), status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_request: Request, exc: RequestValidationError) -> JSONResponse:
        # "body" is where FastAPI puts the whole JSON body; callers name fields inside it.
        problems = problems_from(exc.errors(), skip=("body",), empty="body")
        body = {
            "error": "validation_failed",
            "message": "the request is invalid: " + summary(problems),
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


# Paths that take no API key (signed webhooks, signed alert links, probes): their bodies are read
# before anything can be checked; every other body larger than KEY_FIRST_BYTES needs a valid key
# before kamwatch buffers it.
PUBLIC_PREFIXES = ("/v1/webhooks/", "/v1/alert-links/", "/healthz", "/readyz", "/metrics")
KEY_FIRST_BYTES = 64 * 1024


class InFlightLimit:
    """At most `limit` API requests (paths under /v1/) inside the app at once; the others wait on
    the event loop, holding nothing.

    A request on SessionDep takes its database connection on the worker thread of its route, keeps
    it while it waits for the next worker thread (the commit), and gives it back at the end. With
    more requests in flight than the pool has connections, every worker thread could end up
    waiting for a connection held by a request that waits for a thread: the pool's 30-second
    timeout, then 500s (the risk benchmark saw exactly that at 50 clients). Bounding the requests
    in flight by the worker threads, with the pool sized above them
    (runtime.pool_for), rules that out. /healthz, /readyz and /metrics are not counted."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit
        self._slots: asyncio.Semaphore | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not str(scope.get("path", "")).startswith("/v1/"):
            await self.app(scope, receive, send)
            return
        if self._slots is None:
            self._slots = asyncio.Semaphore(self.limit)
        async with self._slots:
            await self.app(scope, receive, send)


class BodyLimit:
    """Answer 413 for bodies over `max_bytes` (by Content-Length, or while reading), 408 when the
    whole body has not arrived within `body_timeout_s` (a total deadline: a client trickling one
    byte at a time must not hold a connection forever; uvicorn has no body timeout), and 401 before
    buffering a large body for a keyed route when the request carries no valid API key.

    The body is read here, before the app runs, and handed on in one piece: raising from inside
    the app's `receive` would surface through Starlette's middleware task groups as a 500.
    """

    def __init__(self, app: ASGIApp, max_bytes: int, body_timeout_s: float = 30.0) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.body_timeout_s = body_timeout_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        length = headers.get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.max_bytes:
            await self._reject(send, 413, "payload_too_large", self._too_large)
            return
        large = length is None or not length.isdigit() or int(length) > KEY_FIRST_BYTES
        if large and scope["method"] != "GET" and not await self._key_ok(scope, headers):
            await self._reject(
                send, 401, "unauthorized", "a valid API key is needed before a large body is read"
            )
            return
        body = await self._read(receive, send)
        if body is None:
            return
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if replayed:  # later receives wait for a disconnect
                return await receive()
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, replay, send)

    @staticmethod
    async def _key_ok(scope: Scope, headers: dict[bytes, bytes]) -> bool:
        """A keyed route's caller holds a known, unrevoked key (scopes are the route's business)."""
        path = str(scope.get("path", ""))
        if path.startswith(PUBLIC_PREFIXES):
            return True
        scheme, _, key = headers.get(b"authorization", b"").decode("latin-1").partition(" ")
        state = getattr(scope.get("app"), "state", None)
        factory = getattr(state, "sessions", None)
        if scheme.lower() != "bearer" or not key.strip():
            return False
        if factory is None:
            return True  # an app without keys (tests of this middleware alone)

        def load() -> set[str] | None:
            with transaction(factory) as session:
                return lookup_scopes(session, key.strip())

        cache = _key_cache(scope.get("app"))
        return bool(await asyncio.to_thread(cache.scopes, key.strip(), load) is not None)

    async def _read(self, receive: Receive, send: Send) -> bytes | None:
        """The whole body, or None once a 413/408 was sent (or the client went away)."""
        chunks: list[bytes] = []
        seen, more = 0, True
        deadline = asyncio.get_running_loop().time() + self.body_timeout_s
        while more:
            try:
                remaining = max(0.0, deadline - asyncio.get_running_loop().time())
                message = await asyncio.wait_for(receive(), remaining)
            except TimeoutError:
                message_text = f"the request body did not arrive within {self.body_timeout_s:g} s"
                await self._reject(send, 408, "request_timeout", message_text)
                return None
            if message["type"] != "http.request":
                return None  # http.disconnect: nobody to answer
            chunk = message.get("body", b"")
            seen += len(chunk)
            if seen > self.max_bytes:
                await self._reject(send, 413, "payload_too_large", self._too_large)
                return None
            chunks.append(chunk)
            more = message.get("more_body", False)
        return b"".join(chunks)

    @property
    def _too_large(self) -> str:
        return f"request body is larger than {self.max_bytes} bytes; split it into smaller batches"

    async def _reject(self, send: Send, status: int, error: str, message: str) -> None:
        body = json.dumps({"error": error, "message": message}).encode()
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"connection", b"close"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})


def broker_reachable(bootstrap: str) -> str | None:
    for address in bootstrap.split(","):
        host, _, port = address.strip().rpartition(":")
        try:
            with socket.create_connection((host, int(port)), timeout=1):
                return None
        except OSError:
            continue
    return f"no broker answers at {bootstrap}"


def install_ops_routes(
    app: FastAPI, service: str, checks: dict[str, ReadyCheck], metrics_token: str | None = None
) -> None:
    """/healthz (alive), /readyz (dependencies reachable), /metrics, plus request metrics.
    With `metrics_token`, /metrics answers only `Authorization: Bearer <token>` (it shows ARR at
    risk, issue 11 Low #11); Prometheus sends it with `authorization.credentials_file`."""

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
    def metrics(authorization: Annotated[str | None, Header(include_in_schema=False)] = None) -> Response:
        if metrics_token:
            scheme, _, token = (authorization or "").partition(" ")
            if scheme.lower() != "bearer" or not hmac.compare_digest(
                token.strip().encode(), metrics_token.encode()
            ):
                return JSONResponse(
                    {
                        "error": "unauthorized",
                        "message": "send Authorization: Bearer <KAMWATCH_METRICS_TOKEN>",
                    },
                    status_code=401,
                    headers={"WWW-Authenticate": "Bearer"},
                )
        return PlainTextResponse(generate_latest().decode(), media_type=CONTENT_TYPE_LATEST)
