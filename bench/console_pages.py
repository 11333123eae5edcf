"""The console's pages at portfolio size: `python -m bench.console_pages [--accounts 10000]`.

A fresh SQLite database gets N scored accounts (registry rows, current scores and 12 score changes
each, three contacts and a few events for the measured accounts), written straight into the tables
(seeding, not the thing measured). Signals and alerts (API only, no consumers) and the console run
in this process on free ports, as `make run` wires them; one signed-in client requests each page
in turn. The figure is the console's whole answer time as the browser sees it, including the
console's own calls to signals and alerts (median and p95 over `--repeats` requests per page),
against the issue's target of 300 ms per page. Writes bench/results/console_pages.json.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import tempfile
import threading
import time
from contextlib import closing
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from fastapi import FastAPI
from sqlalchemy import insert

from kamwatch.dev.broker import free_port
from services.alerts.app import create_app as alerts_app
from services.alerts.config import AlertsSettings
from services.console.app import create_app as console_app
from services.console.config import ConsoleSettings
from services.signals.app import create_app as signals_app
from services.signals.config import SignalsSettings
from services.signals.models import Account, RiskHistory, RiskScore, SignalEntity, SignalEvent
from shared.auth import SCOPES, create_key
from shared.config import CommonSettings
from shared.db import make_engine, make_sessionmaker, transaction
from shared.migrate import upgrade

TARGET_MS = 300.0
NOW = datetime.now(UTC).replace(microsecond=0)
BANDS = ((0.8, "red"), (0.45, "amber"), (0.1, "green"))


def _score(i: int) -> tuple[float, str]:
    score, band = BANDS[0 if i % 20 == 0 else 1 if i % 5 == 0 else 2]
    return score, band


def seed(url: str, accounts: int) -> tuple[str, list[str]]:
    """N accounts with scores and history; returns an all-scopes key and the measured ids."""
    upgrade(url)
    engine = make_engine(url)
    sessions = make_sessionmaker(engine)
    ids = [f"acct-{i:05d}" for i in range(accounts)]
    with transaction(sessions) as session:
        key = create_key(session, "bench", list(SCOPES))
        for start in range(0, accounts, 2000):
            chunk = list(enumerate(ids))[start : start + 2000]
            session.execute(insert(Account), [_account(i, a) for i, a in chunk])
            session.execute(insert(RiskScore), [_risk(i, a) for i, a in chunk])
            session.execute(insert(RiskHistory), [h for i, a in chunk for h in _history(i, a)])
        measured = ids[:: max(1, accounts // 20)][:20]
        session.execute(insert(SignalEntity), [c for a in measured for c in _contacts(a)])
        session.execute(insert(SignalEvent), [e for a in measured for e in _events(a)])
    engine.dispose()
    return key, measured


def _account(i: int, account_id: str) -> dict[str, Any]:
    record = {
        "id": account_id,
        "name": f"Account {i}",
        "arr": "250000",
        "currency": "EUR",
        "tier": "strategic",
    }
    return {
        "id": account_id,
        "name": f"Account {i}",
        "arr": 250000.0,
        "currency": "EUR",
        "tier": "strategic" if i % 3 else "key",
        "segment": ("manufacturing", "retail", "finance")[i % 3],
        "renewal_date": date.today() + timedelta(days=30 + i % 330),
        "owner_email": f"owner{i % 40}@example.com",
        "owner_name": f"Owner {i % 40}",
        "deleted": False,
        "record": json.dumps(record),
        "version": 1,
        "updated_at": NOW,
        "published_at": NOW,
    }


def _risk(i: int, account_id: str) -> dict[str, Any]:
    score, band = _score(i)
    driver = {"feature": "usage_ratio_28d_vs_90d", "value": 0.6, "contribution": 0.9}
    drivers = [{**driver, "text": "usage 40% below its 90-day baseline"}]
    return {
        "account_id": account_id,
        "score": score,
        "band": band,
        "model_version": "scorecard-v1",
        "as_of": NOW,
        "scored_at": NOW,
        "drivers": drivers,
        "changes": ["risk rose"],
        "features": {"last_nps": 7.0, "open_urgent_tickets": 1.0},
        "published_score": score,
        "published_band": band,
        "account_version": 1,
        "name": f"Account {i}",
        "arr": 250000.0,
        "currency": "EUR",
        "tier": "strategic" if i % 3 else "key",
        "owner_email": f"owner{i % 40}@example.com",
        "owner_name": f"Owner {i % 40}",
        "revenue_at_risk": round(250000.0 * score, 2),
    }


def _history(i: int, account_id: str) -> list[dict[str, Any]]:
    score, band = _score(i)
    rows = []
    for step in range(12):
        rows.append(
            {
                "account_id": account_id,
                "score": score * (step + 1) / 12,
                "band": band,
                "previous_score": None,
                "previous_band": None,
                "model_version": "scorecard-v1",
                "as_of": NOW - timedelta(days=7 * (11 - step)),
                "scored_at": NOW,
                "drivers": [],
                "changes": [],
                "features": {},
                "publish": False,
                "published_at": None,
            }
        )
    return rows


def _contacts(account_id: str) -> list[dict[str, Any]]:
    people = (("c1", "champion", False), ("c2", "executive_sponsor", True), ("c3", "user", True))
    return [
        {
            "account_id": account_id,
            "kind": "contact",
            "entity_id": cid,
            "event_time": NOW - timedelta(days=10),
            "event_key": f"{account_id}-{cid}",
            "state": {"role": role, "executive": False, "action": "joined" if active else "left"},
            "active": active,
        }
        for cid, role, active in people
    ]


def _events(account_id: str) -> list[dict[str, Any]]:
    rows = []
    for n in range(40):
        data = {"ticket_id": f"T{n}", "priority": "urgent" if n % 7 == 0 else "normal", "status": "open"}
        event = {"type": "ticket.opened", "data": data}
        rows.append(
            {
                "source": "bench",
                "event_id": f"{account_id}-{n}",
                "type": "ticket.opened",
                "account_id": account_id,
                "event_time": NOW - timedelta(hours=n),
                "payload": json.dumps(event),
                "received_at": NOW,
            }
        )
    return rows


class Served:
    def __init__(self, app: FastAPI) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.server = uvicorn.Server(
            uvicorn.Config(app, port=self.port, log_level="warning", access_log=False)
        )
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> Served:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started and time.monotonic() < deadline:
            time.sleep(0.05)
        return self

    def __exit__(self, *_: Any) -> None:
        self.server.should_exit = True
        self.thread.join(15)


def _sign_in(console: str, key: str) -> httpx.Client:
    client = httpx.Client(base_url=console, timeout=30)
    token = re.search(r'name="csrf" value="([^"]+)"', client.get("/signin").text)
    assert token, "no sign-in form"
    answer = client.post(
        "/signin", data={"api_key": key, "csrf": token.group(1), "email": "owner1@example.com"}
    )
    assert answer.status_code == 303, answer.text
    return client


def measure(client: httpx.Client, pages: dict[str, list[str]], repeats: int) -> dict[str, Any]:
    results: dict[str, Any] = {}
    for name, paths in pages.items():
        client.get(paths[0])  # warm
        times = []
        for n in range(repeats):
            started = time.perf_counter()
            answer = client.get(paths[n % len(paths)])
            times.append((time.perf_counter() - started) * 1000)
            assert answer.status_code == 200, (paths[n % len(paths)], answer.status_code, answer.text[-400:])
        times.sort()
        p95 = times[min(len(times) - 1, int(len(times) * 0.95))]
        results[name] = {"p50_ms": round(statistics.median(times), 1), "p95_ms": round(p95, 1), "n": repeats}
        results[name]["met"] = p95 <= TARGET_MS
    return results


def run(accounts: int, repeats: int, work: Path) -> dict[str, Any]:
    url = f"sqlite:///{work / 'console-bench.db'}"
    started = time.perf_counter()
    key, measured = seed(url, accounts)
    seeded_s = time.perf_counter() - started
    common = CommonSettings(database_url=url)
    signals = SignalsSettings(common=common, model_dir=str(work / "models"))
    with (
        Served(signals_app(signals, with_consumer=False)) as signals_server,
        Served(alerts_app(AlertsSettings(common=common), with_consumer=False)) as alerts_server,
    ):
        settings = ConsoleSettings(
            signals_url=signals_server.url, alerts_url=alerts_server.url, common=common
        )
        with Served(console_app(settings)) as console, closing(_sign_in(console.url, key)) as client:
            pages = {
                "portfolio (all, 200 rows)": ["/portfolio?view=all"],
                "portfolio (mine, red)": ["/portfolio?view=mine&band=red", "/portfolio?view=mine"],
                "account brief": [f"/accounts/{a}" for a in measured],
                "QBR pack": [f"/accounts/{a}/qbr" for a in measured],
                "account plan": [f"/accounts/{a}/plan" for a in measured],
                "alerts inbox": ["/alerts?view=all"],
            }
            results = measure(client, pages, repeats)
    load = [round(x, 2) for x in os.getloadavg()]
    return {
        "accounts": accounts,
        "seed_s": round(seeded_s, 1),
        "target_ms": TARGET_MS,
        "load_average": load,
        "pages": results,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench.console_pages", description=__doc__)
    parser.add_argument("--accounts", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=40)
    parser.add_argument("--out", default="bench/results/console_pages.json")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        result = run(args.accounts, args.repeats, Path(tmp))
    result["measured_at"] = NOW.isoformat()
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(
        f"console pages at {result['accounts']} accounts (target p95 <= {TARGET_MS:.0f} ms; "
        f"load average {result['load_average']}):"
    )
    for name, figures in result["pages"].items():
        verdict = "met" if figures["met"] else "NOT met"
        print(f"  {name:28s} p50 {figures['p50_ms']:7.1f} ms  p95 {figures['p95_ms']:7.1f} ms  {verdict}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
