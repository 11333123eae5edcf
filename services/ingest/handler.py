"""The ingest batch handler: validate -> resolve account -> dedup -> store, and the outbox to Kafka;
plus the HTTP side's validation and produce to the raw topics."""

from __future__ import annotations

import json
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from services.ingest import metrics, repository
from services.ingest.config import IngestSettings
from services.ingest.models import DeadLetter, StoredEvent
from services.ingest.relay import RELAY_BATCH, Relay, consumed_inbox_rows
from shared.clock import Clock
from shared.contracts import ACCOUNT_UPSERTED, AccountRecord, read_contract_data
from shared.db import transaction
from shared.errors import EventInvalid, Problem, ValidationFailed
from shared.events import CloudEvent, decode_json, parse_account_ref, to_json, validate_event
from shared.kafka import OutMessage, Processor, dead_letter_message
from shared.logging import get_logger
from shared.metrics import PIPELINE_LATENCY, RECEIVED_HEADER

log = get_logger(__name__)


def _ms(when: datetime) -> int:
    return int(when.timestamp() * 1000)


@dataclass
class _Pending:
    """What one batch decided, before it is written."""

    events: list[dict[str, Any]] = field(default_factory=list)
    parked: list[dict[str, Any]] = field(default_factory=list)
    dead: list[dict[str, Any]] = field(default_factory=list)
    keys: list[repository.EventKey] = field(default_factory=list)
    origins: dict[repository.EventKey, repository.Origin] = field(default_factory=dict)
    types: dict[repository.EventKey, str] = field(default_factory=dict)
    outcomes: Counter[tuple[str, str]] = field(default_factory=Counter)
    broker_times: list[float] = field(default_factory=list)
    arrivals: dict[repository.EventKey, int] = field(default_factory=dict)  # broker timestamp, ms


def _origin(record: Any) -> repository.Origin:
    return (record.topic, record.partition, record.offset)


def dead_letter_row(record: Any, error: EventInvalid, now: datetime) -> dict[str, Any]:
    return {
        "topic": record.topic,
        "partition": record.partition,
        "offset": record.offset,
        "key": record.key,
        "value": record.value,
        "reason": str(error)[:2000],
        "problems": json.dumps([p.as_dict() for p in error.problems]),
        "received_at": now,
    }


def canonical_json(event: CloudEvent, account_id: str) -> str:
    """The event as published on kamwatch.events: subject = kamwatch account id; an alias used
    in the raw event is kept in the `accountref` extension attribute."""
    if event.subject == account_id:
        return to_json(event)
    return to_json(event, subject=account_id, accountref=event.subject)


