"""Webhooks under attack: replays, tampering, missing or garbage headers, oversize and stalled
bodies, secret rotation; and no signed payload, however malformed, gets a 500."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi import FastAPI, Request
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kamwatch.dev.broker import free_port
from services.ingest.webhooks import sign_stripe, sign_zendesk
from shared.config import CommonSettings
from shared.web import BodyLimit, install_error_handlers
from tests.helpers import NOW, make_usage_event, wait_for
from tests.reliability.conftest import report
from tests.reliability.stack import WEBHOOK_SECRETS, ServiceProcess, fresh_database, healthy
from tests.reliability.strategies import json_values
from tests.security.apps import CLOUDEVENTS_SECRETS, STRIPE_SECRETS, ZENDESK_SECRETS, make_key, running


@pytest.fixture
def database_url(request: pytest.FixtureRequest) -> str:
    return fresh_database(request, "sqlite")  # HTTP-level checks: one backend is enough


STRIPE = "/v1/webhooks/stripe"


def _invoice(event_id: str = "evt_h1") -> bytes:
    due = int(NOW.timestamp()) - 47 * 86400
    invoice = {"id": "in_h", "customer": "cus_h", "currency": "eur", "amount_due": 9900, "due_date": due}
    return json.dumps(
        {
            "id": event_id,
            "type": "invoice.overdue",
            "created": int(NOW.timestamp()),
            "data": {"object": invoice},
        }
    ).encode()


@pytest.fixture
def ingest(common_settings: CommonSettings, tmp_path: Path) -> Iterator[TestClient]:
    with running("ingest", common_settings, tmp_path) as client:
        yield client


def _stripe(client: TestClient, body: bytes, header: str | None) -> int:
    # Bytes: a raw client can send any latin-1 octets, which the server decodes as latin-1.
    headers = {"Stripe-Signature": header.encode("latin-1")} if header is not None else {}
    return client.post(STRIPE, content=body, headers=headers).status_code


def test_replayed_tampered_and_garbage_signatures_are_401(ingest: TestClient) -> None:
    body, now = _invoice(), int(time.time())
    secret = STRIPE_SECRETS[1]
    tried = {
        "replayed 301 s later": sign_stripe(body, secret, now - 301),
        "signed 301 s in the future": sign_stripe(body, secret, now + 301),
        "timestamp swapped after signing": sign_stripe(body, secret, now - 1000).replace(
            f"t={now - 1000}", f"t={now}"
        ),
        "no v1": f"t={now}",
        "no t": "v1=" + "0" * 64,
        "unicode digits in t": "t=\u00b2\u00b3,v1=00",
        "400-digit t (overflowed to a 500)": "t=" + "9" * 400 + ",v1=" + "0" * 64,
        "non-ASCII signature": f"t={now},v1=\u00e9\u00e9",
        "empty": "",
        "garbage": "\u00ff" * 300,
        "retired secret": sign_stripe(body, "whsec_retired_last_year", now),
    }
    for what, header in tried.items():
        assert _stripe(ingest, body, header) == 401, what
    assert _stripe(ingest, body, None) == 401, "missing header"
    tampered = body.replace(b"9900", b"9901")
    assert _stripe(ingest, tampered, sign_stripe(body, secret, now)) == 401, "body tampered after signing"
    # Within the tolerance and with either secret of a rotation: accepted.
    for i, valid in enumerate(STRIPE_SECRETS):
        assert (
            _stripe(ingest, _invoice(f"evt_rot{i}"), sign_stripe(_invoice(f"evt_rot{i}"), valid, now - 290))
            == 202
        )
    report(f"stripe: {len(tried) + 2} forged/replayed/tampered requests refused, 2 rotation secrets accepted")


def test_zendesk_and_cloudevents_need_every_header_and_the_exact_body(ingest: TestClient) -> None:
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    body = json.dumps(
        {
            "id": "zd-h",
            "type": "zen:event-type:ticket.created",
            "time": NOW.isoformat(),  # event time on the service's (manual) clock
            "detail": {"id": "5", "priority": "LOW", "status": "NEW", "organization_id": "42"},
        }
    ).encode()
    zd = "/v1/webhooks/zendesk"
    signature = sign_zendesk(body, ZENDESK_SECRETS[0], stamp)
    full = {"X-Zendesk-Webhook-Signature": signature, "X-Zendesk-Webhook-Signature-Timestamp": stamp}
    for missing in full:
        headers = {k: v for k, v in full.items() if k != missing}
        assert ingest.post(zd, content=body, headers=headers).status_code == 401, missing
    old = "2020-01-01T00:00:00Z"
    replay = {
        "X-Zendesk-Webhook-Signature": sign_zendesk(body, ZENDESK_SECRETS[0], old),
        "X-Zendesk-Webhook-Signature-Timestamp": old,
    }
    assert ingest.post(zd, content=body, headers=replay).status_code == 401
    assert ingest.post(zd, content=body + b"\n", headers=full).status_code == 401
    garbage = {**full, "X-Zendesk-Webhook-Signature": ("\u00e9" * 44).encode("latin-1")}
    assert ingest.post(zd, content=body, headers=garbage).status_code == 401
    assert ingest.post(zd, content=body, headers=full).status_code == 202
    rotated = {**full, "X-Zendesk-Webhook-Signature": sign_zendesk(body, ZENDESK_SECRETS[1], stamp)}
    assert ingest.post(zd, content=body, headers=rotated).status_code == 202

    event = json.dumps(make_usage_event(id="ce-h", subject="acme")).encode()
    ce = "/v1/webhooks/cloudevents"
    good = sign_stripe(event, CLOUDEVENTS_SECRETS[0], int(time.time()))
    assert ingest.post(ce, content=event).status_code == 401
    assert (
        ingest.post(ce, content=event, headers={"Stripe-Signature": good}).status_code == 401
    )  # wrong header
    assert ingest.post(ce, content=event, headers={"X-Kamwatch-Signature": good}).status_code == 202


def test_oversize_bodies_get_413_by_length_and_while_streaming(
    ingest: TestClient, common_settings: CommonSettings
) -> None:
    key = make_key(common_settings.database_url, ["events:write"])
    big = b"[" + b" " * (70 * 1024) + b"]"
    auth = {"Authorization": f"Bearer {key}", "content-type": "application/json"}
    assert ingest.post("/v1/events", content=big, headers=auth).status_code == 413
    assert ingest.post(STRIPE, content=big, headers={"Stripe-Signature": "t=1,v1=0"}).status_code == 413

    def chunks() -> Iterator[bytes]:  # no Content-Length: the limit applies while reading
        for _ in range(80):
            yield b" " * 1024

    assert ingest.post(STRIPE, content=chunks(), headers={"Stripe-Signature": "t=1,v1=0"}).status_code == 413
    assert ingest.post("/v1/events", content=chunks(), headers=auth).status_code == 413


SIGNED_FUZZ = settings(max_examples=80, deadline=None, suppress_health_check=list(HealthCheck))


@SIGNED_FUZZ
@given(payload=json_values, kind=st.sampled_from(["invoice.paid", "customer.subscription.updated", "zen"]))
def test_validly_signed_garbage_never_gets_a_500(ingest: TestClient, payload: Any, kind: str) -> None:
    if isinstance(payload, dict):
        payload.setdefault("type", "zen:event-type:ticket.status_changed" if kind == "zen" else kind)
    body = json.dumps(payload).encode()
    if kind == "zen":
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        headers = {
            "X-Zendesk-Webhook-Signature": sign_zendesk(body, ZENDESK_SECRETS[0], stamp),
            "X-Zendesk-Webhook-Signature-Timestamp": stamp,
        }
        status = ingest.post("/v1/webhooks/zendesk", content=body, headers=headers).status_code
    else:
        status = _stripe(ingest, body, sign_stripe(body, STRIPE_SECRETS[0], int(time.time())))
    assert status in (200, 202, 422), (status, payload)


# --- slow-loris ------------------------------------------------------------------------------
def _stall(port: int, count: int) -> list[socket.socket]:
    """Connections that send headers and part of a body, then nothing."""
    stalled = []
    for i in range(count):
        sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        sock.sendall(
            b"POST /v1/webhooks/stripe HTTP/1.1\r\nHost: x\r\nStripe-Signature: t=1,v1=00\r\n"
            b"Content-Type: application/json\r\nContent-Length: 5000\r\n\r\n" + b'{"id": "' + str(i).encode()
        )
        stalled.append(sock)
    return stalled


def test_stalled_partial_bodies_do_not_block_other_requests(
    service_env: Callable[..., dict[str, str]], common_settings: CommonSettings, tmp_path: Path
) -> None:
    env = service_env(KAMWATCH_INGEST_GROUP_ID=f"{common_settings.topics.events}-ingest", **WEBHOOK_SECRETS)
    ingest = ServiceProcess("ingest", env, tmp_path / "ingest.log")
    ingest.start()
    key = make_key(common_settings.database_url, ["events:write"])
    stalled: list[socket.socket] = []
    try:
        stalled = _stall(ingest.port, 50)
        served = 0
        with httpx.Client(base_url=ingest.url, timeout=15) as client:
            for i in range(5):
                assert client.get("/healthz").status_code == 200
                body = _invoice(f"evt_loris{i}")
                secret = WEBHOOK_SECRETS["KAMWATCH_INGEST_STRIPE_WEBHOOK_SECRETS"].split(",")[0]
                headers = {"Stripe-Signature": sign_stripe(body, secret, int(time.time()))}
                assert client.post(STRIPE, content=body, headers=headers).status_code == 202
                event = make_usage_event(id=f"loris-{i}", subject="acme")
                response = client.post("/v1/events", json=event, headers={"Authorization": f"Bearer {key}"})
                assert response.status_code == 202
                served += 3
        report(f"slow-loris: {len(stalled)} stalled uploads open; {served} other requests served meanwhile")
    finally:
        for sock in stalled:
            sock.close()
        ingest.stop()


def test_a_stalled_body_is_answered_408_and_closed() -> None:
    """The deadline BodyLimit puts on a request body (uvicorn has none), on a real uvicorn."""
    app = FastAPI()
    install_error_handlers(app)

    @app.post("/upload")
    async def upload(request: Request) -> dict[str, int]:
        return {"bytes": len(await request.body())}

    app.add_middleware(BodyLimit, max_bytes=4096, body_timeout_s=1)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    wait_for(lambda: server.started, 10, "uvicorn")
    try:
        sock = socket.create_connection(("127.0.0.1", port), timeout=15)
        sock.sendall(b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n0123456789")
        reply = b""
        while chunk := sock.recv(4096):  # the server closes after answering
            reply += chunk
        sock.close()
        assert reply.startswith(b"HTTP/1.1 408"), reply[:100]
        assert httpx.post(f"http://127.0.0.1:{port}/upload", content=b"x" * 10).json() == {"bytes": 10}
    finally:
        server.should_exit = True
        thread.join(10)
    assert not healthy(port)
