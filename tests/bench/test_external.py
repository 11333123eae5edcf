"""The external evaluation data (bench/external): CDNOW -> registry CSV + canonical events, with a
churn label that no feature can see coming from the data itself, loaded through the product's code."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from decimal import Decimal

from sqlalchemy import func, select

from bench.external import cdnow
from bench.external.load import load_folder
from services.signals.models import Account, SignalEvent
from services.signals.registry import parse_csv
from shared.db import make_engine, make_sessionmaker, transaction
from shared.events import validate_event

NOW = datetime(2026, 11, 28, tzinfo=UTC)


def purchase(customer: str, day: str, cds: int = 1, dollars: str = "12.00") -> cdnow.Purchase:
    return cdnow.Purchase(customer, date.fromisoformat(day), cds, Decimal(dollars))


def test_the_churn_label_comes_from_the_months_the_events_never_show() -> None:
    converted = cdnow.convert(
        [
            purchase("00001", "1997-01-05", 2, "25.50"),
            purchase("00001", "1997-01-05", 1, "9.99"),
            purchase("00001", "1997-03-01"),  # never buys again: churned the day after
            purchase("00002", "1997-01-10"),
            purchase("00002", "1998-02-01"),  # bought after the cutoff: active, and not sent
            purchase("00003", "1997-12-31"),  # one purchase, the last day before the cutoff
        ]
    )
    by_account: dict[str, list] = {}
    for event in converted.events:
        by_account.setdefault(event.subject, []).append(event)
    first = by_account["cdnow-00001"]
    usage = [e for e in first if e.type == "usage.recorded"]
    assert {e.data["metric"]: e.data["quantity"] for e in usage[:3]} == {
        "orders": 2.0,
        "cds": 3.0,
        "spend": 35.49,
    }
    churn = [e for e in first if e.type == "account.churned"]
    assert len(churn) == 1 and churn[0].time == datetime(2025, 3, 2, 12, tzinfo=UTC)
    assert max(e.time for e in usage) < churn[0].time == max(e.time for e in first)
    second = by_account["cdnow-00002"]
    assert [e.type for e in second] == ["usage.recorded"] * 3  # no churn, nothing after the cutoff
    cutoff = datetime.combine(cdnow.CUTOFF, datetime.min.time(), UTC) + cdnow.SHIFT
    assert all(e.time < cutoff for e in second)
    assert [e.type for e in by_account["cdnow-00003"]][-1] == "account.churned"
    assert converted.churned == 2 and converted.accounts == 3
    # 28 years later, on the same weekday.
    assert (date(1997, 3, 1) + cdnow.SHIFT).weekday() == date(1997, 3, 1).weekday()
    # The registry knows only the sign-up day: its spend as a yearly value.
    assert converted.registry[0]["arr"] == str(Decimal("35.49") * 12)


def slice_of_cdnow(customers: int = 25) -> list[cdnow.Purchase]:
    """The first customers of the real file (a small, fast slice)."""
    purchases = cdnow.read_log(cdnow.dataset_path().read_text(encoding="utf-8"))
    wanted = {f"{n:05d}" for n in range(1, customers + 1)}
    return [p for p in purchases if p.customer in wanted]


def test_a_slice_of_cdnow_converts_to_a_valid_registry_and_canonical_events(tmp_path) -> None:
    converted = cdnow.convert(slice_of_cdnow())
    registry, events = cdnow.write(converted, tmp_path)
    records, problems = parse_csv(registry.read_text(encoding="utf-8"), NOW)
    assert problems == [] and len(records) == 25
    lines = events.read_text(encoding="utf-8").splitlines()
    parsed = [validate_event(json.loads(line), now=NOW) for line in lines]
    assert {e.type for e in parsed} == {"usage.recorded", "account.churned"}
    assert {e.data["metric"] for e in parsed if e.type == "usage.recorded"} == {"orders", "cds", "spend"}
    assert [e.time for e in parsed] == sorted(e.time for e in parsed)
    assert {e.subject for e in parsed} <= {r.id for r in records}
    assert 0 < converted.churned < converted.accounts


def test_the_slice_loads_through_the_registry_import_and_the_signals_store(database_url, tmp_path) -> None:
    cdnow.write(cdnow.convert(slice_of_cdnow(10)), tmp_path)
    engine = make_engine(database_url)
    sessions = make_sessionmaker(engine)
    try:
        loaded = load_folder(sessions, tmp_path, NOW, progress=False)
        again = load_folder(sessions, tmp_path, NOW, progress=False)  # idempotent, like ingest
        with transaction(sessions) as session:
            stored = session.scalar(select(func.count()).select_from(SignalEvent))
            accounts = session.scalar(select(func.count()).select_from(Account))
    finally:
        engine.dispose()
    total = len((tmp_path / "events.jsonl").read_text().splitlines())
    assert loaded == {"accounts": 10, "events": total} and again["events"] == 0
    assert stored == total and accounts == 10


def test_the_live_replay_trains_only_on_outcomes_known_at_the_snapshot() -> None:
    """bench/external/live.py: at a snapshot S, a row is usable only when its label window ended
    by S, and only churns dated by S are known."""
    from datetime import timedelta

    from bench.external.live import dataset
    from services.signals.observations import Observation

    day = timedelta(days=1)
    at = datetime(2026, 3, 1, tzinfo=UTC)
    early, late = at - 60 * day, at - 20 * day
    rows = [
        Observation("a", early, {"x": 1.0}, 0, True, at - 45 * day),  # churned 15 days after `early`
        Observation("a", late, {"x": 2.0}, 0, True, at - 45 * day),
        Observation("b", early, {"x": 3.0}, 0, True, at + 10 * day),  # churns after the snapshot
        Observation("c", early, {"x": 4.0}, 0, True, None),
    ]
    data = dataset(rows, timedelta(days=30), at)
    assert data.accounts == ["a", "b", "c"]  # the row 20 days before S has an open label window
    assert data.labels == [1, 0, 0]  # b's churn is 70 days after its row: outside the window
    assert set(data.churned_at) == {"a"}  # b's churn is not known yet at S
