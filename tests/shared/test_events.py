"""The event contract: every type validates, bad input names the field, schemas are committed."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest

from shared.errors import EventInvalid
from shared.events import EVENT_TYPES, decode_json, parse_account_ref, to_json, validate_event
from shared.schema_files import check_schemas
from tests.helpers import NOW, cloud_event
from tests.shared.examples import EXAMPLES


def test_committed_json_schemas_match_the_models() -> None:
    assert check_schemas() == [], "run `kamwatch schemas` and commit shared/schemas/"


def test_every_event_type_has_a_documented_example_that_validates(repo_root) -> None:
    assert set(EXAMPLES) == set(EVENT_TYPES)
    doc = (repo_root / "docs" / "events.md").read_text()
    for event_type, data in EXAMPLES.items():
        event = validate_event(cloud_event(event_type, data), NOW)
        assert event.type == event_type
        assert f'"type": "{event_type}"' in doc, f"docs/events.md lacks an example of {event_type}"


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        (lambda e: e.pop("time"), "time"),
        (lambda e: e.update(specversion="0.3"), "specversion"),
        (lambda e: e.update(type="usage.deleted"), "type"),
        (lambda e: e["data"].update(quantity="lots"), "data.quantity"),
        (lambda e: e["data"].pop("metric"), "data.metric"),
        (lambda e: e["data"].update(surprise=1), "data.surprise"),
        (lambda e: e.update(time="2026-11-01T12:00:00"), "time"),
    ],
)
def test_invalid_events_name_the_field(mutate, field: str) -> None:
    event = cloud_event("usage.recorded", {"metric": "api_calls", "quantity": 5})
    mutate(event)
    with pytest.raises(EventInvalid) as info:
        validate_event(event, NOW)
    assert field in [p.field for p in info.value.problems]


@pytest.mark.parametrize(
    ("when", "word"), [(NOW + timedelta(days=3), "future"), (NOW.replace(year=1999), "old")]
)
def test_event_times_outside_the_plausible_range_are_rejected(when, word: str) -> None:
    with pytest.raises(EventInvalid, match=word):
        validate_event(cloud_event("usage.recorded", {"metric": "m", "quantity": 1}, time=when), NOW)


def test_bad_bytes_are_reported_not_raised() -> None:
    for raw, reason in [(b"\xff\xfe", "UTF-8"), (b"{", "JSON"), (b"[" * 100000, "JSON")]:
        with pytest.raises(EventInvalid, match=reason):
            decode_json(raw)


def test_canonical_json_is_deterministic_and_normalises_time_to_utc() -> None:
    event = cloud_event("usage.recorded", {"quantity": 1, "metric": "m"}, time=NOW)
    event["time"] = "2026-11-01T13:00:00+01:00"
    first = to_json(validate_event(event, NOW))
    second = to_json(validate_event(json.loads(first), NOW))
    assert first == second
    assert json.loads(first)["time"] == "2026-11-01T12:00:00Z"


def test_account_references() -> None:
    assert parse_account_ref("acme").account_id == "acme"
    alias = parse_account_ref("stripe:cus_42")
    assert (alias.system, alias.external_id) == ("stripe", "cus_42")
    with pytest.raises(EventInvalid):
        parse_account_ref("has space")
