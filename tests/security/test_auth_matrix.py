"""Every /v1 route of every service, called without a key, with a wrong-scope key and with the
right key; the public routes (signed webhooks, signed alert links) reject bad signatures/tokens."""

from __future__ import annotations

import json
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient

from services.alerts.links import LinkClaim, sign
from services.ingest.webhooks import sign_stripe, sign_zendesk
from shared.auth import SCOPES, revoke_key
from shared.config import CommonSettings
from shared.db import make_engine, make_sessionmaker, transaction
from tests.helpers import NOW, make_usage_event
from tests.reliability.conftest import report
from tests.security.apps import (
    CLOUDEVENTS_SECRETS,
    LINK_SECRET,
    SERVICES,
    STRIPE_SECRETS,
    ZENDESK_SECRETS,
    make_key,
    running,
)

SIGNED_WEBHOOK = "public: webhook signature"
SIGNED_LINK = "public: signed link token"
ANY_KEY = "any valid key"  # who am I: every key may ask which scopes it has
# Every /v1 route must be listed here: a new route fails this test until it is classified.
ROUTE_SCOPES: dict[tuple[str, str, str], str] = {
    ("ingest", "POST", "/v1/events"): "events:write",
    ("ingest", "POST", "/v1/webhooks/stripe"): SIGNED_WEBHOOK,
    ("ingest", "POST", "/v1/webhooks/zendesk"): SIGNED_WEBHOOK,
    ("ingest", "POST", "/v1/webhooks/cloudevents"): SIGNED_WEBHOOK,
    ("signals", "PUT", "/v1/accounts/{account_id}"): "accounts:write",
    ("signals", "GET", "/v1/accounts/{account_id}"): "risk:read",
    ("signals", "GET", "/v1/accounts"): "risk:read",
    ("signals", "POST", "/v1/accounts:import"): "accounts:write",
    ("signals", "GET", "/v1/accounts/{account_id}/risk"): "risk:read",
    ("signals", "GET", "/v1/accounts/{account_id}/risk/history"): "risk:read",
    ("signals", "GET", "/v1/accounts/{account_id}/features"): "risk:read",
    ("signals", "GET", "/v1/portfolio"): "risk:read",
    ("signals", "GET", "/v1/metrics/revenue"): "risk:read",
    ("signals", "GET", "/v1/renewals"): "risk:read",
    ("signals", "GET", "/v1/outcomes"): "risk:read",
    ("signals", "GET", "/v1/accounts/{account_id}/risk/trend"): "risk:read",
    ("signals", "GET", "/v1/qualification"): "risk:read",
    ("signals", "GET", "/v1/portfolio/board"): "risk:read",
    ("signals", "GET", "/v1/accounts/{account_id}/timeline"): "risk:read",
    ("signals", "GET", "/v1/accounts/{account_id}/contacts"): "risk:read",
    ("signals", "GET", "/v1/accounts/{account_id}/plan"): "risk:read",
    ("signals", "PUT", "/v1/accounts/{account_id}/plan"): "accounts:write",
    ("signals", "GET", "/v1/auth/whoami"): ANY_KEY,
    ("alerts", "GET", "/v1/alerts"): "risk:read",
    ("alerts", "GET", "/v1/alerts/{alert_id}"): "risk:read",
    ("alerts", "POST", "/v1/alerts/{alert_id}/ack"): "alerts:write",
    ("alerts", "POST", "/v1/alerts/{alert_id}/snooze"): "alerts:write",
    ("alerts", "POST", "/v1/alerts/{alert_id}/resolve"): "alerts:write",
    ("alerts", "GET", "/v1/alerts/{alert_id}/tasks"): "risk:read",
    ("alerts", "POST", "/v1/alerts/{alert_id}/tasks/{task_id}/done"): "alerts:write",
    ("alerts", "POST", "/v1/alerts/{alert_id}/tasks/{task_id}/skip"): "alerts:write",
    ("alerts", "GET", "/v1/alert-links/{token}"): SIGNED_LINK,
    ("alerts", "POST", "/v1/alert-links/{token}"): SIGNED_LINK,
}
PATH_VALUES = {"account_id": "acme", "alert_id": "1", "task_id": "1", "token": "x.y"}


def _walk(routes: list[Any], prefix: str = "") -> set[tuple[str, str]]:
    """(method, path) of every API route, including routers included into the app."""
    found: set[tuple[str, str]] = set()
    for route in routes:
        if isinstance(route, APIRoute):
            found.update((m, prefix + route.path) for m in route.methods if m != "HEAD")
        elif hasattr(route, "original_router"):  # FastAPI's included-router wrapper
            found |= _walk(route.original_router.routes, prefix + route.include_context.prefix)
    return found


def _routes(client: TestClient) -> set[tuple[str, str]]:
    return {(m, p) for m, p in _walk(client.app.routes) if p.startswith("/v1")}


def _openapi_routes(client: TestClient) -> set[tuple[str, str]]:
    paths = client.get("/openapi.json").json()["paths"]
    return {(m.upper(), p) for p, ops in paths.items() for m in ops if p.startswith("/v1")}


def _call(client: TestClient, method: str, path: str, headers: dict[str, str]) -> int:
    url = path.format(**PATH_VALUES)
    body = None if method == "GET" else json.dumps({})
    headers = {**headers, "content-type": "application/json"}
    return client.request(method, url, content=body, headers=headers).status_code


