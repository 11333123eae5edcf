"""The signals batch handler: canonical events -> state -> risk; the sweep; the outbox relay."""

from __future__ import annotations

import time
from collections import Counter, defaultdict
from collections.abc import Mapping
from datetime import UTC, date, datetime, timedelta
from typing import Any, get_args

from sqlalchemy.orm import Session, sessionmaker

from services.signals import metrics, repository, revenue
from services.signals.config import SignalsSettings
from services.signals.engine import RiskEngine
from services.signals.events import Signal, event_row, parse_signal
from services.signals.learning import Learner
from services.signals.models import RiskHistory
from services.signals.modelstore import ModelHolder
from services.signals.outbox import account_message, risk_messages
from services.signals.outcomes import apply_renewals
from services.signals.scoring import band_for
from services.signals.state import AccountState, Counts, EntityRow, merge_counts, merge_entity
from services.signals.statecache import CachedState, StateCache, Written
from shared.clock import Clock
from shared.contracts import RiskBand
from shared.db import transaction
from shared.epoch import EpochWatch
from shared.errors import EventInvalid
from shared.kafka import OutMessage, Processor, dead_letter_message
from shared.logging import get_logger
from shared.metrics import PIPELINE_LATENCY, RECEIVED_HEADER

log = get_logger(__name__)


def apply_signals(
    session: Session, signals: list[Signal], copies: Mapping[str, CachedState] | None = None
) -> Written:
    """Fold new events into the stored buckets and entities (read the touched rows, merge, upsert
    them back); returns the rows as written, per account (the worker's copy folds them in).
    `copies`: valid in-memory copies (token checked under the row lock); a row they hold is not
    read again from the tables."""
    copies = copies or {}
    states: dict[str, AccountState] = defaultdict(AccountState)
    for signal in signals:
        states[signal.account_id].apply(signal.type, signal.data, signal.time, signal.key)
    stored_buckets: dict[tuple[str, date], Counts | None] = {}
    stored_entities: dict[tuple[str, str, str], EntityRow | None] = {}
    bucket_keys, entity_keys = [], []
    for account_id, state in states.items():
        copy = copies.get(account_id)
        for day in state.buckets:
            if copy is not None and day >= copy.since_day:  # the copy holds every row from then on
                stored_buckets[(account_id, day)] = copy.buckets.get(day)
            else:
                bucket_keys.append((account_id, day))
        for kind, ident in state.entities:
            if copy is not None and (kind, ident) in copy.entities:
                stored_entities[(account_id, kind, ident)] = copy.entities[(kind, ident)]
            else:  # not in the copy: absent, or old and closed (the copy leaves those out)
                entity_keys.append((account_id, kind, ident))
    stored_buckets.update(repository.buckets_for_keys(session, bucket_keys) if bucket_keys else {})
    stored_entities.update(repository.entities_for_keys(session, entity_keys) if entity_keys else {})
    written: Written = {}
    for account_id, state in states.items():
        buckets, entities = written.setdefault(account_id, ({}, {}))
        for day, delta in state.buckets.items():
            stored = stored_buckets.get((account_id, day))
            buckets[day] = merge_counts(stored, delta) if stored is not None else dict(delta)
        for key, entity in state.entities.items():
            entities[key] = merge_entity(stored_entities.get((account_id, *key)), entity)
    repository.write_state(
        session,
        [(a, d, c) for a, (b, _) in written.items() for d, c in b.items()],
        [(a, e) for a, (_, es) in written.items() for e in es.values()],
    )
    return written


def _outbox(session: Session, touched: list[str], changes: list[RiskHistory]) -> list[RiskHistory]:
    """The touched accounts' history rows to publish now, in id order: the rows this batch wrote,
    as they are in memory, unless older rows of those accounts still wait (a publish that failed
    before): then all of them from the table, so each account's changes go out in order."""
    if not touched:
        return []
    waiting = repository.unpublished_ids(session, touched)
    if waiting == sorted(change.id for change in changes):
        return sorted(changes, key=lambda change: change.id)
    return repository.unpublished_history(session, account_ids=touched)


