"""Hostile registry strings (issue 11 High #1): refused at PUT/import, and whatever a record
holds, alert composition never raises; a bad value fails its own message, with a reason."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal
from email import message_from_string, policy
from typing import Any

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from services.alerts.compose import Composer
from services.alerts.config import AlertsSettings
from services.alerts.escalation import Recipient, recipients
from services.alerts.lifecycle import account_values
from services.alerts.models import Alert, AlertAccount
from services.alerts.policy import load_policy
from shared.contracts import AccountRecord

NOW = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)
HOSTILE = [
    "Mallory\r\nBcc: everyone@example.com",
    "line\nbreak",
    "carriage\rreturn",
    "next\x85line",
    "line\u2028separator",
    "para\u2029separator",
    "vertical\x0btab",
    "form\x0cfeed",
    "escape\x1b[31m",
    "bell\x07",
    "nul\x00",
    "bidi\u202eoverride",
    "isolate\u2066x\u2069",
    "A" * 300,
    "A" * 5000,
    "Zoë Ñandú 株式会社 🙂",  # fine: must be accepted and rendered
    "=?utf-8?q?encoded?=",
    "<script>alert(1)</script> & *bold* <!channel>",
]
ZONES = ["A" * 300, "Mars/Base", "../../etc/passwd", "Europe/Berlin\n", "UTC", "Europe/Berlin", ""]
FIELDS = ["name", "tier", "segment", "owner.name", "owner.slack_handle", "manager.name", "external_ids.crm"]


def _body(field: str, value: str) -> dict[str, Any]:
    body: dict[str, Any] = {
        "name": "Acme GmbH",
        "arr": "1000",
        "owner": {"name": "Olivia", "email": "olivia@example.com"},
        "manager": {"name": "Max", "email": "max@example.com"},
    }
    head, _, tail = field.partition(".")
    if tail:
        body.setdefault(head, {})[tail] = value
    else:
        body[head] = value
    return body


def _expected_ok(value: str, limit: int) -> bool:
    return value in ("Zoë Ñandú 株式会社 🙂", "=?utf-8?q?encoded?=") or (
        value.startswith("<script>") and len(value) <= limit
    )


LIMITS = {"name": 200, "tier": 50, "segment": 50, "owner.name": 200, "owner.slack_handle": 100}


@pytest.mark.parametrize("field", FIELDS)
def test_put_refuses_control_characters_and_overlong_strings_naming_the_field(
    api: TestClient, auth: dict[str, str], field: str
) -> None:
    for value in HOSTILE:
        response = api.put("/v1/accounts/acme", json=_body(field, value), headers=auth)
        if _expected_ok(value, LIMITS.get(field, 128)):
            assert response.status_code == 200, (field, value, response.text)
            continue
        assert response.status_code == 422, (field, value[:40], response.text)
        assert field in {p["field"] for p in response.json()["problems"]} or "NUL" in response.text


@pytest.mark.parametrize("zone", ZONES)
def test_put_accepts_only_real_iana_time_zones(api: TestClient, auth: dict[str, str], zone: str) -> None:
    body = _body("name", "Acme")
    body["owner"]["timezone"] = zone
    response = api.put("/v1/accounts/acme", json=body, headers=auth)
    if zone in ("UTC", "Europe/Berlin"):
        assert response.status_code == 200, response.text
    else:
        assert response.status_code == 422, (zone[:30], response.text)
        [problem] = response.json()["problems"]
        assert problem["field"] == "owner.timezone"


def test_csv_import_refuses_a_name_with_a_line_separator(api: TestClient, auth: dict[str, str]) -> None:
    csv_text = "id,name,arr,owner_name,owner_email\nacme,Acme\u2028Evil,10,Olivia,olivia@example.com\n"
    response = api.post("/v1/accounts:import", content=csv_text, headers={**auth, "Content-Type": "text/csv"})
    assert response.status_code == 422
    assert any("name" in p["field"] for p in response.json()["problems"])


# --- the probe through alert composition --------------------------------------------------------
def _composer() -> Composer:
    settings = AlertsSettings(public_url="http://kamwatch.test", link_secret="x" * 40)
    return Composer(settings, load_policy(settings.policy_file))


def _alert() -> Alert:
    risk = {
        "account_id": "acme",
        "score": 0.82,
        "band": "red",
        "previous_band": "green",
        "drivers": [{"feature": "f", "value": 1.0, "contribution": 0.3, "text": "usage fell"}],
        "changes": ["band green -> red"],
        "features": {},
        "model_version": "scorecard-1",
        "as_of": NOW.isoformat(),
    }
    return Alert(
        id=7,
        account_id="acme",
        triggers=json.dumps([{"trigger": "band_red", "severity": "critical"}]),
        severity="critical",
        risk=json.dumps(risk),
    )


def _people(name: str, zone: str, handle: str) -> dict[str, Any]:
    return {
        "owner": {
            "name": name,
            "email": "olivia@example.com",
            "slack_webhook": "https://hooks.slack.com/services/T/B/x",
            "slack_handle": handle,
            "timezone": zone,
        }
    }


@settings(max_examples=150, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
@given(
    name=st.sampled_from(HOSTILE) | st.text(max_size=60),
    account_name=st.sampled_from(HOSTILE) | st.text(max_size=60),
    zone=st.sampled_from(ZONES) | st.text(max_size=20),
    handle=st.sampled_from(HOSTILE) | st.text(max_size=20),
)
def test_any_registry_strings_compose_or_fail_alone_never_raise(
    name: str, account_name: str, zone: str, handle: str
) -> None:
    """Valid records render into well-formed messages; records that bypassed validation (an older
    version stored them) give a failed delivery with a reason instead of an exception."""
    raw = {"id": "acme", "name": account_name, "arr": "1000", **_people(name, zone, handle)}
    try:
        record = AccountRecord.model_validate(raw)
        valid = True
    except ValidationError:
        record = AccountRecord.model_construct(
            id="acme",
            name=account_name,
            arr=Decimal(1000),
            currency="EUR",
            tier="key",
            segment=None,
            owner=None,
            manager=None,
            executive_sponsor=None,
            external_ids={},
            deleted=False,
        )
        valid = False
    values = account_values(record, NOW)
    if not valid:
        values["people"] = json.dumps(_people(name, zone, handle))
    account = AlertAccount(**values)
    found = recipients(json.loads(account.people), "owner", ["slack", "email"], None)
    assert [r.channel for r in found] == ["slack", "email"]

    rows = _composer().rows([], _alert(), account, "notify", 1, "L1", found, NOW, "")

    assert len(rows) == 2
    for row in rows:
        if valid:
            assert row["state"] == "pending", row["last_error"]
        else:
            assert row["state"] in ("pending", "failed")
            assert row["state"] == "pending" or "could not be composed" in row["last_error"]
        if row["state"] == "pending" and row["channel"] == "email":
            mail = message_from_string(row["payload"], policy=policy.default)
            assert [a.addr_spec for a in mail["To"].addresses] == ["olivia@example.com"]
            assert mail["Bcc"] is None and mail["Cc"] is None
        if row["state"] == "pending" and row["channel"] == "slack":
            json.loads(row["payload"])


def test_a_recipient_time_zone_that_zoneinfo_cannot_open_falls_back_to_utc() -> None:
    person = Recipient("email", "olivia@example.com", "Olivia", "owner", "A" * 300)
    account = AlertAccount(
        account_id="acme",
        name="Acme",
        arr=Decimal(1),
        currency="EUR",
        tier="key",
        segment=None,
        people="{}",
        deleted=False,
        updated_at=NOW,
    )
    [row] = _composer().rows([], _alert(), account, "notify", 1, "L1", [person], NOW, "")
    assert row["state"] == "pending"


@pytest.mark.parametrize(("size", "status"), [(300 * 1024, 413), (5 * 1024 * 1024, 413), (40 * 1024, 422)])
def test_oversized_records_are_refused_at_put(
    api: TestClient, auth: dict[str, str], size: int, status: int
) -> None:
    """A 5 MB record was answered 200 and then failed every relay tick; a 300 KB one was
    dead-lettered downstream. Now: 413 over 64 KiB, and field bounds (422) below that."""
    body = _body("name", "Acme")
    body["external_ids"] = {f"sys{i}": "x" * 100 for i in range(size // 110)}
    response = api.put("/v1/accounts/acme", json=body, headers=auth)
    assert response.status_code == status, response.text[:300]
    if status == 422:
        assert "external_ids" in {p["field"] for p in response.json()["problems"]}