def _bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@pytest.mark.parametrize("service", SERVICES)
def test_every_route_needs_a_key_with_its_scope(
    service: str, common_settings: CommonSettings, tmp_path: Path
) -> None:
    url = common_settings.database_url
    revoked = make_key(url, list(SCOPES), "revoked")
    engine = make_engine(url)
    with transaction(make_sessionmaker(engine)) as session:
        assert revoke_key(session, revoked[3:].split("_", 1)[0])
    engine.dispose()
    admin = make_key(url, ["admin"])
    checked = 0
    with running(service, common_settings, tmp_path) as client:
        routes = _routes(client)
        expected = {(m, p) for (s, m, p) in ROUTE_SCOPES if s == service}
        assert routes == expected, f"unclassified or missing /v1 routes in {service}: {routes ^ expected}"
        assert _openapi_routes(client) <= routes
        for method, path in sorted(routes):
            scope = ROUTE_SCOPES[(service, method, path)]
            if scope.startswith("public"):
                continue
            right = make_key(url, [scope] if scope != ANY_KEY else ["events:write"])
            wrong = make_key(url, [s for s in SCOPES if s not in (scope, "admin")])
            where = f"{service} {method} {path}"
            assert _call(client, method, path, {}) == 401, f"{where} without a key"
            assert _call(client, method, path, _bearer("kw_nope_guess")) == 401, f"{where} unknown key"
            assert _call(client, method, path, {"Authorization": right}) == 401, f"{where} no Bearer"
            assert _call(client, method, path, _bearer(revoked)) == 401, f"{where} revoked key"
            if scope != ANY_KEY:
                assert _call(client, method, path, _bearer(wrong)) == 403, f"{where} wrong scope"
            for key in (right, admin):
                status = _call(client, method, path, _bearer(key))
                assert status not in (401, 403, 500), f"{where} with the right key got {status}"
            checked += 1
    backend = url.split(":")[0].split("+")[0]
    calls = "none, unknown, not Bearer, revoked, wrong scope, right scope, admin"
    report(f"auth {service} ({backend}): {checked} protected routes x 7 calls each ({calls})")


def _stripe_body() -> bytes:
    invoice = {"id": "in_1", "customer": "cus_1", "currency": "eur", "amount_due": 1000, "due_date": 1}
    created = int(NOW.timestamp())
    return json.dumps(
        {"id": "evt_1", "type": "invoice.overdue", "created": created, "data": {"object": invoice}}
    ).encode()


def test_webhooks_reject_missing_and_invalid_signatures(
    common_settings: CommonSettings, tmp_path: Path
) -> None:
    body = _stripe_body()
    now = int(time.time())
    ce_body = json.dumps(make_usage_event(id="ce-1", subject="acme")).encode()
    zd_time = NOW.isoformat()
    zd_body = json.dumps(
        {
            "id": "zd-1",
            "type": "zen:event-type:ticket.created",
            "time": zd_time,
            "detail": {"id": "1", "priority": "HIGH", "status": "OPEN", "organization_id": "9"},
        }
    ).encode()
    with running("ingest", common_settings, tmp_path) as client:
        post = client.post
        for path, header, good in (
            ("/v1/webhooks/stripe", "Stripe-Signature", sign_stripe(body, STRIPE_SECRETS[0], now)),
            (
                "/v1/webhooks/cloudevents",
                "X-Kamwatch-Signature",
                sign_stripe(ce_body, CLOUDEVENTS_SECRETS[0], now),
            ),
        ):
            payload = ce_body if "cloudevents" in path else body
            assert post(path, content=payload).status_code == 401
            assert post(path, content=payload, headers={header: "t=1,v1=00"}).status_code == 401
            wrong = sign_stripe(payload, "not-the-secret", now)
            assert post(path, content=payload, headers={header: wrong}).status_code == 401
            assert post(path, content=payload + b" ", headers={header: good}).status_code == 401
            # A key does not replace a signature.
            assert post(path, content=payload, headers={"Authorization": "Bearer x"}).status_code == 401
        zd_sig = sign_zendesk(zd_body, ZENDESK_SECRETS[1], zd_time)
        zd = "/v1/webhooks/zendesk"
        assert post(zd, content=zd_body).status_code == 401
        assert post(zd, content=zd_body, headers={"X-Zendesk-Webhook-Signature": zd_sig}).status_code == 401
        tampered = zd_body.replace(b"HIGH", b"LOW_")
        headers = {"X-Zendesk-Webhook-Signature": zd_sig, "X-Zendesk-Webhook-Signature-Timestamp": zd_time}
        assert post(zd, content=tampered, headers=headers).status_code == 401


def test_alert_links_reject_missing_invalid_and_expired_tokens(
    common_settings: CommonSettings, tmp_path: Path
) -> None:
    good = sign(LINK_SECRET, LinkClaim(1, "ack", "owner@example.com", NOW + timedelta(days=1)))
    expired = sign(LINK_SECRET, LinkClaim(1, "ack", "owner@example.com", NOW - timedelta(seconds=1)))
    foreign = sign("another-installation", LinkClaim(1, "ack", "owner@example.com", NOW + timedelta(days=1)))
    body, mac = good.split(".")
    forged_body = sign(LINK_SECRET, LinkClaim(2, "ack", "x@example.com", NOW + timedelta(days=1))).split(".")[
        0
    ]
    bad = ["x.y", "nodot", f"{forged_body}.{mac}", f"{body}.{mac[:-2]}", expired, foreign, "é.é", f"{body}."]
    with running("alerts", common_settings, tmp_path) as client:
        for token in bad:
            for method in ("GET", "POST"):
                response = client.request(method, f"/v1/alert-links/{token}")
                assert response.status_code == 400, (token, method, response.status_code)
                assert "acknowledged" not in response.text.lower()
        # A valid token passes the check (the alert itself does not exist here: 404, nothing done).
        assert client.post(f"/v1/alert-links/{good}").status_code == 404
        assert client.get(f"/v1/alert-links/{good}").status_code == 200