class IngestProcessor(Processor[IngestSettings]):
    """The BatchHandler of the ingest consumer (raw topics + kamwatch.accounts)."""

    def __init__(self, settings: IngestSettings, sessions: sessionmaker[Session], clock: Clock) -> None:
        super().__init__(settings, sessions, clock)
        self.relay = Relay(settings, sessions, clock)

    # --- the batch ------------------------------------------------------------------------
    def handle(self, records: list[Any]) -> list[OutMessage]:
        now = self.clock.now()
        if self.relay.watch.current is None:  # the epoch is stored before anything is published
            self.relay.check_epoch(now)
        account_records = [r for r in records if r.topic == self.topics.accounts]
        raw = [r for r in records if r.topic != self.topics.accounts]
        pending = _Pending()
        with transaction(self.sessions) as session:
            refs = self._apply_accounts(session, account_records, pending, now)
            self._decide(session, raw, pending, now)
            inserted = repository.insert_events(session, pending.events)
            repository.insert_parked(session, pending.parked)
            repository.insert_dead_letters(session, pending.dead)
            replayed = self._replay_parked(session, refs, now) if refs else []
            out = self._outgoing(session, pending, inserted, replayed)
            repository.delete_inbox(session, consumed_inbox_rows(raw))
        self._count(pending, replayed)
        return out

    def _apply_accounts(
        self, session: Session, records: list[Any], pending: _Pending, now: datetime
    ) -> set[str]:
        """Update the registry read copy; return the account refs that may unpark events."""
        refs: set[str] = set()
        for record in records:
            try:
                account_id, deleted, external_ids = self._read_account(record)
            except EventInvalid as error:
                pending.dead.append(dead_letter_row(record, error, now))
                pending.outcomes[(ACCOUNT_UPSERTED, "dead_lettered")] += 1
                continue
            repository.upsert_account(session, account_id, deleted, external_ids, now)
            if not deleted:
                refs.add(account_id)
                refs.update(f"{system}:{external}" for system, external in external_ids.items())
        return refs

    @staticmethod
    def _read_account(record: Any) -> tuple[str, bool, dict[str, str]]:
        if record.value is None:  # tombstone on the compacted topic
            key = (record.key or b"").decode("utf-8", "replace")
            return key, True, {}
        account = read_contract_data(record.value, ACCOUNT_UPSERTED, AccountRecord)
        return account.id, account.deleted, dict(account.external_ids)

    def _decide(self, session: Session, records: list[Any], pending: _Pending, now: datetime) -> None:
        valid: list[tuple[Any, CloudEvent]] = []
        for record in records:
            try:
                event = validate_event(decode_json(record.value or b""), now)
                if event.subject is None:
                    raise EventInvalid(
                        "event has no subject",
                        [
                            Problem(
                                "subject", "is required: the kamwatch account id or '<system>:<external id>'"
                            )
                        ],
                    )
                parse_account_ref(event.subject)
            except EventInvalid as error:
                pending.dead.append(dead_letter_row(record, error, now))
                pending.outcomes[("invalid", "dead_lettered")] += 1
                continue
            valid.append((record, event))
            if record.timestamp and record.timestamp > 0:
                pending.broker_times.append(record.timestamp / 1000)
                pending.arrivals[(event.source, event.id)] = int(record.timestamp)
        resolved = self._resolve(session, [event.subject or "" for _, event in valid])
        seen: set[repository.EventKey] = set()
        for record, event in valid:
            key = (event.source, event.id)
            pending.types[key] = event.type
            if key in seen:  # the same event twice in one batch
                pending.outcomes[(event.type, "duplicate")] += 1
                continue
            seen.add(key)
            self._place(record, event, resolved.get(event.subject or ""), pending, now)

    def _place(
        self, record: Any, event: CloudEvent, account_id: str | None, pending: _Pending, now: datetime
    ) -> None:
        key = (event.source, event.id)
        origin = _origin(record)
        base = {
            "source": event.source,
            "event_id": event.id,
            "origin_topic": origin[0],
            "origin_partition": origin[1],
            "origin_offset": origin[2],
        }
        if account_id is None:
            pending.parked.append(
                {**base, "account_ref": event.subject, "payload": to_json(event), "parked_at": now}
            )
            pending.outcomes[(event.type, "parked")] += 1
            return
        pending.events.append(
            {
                **base,
                "type": event.type,
                "account_id": account_id,
                "event_time": event.time,
                "received_at": now,
                "payload": canonical_json(event, account_id),
            }
        )
        pending.keys.append(key)
        pending.origins[key] = origin

    def _resolve(self, session: Session, subjects: list[str]) -> dict[str, str]:
        """Map each subject (account id or system:external id) to a registered account id."""
        refs = {subject: parse_account_ref(subject) for subject in set(subjects)}
        direct = repository.known_accounts(session, [r.account_id for r in refs.values() if r.account_id])
        aliases = repository.resolve_aliases(
            session, [(r.system, r.external_id) for r in refs.values() if r.system and r.external_id]
        )
        resolved = {}
        for subject, ref in refs.items():
            if ref.account_id and ref.account_id in direct:
                resolved[subject] = ref.account_id
            elif ref.system and ref.external_id and (ref.system, ref.external_id) in aliases:
                resolved[subject] = aliases[(ref.system, ref.external_id)]
        return resolved

    def _replay_parked(self, session: Session, refs: set[str], now: datetime) -> list[repository.EventKey]:
        parked = repository.parked_for_refs(session, refs)
        if not parked:
            return []
        resolved = self._resolve(session, [p.account_ref for p in parked])
        rows, done, keys = [], [], []
        for item in parked:
            account_id = resolved.get(item.account_ref)
            if account_id is None:
                continue
            event = CloudEvent.model_validate_json(item.payload)
            rows.append(
                {
                    "source": item.source,
                    "event_id": item.event_id,
                    "type": event.type,
                    "account_id": account_id,
                    "event_time": event.time,
                    "received_at": now,
                    "origin_topic": item.origin_topic,
                    "origin_partition": item.origin_partition,
                    "origin_offset": item.origin_offset,
                    "payload": canonical_json(event, account_id),
                }
            )
            done.append(item.id)
            keys.append((item.source, item.event_id))
        repository.insert_events(session, rows)
        repository.delete_parked(session, done)
        log.info("ingest.parked_replayed", count=len(done))
        return keys

    def _outgoing(
        self,
        session: Session,
        pending: _Pending,
        inserted: dict[repository.EventKey, int],
        replayed: list[repository.EventKey],
    ) -> list[OutMessage]:
        """Unpublished rows of this batch: new ones, and ones a crash left unpublished."""
        out = [
            self._message(
                inserted[(row["source"], row["event_id"])],
                row["account_id"],
                row["type"],
                row["payload"],
                pending.arrivals.get((row["source"], row["event_id"])) or _ms(row["received_at"]),
            )
            for row in pending.events
            if (row["source"], row["event_id"]) in inserted
        ]
        # Not inserted: a duplicate from upstream, or our own redelivery after a crash.
        leftovers = [key for key in pending.keys if key not in inserted] + replayed
        for row in repository.events_by_key(session, leftovers):
            key = (row.source, row.event_id)
            if row.published_at is None:
                out.append(self._event_message(row))
            elif key in pending.origins and pending.origins[key] != (
                row.origin_topic,
                row.origin_partition,
                row.origin_offset,
            ):
                pending.outcomes[(row.type, "duplicate")] += 1
        origins = [(d["topic"], d["partition"], d["offset"]) for d in pending.dead]
        out.extend(self._dead_message(row) for row in repository.unpublished_dead_letters(session, origins))
        return out

    def _event_message(self, row: StoredEvent) -> OutMessage:
        return self._message(row.id, row.account_id, row.type, row.payload, _ms(row.received_at))

    def _message(
        self, row_id: int, account_id: str, event_type: str, payload: str, received_ms: int
    ) -> OutMessage:
        # kw_received_ms: when the event reached kamwatch, so later stages can measure their
        # latency from the same start (kamwatch_pipeline_latency_seconds{stage=...}).
        headers = (("ce_type", event_type.encode()), (RECEIVED_HEADER, str(received_ms).encode()))
        return OutMessage(self.topics.events, account_id, payload.encode(), headers, ref=("event", row_id))

    def _dead_message(self, row: DeadLetter) -> OutMessage:
        problems = [Problem(p["field"], p["message"]) for p in json.loads(row.problems)]
        error = EventInvalid(row.reason, problems, recorded=True)
        return dead_letter_message(self.topics.deadletter, row, error, service="ingest", ref=("dead", row.id))

    def _count(self, pending: _Pending, replayed: list[repository.EventKey]) -> None:
        stored = Counter(pending.types[k] for k in pending.keys)
        for event_type, count in stored.items():
            metrics.EVENTS.labels(event_type, "stored").inc(count)
        for (event_type, outcome), count in pending.outcomes.items():
            metrics.EVENTS.labels(event_type, outcome).inc(count)
        if replayed:
            metrics.EVENTS.labels("any", "replayed").inc(len(replayed))
        wall = time.time()
        for sent in pending.broker_times:
            PIPELINE_LATENCY.labels("stored").observe(max(0.0, wall - sent))

    # --- after publish, and time-driven work --------------------------------------------
    def published(self, messages: list[OutMessage]) -> None:
        events = [(m.ref[1], *m.position) for m in messages if m.ref and m.ref[0] == "event" and m.position]
        dead = [m.ref[1] for m in messages if m.ref and m.ref[0] == "dead"]
        now = self.clock.now()
        with transaction(self.sessions) as session:
            repository.mark_events_published(session, events, now)
            repository.mark_published(session, DeadLetter, dead, now)
            self.relay.relayed(session, messages, now)

    def tick(self) -> list[OutMessage]:
        """Relay rows a crash left unpublished; retry parked events (closes the race with
        a registration that committed while the event was being parked)."""
        now = self.clock.now()
        before = now - timedelta(seconds=self.settings.relay_after_s)
        out = self.relay.tick(now)
        with transaction(self.sessions) as session:
            out += [
                self._event_message(r)
                for r in repository.stale_unpublished(session, StoredEvent, before, RELAY_BATCH)
            ]
            out += [
                self._dead_message(r) for r in repository.stale_unpublished(session, DeadLetter, before, 1000)
            ]
            refs = repository.parked_refs(session, 500)
            resolvable = set(self._resolve(session, refs)) if refs else set()
            replayed = self._replay_parked(session, resolvable, now) if resolvable else []
            if replayed:
                rows = repository.events_by_key(session, replayed)
                out += [self._event_message(r) for r in rows if r.published_at is None]
            metrics.PARKED.set(repository.count_parked(session))
        if replayed:
            metrics.EVENTS.labels("any", "replayed").inc(len(replayed))
        return out


