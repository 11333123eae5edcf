"""The consumer: invalid events go to the dead-letter topic, duplicates are counted, metrics show."""

from __future__ import annotations

from fastapi.testclient import TestClient

from shared.config import CommonSettings
from shared.events import to_json
from tests.helpers import NOW, produce, read_topic, wait_for
from tests.signals.streams import daily_usage, event


def test_invalid_events_are_dead_lettered_and_valid_ones_applied(
    signals: TestClient, auth: dict[str, str], common_settings: CommonSettings
) -> None:
    topics = common_settings.topics
    valid = daily_usage("acme", NOW, 1, 10.0)[0]
    alias = event("usage.recorded", "stripe:cus_1", NOW, {"metric": "calls", "quantity": 1}, id="alias-1")
    messages = [("acme", b"{not json"), ("cus", to_json(alias).encode()), ("acme", to_json(valid).encode())]
    produce(common_settings.kafka_bootstrap, topics.events, [*messages, ("acme", to_json(valid).encode())])

    dead = read_topic(common_settings.kafka_bootstrap, topics.deadletter, 2)
    assert len(dead) == 2
    errors = sorted(dict(d.headers)["kw_error"].decode() for d in dead)
    assert errors[0].startswith("event is not valid JSON") and "account id" in errors[1]
    wait_for(
        lambda: (
            signals.get("/v1/accounts/acme/features", headers=auth)
            .json()
            .get("features", {})
            .get("usage_7d_avg")
        ),
        what="valid event applied",
    )
    metrics = signals.get("/metrics").text
    assert 'kamwatch_signals_events_total{outcome="applied",type="usage.recorded"} ' in metrics
    assert 'kamwatch_signals_model_info{version="scorecard-3"} 1.0' in metrics
