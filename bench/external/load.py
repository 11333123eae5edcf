"""Load a registry CSV and canonical events into a signals database, through the product's code.

The registry goes through the CSV parser of `POST /v1/accounts:import` and the registry store
(services/signals/registry.py, repository.save_account). Each event goes through the consumer's
parser (events.parse_signal: the contract's validation) into the event store and the fold
(repository.insert_new_events, handler.apply_signals), as the signals consumer does, without the
broker and without re-scoring (training and backtests score from the stored history).
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator
from datetime import datetime
from pathlib import Path

from sqlalchemy.orm import Session, sessionmaker
from tqdm import tqdm

from services.signals import repository
from services.signals.events import event_row, parse_signal
from services.signals.handler import apply_signals
from services.signals.registry import parse_csv, record_json
from shared.db import transaction

BATCH = 2000


def import_registry(sessions: sessionmaker[Session], text: str, now: datetime) -> int:
    """All rows or none, like `POST /v1/accounts:import`; the problems name row and column."""
    records, problems = parse_csv(text, now)
    if problems:
        listed = "; ".join(f"row {p['row']}: {p['field']}: {p['message']}" for p in problems[:10])
        raise SystemExit(f"{len(problems)} problem(s) in the registry CSV, nothing imported: {listed}")
    with transaction(sessions) as session:
        for record in sorted(records, key=lambda r: r.id):
            repository.save_account(session, record, record_json(record))
    return len(records)


def _batches(lines: Iterable[str], size: int) -> Iterator[list[str]]:
    batch: list[str] = []
    for line in lines:
        if line.strip():
            batch.append(line)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def store_events(
    sessions: sessionmaker[Session], lines: Iterable[str], now: datetime, total: int | None = None
) -> int:
    """Validate and store canonical CloudEvent JSON lines; returns how many were new."""
    stored = 0
    with tqdm(total=total, unit="event", desc="load", file=sys.stderr, disable=total is None) as bar:
        for batch in _batches(lines, BATCH):
            signals = [parse_signal(line.encode(), now) for line in batch]
            with transaction(sessions) as session:
                inserted = repository.insert_new_events(session, [event_row(s, now) for s in signals])
                apply_signals(session, [s for s in signals if (s.source, s.event_id) in inserted])
            stored += len(inserted)
            bar.update(len(batch))
    return stored


def load_folder(
    sessions: sessionmaker[Session], folder: Path, now: datetime, progress: bool = True
) -> dict[str, int]:
    """registry.csv and events.jsonl of a converted data set."""
    accounts = import_registry(sessions, (folder / "registry.csv").read_text(encoding="utf-8"), now)
    events_path = folder / "events.jsonl"
    total = sum(1 for _ in events_path.open(encoding="utf-8")) if progress else None
    with events_path.open(encoding="utf-8") as handle:
        events = store_events(sessions, handle, now, total)
    return {"accounts": accounts, "events": events}