# --- the HTTP side: validate, then produce to the raw topics -------------------------------
# Sources the signed webhook routes write: an events:write key or a CRM webhook must not use them,
# or a forged id would shadow the genuine signed event (dedup on source + id).
WEBHOOK_SOURCES = frozenset({"stripe", "zendesk"})


def validate_submission(
    body: Any, now: datetime, max_events: int, reserved: frozenset[str] = frozenset()
) -> list[CloudEvent]:
    """One CloudEvent or a list; all valid or a 422 naming each bad field by index."""
    items = body if isinstance(body, list) else [body]
    if not items:
        raise ValidationFailed("no events given: send one CloudEvent object or a non-empty list")
    if len(items) > max_events:
        raise ValidationFailed(f"too many events in one request ({len(items)}); send at most {max_events}")
    events: list[CloudEvent] = []
    problems: list[Problem] = []
    for index, item in enumerate(items):
        prefix = f"[{index}]." if isinstance(body, list) else ""
        try:
            event = validate_event(item, now)
            if event.subject is None:
                raise EventInvalid(
                    "no subject",
                    [Problem("subject", "is required: the kamwatch account id or '<system>:<external id>'")],
                )
            parse_account_ref(event.subject)
            _check_source(event.source, reserved)
            events.append(event)
        except EventInvalid as error:
            problems.extend(Problem(prefix + p.field, p.message) for p in error.problems)
    if problems:
        raise ValidationFailed(
            "invalid event(s): " + "; ".join(f"{p.field}: {p.message}" for p in problems), problems=problems
        )
    return events


def _check_source(source: str, reserved: frozenset[str]) -> None:
    route = source.strip().lower()
    if route in reserved:
        message = (
            f"'{source}' is reserved for the signed /v1/webhooks/{route} route; send those events "
            "there, or name your own system as the source"
        )
        raise EventInvalid("reserved source", [Problem("source", message)])


def raw_topic_for(settings: IngestSettings, event_type: str) -> str:
    return settings.common.topics.raw_for(event_type)
