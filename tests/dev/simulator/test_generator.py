"""The generator: deterministic, valid, and telling churn apart from renewal in its signals."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from kamwatch.dev.simulator.emit import FileSink
from kamwatch.dev.simulator.generator import SimConfig, Simulation
from kamwatch.dev.simulator.runner import run
from shared.events import EVENT_TYPES, to_json, validate_event

START = datetime(2025, 6, 2, tzinfo=UTC)


def config(seed: int = 11, accounts: int = 12, days: int = 120, **extra: object) -> SimConfig:
    live_start = START + timedelta(days=days)
    return SimConfig(
        accounts=accounts, seed=seed, start=START, live_start=live_start, end=live_start, **extra
    )


def write(cfg: SimConfig, path: Path) -> bytes:
    sink = FileSink(path)
    run(Simulation(cfg), sink, speedup=0)
    sink.close()
    return path.read_bytes()


def test_same_seed_and_arguments_give_byte_identical_files(tmp_path: Path) -> None:
    first = write(config(), tmp_path / "a.jsonl")
    second = write(config(), tmp_path / "b.jsonl")
    assert first == second
    assert len(first.splitlines()) > 1000


def test_different_seeds_give_different_portfolios(tmp_path: Path) -> None:
    first = write(config(seed=1), tmp_path / "a.jsonl")
    second = write(config(seed=2), tmp_path / "b.jsonl")
    assert first != second
    names = {a.name for a in Simulation(config(seed=1)).accounts}
    assert names != {a.name for a in Simulation(config(seed=2)).accounts}


def test_every_event_validates_and_is_already_canonical(tmp_path: Path) -> None:
    lines = write(config(seed=5, accounts=20, days=200), tmp_path / "e.jsonl").decode().splitlines()
    import json

    seen = set()
    for line in lines:
        event = validate_event(json.loads(line), now=START + timedelta(days=400))
        assert to_json(event) == line
        seen.add(event.type)
    # A year-ish portfolio exercises every type of the contract.
    assert seen == set(EVENT_TYPES)


def test_events_are_in_time_order_inside_the_span_with_unique_ids() -> None:
    cfg = config(seed=3, accounts=10, days=90)
    events = list(Simulation(cfg).events())
    assert [e.time for e in events] == sorted(e.time for e in events)
    assert all(cfg.start <= e.time < cfg.end for e in events)
    assert len({e.id for e in events}) == len(events)


def test_accounts_have_owners_managers_sponsors_and_aliases() -> None:
    from shared.contracts import AccountRecord

    for account in Simulation(config(accounts=30)).accounts:
        record = AccountRecord.model_validate(account.record())
        assert record.owner and record.manager and record.executive_sponsor
        assert record.owner.email and record.owner.email.endswith("@example.com")
        assert set(record.external_ids) == {"stripe", "zendesk"}


def test_payments_and_tickets_use_aliases_unless_told_otherwise() -> None:
    events = list(Simulation(config(days=40)).events())
    assert any(e.subject and e.subject.startswith("stripe:") for e in events if e.type.startswith("invoice."))
    assert any(e.subject and e.subject.startswith("zendesk:") for e in events if e.type.startswith("ticket."))
    plain = list(Simulation(config(days=40, aliases=False)).events())
    assert not any(":" in (e.subject or "") for e in plain)


def test_spotlight_accounts_hit_the_critical_signals_early_in_the_live_phase() -> None:
    live_start = START + timedelta(days=120)
    cfg = SimConfig(
        accounts=10,
        seed=7,
        start=START,
        live_start=live_start,
        end=live_start + timedelta(hours=12),
        spotlight=3,
    )
    simulation = Simulation(cfg)
    spotlight = {a.id for a in simulation.accounts[:3]}
    live = [e for e in simulation.events() if e.time >= live_start]
    early = live_start + timedelta(hours=8)
    for account in simulation.accounts[:3]:
        mine = [
            e
            for e in live
            if e.subject in (account.id, f"stripe:{account.stripe_id}", f"zendesk:{account.zendesk_id}")
        ]
        kinds = {(e.type, e.data.get("role") or e.data.get("priority")) for e in mine if e.time < early}
        assert ("contact.left", "champion") in kinds
        assert ("ticket.opened", "urgent") in kinds
        assert any(e.type == "invoice.overdue" and e.data["days_overdue"] >= 45 for e in mine)
    assert spotlight


@pytest.mark.parametrize("days", [0, 1])
def test_tiny_spans_work(days: int) -> None:
    events = list(Simulation(config(accounts=2, days=days)).events())
    assert (len(events) > 0) == (days > 0)


def test_a_simulation_can_be_iterated_twice_with_the_same_result() -> None:
    simulation = Simulation(config(days=30))
    assert [to_json(e) for e in simulation.events()] == [to_json(e) for e in simulation.events()]
