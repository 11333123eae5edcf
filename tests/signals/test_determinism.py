"""Acceptance: in order, shuffled or with 10% duplicates, the same stream gives identical features
and scores; `rebuild` equals the live state (real broker, both DBs)."""

from __future__ import annotations

import json
import random
import subprocess
import sys
from collections.abc import Callable
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from services.signals import repository
from services.signals.commands import run_rebuild
from services.signals.config import SignalsSettings
from services.signals.models import SignalBucket, SignalEvent
from shared.clock import ManualClock
from shared.db import transaction
from tests.helpers import NOW, wait_for
from tests.signals.streams import full_story

VARIANTS = ("ordered", "shuffled", "duplicated")
RECORD = {
    "name": "Same",
    "arr": "120000",
    "currency": "EUR",
    "tier": "strategic",
    "renewal_date": "2027-01-15",
}


def _streams() -> dict[str, list[Any]]:
    rng = random.Random(42)
    ordered = full_story("acct-ordered", NOW, source="ordered")
    shuffled = full_story("acct-shuffled", NOW, source="shuffled")
    rng.shuffle(shuffled)
    duplicated = full_story("acct-duplicated", NOW, source="duplicated")
    rng.shuffle(duplicated)
    for copy in rng.sample(duplicated, len(duplicated) // 10):
        duplicated.insert(rng.randrange(len(duplicated) + 1), copy)
    return {"ordered": ordered, "shuffled": shuffled, "duplicated": duplicated}


def _count(db: sessionmaker[Session], account: str) -> int:
    with transaction(db) as session:
        query = select(func.count()).select_from(SignalEvent).where(SignalEvent.account_id == account)
        return int(session.scalar(query) or 0)


def _buckets(db: sessionmaker[Session], account: str) -> list[tuple[Any, str]]:
    with transaction(db) as session:
        rows = session.execute(
            select(SignalBucket.day, SignalBucket.counts).where(SignalBucket.account_id == account)
        )
        return sorted(map(tuple, rows))


def _snapshot(db: sessionmaker[Session]) -> tuple[Any, Any]:
    with transaction(db) as session:
        return repository.state_snapshot(session), repository.risk_snapshot(session)


def test_order_and_duplicates_do_not_change_features_scores_or_rebuild(
    signals: TestClient,
    auth: dict[str, str],
    send: Callable[[list[Any]], int],
    db: sessionmaker[Session],
    signals_settings: SignalsSettings,
    clock: ManualClock,
    service_env: Callable[..., dict[str, str]],
) -> None:
    streams = _streams()
    unique = len(full_story("x", NOW))
    assert len(streams["duplicated"]) == unique + unique // 10
    for variant in VARIANTS:
        assert signals.put(f"/v1/accounts/acct-{variant}", json=RECORD, headers=auth).status_code == 200
        send(streams[variant])
    for variant in VARIANTS:
        wait_for(lambda v=variant: _count(db, f"acct-{v}") == unique, what=f"{variant} stream stored")

    def settled() -> list[dict[str, Any]] | None:
        views = [signals.get(f"/v1/accounts/acct-{v}/risk", headers=auth).json() for v in VARIANTS]
        features = [signals.get(f"/v1/accounts/acct-{v}/features", headers=auth).json() for v in VARIANTS]
        ok = all(f.get("features", {}).get("urgent_tickets_opened_14d") == 1.0 for f in features)
        return [{**v, **f} for v, f in zip(views, features, strict=True)] if ok else None

    results = wait_for(settled, what="all three scored on the full stream")
    ordered = results[0]
    assert ordered["band"] == "red"
    for other in results[1:]:
        assert other["features"] == ordered["features"]
        assert other["score"] == ordered["score"] and other["band"] == ordered["band"]
        assert [d["text"] for d in other["drivers"]] == [d["text"] for d in ordered["drivers"]]
    assert _buckets(db, "acct-ordered") == _buckets(db, "acct-shuffled") == _buckets(db, "acct-duplicated")

    before = _snapshot(db)
    check = run_rebuild(signals_settings, clock, check=True, progress=False)
    assert check.differences == [] and check.events == 3 * unique
    run_rebuild(signals_settings, clock, check=False, progress=False)
    assert _snapshot(db) == before

    cli = subprocess.run(
        [sys.executable, "-m", "kamwatch.cli", "signals", "rebuild", "--check"],
        env=service_env(KAMWATCH_SIGNALS_MODEL_DIR=signals_settings.model_dir),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert cli.returncode == 0, cli.stderr
    assert "equals the live state" in cli.stdout
    assert "replaying" in cli.stderr  # the tqdm progress bar


def test_features_as_json_are_plain_floats(signals: TestClient, auth: dict[str, str], send, db) -> None:
    send(full_story("acct-json", NOW))
    wait_for(lambda: _count(db, "acct-json") == len(full_story("x", NOW)), what="stored")
    body = wait_for(
        lambda: (
            (r := signals.get("/v1/accounts/acct-json/features", headers=auth)).status_code == 200
            and r.json()
        ),
        what="features",
    )
    assert all(isinstance(v, float) for v in body["features"].values())
    json.dumps(body, allow_nan=False)
