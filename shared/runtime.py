"""The service skeleton: one FastAPI app + one consumer loop thread, built the same way for every
service (`build_service`), served until SIGTERM, shut down cleanly."""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any

import anyio.to_thread
import uvicorn
from fastapi import APIRouter, FastAPI
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.orm import Session, sessionmaker

from shared.auth import KeyCache
from shared.clock import Clock, clock_from_env
from shared.db import make_async_engine, make_engine, make_sessionmaker, ping
from shared.kafka import BatchHandler, BatchLoop, Publisher, make_consumer, make_producer
from shared.logging import get_logger
from shared.settings import ServiceSettings
from shared.web import BodyLimit, InFlightLimit, broker_reachable, install_error_handlers, install_ops_routes

log = get_logger(__name__)


class ConsumerThread:
    """Runs a BatchLoop in a daemon thread; a crash stops the whole process (exit code 1) so the
    supervisor restarts it: uncommitted offsets are redelivered and nothing is lost."""

    def __init__(self, loop: BatchLoop) -> None:
        self.loop = loop
        self.crashed = False
        self._thread = threading.Thread(target=self._run, name=f"consumer-{loop.name}", daemon=True)

    def _run(self) -> None:
        try:
            self.loop.run()
        except Exception as exc:
            self.crashed = True
            log.error("consumer.crashed", group=self.loop.name, error_type=type(exc).__name__, exc_info=exc)
            os.kill(os.getpid(), signal.SIGTERM)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout_s: float = 30.0) -> None:
        self.loop.stop()
        if self._thread.is_alive():
            self._thread.join(timeout_s)

    def problem(self) -> str | None:
        """For /readyz: the loop is not running, or it looks stuck (see BatchLoop.stall)."""
        if self.crashed:
            return f"consumer {self.loop.name} crashed"
        return self.loop.stall()

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()


def pool_for(url: str, api_threads: int) -> dict[str, int]:
    """PostgreSQL pool sized to the route threads plus the consumer loop and its ticks (SQLite
    keeps SQLAlchemy's own pool: one file, one writer)."""
    if not url.startswith("postgresql"):
        return {}
    return {"pool_size": api_threads + 2, "max_overflow": 2}


def lifespan_with(
    consumer: ConsumerThread | None,
    on_stop: Callable[[], None],
    api_threads: int = 40,
    async_engine: AsyncEngine | None = None,
) -> Any:
    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        # Synchronous routes run on AnyIO's worker threads: as many as the pool has connections.
        anyio.to_thread.current_default_thread_limiter().total_tokens = api_threads
        if consumer is not None:
            consumer.start()
        try:
            yield
        finally:
            if consumer is not None:
                consumer.stop()
            on_stop()
            if async_engine is not None:
                await async_engine.dispose()

    return lifespan


HandlerFactory = Callable[[sessionmaker[Session], Clock], BatchHandler]


def consumer_loop(settings: ServiceSettings, topics: Sequence[str], handler: BatchHandler) -> BatchLoop:
    """The consumer loop of a service: its group on `topics`, one producer for what it emits."""
    common = settings.common
    return BatchLoop(
        name=settings.group_id,
        consumer_factory=lambda: make_consumer(common, settings.group_id, topics),
        publisher=Publisher(
            lambda: make_producer(common), timeout_s=common.producer_delivery_timeout_ms / 1000
        ),
        handler=handler,
        tick_interval_s=settings.tick_interval_s,
        catchup_timeout_s=common.consumer_catchup_timeout_s,
        stall_after_s=common.consumer_stall_after_s,
    )


def build_service(
    name: str,
    settings: ServiceSettings,
    *,
    description: str,
    router: APIRouter,
    topics: Sequence[str],
    handler: HandlerFactory,
    clock: Clock | None = None,
    with_consumer: bool = True,
    publisher: Publisher | None = None,
    parts: Mapping[str, Any] | None = None,
    max_body_bytes: int | None = None,
) -> FastAPI:
    """One service process: engine and sessions, the batch handler on its consumer loop, and the
    FastAPI app whose request dependencies (shared.web) find the session factory, clock,
    `publisher` and service-specific `parts` on `app.state`. Everything is closed on shutdown."""
    clock = clock or clock_from_env(settings.clock_file)
    common = settings.common
    engine = make_engine(common.database_url, **pool_for(common.database_url, common.api_threads))
    sessions = make_sessionmaker(engine)
    # The hot read routes' statements run on the event loop (PostgreSQL; shared.web.Reader.plan):
    # a pool of half as many connections, each held for one read (a process that serves none of
    # those routes never opens one).
    async_engine = make_async_engine(
        common.database_url, pool_size=max(2, common.api_threads // 2), max_overflow=2
    )
    batch_handler = handler(sessions, clock)
    consumer = ConsumerThread(consumer_loop(settings, topics, batch_handler)) if with_consumer else None

    def on_stop() -> None:
        if publisher is not None:
            publisher.close()
        engine.dispose()

    # The interactive docs and the schema describe every route and field: public in dev, off in
    # prod unless KAMWATCH_PUBLIC_DOCS=true (the schema is committed under shared/schemas/).
    docs = settings.common.public_docs
    if docs is None:
        docs = settings.common.profile != "prod"
    app = FastAPI(
        title=f"kamwatch {name}",
        version="1.0.0",
        description=description,
        lifespan=lifespan_with(consumer, on_stop, common.api_threads, async_engine),
        docs_url="/docs" if docs else None,
        redoc_url="/redoc" if docs else None,
        openapi_url="/openapi.json" if docs else None,
    )
    state = {"settings": settings, "sessions": sessions, "clock": clock, "publisher": publisher}
    state["async_engine"] = async_engine
    state["key_cache"] = KeyCache(ttl_s=common.api_key_cache_s)
    state |= {"processor": batch_handler, "consumer": consumer, **(parts or {})}
    for key, value in state.items():
        setattr(app.state, key, value)
    install_error_handlers(app)
    checks = {
        "database": lambda: ping(engine),
        "broker": lambda: broker_reachable(settings.common.kafka_bootstrap),
        "consumer": lambda: consumer.problem() if consumer is not None else None,
    }
    install_ops_routes(app, name, checks, settings.common.metrics_token)
    app.include_router(router)
    # Inside BodyLimit: a body is read before its request takes one of the in-flight slots.
    app.add_middleware(InFlightLimit, limit=common.api_threads)
    app.add_middleware(BodyLimit, max_bytes=max_body_bytes or settings.max_body_bytes)
    return app


def serve(app: FastAPI, host: str, port: int, consumer: ConsumerThread | None) -> int:
    """Serve until SIGTERM/SIGINT; return the process exit code."""
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level="warning",
        access_log=False,
        timeout_graceful_shutdown=10,
        server_header=False,
    )
    server = uvicorn.Server(config)
    server.run()
    if consumer is not None and consumer.crashed:
        return 1
    return 0
