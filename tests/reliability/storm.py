"""The kill storm: stream a portfolio through ingest -> signals -> alerts (real processes) while
SIGKILLing random services at random moments, then check every guarantee end to end."""

from __future__ import annotations

import json
import random
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from services.alerts.models import AlertAccount, Delivery
from services.ingest.models import DeadLetter, IngestAccount, StoredEvent
from services.signals import repository as signals_repo
from services.signals.commands import run_rebuild
from services.signals.config import SignalsSettings
from services.signals.engine import RiskEngine
from services.signals.events import event_row, signal_from_payload
from services.signals.models import Account, RiskHistory, SignalEvent
from services.signals.rebuild import rebuild
from services.signals.registry import record_json
from shared.clock import ManualClock
from shared.config import RAW_TOPIC_BY_FAMILY, CommonSettings
from shared.contracts import AccountRecord
from shared.db import make_engine, make_sessionmaker, transaction
from shared.events import to_json
from shared.migrate import upgrade
from tests.alerts.conftest import Sinks
from tests.helpers import produce, wait_for
from tests.reliability.conftest import report
from tests.reliability.stack import ServiceProcess, count, person_set, register_accounts
from tests.signals.streams import full_story


@dataclass
class Portfolio:
    records: dict[str, dict[str, Any]]
    valid: list[tuple[str, str, bytes]]  # (topic family, account, value)
    invalid: list[tuple[str, str, bytes]]

    @property
    def valid_ids(self) -> set[tuple[str, str]]:
        return {(json.loads(v)["source"], json.loads(v)["id"]) for _, _, v in self.valid}


