"""Process wiring for a service: one FastAPI app + one consumer loop thread, clean shutdown."""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import uvicorn
from fastapi import FastAPI

from shared.kafka import BatchLoop
from shared.logging import get_logger

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

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()


def lifespan_with(consumer: ConsumerThread | None, on_stop: Callable[[], None]) -> Any:
    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        if consumer is not None:
            consumer.start()
        try:
            yield
        finally:
            if consumer is not None:
                consumer.stop()
            on_stop()

    return lifespan


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
