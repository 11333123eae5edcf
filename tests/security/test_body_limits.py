"""Request bodies (issue 11 Low #10): the body deadline is a total deadline, not a per-chunk idle
timeout, and a large body for a keyed route is not buffered before the key is checked."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator

import httpx
import pytest
import uvicorn
from fastapi import FastAPI, Request

from kamwatch.dev.broker import free_port
from shared.db import make_engine, make_sessionmaker
from shared.web import BodyLimit, install_error_handlers
from tests.helpers import wait_for
from tests.security.apps import make_key


def _serve(app: FastAPI) -> Iterator[int]:
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    wait_for(lambda: server.started, 10, "uvicorn")
    try:
        yield port
    finally:
        server.should_exit = True
        thread.join(10)


def _app(body_timeout_s: float, database_url: str | None = None) -> FastAPI:
    app = FastAPI()
    install_error_handlers(app)

    @app.post("/v1/events")
    async def events(request: Request) -> dict[str, int]:
        return {"bytes": len(await request.body())}

    if database_url is not None:
        app.state.sessions = make_sessionmaker(make_engine(database_url))
    app.add_middleware(BodyLimit, max_bytes=1024 * 1024, body_timeout_s=body_timeout_s)
    return app


@pytest.fixture
def trickle_port() -> Iterator[int]:
    yield from _serve(_app(body_timeout_s=1.0))


def test_a_body_trickled_one_byte_at_a_time_gets_408_at_the_total_deadline(trickle_port: int) -> None:
    sock = socket.create_connection(("127.0.0.1", trickle_port), timeout=15)
    sock.sendall(b"POST /v1/events HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n")
    sent = 0
    sock.settimeout(0.3)
    reply = b""
    while sent < 100 and not reply:
        try:
            sock.sendall(b"x")  # each byte well within the old 1 s per-chunk idle timeout
            sent += 1
            reply = sock.recv(4096)
        except TimeoutError:
            continue
        except OSError:
            break
    sock.settimeout(5)
    try:
        while chunk := sock.recv(4096):
            reply += chunk
    except OSError:
        pass
    sock.close()
    assert reply.startswith(b"HTTP/1.1 408"), (sent, reply[:100])
    assert sent < 100, "the whole body was accepted: the deadline was only an idle timeout"


@pytest.fixture
def keyed_port(database_url: str) -> Iterator[int]:
    yield from _serve(_app(body_timeout_s=30.0, database_url=database_url))


def test_a_large_body_without_a_valid_key_is_refused_before_it_is_read(
    keyed_port: int, database_url: str
) -> None:
    for auth in (b"", b"Authorization: Bearer kw_nope_not-a-key\r\n"):
        sock = socket.create_connection(("127.0.0.1", keyed_port), timeout=5)
        # Announce 500 KB, send none of it: only an early answer can come back within 5 s.
        sock.sendall(b"POST /v1/events HTTP/1.1\r\nHost: x\r\n" + auth + b"Content-Length: 500000\r\n\r\n")
        reply = sock.recv(4096)  # before the fix: nothing within the socket's 5 s timeout
        sock.close()
        assert reply.startswith(b"HTTP/1.1 401"), reply[:100]
    key = make_key(database_url, ["events:write"])
    response = httpx.post(
        f"http://127.0.0.1:{keyed_port}/v1/events",
        content=b"x" * 200_000,
        headers={"Authorization": f"Bearer {key}"},
        timeout=30,
    )
    assert response.json() == {"bytes": 200_000}
    small = httpx.post(f"http://127.0.0.1:{keyed_port}/v1/events", content=b"x" * 10, timeout=30)
    assert small.json() == {"bytes": 10}  # small bodies: the route's own key check answers