def portfolio(sinks: Sinks, events: int, seed: int = 7) -> Portfolio:
    """~167 valid events per account (a healthy history then a decline), plus 1% invalid ones."""
    now = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=5)
    accounts = max(2, round(events / 167))
    rng = random.Random(seed)
    records, valid, invalid = {}, [], []
    for i in range(accounts):
        account = f"storm-{i:04d}"
        records[account] = {
            "name": f"Storm {i} AG",
            "arr": str(50_000 + 1000 * i),
            "currency": "EUR",
            "tier": "strategic",
            "renewal_date": (now + timedelta(days=60 + i % 200)).date().isoformat(),
            **person_set(sinks, account),
        }
        story = full_story(account, now, source=f"storm{i % 3}")
        valid += [(e.type.split(".")[0], account, to_json(e).encode()) for e in story]
    for i in range(max(3, len(valid) // 100)):
        account = rng.choice(sorted(records))
        bad = {"specversion": "1.0", "id": f"bad-{i}", "source": "storm", "type": "usage.recorded"}
        bad.update(
            {"time": (now + timedelta(days=3)).isoformat(), "subject": account, "data": {"quantity": -1}}
        )
        invalid.append(("usage", account, json.dumps(bad).encode() if i % 2 else b'{"truncated": '))
    rng.shuffle(valid)  # arrival order is not event-time order
    return Portfolio(records, valid, invalid)


def stream(common: CommonSettings, items: list[tuple[str, str, bytes]], chunk: int, pause_s: float) -> None:
    """Produce to the raw topics in chunks, paced so the stream overlaps the kills."""
    topics = common.topics
    for start in range(0, len(items), chunk):
        by_topic: dict[str, list[tuple[str | None, bytes | None]]] = {}
        for family, account, value in items[start : start + chunk]:
            topic = getattr(topics, RAW_TOPIC_BY_FAMILY[family])
            by_topic.setdefault(topic, []).append((account, value))
        for topic, messages in by_topic.items():
            produce(common.kafka_bootstrap, topic, messages)
        time.sleep(pause_s)  # pacing the producer, not waiting for a result


@dataclass
class StormReport:
    lines: list[str] = field(default_factory=list)

    def add(self, line: str) -> None:
        self.lines.append(line)
        report(line)


def kill_storm(
    services: dict[str, ServiceProcess],
    kills: int,
    seed: int,
    report: StormReport,
    producer: threading.Thread,
) -> Counter[str]:
    """SIGKILL a random service at a random moment, restart it, `kills` times."""
    rng = random.Random(seed)
    killed: Counter[str] = Counter()
    for number in range(1, kills + 1):
        time.sleep(rng.uniform(0.3, 2.5))  # a random moment: this is the experiment, not a wait
        name = rng.choice(sorted(services))
        services[name].kill()
        killed[name] += 1
        stage = "running" if producer.is_alive() else "done"
        report.add(f"  kill {number}/{kills}: SIGKILL {name} (producer {stage})")
        services[name].start()
    return killed


def wait_settled(
    sessions: sessionmaker[Session],
    sinks: Sinks,
    expected_valid: int,
    expected_invalid: int,
    timeout_s: float,
) -> None:
    wait_for(
        lambda: count(sessions, StoredEvent) >= expected_valid, timeout_s, "ingest stored every valid event"
    )
    wait_for(
        lambda: count(sessions, DeadLetter) >= expected_invalid, timeout_s, "ingest dead-lettered the rest"
    )
    wait_for(
        lambda: count(sessions, SignalEvent) >= expected_valid, timeout_s, "signals received every event"
    )
    last: list[Any] = []

    def quiet() -> bool:
        snapshot = (
            count(sessions, RiskHistory, RiskHistory.publish.is_(True), RiskHistory.published_at.is_(None)),
            count(sessions, Delivery, Delivery.state.in_(("pending", "sending"))),
            count(sessions, Delivery),
            len(sinks.mails()) + len(sinks.slack()),
        )
        last.append(snapshot)
        # Nothing left to publish or send, and nothing moved for 3 polls in a row (1 s apart).
        return snapshot[:2] == (0, 0) and len(last) >= 3 and last[-3] == last[-2] == snapshot

    try:
        wait_for(quiet, timeout_s, "risk changes published and notifications sent", interval_s=1.0)
    except AssertionError as error:
        with transaction(sessions) as session:
            rows = session.execute(
                select(Delivery.state, Delivery.next_attempt_at, Delivery.last_error)
            ).all()
        detail = Counter((r[0], str(r[2])[:80]) for r in rows)
        raise AssertionError(
            f"{error}; (unpublished risk, pending deliveries, rows, sunk) = {last[-3:]}, {detail}"
        ) from None


def check_ingest(sessions: sessionmaker[Session], world: Portfolio, report: StormReport) -> None:
    with transaction(sessions) as session:
        rows = session.execute(select(StoredEvent.source, StoredEvent.event_id)).all()
        dead = list(session.scalars(select(DeadLetter)))
    stored = [(s, e) for s, e in rows]
    duplicates = len(stored) - len(set(stored))
    report.add(
        f"  events sent {len(world.valid) + len(world.invalid)} (valid {len(world.valid)}, invalid "
        f"{len(world.invalid)}); stored {len(stored)}; dead-lettered {len(dead)}; duplicates {duplicates}"
    )
    assert duplicates == 0, "an event was stored twice"
    assert set(stored) == world.valid_ids, "stored events differ from the valid events sent"
    assert len(dead) == len(world.invalid) and all(d.reason for d in dead)


def check_signals(
    live_url: str, sessions: sessionmaker[Session], tmp_path: Path, models: str, report: StormReport
) -> None:
    with transaction(sessions) as session:
        total = session.scalar(select(func.count()).select_from(SignalEvent))
        distinct = session.scalar(
            select(func.count(func.distinct(SignalEvent.event_id + SignalEvent.source)))
        )
    report.add(f"  signals: {total} events ({distinct} distinct)")
    assert total == distinct
    now = datetime.now(UTC)
    live_settings = SignalsSettings(common=CommonSettings(database_url=live_url), model_dir=models)
    check = run_rebuild(live_settings, ManualClock(now), check=True, progress=False)
    assert check.differences == [], check.differences
    clean_url = f"sqlite:///{tmp_path / f'clean-{uuid.uuid4().hex[:6]}.db'}"
    upgrade(clean_url)
    clean_engine = make_engine(clean_url)
    clean = make_sessionmaker(clean_engine)
    clean_settings = SignalsSettings(common=CommonSettings(database_url=clean_url), model_dir=models)
    _replay_into(sessions, clean, clean_settings, now)
    live_state, clean_state = _state(sessions), _state(clean)
    assert live_state == clean_state, "live signals state differs from a clean replay of the same events"
    live_scores, clean_scores = _scores(sessions, live_settings, now), _scores(clean, clean_settings, now)
    clean_engine.dispose()
    assert live_scores == clean_scores, "live features/scores differ from a clean replay"
    report.add(
        f"  signals: rebuild --check equals live; clean replay into a second database: "
        f"{sum(len(v) for v in clean_state.values())} state rows and {len(clean_scores)} scores identical"
    )


def _replay_into(
    live: sessionmaker[Session], clean: sessionmaker[Session], settings: SignalsSettings, now: datetime
) -> None:
    """The same registry and the events ingest stored, folded by `rebuild` in a fresh database."""
    with transaction(live) as session:
        records = [AccountRecord.model_validate_json(a.record) for a in session.scalars(select(Account))]
        payloads = [p for (p,) in session.execute(select(StoredEvent.payload))]
    with transaction(clean) as session:
        for record in records:
            signals_repo.save_account(session, record, record_json(record))
        rows = [event_row(signal_from_payload(p), now) for p in payloads]
        for start in range(0, len(rows), 1000):
            signals_repo.insert_new_events(session, rows[start : start + 1000])
    rebuild(clean, _engine(settings), now, progress=False)


def _engine(settings: SignalsSettings) -> RiskEngine:
    from services.signals.app import model_holder

    return RiskEngine(settings, model_holder(settings))


def _state(sessions: sessionmaker[Session]) -> dict[str, list[tuple[Any, ...]]]:
    with transaction(sessions) as session:
        snapshot = signals_repo.state_snapshot(session)
    return {table: sorted(tuple(_plain(v) for v in row) for row in rows) for table, rows in snapshot.items()}


def _scores(
    sessions: sessionmaker[Session], settings: SignalsSettings, now: datetime
) -> list[tuple[Any, ...]]:
    """Score every account as of the same `now` in a transaction that is rolled back."""
    session = sessions()
    try:
        accounts = [a for (a,) in session.execute(select(Account.id))]
        _engine(settings).rescore(session, accounts, now, "check")
        return [tuple(_plain(v) for v in row) for row in signals_repo.risk_snapshot(session)]
    finally:
        session.rollback()
        session.close()


def _plain(value: Any) -> Any:
    return value.isoformat() if isinstance(value, datetime) else value


def check_alerts(sessions: sessionmaker[Session], sinks: Sinks, report: StormReport) -> None:
    with transaction(sessions) as session:
        rows = list(session.scalars(select(Delivery)))
    states = Counter(r.state for r in rows)
    mails = Counter(str(m["Message-ID"]) for m in sinks.mails())
    posts = Counter(json.dumps(payload, sort_keys=True) for _, payload in sinks.slack())
    seen: Counter[str] = Counter()
    for row in rows:
        if row.channel == "email":
            seen[row.state] += mails.pop(str(row.message_id), 0)
        else:
            seen[row.state] += posts.pop(json.dumps(json.loads(row.payload), sort_keys=True), 0)
    sent_total = len(sinks.mails()) + len(sinks.slack())
    duplicates = sum(n - 1 for n in Counter(str(m["Message-ID"]) for m in sinks.mails()).values() if n > 1)
    report.add(
        f"  notifications expected {states['sent'] + states['uncertain']} (outbox states {dict(states)}); "
        f"sent {sent_total} "
        f"({len(sinks.mails())} mails, {len(sinks.slack())} Slack); duplicates {duplicates}; "
        f"uncertain (crash between send and record) {states.get('uncertain', 0)}, of which delivered "
        f"{seen.get('uncertain', 0)}"
    )
    # cancelled = a queued notice the alert's resolution/ack/inhibition made pointless (never sent).
    assert set(states) <= {"sent", "uncertain", "cancelled"}, f"notifications lost or stuck: {dict(states)}"
    assert seen.get("cancelled", 0) == 0, "a cancelled notification was sent"
    assert seen.get("sent", 0) == states.get("sent", 0), "a notification recorded as sent never arrived"
    assert duplicates == 0 and not mails and not posts, "a message arrived twice or without an outbox row"
    assert rows, "the storm produced no notification at all: nothing was checked"


def register(
    services: dict[str, ServiceProcess], key: str, world: Portfolio, sessions: sessionmaker[Session]
) -> None:
    register_accounts(services["signals"].url, key, world.records)
    n = len(world.records)
    wait_for(lambda: count(sessions, IngestAccount) == n, 60, "ingest's copy of the registry")
    wait_for(lambda: count(sessions, AlertAccount) == n, 60, "alerts' copy of the registry")