def _arrival_ms(record: Any) -> int | None:
    """When the event reached kamwatch: ingest's kw_received_ms header, else the record's timestamp."""
    for name, value in record.headers or ():
        if name == RECEIVED_HEADER and value and value.isdigit():
            return int(value)
    return int(record.timestamp) if record.timestamp and record.timestamp > 0 else None


def _arrivals(records: list[Any]) -> dict[str, datetime]:
    """Per account (the record key), the earliest arrival in the batch."""
    earliest: dict[str, int] = {}
    for record in records:
        arrived = _arrival_ms(record)
        if arrived is not None and record.key:
            account = record.key.decode("utf-8", "replace")
            earliest[account] = min(arrived, earliest.get(account, arrived))
    return {account: datetime.fromtimestamp(ms / 1000, UTC) for account, ms in earliest.items()}


class SignalsProcessor(Processor[SignalsSettings]):
    """The BatchHandler of the signals consumer (kamwatch.events)."""

    def __init__(
        self, settings: SignalsSettings, sessions: sessionmaker[Session], clock: Clock, holder: ModelHolder
    ) -> None:
        super().__init__(settings, sessions, clock)
        self.holder = holder
        self.engine = RiskEngine(settings, holder)
        # A broker that came back empty lost kamwatch.accounts (compacted, read by ingest and
        # alerts from the start): publish the whole registry again (shared/epoch.py).
        self.epoch = EpochWatch(settings.common, "signals")
        self._revenue_at: datetime | None = None
        self.learner = Learner(settings, sessions, holder, clock)
        self.cache = StateCache(settings.state_cache_rows)
        self.owner_topic = self.topics.events  # the sweep and the relay cover the owned accounts

    def handle(self, records: list[Any]) -> list[OutMessage]:
        now = self.clock.now()
        signals, dead = self._parse(records, now)
        outcomes: Counter[tuple[str, str]] = Counter()
        try:
            with transaction(self.sessions) as session:
                inserted = repository.insert_new_events(session, [event_row(s, now) for s in signals])
                fresh = [s for s in signals if (s.source, s.event_id) in inserted]
                touched = sorted({s.account_id for s in fresh})
                locked = self.engine.lock(session, touched)
                copies = self.engine.copies(self.cache, touched, locked.risks, now)
                written = apply_signals(session, fresh, copies)
                renewed = apply_renewals(session, fresh, now)
                changes = self.engine.rescore(
                    session, touched, now, "event", self.cache, written, locked, copies
                )
                pending = _outbox(session, touched, changes)
                out = risk_messages(session, self.topics.risk, pending, _arrivals(records))
                out += [account_message(self.topics.accounts, a) for a in renewed]
        except BaseException:
            self.cache.discard()
            raise
        self.cache.install()
        for signal in signals:
            outcomes[
                (signal.type, "applied" if (signal.source, signal.event_id) in inserted else "duplicate")
            ] += 1
        self._observe(records, outcomes)
        return out + dead

    def _parse(self, records: list[Any], now: datetime) -> tuple[list[Signal], list[OutMessage]]:
        signals: dict[tuple[str, str], Signal] = {}
        dead: list[OutMessage] = []
        for record in records:
            try:
                signal = parse_signal(record.value, now)
            except EventInvalid as error:
                metrics.EVENTS.labels("invalid", "dead_lettered").inc()
                dead.append(dead_letter_message(self.topics.deadletter, record, error, service="signals"))
                continue
            if (signal.source, signal.event_id) in signals:  # the same event twice in one batch
                metrics.EVENTS.labels(signal.type, "duplicate").inc()
            signals.setdefault((signal.source, signal.event_id), signal)
        return list(signals.values()), dead

    @staticmethod
    def _observe(records: list[Any], outcomes: Counter[tuple[str, str]]) -> None:
        for (event_type, outcome), count in outcomes.items():
            metrics.EVENTS.labels(event_type, outcome).inc(count)
        wall = time.time()
        for arrived in _arrivals(records).values():
            PIPELINE_LATENCY.labels("scored").observe(max(0.0, wall - arrived.timestamp()))

    # --- after publish -------------------------------------------------------------------------
    def published(self, messages: list[OutMessage]) -> None:
        risk = [m.ref[1] for m in messages if m.ref and m.ref[0] == "risk"]
        accounts = [m.ref[1] for m in messages if m.ref and m.ref[0] == "account"]
        now = self.clock.now()
        with transaction(self.sessions) as session:
            repository.mark_history_published(session, risk, now)
            repository.mark_accounts_published(session, accounts, now)
        metrics.ACCOUNTS_PUBLISHED.inc(len(accounts))

    # --- time-driven work ------------------------------------------------------------------------
    def tick(self) -> list[OutMessage]:
        """Pick up a promoted model, re-score accounts whose windows moved (silence), relay outboxes."""
        self.holder.refresh()
        self.learner.poll()
        metrics.MODEL_INFO.clear()
        metrics.MODEL_INFO.labels(self.holder.scorer.version).set(1)
        now = self.clock.now()
        before = now - timedelta(seconds=self.settings.relay_after_s)
        forget = repository.forget_published_accounts
        self.epoch.check(self.sessions, now, forget, on_first=forget)
        self._refresh_ranking()
        try:
            with transaction(self.sessions) as session:
                self.sweep(session, now)
                stale = repository.unpublished_history(session, before=before)
                out = risk_messages(
                    session, self.topics.risk, [h for h in stale if self.ownership.owns(h.account_id)]
                )
                out += [
                    account_message(self.topics.accounts, a)
                    for a in repository.unpublished_accounts(session, before, 500)
                    if self.ownership.owns(a.id)
                ]
                self._gauges(session)
                self._revenue_gauges(session, now)
        except BaseException:
            self.cache.discard()
            raise
        self.cache.install()
        metrics.STATE_CACHE_ACCOUNTS.set(len(self.cache))
        metrics.STATE_CACHE_ROWS.set(self.cache.rows)
        return out

    def _refresh_ranking(self) -> None:
        """Scores ranked with another rates table (it changed, or they predate the column) are
        converted again, a bounded batch a tick: the portfolio pages through its index again once
        all are done (repository.portfolio). Any replica may do it: the rows it takes are locked
        and skipped by the others."""
        rates = self.engine.rates()
        with transaction(self.sessions) as session:
            if repository.ranking_current(session, rates):
                return
            converted = repository.refresh_ranking(session, rates)
        log.info("signals.ranking_refreshed", scores=converted, rates=rates.digest, currency=rates.currency)

    def _revenue_gauges(self, session: Session, now: datetime) -> None:
        interval = timedelta(seconds=self.settings.revenue_gauges_interval_s)
        due = self._revenue_at is None or now - self._revenue_at >= interval
        if due and revenue.refresh_gauges(session, now):  # until there is data, try every tick
            self._revenue_at = now

    def sweep(self, session: Session, now: datetime) -> int:
        day_start = datetime(now.year, now.month, now.day, tzinfo=UTC)
        wanted = self.settings.sweep_batch
        if self.ownership.share <= 0:
            return 0  # a group member without partitions sweeps nothing
        # Only the accounts on this replica's partitions (standalone: all of them).
        owns = self.ownership.predicate
        due = repository.due_for_sweep(session, day_start, self.engine.model_version, wanted, owns)
        if len(due) < wanted:
            due += self._off_band(session, wanted - len(due), set(due))
        if due:
            self.engine.rescore(session, due, now, "sweep", self.cache)
            log.info("signals.swept", accounts=len(due))
        return len(due)

    def _off_band(self, session: Session, limit: int, already: set[str]) -> list[str]:
        """Accounts whose band no longer matches their score under the current thresholds (the
        budget bands were refitted): re-scored so the change is recorded and published."""
        if not self.settings.budget_bands:
            return []
        amber, red = self.engine.thresholds
        rows = repository.live_scores(session, self.engine.model_version)
        stale = [
            a
            for a, score, band in rows
            if band != band_for(score, amber, red) and a not in already and self.ownership.owns(a)
        ]
        return stale[:limit]

    @staticmethod
    def _gauges(session: Session) -> None:
        metrics.ACCOUNTS_BY_BAND.clear()
        metrics.ARR_AT_RISK.clear()
        for band in get_args(RiskBand):
            metrics.ACCOUNTS_BY_BAND.labels(band).set(0)
        for band, currency, count, at_risk in repository.band_totals(session):
            metrics.ACCOUNTS_BY_BAND.labels(band).inc(count)
            metrics.ARR_AT_RISK.labels(band, currency).set(at_risk)
